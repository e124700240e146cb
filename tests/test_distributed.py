"""One run over two processes (gloo, CPU) equals the single-process run: issue 6's DDP parity test."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunegym.envs import task_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ddp_train.py"
EPOCHS = 3


def _example():
    spec = importlib.util.spec_from_file_location("ddp_train", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ddp_outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(EXAMPLE),
        "--pruner",
        "infobatch",
        "--epochs",
        str(EPOCHS),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt") for r in (0, 1)]


def test_ranks_share_score_tables_and_kept_sets(ddp_outputs):
    r0, r1 = ddp_outputs
    for key in r0["scores"]:
        assert torch.equal(r0["scores"][key], r1["scores"][key]), key
    for p0, p1 in zip(r0["plans"], r1["plans"]):
        assert torch.equal(p0, p1)
    assert r0["trained"][0].dtype == torch.int64


def test_every_kept_sample_trained_exactly_once_per_epoch(ddp_outputs):
    r0, _ = ddp_outputs
    assert len(r0["trained"]) == EPOCHS
    for plan, trained in zip(r0["plans"], r0["trained"]):
        assert trained.numel() == plan.numel()
        assert torch.equal(torch.sort(trained).values, torch.sort(plan).values)
        assert torch.unique(trained).numel() == trained.numel()
    assert r0["plans"][1].numel() < r0["plans"][0].numel()  # InfoBatch really pruned after epoch 0


def test_matches_single_process_run(ddp_outputs):
    r0, _ = ddp_outputs
    single = _example().train(task_config("synthetic-mlp").replace(epochs=EPOCHS, seed=0), "infobatch")
    for p_single, p_ddp in zip(single["plans"], r0["plans"]):
        assert torch.equal(p_single, p_ddp)
    for key, value in single["state"].items():
        torch.testing.assert_close(r0["state"][key], value, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(r0["scores"]["loss"], single["scores"]["loss"], rtol=1e-4, atol=1e-5)
    assert torch.equal(r0["scores"]["times_trained"], single["scores"]["times_trained"])
    assert r0["flops"] == single["flops"]  # the meter counts every rank's passes once


def test_pfb_selector_flops_are_summed_over_ranks(tmp_path):
    """Each rank's selector works on its shard ``rows[rank::2]`` of a global batch; the meter sums the ranks'
    selector FLOPs (``PassCounts.selector_flops``) like the pass counts, and every rank reports the sum."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(EXAMPLE),
        "--pruner",
        "pfb",
        "--prune-ratio",
        "0.4",
        "--epochs",
        "2",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["passes"] == r1["passes"] and r0["flops"] == r1["flops"]
    n = r0["plans"][0].numel()
    batch = task_config("synthetic-mlp").batch_size
    shards = [len(range(rank, min(batch, n - s), 2)) for s in range(0, n, batch) for rank in (0, 1)]
    n_c, d = min(100, shards[0]), 64  # centres from each rank's first shard; the MLP's 64 hidden units
    warm = sum(2.0 * n_c * d * 2 * b for b in shards)  # epoch 0: every row absorbed
    pruned = sum(2.0 * n_c * d * (b + 2 * math.floor(0.6 * b + 1e-9)) for b in shards)
    assert r0["passes"]["selector_flops"] == pytest.approx(warm + pruned)
    assert r0["passes"]["shallow_forward"] == 2 * n


def test_process_group_without_init_is_a_clear_error():
    from prunegym.training import TrainingRun

    with pytest.raises(ValueError, match="init_process_group"):
        TrainingRun(task_config("synthetic-mlp").replace(epochs=1), process_group="default")
