"""Time and peak memory of converting a ViT-L/16-sized checkpoint between formats.

    python benchmarks/convert_large.py [--model ViT-L/16] [--keep DIR]

A random ViT-L/16 (304M parameters, 1.2 GB in float32) is written as a timm ``.safetensors``
file, an official ``.npz`` and a timm ``.pth``; each is then converted to every other format with
:func:`vitkit.checkpoints.convert.convert`, each conversion in its own Python process so that the
peak resident memory (``ru_maxrss``) is the conversion's own. The baseline is the same process
right after importing torch and vitkit, before reading anything. This is a benchmark, not a
test: it prints numbers, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 2**20

# Runs in a child process: argv = src dst to; prints one JSON line.
_CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(2)
from vitkit.checkpoints.convert import convert
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
done = convert(sys.argv[1], sys.argv[2], to=sys.argv[3])
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak": peak, "baseline": base, "parameters": done.parameters}))
"""

_MAKE = """
import sys, torch
from vitkit import create_model
from vitkit.checkpoints.convert import save_model
torch.manual_seed(0)
model = create_model(sys.argv[1], num_classes=1000)
save_model(model, sys.argv[2], to="timm", overwrite=True)  # the benchmark's own files (--keep)
save_model(model, sys.argv[3], to="jax", overwrite=True)  # the benchmark's own files (--keep)
save_model(model, sys.argv[4], to="timm", overwrite=True)  # the benchmark's own files (--keep)
"""


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size


def _run(code: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"child failed ({result.returncode}): {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-L/16")
    parser.add_argument("--keep", help="work in this directory and keep the files (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="vitkit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        sources = [("timm", work / "source_timm.safetensors"), ("jax", work / "source_official.npz"),
                   ("timm", work / "source_timm.pth")]
        start = time.perf_counter()
        _run(_MAKE, args.model, *(str(path) for _, path in sources))
        print(f"{args.model}: wrote the random sources in {time.perf_counter() - start:.1f} s "
              f"({os.cpu_count()} CPUs visible)")
        targets = {"native": "out_native", "hf": "out_hf", "timm": "out_timm.safetensors", "jax": "out_official.npz"}
        print(f"{'conversion':<34} {'file MiB':>9} {'seconds':>8} {'peak RSS MiB':>13} {'baseline':>9} "
              f"{'peak/file':>9} {'(peak-base)/file':>17}")
        for src_format, src in sources:
            for to, name in targets.items():
                if to == src_format:
                    continue
                dst = work / name
                stats = json.loads(_run(_CHILD, str(src), str(dst), to).strip().splitlines()[-1])
                size = _size(src)
                print(f"{src_format + ' -> ' + to + ' (' + src.suffix + ')':<34} {size / MIB:>9.0f} "
                      f"{stats['seconds']:>8.1f} {stats['peak'] / MIB:>13.0f} {stats['baseline'] / MIB:>9.0f} "
                      f"{stats['peak'] / size:>9.2f} {(stats['peak'] - stats['baseline']) / size:>17.2f}")
                shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
