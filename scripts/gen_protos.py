#!/usr/bin/env python3
"""Regenerate the committed protobuf and gRPC modules under ``protos/``.

Run from anywhere: ``python scripts/gen_protos.py``. With ``--check`` it
generates into a temporary folder and exits 1 if the committed files differ,
which is what ``tests/test_protos.py`` does.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"


def generate(out_root: Path) -> list[Path]:
    """Generate every module for ``protos/*.proto`` under ``out_root/protos``."""
    protos = sorted(PROTO_DIR.glob("*.proto"))
    (out_root / "protos").mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"--python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *[str(p.relative_to(ROOT)) for p in protos],
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return sorted(p for p in (out_root / "protos").iterdir() if "_pb2" in p.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed files are stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        if args.check:
            stale = [
                p.name
                for p in generated
                if not (PROTO_DIR / p.name).exists()
                or not filecmp.cmp(p, PROTO_DIR / p.name, shallow=False)
            ]
            committed = {p.name for p in PROTO_DIR.iterdir() if "_pb2" in p.name}
            extra = sorted(committed - {p.name for p in generated})
            if stale or extra:
                print(f"stale generated modules: {stale + extra}; run scripts/gen_protos.py")
                return 1
            print(f"{len(generated)} generated modules are up to date")
            return 0
        for p in generated:
            shutil.copyfile(p, PROTO_DIR / p.name)
        print(f"wrote {len(generated)} modules to {PROTO_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
