"""Issue 22 item 4: a method is one file and one line in each registry. What tuning, calibration, ``compare``
and ``PruningSampler`` need of a method is declared on its ``FixedPolicy`` (``tuned``, ``schedule_knobs``,
``main_knob``, ``main_knob_range``, ``requires_budget``, ``sampler_unfit``): a method written here and
registered with one line each is tuned, calibrated, run as a Sampler (or refused with its reason), played in
the env and listed, without any other edit; and every shipped method's declarations are what they were before
they were declared (the table below)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from prunegym.agents.cli import main
from prunegym.agents.evaluation.calibration import calibrate, main_knob
from prunegym.agents.evaluation.episode import policy_spec, run_episode
from prunegym.agents.evaluation.tuning import search_space, tune
from prunegym.baselines import POLICIES, PRUNERS, SAMPLER_PRUNERS, FixedPolicy, Knob, Pruner, PruningSampler
from prunegym.baselines.base import DEFAULT_MAX_PRUNE_RATIO, kept_count
from prunegym.baselines.registry import sampler_unfit
from prunegym.envs.options import EnvOptions

pytestmark = pytest.mark.usefixtures("one_thread")

ENV = "prunegym/Synthetic-MLP-v0"
KW = {"epochs": 3, "train_size": 400}


# -- a new method, defined here -----------------------------------------------------------------------------------
class ToyPruner(Pruner):
    """Keeps a uniform random ``ceil((1 - r) N)`` each epoch; ``tempo`` is a log-scale knob it ignores."""

    name = "toy"
    knobs = (Knob("tempo", 1e-3, 1e-1, 1e-2, "ignored", log=True),)

    def plan(self, epoch, scores, action):
        k = kept_count(self.num_samples, float(action["prune_ratio"]))
        plan = self.shuffled(torch.randperm(self.num_samples, generator=self.generator, device=self.device)[:k])
        plan.claimed_prune_ratio = float(action["prune_ratio"])
        return plan


class ToyPolicy(FixedPolicy):
    """Prune ratio ``r`` at epoch 0, falling linearly to ``decay * r`` at the last epoch."""

    name = "toy"
    pruner = "toy"
    defaults = {"prune_ratio": 0.5, "tempo": 1e-2, "decay": 0.5}
    schedule_knobs = (Knob("decay", 0.0, 1.0, 0.5, "share of the ratio left at the last epoch"),)

    def schedule(self, epoch):
        r, d = self.hparams["prune_ratio"], self.hparams["decay"]
        return {"prune_ratio": r * (1 - (1 - d) * epoch / max(1, self.epochs - 1)), "tempo": self.hparams["tempo"]}


class ToyInBatchPolicy(ToyPolicy):
    name = "toy_inbatch"
    sampler_unfit = "picks rows inside each batch"


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(PRUNERS, "toy", ToyPruner)  # the one line in PRUNERS
    monkeypatch.setitem(POLICIES, "toy", ToyPolicy)  # the one line in POLICIES
    monkeypatch.setitem(POLICIES, "toy_inbatch", ToyInBatchPolicy)


def fake_runner(calls):
    """A ``run_episode`` stand-in: compute ``1 - prune_ratio``, accuracy a smooth function of the knobs."""

    def run(spec, env_id, env_kwargs, seed):
        h = dict(spec.hparams)
        calls.append((h, dict(env_kwargs)))
        acc = 0.8 - (h.get("decay", 0.5) - 0.3) ** 2
        return SimpleNamespace(row=SimpleNamespace(val_accuracy=acc, compute_fraction=1.0 - h.get("prune_ratio", 0)))

    return run


def test_a_new_method_is_tuned_and_calibrated_from_its_declarations(toy, tmp_path, monkeypatch):
    assert search_space("toy") == {"tempo": (1e-3, 1e-1, True), "decay": (0.0, 1.0, False)}
    assert main_knob("toy") == ("prune_ratio", DEFAULT_MAX_PRUNE_RATIO, 0.0, False)
    calls: list = []
    cal = calibrate(ENV, "toy", 0.5, env_kwargs=KW, cache=tmp_path / "cal", runner=fake_runner(calls))
    assert cal.reachable and cal.knob == "prune_ratio" and abs(cal.compute / 0.5 - 1) <= 0.01
    assert calls[0][0] == {"prune_ratio": DEFAULT_MAX_PRUNE_RATIO}  # its cheapest setting first
    monkeypatch.setenv("PRUNEGYM_CACHE", str(tmp_path / "cache"))
    res = tune(ENV, "toy", 0.5, 2, out=tmp_path / "t", env_kwargs=KW, seeds=[30000], runner=fake_runner([]))
    assert res.search_space == {"tempo": [1e-3, 1e-1, True], "decay": [0.0, 1.0, False]}
    assert set(res.params) == {"prune_ratio", "tempo", "decay"} and res.fixed == cal.hparams  # not requires_budget


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ({"main_knob": "tempo"}, ("tempo", 1e-1, 1e-3, True)),  # a pruner knob: its high end is the cheapest
        ({"main_knob": "tempo", "main_knob_range": (1e-3, 1e-1)}, ("tempo", 1e-3, 1e-1, True)),  # declared
    ],
)
def test_a_declared_main_knob_is_calibrated_and_not_searched(toy, monkeypatch, declared, expected):
    for k, v in declared.items():
        monkeypatch.setattr(ToyPolicy, k, v)
    assert main_knob("toy") == expected
    assert search_space("toy") == {"decay": (0.0, 1.0, False)}


def test_declared_tuned_names_are_searched_and_one_without_a_range_is_an_error(toy, monkeypatch):
    monkeypatch.setattr(ToyPolicy, "tuned", ("decay",))
    assert search_space("toy") == {"decay": (0.0, 1.0, False)}
    monkeypatch.setattr(ToyPolicy, "tuned", ("nope",))
    with pytest.raises(ValueError, match="^policy 'toy': no range known for tuned hyperparameter 'nope'$"):
        search_space("toy")


def test_a_new_method_runs_as_a_sampler_or_is_refused_with_its_reason(toy):
    s = PruningSampler("toy", num_samples=100, epochs=3, seed=0)
    sizes = []
    for e in range(3):
        s.set_epoch(e)
        idx = torch.tensor(list(s))
        s.update(idx, torch.rand(idx.numel()))
        sizes.append(idx.numel())
    assert sizes == [50, 63, 75] and s.budget_spent == pytest.approx(1.88 / 3)  # r = 0.5, 0.375, 0.25
    b = PruningSampler("toy", num_samples=100, epochs=3, seed=0, budget=0.4)
    for e in range(3):
        b.set_epoch(e)
        list(b)
    assert b.budget_spent == pytest.approx(0.4, abs=0.01)
    with pytest.raises(ValueError, match=r"^pruner 'toy_inbatch' picks rows inside each batch, which a Sampler") as e:
        PruningSampler("toy_inbatch", num_samples=100, epochs=3)
    assert "allowed: full, uniform, uniform_rescaled, infobatch, epsilon_greedy, ucb, orderdp, toy (" in str(e.value)


def test_a_new_method_plays_in_the_env_and_is_listed(toy, capsys):
    row = run_episode(policy_spec("toy"), ENV, {"epochs": 2, "train_size": 200}, 0).row
    assert 0.5 < row.compute_fraction < 1.0  # epoch 0 keeps 50%, epoch 1 75%
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "  toy  (pruner toy; prune_ratio=0.5, tempo=0.01, decay=0.5)" in out
    assert ", learned, toy\n" in out  # the pruners line


# -- every shipped method, as it was before the declarations -------------------------------------------------------
PR = ("prune_ratio", 0.9, 0.0, False)
LEARNED = {"sharpness": (-1.0, 1.0, False), "rescale": (0.0, 1.0, False), "greedy": (0.0, 1.0, False)}
SHIPPED = {  # name: (search space or None: nothing to tune, main knob, requires_budget, sampler_unfit)
    "full": (None, PR, False, None),
    "uniform": (None, PR, False, None),
    "uniform_rescaled": (None, PR, False, None),
    "infobatch": (None, PR, False, None),
    "swdpp": (
        {"floor": (0.0, 1.0, False), "mix_prob": (0.0, 1.0, False)},
        PR,
        False,
        "mixes kept samples with pruned ones (mix-up partners)",
    ),
    "pfb": (None, PR, False, "selects rows inside the forward pass (after the shallow part)"),
    "epsilon_greedy": ({"epsilon": (0.0, 1.0, False)}, PR, False, None),
    "ucb": ({"c": (0.0, 4.0, False)}, PR, False, None),
    "seta": (
        {"window_scale": (0.1, 1.0, False)},
        PR,
        False,
        "moves its loss window at every plan, the trial plans of budget= too",
    ),
    "ies": (
        None,
        ("threshold", 0.1, 1e-5, True),
        False,
        "scores its excluded samples after every epoch (score_after passes)",
    ),
    "rcap": ({"beta": (0.25, 4.0, True)}, PR, False, "needs each sample's training label (scores.labels)"),
    "orderdp": ({"top_q_ratio": (0.1, 1.0, False)}, PR, False, None),
    "static_const": (LEARNED, PR, True, "reads its compute budget from the env's observation"),
    "static_schedule": (
        {"tilt": (-1.0, 1.0, False), **LEARNED},
        PR,
        True,
        "reads its compute budget from the env's observation",
    ),
    "static_ramp": (
        {
            "tilt": (-1.0, 1.0, False),
            "sharpness": (-1.0, 1.0, False),
            "sharpness_end": (-1.0, 1.0, False),
            "rescale": (0.0, 1.0, False),
            "greedy": (0.0, 1.0, False),
        },
        PR,
        True,
        "reads its compute budget from the env's observation",
    ),
}


def test_the_table_covers_every_shipped_policy():
    assert list(SHIPPED) == list(POLICIES)
    assert all(cls.name == name for name, cls in POLICIES.items())  # messages name the class's name


@pytest.mark.parametrize("name", list(SHIPPED))
def test_a_shipped_method_declares_what_it_did_before(name):
    space, knob, requires_budget, unfit = SHIPPED[name]
    if space is None:
        with pytest.raises(ValueError, match=f"policy '{name}' has nothing to tune besides its main knob"):
            search_space(name)
    else:
        assert search_space(name) == space and list(search_space(name)) == list(space)  # order too
    assert main_knob(name) == knob
    assert POLICIES[name].requires_budget is requires_budget
    assert POLICIES[name].sampler_unfit == sampler_unfit(name) == unfit
    if unfit is None:
        assert name in SAMPLER_PRUNERS and len(PruningSampler(name, num_samples=100, epochs=4)) > 0
    else:
        with pytest.raises(ValueError) as e:
            PruningSampler(name, num_samples=100, epochs=4)
        assert str(e.value) == (
            f"pruner '{name}' {unfit}, which a Sampler cannot do; allowed: full, uniform, uniform_rescaled, "
            "infobatch, epsilon_greedy, ucb, orderdp (PFB in a loop: examples/plain_loop.py)"
        )


def test_the_sampler_list_the_learned_pruner_and_the_prune_ratio_range_are_unchanged():
    sampler = ("full", "uniform", "uniform_rescaled", "infobatch", "epsilon_greedy", "ucb", "orderdp")  # + OrderDP
    assert SAMPLER_PRUNERS == sampler
    assert sampler_unfit("learned") == "needs an agent's per-epoch actions" and sampler_unfit("nope") is None
    with pytest.raises(ValueError, match="^pruner 'learned' needs an agent's per-epoch actions, which a Sampler"):
        PruningSampler("learned", num_samples=100, epochs=4)
    assert DEFAULT_MAX_PRUNE_RATIO == EnvOptions().max_prune_ratio == 0.9
