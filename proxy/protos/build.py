"""Compile proxy/protos/*.proto into proxy/protos_gen/ with grpcio-tools.

Why the rewrite after protoc: TensorFlow registers the real `tensorflow.TensorProto` in
protobuf's global descriptor pool, and a second definition of the same name there is an
error. Our generated modules therefore register into a private pool
(`proxy.protos_gen.POOL`), so they can share a process with TensorFlow (tests do).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "protos_gen"
PACKAGE = "proxy.protos_gen"


def rewrite(text: str) -> str:
    """Point imports at our package and registration at our private pool."""
    text = re.sub(
        r"^import (\w+_pb2) as (\w+)$", rf"from {PACKAGE} import \1 as \2", text, flags=re.M
    )
    if "_descriptor_pool.Default()" in text:
        text = text.replace("_descriptor_pool.Default()", "_PRIVATE_POOL")
        text = text.replace(
            "# @@protoc_insertion_point(imports)",
            f"from {PACKAGE} import POOL as _PRIVATE_POOL\n# @@protoc_insertion_point(imports)",
        )
    return text


def main() -> int:
    """Run protoc, then rewrite the generated files in place."""
    protos = sorted(str(p) for p in HERE.glob("*.proto"))
    include = str(Path(protoc.__file__).resolve().parent / "_proto")
    args = ["protoc", f"-I{HERE}", f"-I{include}", f"--python_out={OUT}"]
    args.append(f"--grpc_python_out={OUT}")
    if protoc.main([*args, *protos]) != 0:
        return 1
    for path in OUT.glob("*_pb2*.py"):
        text = path.read_text()
        if path.name.endswith("_grpc.py") and not re.search(r"class \w+Stub\b", text):
            path.unlink()  # protoc writes a _grpc module even for files without services
            continue
        path.write_text(rewrite(text))
    print(f"wrote {', '.join(sorted(p.name for p in OUT.glob('*_pb2*.py')))} to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
