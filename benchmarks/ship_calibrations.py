"""Make the calibrations that ship with prunegym (``prunegym/agents/evaluation/calibrated/``): every fixed policy's
main knob solved for each budget on one env, exactly as ``prunegym compare --budgets`` solves it (same env
kwargs, calibration seeds and tolerance), written into the shipped folder instead of ``$PRUNEGYM_CACHE``.

A calibration is keyed by the prunegym version and the CPU's float path it ran under (issue 21), so run this once
per float path the package should serve without recalibrating: once pinned to AVX2 and once on an AVX-512 CPU's
own kernels (one torch thread each)::

    OMP_NUM_THREADS=1 python benchmarks/ship_calibrations.py --float-path avx2 --clean
    OMP_NUM_THREADS=1 python benchmarks/ship_calibrations.py

``--float-path`` re-executes the script under the pinning variables (``prunegym.training.float_path_env``).

``--clean`` first removes the entries of older formats (they can no longer match a request).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from prunegym.agents.cli_parser import parse_kv
from prunegym.agents.evaluation.calibration import FORMAT, SHIPPED_CALIBRATIONS, calibrate, calibration_kwargs
from prunegym.agents.evaluation.matched_compute import REFERENCE
from prunegym.baselines import POLICIES
from prunegym.training import float_path, float_path_env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="prunegym/FashionMNIST-MLP-v0")
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    ap.add_argument("--env-kwargs", nargs="+", default=["epochs=10"], metavar="K=V")
    ap.add_argument("--clean", action="store_true", help="remove shipped entries of older formats first")
    ap.add_argument("--float-path", default=None, help="run under this pinned float path (avx2, avx512)")
    args = ap.parse_args()
    if args.float_path and float_path() != args.float_path.upper():
        if os.environ.get("PRUNEGYM_FLOAT_PATH") == args.float_path.upper():
            raise SystemExit(f"this CPU cannot run float path {args.float_path} (it runs {float_path()})")
        env = {**os.environ, **float_path_env(args.float_path), "PRUNEGYM_FLOAT_PATH": args.float_path.upper()}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if args.clean:
        for p in SHIPPED_CALIBRATIONS.glob("*.json"):
            if json.loads(p.read_text()).get("format") != FORMAT:
                p.unlink()
    kwargs = calibration_kwargs({**parse_kv(args.env_kwargs), "reward": "accuracy"})
    names = [n for n, c in POLICIES.items() if n != REFERENCE and not c.requires_budget]
    print(f"float path {float_path()}, {torch.get_num_threads()} torch thread(s); {args.env} {kwargs}", flush=True)
    for b in args.budgets:
        for name in names:
            t0 = time.perf_counter()
            cal = calibrate(args.env, name, b, env_kwargs=kwargs, cache=SHIPPED_CALIBRATIONS)
            knob = f"{cal.knob}={cal.value:.6g}" if cal.value is not None else "unreachable"
            print(f"{name:16s} budget {b:g}: {knob}, compute {cal.compute:.4f} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
