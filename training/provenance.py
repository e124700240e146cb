"""What a result was measured with: library versions, torch's thread count, the device and the CPU's float path.

CPU results are bit-for-bit reproducible only under the same versions, thread count, device and *float path*
(float sums are split differently elsewhere: an RL agent's trajectory can follow differences in the fourth
decimal). Rows, saved agents and benchmark JSONs record :func:`runtime`; :func:`runtime_differences` says what
differs. Package versions are read from the installed metadata: this module imports neither gymnasium nor SB3.

**The float path** is the vector instruction set of the CPU kernels a float32 result went through. In torch's
CPU build three libraries choose their kernels by the CPU, each on its own (measured on torch 2.14.1+cu130):

* ATen's own kernels (elementwise ops, reductions, ``log_softmax``, the optimizers' arithmetic) follow
  ``torch.backends.cpu.get_cpu_capability()`` (``AVX2`` or ``AVX512`` on x86), which the environment variable
  ``ATEN_CPU_CAPABILITY`` lowers (``avx2``) but cannot raise;
* float32 matrix products (``nn.Linear``, ``mm``) go through MKL's ``sgemm``, not ATen's kernels: MKL picks
  its code path by the CPU (``MKL_CBWR`` pins it on Intel CPUs; on AMD CPUs MKL runs its own path, the same
  under either ATen capability);
* convolutions go through oneDNN, whose instruction set is the CPU's best unless ``ONEDNN_MAX_CPU_ISA``
  caps it.

:func:`float_path` names the result (``"AVX2"`` when all three use AVX2, ``"AVX512"``, or each part when they
differ); :func:`float_path_env` gives the environment variables that pin a lower one, which must be set
before torch is imported (``prunegym --float-path avx2 ...`` does it and re-executes itself).
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import numpy as np
import torch

__all__ = [
    "FLOAT_PATHS",
    "VERSION_KEYS",
    "cpu_name",
    "float_path",
    "float_path_env",
    "float_path_parts",
    "machine",
    "runtime",
    "runtime_differences",
    "versions",
]

# key in the records -> distribution name
_DISTRIBUTIONS = {"prunegym": "prunegym", "stable_baselines3": "stable-baselines3", "gymnasium": "gymnasium"}
VERSION_KEYS = ("prunegym", "torch", "numpy", "stable_baselines3", "gymnasium", "python")


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str | None], ...]:
    out: dict[str, str | None] = {
        "prunegym": _dist_version("prunegym"),
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
    }
    for key in ("stable_baselines3", "gymnasium"):
        out[key] = _dist_version(_DISTRIBUTIONS[key])
    out["python"] = platform.python_version()
    return tuple((k, out[k]) for k in VERSION_KEYS)


def versions() -> dict[str, str | None]:
    """``{"prunegym", "torch", "numpy", "stable_baselines3", "gymnasium", "python"}`` -> installed version
    (``torch.__version__`` with its build tag, e.g. ``2.14.1+cu130``; ``None`` if not installed)."""
    return dict(_versions())


def runtime(device: str | torch.device | None = None, threads: int | None = None) -> dict[str, Any]:
    """:func:`versions` plus ``torch_threads`` (``threads``, default torch's current intra-op count),
    ``device`` (the training device as a string, e.g. ``"cpu"``; ``None`` if not given), ``cpu`` (the CPU's
    model name) and ``float_path`` (:func:`float_path`, e.g. ``"AVX2"``)."""
    return {
        **versions(),
        "torch_threads": int(threads if threads is not None else torch.get_num_threads()),
        "device": None if device is None else str(device),
        "cpu": cpu_name(),
        "float_path": float_path(),
    }


def machine(device: str | torch.device | None = None, threads: int | None = None) -> dict[str, Any]:
    """What a benchmark JSON records of the machine: :func:`runtime` plus ``cpu_count``, ``load`` (the 1-minute
    load average when called: a benchmark's figures hold for an otherwise idle machine) and, on a CUDA device,
    ``gpu`` (its name)."""
    info = runtime(device, threads)
    info["cpu_count"] = os.cpu_count()
    info["load"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


# Keys a runtime records for information only: another CPU model with the same float path computes the same.
_INFORMATIONAL = ("cpu", "note", "vec_env", "env_device", "env_threads")


def runtime_differences(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """``["torch 2.15.0+cu132 -> 2.14.1+cu130", "float_path AVX2 -> AVX512", ...]`` for every key that
    ``recorded`` sets (not ``None``) and ``current`` gives differently (the CPU's model name is informational:
    the float path says what matters); ``[]`` when nothing was recorded."""
    out = []
    for key, was in (recorded or {}).items():
        now = current.get(key)
        if was is None or now is None or key not in current or key in _INFORMATIONAL:
            continue
        if str(was) != str(now):
            out.append(f"{key} {was} -> {now}")
    return out


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (``{}`` where there is none)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    if out:
                        break
                    continue
                key, _, value = line.partition(":")
                out.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return out


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``; else what ``platform`` knows), for benchmark
    records."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


# x86 vector instruction sets from lowest to highest, as the float path names them.
_ISA_ORDER = ("DEFAULT", "AVX", "AVX2", "AVX512")
FLOAT_PATHS = ("avx2", "avx512")  # what --float-path / float_path_env can pin (a lower one than the CPU's best)


def _cpu_isa() -> str:
    """The best x86 vector ISA of this CPU (``"AVX512"``: AVX-512 F/BW/DQ/VL, ``"AVX2"``: AVX2 with FMA,
    ``"AVX"``), ``"DEFAULT"`` for an x86 CPU with none of them, else the machine's name (``"AARCH64"``)."""
    flags = set(_cpuinfo().get("flags", "").split())
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "AVX512"
    if {"avx2", "fma"} <= flags:
        return "AVX2"
    if "avx" in flags:
        return "AVX"
    machine = platform.machine().upper()
    return "DEFAULT" if machine in ("X86_64", "AMD64", "I686", "") else machine


def _isa_level(name: str | None, cpu: str) -> str:
    """An ISA setting (``ONEDNN_MAX_CPU_ISA``, ``MKL_CBWR``: ``AVX2``, ``AVX512_CORE_BF16``, ``ALL``, unset)
    as the level it gives on a CPU whose best is ``cpu``: the lower of the two."""
    text = (name or "").split(",")[0].strip().upper()
    if text.startswith(("AVX512", "AVX10")):
        level = "AVX512"
    elif text.startswith("AVX2"):
        level = "AVX2"
    elif text == "AVX":
        level = "AVX"
    elif text.startswith(("SSE", "COMPATIBLE")):
        level = "DEFAULT"
    else:  # unset, ALL, DEFAULT, AUTO: the CPU's best
        return cpu
    if cpu in _ISA_ORDER and _ISA_ORDER.index(level) > _ISA_ORDER.index(cpu):
        return cpu
    return level


def float_path_parts() -> dict[str, str]:
    """Which kernels this process's float32 CPU results go through (see the module docstring): ``aten``
    (``torch.backends.cpu.get_cpu_capability()``), ``onednn`` (the CPU's best ISA under
    ``ONEDNN_MAX_CPU_ISA``), ``mkl`` (on Intel CPUs the CPU's best under ``MKL_CBWR``; ``"own"`` on others,
    where MKL runs its own path whatever ATen's capability), plus ``cpu_isa`` and ``vendor`` for the record."""
    cpu = _cpu_isa()
    vendor = _cpuinfo().get("vendor_id", "")
    onednn = _isa_level(os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"), cpu)
    mkl = _isa_level(os.environ.get("MKL_CBWR"), cpu) if vendor == "GenuineIntel" else "own"
    aten = str(torch.backends.cpu.get_cpu_capability()).upper().replace("-", "")
    return {"aten": aten, "onednn": onednn, "mkl": mkl, "cpu_isa": cpu, "vendor": vendor}


def float_path() -> str:
    """The float path of this process's CPU kernels: ``"AVX2"`` or ``"AVX512"`` when ATen, oneDNN and (on Intel
    CPUs) MKL all use that instruction set, else each part (``"aten=AVX2 onednn=AVX512 mkl=AVX512"``)."""
    parts = float_path_parts()
    if parts["cpu_isa"] not in _ISA_ORDER:  # not x86: ATen's capability is the one choice torch reports
        return f"{parts['cpu_isa']}:{parts['aten']}"
    levels = {parts["aten"], parts["onednn"]} | ({parts["mkl"]} if parts["mkl"] != "own" else set())
    if len(levels) == 1:
        return levels.pop()
    return " ".join(f"{k}={parts[k]}" for k in ("aten", "onednn", "mkl"))


def float_path_env(path: str) -> dict[str, str]:
    """The environment variables that pin float path ``path`` (``"avx2"`` or ``"avx512"``, any case) for a
    process started with them (torch reads them when it is imported): ``ATEN_CPU_CAPABILITY``,
    ``ONEDNN_MAX_CPU_ISA`` and ``MKL_CBWR``. A lower path than the CPU's best can be forced; a higher one cannot
    (the process then reports its own, see :func:`float_path`). ``MKL_CBWR`` only on Intel CPUs, the ones whose
    MKL path it selects. ``ValueError`` for any other name."""
    key = str(path).strip().lower()
    if key not in FLOAT_PATHS:
        raise ValueError(f"float path {path!r} is not one that can be pinned; allowed: {', '.join(FLOAT_PATHS)}")
    env = {"ATEN_CPU_CAPABILITY": key, "ONEDNN_MAX_CPU_ISA": {"avx2": "AVX2", "avx512": "AVX512_CORE"}[key]}
    if _cpuinfo().get("vendor_id") == "GenuineIntel":  # elsewhere MKL ignores it (its own path)
        env["MKL_CBWR"] = {"avx2": "AVX2", "avx512": "AVX512"}[key]
    return env
