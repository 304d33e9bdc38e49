"""Peak memory of decoding one big upload (`imaging.decode.to_pixels`), per image kind.

The proxy decodes uploads in its worker processes, several threads each, under a container
memory limit, so what one big image costs while it decodes matters more than its file size
(a 40-megapixel PNG of one colour is ~170 kB). Each kind is decoded in a fresh Python process
and measured as the growth of its peak RSS (VmHWM, Linux) over the imports. Then, as in one
gunicorn worker, four long-lived threads decode the transparent PNG four at a time, three
rounds, with the default malloc and with the proxy's PROCESS_ENV: peak and RSS after.

    python -m bench.decode_memory                # 40 megapixels, the proxy's default limit
    python -m bench.decode_memory --megapixels 12
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from proxy.config import PROCESS_ENV
from runtime.cpu import describe_cpu

# kind -> (Pillow mode, format, pixel value); one colour: tiny files, full-size decodes.
KINDS = {
    "RGB PNG": ("RGB", "PNG", (10, 200, 30)),
    "RGBA PNG (half transparent)": ("RGBA", "PNG", (10, 200, 30, 128)),
    "LA PNG": ("LA", "PNG", (10, 128)),
    "16-bit grey PNG": ("I;16", "PNG", 40000),
    "RGB JPEG (decoded shrunk)": ("RGB", "JPEG", (10, 200, 30)),
}

# VmHWM, not ru_maxrss: Linux carries a parent's peak into ru_maxrss across fork and exec,
# so a child of this script (which has just drawn a 40-megapixel image) would read ours.
MEASURE = """
import re, sys
from imaging.decode import to_pixels
def peak_kb():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
data = open(sys.argv[1], "rb").read()
start = peak_kb()
to_pixels(data, 10**9)
print((peak_kb() - start) / 1024)
"""


# Four threads that live on, as a gunicorn worker's do (gunicorn_conf.py: 4 threads).
THREADED = """
import re, sys
from concurrent.futures import ThreadPoolExecutor
from imaging.decode import to_pixels
def kb(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
data = open(sys.argv[1], "rb").read()
start = kb("VmRSS")
with ThreadPoolExecutor(4) as pool:
    for _ in range(3):
        list(pool.map(lambda d: to_pixels(d, 10**9), [data] * 4))
    print((kb("VmHWM") - start) / 1024, (kb("VmRSS") - start) / 1024)
"""


def make_image(mode: str, fmt: str, value, side: int, path: Path) -> None:
    if mode == "I;16":
        Image.fromarray(np.full((side, side), value, np.uint16)).save(path, fmt)
    else:
        Image.new(mode, (side, side), value).save(path, fmt)


def peak_mb(path: Path) -> float:
    """MiB by which one decode raised a fresh process's peak RSS."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip())


def threaded_mb(path: Path, env: dict[str, str]) -> tuple[float, float]:
    """(peak, after) RSS growth in MiB of four threads decoding `path` (THREADED)."""
    done = subprocess.run([sys.executable, "-c", THREADED, str(path)], capture_output=True,
                          text=True, check=True, env={**os.environ, **env})  # fmt: skip
    peak, after = map(float, done.stdout.split())
    return peak, after


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m bench.decode_memory", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--megapixels", type=float, default=40.0)
    ap.add_argument("--repeats", type=int, default=2)
    opts = ap.parse_args(argv)
    side = int((opts.megapixels * 1e6) ** 0.5)
    print(f"{describe_cpu()}; {side}x{side} images ({side * side / 1e6:.1f} MP)")
    print("| image | file kB | peak RSS growth, MiB (each run) |\n| --- | ---: | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, (mode, fmt, value) in KINDS.items():
            path = Path(tmp) / f"image.{fmt.lower()}"
            make_image(mode, fmt, value, side, path)
            runs = ", ".join(f"{peak_mb(path):.0f}" for _ in range(opts.repeats))
            print(f"| {kind} | {path.stat().st_size / 1e3:.0f} | {runs} |")
        path = Path(tmp) / "rgba.png"
        make_image(*KINDS["RGBA PNG (half transparent)"], side, path)
        print("\nfour threads, 3 rounds of 4 RGBA PNG decodes (as one gunicorn worker)")
        print("| malloc | peak RSS growth, MiB | RSS growth after, MiB |\n| --- | ---: | ---: |")
        for name, env in (("glibc default", {}), (f"PROCESS_ENV {PROCESS_ENV}", PROCESS_ENV)):
            for _ in range(opts.repeats):
                peak, after = threaded_mb(path, env)
                print(f"| {name} | {peak:.0f} | {after:.0f} |")


if __name__ == "__main__":
    main()
