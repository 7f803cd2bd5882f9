#!/usr/bin/env python3
"""Regenerate the Python code and .pyi stubs for proto/*.proto with grpcio-tools.

    python scripts/gen_proto.py           # rewrite proto/*_pb2*.py and *.pyi
    python scripts/gen_proto.py --check   # exit 1 if the committed code is stale

The .proto files live in proto/ but import each other as "cloudai/proto/X.proto",
so the generated modules import each other as `cloudai.proto.X_pb2`, matching the
installed namespace. We stage them in a temporary tree with that layout.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Generate code for every proto/*.proto into out_dir; return the files written."""
    import grpc_tools
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        staged = src / "cloudai" / "proto"
        staged.mkdir(parents=True)
        protos = sorted(PROTO_DIR.glob("*.proto"))
        for proto in protos:
            shutil.copy(proto, staged / proto.name)
        gen = Path(tmp) / "gen"
        gen.mkdir()
        well_known = Path(grpc_tools.__file__).parent / "_proto"
        args = [
            "grpc_tools.protoc",
            f"-I{src}",
            f"-I{well_known}",
            f"--python_out={gen}",
            f"--pyi_out={gen}",
            f"--grpc_python_out={gen}",
            *[str(Path("cloudai/proto") / p.name) for p in protos],
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        written = []
        for path in sorted((gen / "cloudai" / "proto").iterdir()):
            if path.name.endswith(GENERATED_SUFFIXES):
                target = out_dir / path.name
                shutil.copy(path, target)
                written.append(target)
        return written


def stale_files() -> list[str]:
    """Names of generated files that differ from what the .proto files produce now."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in generate(Path(tmp))}
    committed = {
        p.name: p.read_bytes() for p in PROTO_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    }
    names = sorted(set(fresh) | set(committed))
    return [n for n in names if fresh.get(n) != committed.get(n)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    opts = parser.parse_args()
    if opts.check:
        stale = stale_files()
        if stale:
            print("stale generated protobuf code: " + ", ".join(stale), file=sys.stderr)
            print("run: python scripts/gen_proto.py", file=sys.stderr)
            return 1
        print("generated protobuf code is current")
        return 0
    for path in generate(PROTO_DIR):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
