"""Fault injection: ``prunegym compare`` killed with SIGKILL at random points, sequential and on Ray, then resumed.

Each attempt runs the real command in its own session and kills the whole session (the command, and on Ray
its local cluster and workers) after a seeded random number of finished rows plus a seeded random delay, so
kills land while an episode trains, while its TensorBoard run or its row is written, and while the summary is
written. After the kills the same command is run to the end. Its ``results.jsonl`` (one row per pair, none
doubled), TensorBoard runs (same scalars, one event file each) and summary must equal those of an
uninterrupted run, wall-clock aside. Tiny synthetic episodes keep the file at about a minute on 2 idle cores.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prunegym.agents import read_rows
from prunegym.agents.cli import main

ENV = "prunegym/Synthetic-MLP-v0"
LABEL = "prunegym_Synthetic-MLP-v0"
POLICIES = ["uniform", "infobatch", "full"]
SEEDS = ["0", "1", "2"]
KW_ARGS = ["epochs=2", "train_size=300", "val_size=100", "test_size=100"]
PAIRS = len(POLICIES) * len(SEEDS)


def _argv(out: Path, *extra: str) -> list[str]:
    return [
        "compare",
        "--env",
        ENV,
        "--seeds",
        *SEEDS,
        "--policies",
        *POLICIES,
        "--out",
        str(out),
        "--quiet",
        "--cpus-per-run",
        "1",
        *extra,
        "--env-kwargs",
        *KW_ARGS,
    ]


def _rows(path: Path) -> int:
    return len([ln for ln in path.read_text().splitlines() if ln.strip()]) if path.exists() else 0


def _session_pids(sid: int) -> list[int]:
    """Processes of session ``sid`` (the command and everything it started, Ray's daemons and workers too)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    pids.append(int(entry))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def _holds_lock(out: Path, pid: int) -> bool:
    try:
        return (out / ".prunegym.lock").read_text().strip() == str(pid)
    except OSError:
        return False


def _kill_session(proc: subprocess.Popen) -> None:
    for pid in _session_pids(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while _session_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _kill_at_random_points(out: Path, extra: list[str], kills: int, rng: random.Random) -> list[str]:
    """Start the command ``kills`` times. Each attempt waits until the command holds the lock (its checks are
    done), then until 1 to 3 new rows have appeared, then a random delay of up to 1.5 times the gap between
    rows measured so far, and kills it: it dies inside a later pair (training, writing its run or its row).
    The last attempt waits for every row and kills within half a second (while the summary is written).
    Returns what happened at each attempt."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    log, gaps = [], []
    results = out / "results.jsonl"
    for attempt in range(kills):
        have = _rows(results)
        last = attempt == kills - 1
        target = PAIRS if last else min(have + 1 + rng.randrange(0, 3), PAIRS - 1)
        fraction = rng.uniform(0.0, 1.5)
        proc = subprocess.Popen(
            [sys.executable, "-m", "prunegym.agents", *_argv(out, *extra)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        delay = 0.0
        try:
            start = time.monotonic()
            while (
                proc.poll() is None
                and not _holds_lock(out, proc.pid)
                and _rows(results) == have
                and time.monotonic() - start < 240
            ):
                time.sleep(0.005)  # the checks are done and the episodes start (or have started)
            seen, arrivals = have, []
            while proc.poll() is None and seen < target and time.monotonic() - start < 240:
                n = _rows(results)
                if n > seen:
                    arrivals += [time.monotonic()] * (n - seen)
                    seen = n
                time.sleep(0.003)
            gaps += [b - a for a, b in zip(arrivals, arrivals[1:]) if b > a]
            gap = sum(gaps) / len(gaps) if gaps else 0.1
            delay = rng.uniform(0.0, 0.5) if last else fraction * gap
            time.sleep(delay)
        finally:
            finished = proc.poll()
            _kill_session(proc)
        log.append(
            f"{have} -> {_rows(results)} rows, killed after row {target} + {delay:.3f} s"
            + (f" (had exited {finished})" if finished is not None else "")
        )
        if finished not in (None, 0, -signal.SIGKILL):
            raise AssertionError(f"the command failed ({finished}): {proc.stderr.read().decode()}")
    return log


def _runs(out: Path) -> dict[str, dict]:
    """Every TensorBoard run under ``out/runs``: its event-file count, scalars, images and texts."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = {}
    for d in sorted(p for p in (out / "runs").rglob("*") if p.is_dir()):
        files = [p for p in d.iterdir() if p.name.startswith("events.out.tfevents.")]
        if not files:
            continue
        acc = EventAccumulator(str(d), size_guidance={"images": 0, "tensors": 0})
        acc.Reload()
        tags = acc.Tags()
        found[str(d.relative_to(out))] = {
            "files": len(files),
            "scalars": {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]},
            "images": {t: len(acc.Images(t)) for t in tags["images"]},
            "texts": {t: len(acc.Tensors(t)) for t in tags.get("tensors", [])},
        }
    return found


def _summary(out: Path) -> tuple[list, list]:
    """summary.csv and summary.md without the wall-clock columns."""
    csv = [line.split(",") for line in (out / "summary.csv").read_text().splitlines()]
    wall = {i for i, name in enumerate(csv[0]) if name.startswith("wall_clock")}
    md = [line.split("|") for line in (out / "summary.md").read_text().splitlines()]
    head = next(cells for cells in md if "wall-clock (s)" in "|".join(cells))
    md_wall = next(i for i, c in enumerate(head) if "wall-clock" in c)
    return (
        [[c for i, c in enumerate(r) if i not in wall] for r in csv],
        [[c for i, c in enumerate(r) if i != md_wall] if len(r) == len(head) else r for r in md],
    )


def _keyed(out: Path) -> dict:
    rows = {}
    for r in read_rows(out / "results.jsonl"):
        r = dict(r)
        r.pop("wall_clock_s")
        rows[r["policy"], r["seed"]] = r
    return rows


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted sequential run (Ray runs with --cpus-per-run 1 give the same rows, see test_ray.py)."""
    out = tmp_path_factory.mktemp("reference") / "cmp"
    assert main(_argv(out)) == 0
    return out


def _check_equal(out: Path, reference: Path) -> None:
    assert _rows(out / "results.jsonl") == PAIRS  # one row per pair: none lost, none doubled
    assert _keyed(out) == _keyed(reference)
    runs, ref_runs = _runs(out), _runs(reference)
    assert runs.keys() == ref_runs.keys() and len(runs) == PAIRS + 1  # every pair's run and the comparison
    for name, run in runs.items():
        assert run == ref_runs[name], name
        assert run["files"] == 1, name
    assert _summary(out) == _summary(reference)
    assert (out / "accuracy_vs_compute.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs_root = out / "runs"
    assert not [p for p in runs_root.rglob("*") if p.name.startswith(".")]  # no staging debris inside the root


@pytest.mark.parametrize(
    "extra, kills, seed", [([], 4, 20240611), (["--workers", "2"], 3, 7)], ids=["sequential", "ray"]
)
def test_killed_compares_resume_to_the_uninterrupted_result(extra, kills, seed, reference, tmp_path, capsys):
    if extra:
        pytest.importorskip("ray")
    out = tmp_path / "cmp"
    log = _kill_at_random_points(out, extra, kills, random.Random(seed))
    if os.environ.get("PRUNEGYM_FAULT_LOG"):  # where the kills landed
        sys.__stderr__.write(f"\n{extra or 'sequential'}:\n  " + "\n  ".join(log) + "\n")
    assert any(
        "killed" in line and "exited" not in line and int(line.split(" -> ")[1].split()[0]) < PAIRS for line in log
    ), log  # at least one kill landed among the episodes
    assert main(_argv(out, *extra)) == 0, log
    text = capsys.readouterr().out
    skipped = int(text.split("skipped ")[1].split()[0])
    assert skipped == _rows(out / "results.jsonl") - int(text.split("ran ")[1].split()[0]), (text, log)
    _check_equal(out, reference)
