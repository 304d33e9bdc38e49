"""Peak memory of decoding one big upload (`proxy.preprocess.to_pixels`), per image kind.

The proxy decodes uploads in its worker processes, several threads each, under a container
memory limit, so what one big image costs while it decodes matters more than its file size
(a 40-megapixel PNG of one colour is ~170 kB). Each kind is decoded in a fresh Python process
and measured as the growth of its peak RSS (VmHWM, Linux) over the imports.

    python -m bench.decode_memory                # 40 megapixels, the proxy's default limit
    python -m bench.decode_memory --megapixels 12
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from training.hardware import describe_cpu

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
from proxy.preprocess import to_pixels
def peak_kb():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
data = open(sys.argv[1], "rb").read()
start = peak_kb()
to_pixels(data, 10**9)
print((peak_kb() - start) / 1024)
"""


def make_image(mode: str, fmt: str, value, side: int, path: Path) -> None:
    if mode == "I;16":
        Image.fromarray(np.full((side, side), value, np.uint16)).save(path, fmt)
    else:
        Image.new(mode, (side, side), value).save(path, fmt)


def peak_mb(path: Path) -> float:
    """MB by which one decode raised a fresh process's peak RSS."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--megapixels", type=float, default=40.0)
    ap.add_argument("--repeats", type=int, default=2)
    opts = ap.parse_args(argv)
    side = int((opts.megapixels * 1e6) ** 0.5)
    print(f"{describe_cpu()}; {side}x{side} images ({side * side / 1e6:.1f} MP)")
    print("| image | file kB | peak RSS growth, MB (each run) |\n| --- | ---: | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, (mode, fmt, value) in KINDS.items():
            path = Path(tmp) / f"image.{fmt.lower()}"
            make_image(mode, fmt, value, side, path)
            runs = ", ".join(f"{peak_mb(path):.0f}" for _ in range(opts.repeats))
            print(f"| {kind} | {path.stat().st_size / 1e3:.0f} | {runs} |")


if __name__ == "__main__":
    main()
