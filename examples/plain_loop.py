"""prunegym's pruners in a plain PyTorch training loop: no gymnasium, no ``TrainingRun``, no DataLoader.

Two loops over the same small synthetic task (16 features, 4 classes, tensors in memory):

1. **InfoBatch** (epoch-level): per epoch ``plan = pruner.plan(epoch, scores, {"prune_ratio": r})`` gives the
   kept indices ``[K]`` (shuffled) and loss weights ``[K]``; train on them; then record the unweighted
   per-sample losses with ``scores.update(...)`` and call ``pruner.update(result, scores)``. ``result`` can
   be any object with the fields ``indices`` ``[M]`` int64, ``losses`` ``[M]`` float, ``correct`` ``[M]`` bool
   and ``mixed`` ``[M]`` bool (here a ``SimpleNamespace``): no pruner reads more of an ``EpochResult``.
2. **PFB** (in-batch): ``plan.selector`` is called inside the forward pass with the shallow features of the
   whole batch and returns the rows ``[floor((1 - p) B)]`` that go on through the deep part and the loss (on
   an unpruned epoch, ``p = 0`` or epoch 0, all ``B`` rows: the selector then only warms its density
   estimator up). ``plan.selector.flops(B, K, features.shape)`` is its own arithmetic in FLOPs.

All randomness comes from explicit generators (data, initialisation, the pruners' ``generator``); the global
RNGs are never used. Run: ``python examples/plain_loop.py``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from prunegym.baselines import InfoBatchPruner, PFBPruner
from prunegym.training import ScoreTable


def make_data(n: int, generator: torch.Generator, dim: int = 16, classes: int = 4):
    """``x`` ``[n, dim]`` float32, ``y`` ``[n]`` int64: overlapping Gaussian classes (means fixed by seed 0)."""
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(0)) * 0.4
    y = torch.randint(0, classes, (n,), generator=generator)
    x = centres[y] + torch.randn(n, dim, generator=generator)
    return x, y


def linear(n_in: int, n_out: int, generator: torch.Generator) -> nn.Linear:
    """``nn.Linear`` initialised like PyTorch's default but from ``generator`` (not the global RNG)."""
    layer = torch.nn.utils.skip_init(nn.Linear, n_in, n_out)
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


def make_model(seed: int, dim: int = 16, hidden: int = 64, classes: int = 4):
    """``(shallow, deep)``: ``deep(shallow(x))`` is the classifier; shallow features are ``[B, hidden]``."""
    g = torch.Generator().manual_seed(seed)
    shallow = nn.Sequential(linear(dim, hidden, g), nn.ReLU())
    deep = nn.Sequential(linear(hidden, hidden, g), nn.ReLU(), linear(hidden, classes, g))
    return shallow, deep


@torch.no_grad()
def accuracy(shallow, deep, x, y) -> float:
    return float((deep(shallow(x)).argmax(1) == y).float().mean())


def train_infobatch(x, y, epochs: int, batch_size: int, seed: int, prune_ratio: float = 0.5, delta: float = 0.875):
    """InfoBatch with its annealing (full data from epoch ``floor(delta * E)``); returns the model and the
    kept fraction of each epoch."""
    n = int(y.numel())
    shallow, deep = make_model(seed)
    opt = torch.optim.SGD([*shallow.parameters(), *deep.parameters()], lr=0.05, momentum=0.9)
    scores = ScoreTable(n)
    pruner = InfoBatchPruner()
    pruner.reset(n, epochs, "cpu", torch.Generator().manual_seed(seed))
    kept = []
    for epoch in range(epochs):
        r = prune_ratio if epoch < math.floor(delta * epochs) else 0.0
        plan = pruner.plan(epoch, scores, {"prune_ratio": r})
        weights = plan.weights if plan.weights is not None else torch.ones(plan.indices.numel())
        losses, correct = [], []
        for s in range(0, plan.indices.numel(), batch_size):
            bi, w = plan.indices[s : s + batch_size], weights[s : s + batch_size]
            logits = deep(shallow(x[bi]))
            per_sample = F.cross_entropy(logits, y[bi], reduction="none")
            loss = (w * per_sample).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(per_sample.detach())
            correct.append(logits.detach().argmax(1) == y[bi])
        result = SimpleNamespace(
            indices=plan.indices,
            losses=torch.cat(losses),
            correct=torch.cat(correct),
            mixed=torch.zeros(plan.indices.numel(), dtype=torch.bool),
        )
        scores.update(result.indices, result.losses, result.correct, epoch)
        pruner.update(result, scores)
        kept.append(plan.indices.numel() / n)
    return shallow, deep, kept


def train_pfb(x, y, epochs: int, batch_size: int, seed: int, prune_ratio: float = 0.4):
    """PFB's in-batch selection (full data in the first and last epoch); returns the model and the shallow
    and deep row counts."""
    n = int(y.numel())
    shallow, deep = make_model(seed)
    opt = torch.optim.SGD([*shallow.parameters(), *deep.parameters()], lr=0.05, momentum=0.9)
    scores = ScoreTable(n)  # PFB does not read it; the plan() signature asks for one
    pruner = PFBPruner()
    pruner.reset(n, epochs, "cpu", torch.Generator().manual_seed(seed))
    rows_shallow = rows_deep = 0
    for epoch in range(epochs):
        p = prune_ratio if 0 < epoch < epochs - 1 else 0.0
        plan = pruner.plan(epoch, scores, {"prune_ratio": p})
        for s in range(0, plan.indices.numel(), batch_size):
            bi = plan.indices[s : s + batch_size]
            h = shallow(x[bi])
            yb = y[bi]
            if plan.selector is not None:
                rows = plan.selector(h.detach(), bi)
                h, yb = h[rows], yb[rows]
            rows_shallow += bi.numel()
            rows_deep += yb.numel()
            loss = F.cross_entropy(deep(h), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return shallow, deep, rows_shallow, rows_deep


def main(
    n_train: int = 4000, n_test: int = 2000, epochs: int = 8, batch_size: int = 128, seed: int = 0, verbose: bool = True
) -> dict:
    """Train both loops; returns test accuracies, InfoBatch's per-epoch kept fractions and PFB's deep share."""
    g = torch.Generator().manual_seed(seed)
    x, y = make_data(n_train, g)
    x_test, y_test = make_data(n_test, g)
    sh, dp, kept = train_infobatch(x, y, epochs, batch_size, seed)
    out = {"infobatch_accuracy": accuracy(sh, dp, x_test, y_test), "infobatch_kept": kept}
    sh, dp, n_sh, n_dp = train_pfb(x, y, epochs, batch_size, seed)
    out.update(pfb_accuracy=accuracy(sh, dp, x_test, y_test), pfb_deep_share=n_dp / n_sh)
    if verbose:
        print(
            f"InfoBatch: test accuracy {out['infobatch_accuracy']:.3f}, kept per epoch "
            f"{[round(k, 3) for k in kept]}, mean {sum(kept) / len(kept):.3f}"
        )
        print(f"PFB: test accuracy {out['pfb_accuracy']:.3f}, rows through the deep part {out['pfb_deep_share']:.3f}")
    return out


if __name__ == "__main__":
    main()
