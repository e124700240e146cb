"""Tests of the batched engine's parts: the vectorised optimizers against ``torch.optim`` (per-run learning
rates, masked steps) and the stacked model's two back ends against separate models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from prunegym.training import build_model, torch_generator
from prunegym.training.batched_model import StackedModel
from prunegym.training.batched_optim import BatchedAdamW, BatchedSGD

pytestmark = pytest.mark.usefixtures("one_thread")

SEEDS = [3, 0, 11]


# -- optimizers against torch.optim ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind,kwargs",
    [
        ("sgd", dict(momentum=0.9)),
        ("sgd", dict(momentum=0.9, nesterov=True)),
        ("sgd", dict(weight_decay=1e-2)),
        ("sgd", dict(momentum=0.8, nesterov=True, weight_decay=5e-4)),
        ("adamw", dict(weight_decay=1e-2)),
        ("adamw", dict(weight_decay=0.0)),
    ],
)
def test_batched_optimizer_matches_torch_optim(kind, kwargs):
    g = torch.Generator().manual_seed(0)
    k_runs, steps = 3, 12
    init = torch.randn(k_runs, 5, 4, generator=g)
    grads = torch.randn(steps, k_runs, 5, 4, generator=g)
    lrs = np.linspace(0.01, 0.1, steps)[:, None] * np.array([1.0, 0.5, 2.0])[None, :]
    active = np.ones((steps, k_runs), dtype=bool)
    active[7:, 1] = False  # run 1 stops after 7 steps (its state must freeze)
    active[3, 2] = False  # run 2 skips one step
    p = init.clone().requires_grad_(True)
    opt = (BatchedSGD if kind == "sgd" else BatchedAdamW)([p], **kwargs)
    opt.prepare(lrs, active)
    for b in range(steps):
        p.grad = grads[b].clone()
        opt.step(b)
    opt.commit()
    for k in range(k_runs):
        q = init[k].clone().requires_grad_(True)
        ref = (torch.optim.SGD if kind == "sgd" else torch.optim.AdamW)([q], lr=0.1, **kwargs)
        for b in range(steps):
            if not active[b, k]:
                continue
            ref.param_groups[0]["lr"] = float(lrs[b, k])
            q.grad = grads[b, k].clone()
            ref.step()
        assert_close(p.detach()[k], q.detach(), rtol=1e-6, atol=1e-7)
        state = opt.run_state(k)[0]
        for name, t in ref.state[q].items():
            if name == "step":
                assert state["step"] == int(t)
            elif t is not None:
                assert_close(state[name], t, rtol=1e-6, atol=1e-7)


# -- stacked model back ends ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,shape,kwargs", [("mlp", (32,), {"hidden": (16, 12)}), ("cnn", (1, 28, 28), {})])
def test_backends_agree_with_separate_models(arch, shape, kwargs):
    models = [build_model(arch, shape, 10, torch_generator(s, "init"), **kwargs) for s in SEEDS]
    x = torch.randn(3, 6, *shape, generator=torch.Generator().manual_seed(1))
    grads = {}
    for backend in ("bmm", "func"):
        stack = StackedModel(models, backend)
        out = stack(x)
        for k, m in enumerate(models):
            assert_close(out[k], m(x[k]), rtol=1e-5, atol=1e-6)
        out.square().sum().backward()
        grads[backend] = {n: p.grad for n, p in stack.params.items()}
    for n in grads["bmm"]:
        assert_close(grads["bmm"][n], grads["func"][n], rtol=1e-4, atol=1e-5)
    for k, m in enumerate(models):
        m(x[k]).square().sum().backward()
        for n, p in m.named_parameters():
            assert_close(grads["bmm"][n][k], p.grad, rtol=1e-4, atol=1e-5)


def test_bmm_backend_refuses_unknown_modules_and_auto_falls_back():
    model = build_model("mlp", (4,), 2, torch_generator(0, "init"), hidden=(3,))
    model.shallow.hidden1.append(torch.nn.Tanh())  # a module the bmm back end does not translate
    with pytest.raises(ValueError, match="backend='bmm' does not support model 'mlp'.*use 'func'"):
        StackedModel([model], "bmm")
    stack = StackedModel([model], "auto")
    x = torch.randn(1, 5, 4)
    assert stack.backend == "func"
    assert_close(stack(x)[0], model(x[0]))
