"""Issue 14 section 1 (any dataset, any model) and issue 12 item 4 (dataset errors): the presets unchanged,
``register_dataset`` / ``register_model`` / ``register_task`` with their checks, ``torchvision:`` datasets (a tiny
KMNIST fixture in the real idx ``.gz`` format) and models, and one-line errors for bad archives and roots."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import shutil
import struct
import urllib.error

import gymnasium
import numpy as np
import pytest
import torch
from conftest import run_pinned, splits
from torch import nn

from prunegym.training import (
    DatasetMissingError,
    RunConfig,
    TrainingRun,
    build_model,
    measure_flops,
    register_dataset,
    register_model,
    split_indices,
    torch_generator,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _h(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous()
    m = hashlib.sha256(str((tuple(t.shape), str(t.dtype))).encode())
    m.update(t.numpy().tobytes())
    return m.hexdigest()[:16]


def _hs(s) -> dict:
    return {k: _h(getattr(s, k)) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}


def _toy(n=600, dim=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g)


def _mlp_factory(input_shape, num_classes, generator):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 32), nn.ReLU(), nn.Linear(32, num_classes))


# -- the presets are bit-identical to the code before issue 14 (hashes computed on commit 4eb067f) ---------------
PRESET_SPLITS = {
    ("synthetic", 0, ()): [
        "f185d107db47268e",
        "1c3d307106e086e3",
        "c0464a6e4df32e36",
        "b6e02af7cf8d977b",
        "459df165f6fd51b2",
        "4ff9412668fd9d0b",
    ],
    ("synthetic", 3, (("val_size", 0.25), ("train_size", 1000), ("test_size", 500))): [
        "73a779c613b82c6a",
        "687477b8ceb6e178",
        "d5aa759b542dc60a",
        "13732ebc0d8ae68b",
        "3c5465fe570b1246",
        "83f056f7611eba27",
    ],
}
PRESET_REAL = {
    ("fashion_mnist", 0, (("val_size", 500), ("train_size", 2000), ("test_size", 500))): [
        "2fb6c9e0cdc30d15",
        "ec579103d3b0b083",
        "02d901655f95bfbf",
        "95982e319655d510",
        "d3c0e98ff534c9f1",
        "6e32e91cfd3d0d5d",
    ],
    ("fashion_mnist", 1, ()): [
        "0307873657f02c20",
        "a9e43e18f2dde320",
        "fa3879b1432f92b3",
        "ed3739de099f3ca4",
        "5916441eb59a70ec",
        "b3e403d9f9509ef6",
    ],
    ("mnist", 2, (("val_size", 0.1), ("train_size", 3000), ("test_size", 1000))): [
        "6ed0fddc55f10421",
        "96d221f56bafd9cc",
        "da3f2467f8296583",
        "74c43e0915731bcd",
        "85cd1afeee888e78",
        "f3688587b7a0c62c",
    ],
}
PRESET_MODELS = {
    ("mlp", (1, 28, 28), (("hidden", (256,)),)): "28e402ceb1c50252",
    ("mlp", (32,), (("hidden", (64,)),)): "8829ccb67a875d58",
    ("cnn", (1, 28, 28), ()): "6fe5d655a6d02cd3",
    ("resnet18", (3, 32, 32), ()): "63d561a49aae89a3",
}


FIGURES_FLOAT_PATH = "avx2"  # the hashes above were computed under ATen's AVX2 kernels


def _preset_episode_hash() -> str:
    from prunegym.envs import PruningEnv

    env = PruningEnv("synthetic-mlp", pruner="infobatch", epochs=3)
    env.reset(seed=4)
    infos = []
    for _ in range(3):
        _, r, *_, info = env.step(env.encode_action(0.5))
        infos.append((r, info["val_accuracy"], info["kept_fraction"], info["train_loss"]))
    return hashlib.sha256(json.dumps(infos).encode()).hexdigest()[:16]


def committed_figures(root: str | None) -> dict:
    """What the hashes above pin, computed here: run under their float path by :func:`conftest.run_pinned`."""
    out: dict = {"splits": {}, "real": {}, "models": {}, "episode": _preset_episode_hash()}
    for name, seed, kw in PRESET_SPLITS:
        out["splits"][repr((name, seed, kw))] = list(_hs(splits(name, seed, **dict(kw))).values())
    for arch, shape, kw in PRESET_MODELS:
        m = build_model(arch, shape, 10, torch_generator(7, "init"), **dict(kw))
        out["models"][repr((arch, shape, kw))] = _h(
            torch.cat([p.detach().flatten() for p in m.state_dict().values()]).float()
        )
    for name, seed, kw in PRESET_REAL if root is not None else ():
        real = splits(name, seed, root=root, download=False, **dict(kw))
        out["real"][repr((name, seed, kw))] = list(_hs(real).values())
    return out


def _pinned_figures(root) -> dict:
    code = f"import json, test_user_data as m\nprint(json.dumps(m.committed_figures({root!r})))"
    return json.loads(run_pinned(code, FIGURES_FLOAT_PATH).strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pinned_figures() -> dict:
    return _pinned_figures(None)


@pytest.fixture(scope="module")
def pinned_real_figures(data_root) -> dict:
    for sub in ("FashionMNIST", "MNIST"):
        if not (data_root / sub / "raw").is_dir():
            pytest.skip(f"{sub} not under the data root")
    return _pinned_figures(str(data_root))


@pytest.mark.parametrize("key", list(PRESET_SPLITS))
def test_synthetic_preset_splits_unchanged(key, pinned_figures):
    assert pinned_figures["splits"][repr(key)] == PRESET_SPLITS[key]


@pytest.mark.parametrize("key", list(PRESET_REAL))
def test_real_preset_splits_unchanged(key, pinned_real_figures):
    assert pinned_real_figures["real"][repr(key)] == PRESET_REAL[key]


@pytest.mark.parametrize("key", list(PRESET_MODELS))
def test_preset_initial_weights_unchanged(key, pinned_figures):
    assert pinned_figures["models"][repr(key)] == PRESET_MODELS[key]


def test_preset_episode_unchanged(pinned_figures):
    assert pinned_figures["episode"] == "267a6b87214baaf3"


# -- val_size ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [1.5, 0.0, -3, 1e9 + 0.5, float("nan"), True, "100"])
def test_val_size_that_is_neither_count_nor_fraction_is_one_line_error(bad):
    for call in (lambda: RunConfig(val_size=bad), lambda: splits("synthetic", 0, val_size=bad)):
        with pytest.raises(ValueError) as info:
            call()
        msg = str(info.value)
        assert f"val_size={bad!r}" in msg and "int count" in msg and "fraction in (0, 1)" in msg and "\n" not in msg


def test_val_size_integral_float_is_a_count():
    assert splits("synthetic", 0, val_size=500.0).y_val.numel() == 500
    assert splits("synthetic", 0, val_size=0.1).y_val.numel() == 500


def test_split_indices_is_what_load_splits_uses():
    s = splits("synthetic", 2, val_size=300, train_size=1000, test_size=200)
    idx = split_indices(5000, 2, 300, 1000, n_test=1000, test_size=200)
    from prunegym.training import make_synthetic

    x, y = make_synthetic(2)
    assert torch.equal(s.x_train, x[:5000][idx.train]) and torch.equal(s.x_val, x[:5000][idx.val])
    assert torch.equal(s.x_test, x[5000:][idx.test])


# -- registered tensors ------------------------------------------------------------------------------------------
def test_registered_tensors_carve_seeded_val_and_a_fixed_test_set():
    x, y = _toy(1000)
    register_dataset("t-carve", {"train": (x, y)})
    a, b, c = (splits("t-carve", s, val_size=100) for s in (0, 0, 1))
    assert (a.num_train, a.y_val.numel(), a.y_test.numel(), a.num_classes) == (800, 100, 100, 3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_val, b.x_val)
    assert not torch.equal(a.x_val, c.x_val) and torch.equal(a.x_test, c.x_test)  # test: the same for every seed
    rows = lambda t: {tuple(r.tolist()) for r in t}  # noqa: E731
    assert not (rows(a.x_test) & (rows(a.x_train) | rows(a.x_val)))
    assert rows(a.x_train) | rows(a.x_val) | rows(a.x_test) == rows(x)
    given = splits(
        register_dataset(
            "t-given", {"train": (x[:800], y[:800]), "val": (x[800:900], y[800:900]), "test": (x[900:], y[900:])}
        ),
        0,
    )
    assert torch.equal(given.x_val, x[800:900]) and torch.equal(given.x_test, x[900:]) and given.num_train == 800


def test_uint8_images_are_standardised_with_the_seeds_training_split():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (500, 3, 4, 4), generator=g, dtype=torch.uint8)
    x[:, 1] //= 2  # a channel with other statistics
    register_dataset("t-u8", {"train": (x, torch.randint(0, 5, (500,), generator=g))})
    s = splits("t-u8", 0, val_size=100, test_size=50)
    m, sd = s.x_train.double().mean((0, 2, 3)), s.x_train.double().std((0, 2, 3), unbiased=False)
    torch.testing.assert_close(m, torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(sd, torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    assert abs(float(s.x_val.mean())) > 1e-4  # validation statistics were not used


@pytest.mark.parametrize(
    "source, kw, expected",
    [
        ({"train": (torch.randn(10, 3), torch.zeros(9, dtype=torch.long))}, {}, "has 10 samples but y has 9"),
        ({"train": (torch.randn(10, 3), torch.arange(10) % 3)}, {"num_classes": 2}, "outside [0, 2)"),
        (
            {"train": (torch.randn(10, 3), -torch.ones(10, dtype=torch.long))},
            {},
            "labels of split 'train' span [-1, -1]",
        ),
        ({"train": (torch.randn(10), torch.zeros(10, dtype=torch.long))}, {}, "expected [N, ...]"),
        ({"train": (torch.randn(10, 3), torch.zeros(10))}, {}, "expected integer class labels"),
        (
            {"train": (torch.randn(10, 3), torch.arange(10) % 2), "valid": (torch.randn(2, 3), torch.zeros(2))},
            {},
            "allowed: 'train' (required), 'val', 'test'",
        ),
        (
            {
                "train": (torch.randn(10, 3), torch.arange(10) % 2),
                "test": (torch.randn(4, 5), torch.zeros(4, dtype=torch.long)),
            },
            {},
            "different shapes (train: (3,), test: (5,))",
        ),
        ({"train": (torch.randn(10, 3).int(), torch.arange(10) % 2)}, {}, "dtype torch.int32"),
    ],
)
def test_bad_user_data_is_a_one_line_error_naming_the_problem(source, kw, expected):
    with pytest.raises(ValueError) as info:
        register_dataset("t-bad", source, **kw)
    assert expected in str(info.value) and "\n" not in str(info.value) and "'t-bad'" in str(info.value)


def test_unknown_dataset_and_model_names_list_what_is_allowed():
    with pytest.raises(ValueError, match="'nope'.*synthetic.*torchvision:<class name>.*register_dataset"):
        RunConfig(dataset="nope")
    with pytest.raises(ValueError, match="'nope'.*mlp, cnn, resnet18.*torchvision:<name>.*register_model"):
        RunConfig(model="nope")
    with pytest.raises(ValueError, match="no dataset class 'Nope'"):
        splits("torchvision:Nope", 0)


# -- models ----------------------------------------------------------------------------------------------------
def _rng_state():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate()


def test_factory_model_splits_at_a_named_child_deterministically_without_the_global_rng():
    torch.manual_seed(123)  # a known global state
    before = _rng_state()
    register_model("t-mlp", _mlp_factory, split="2")
    a = build_model("t-mlp", (12,), 3, torch_generator(0, "init"))
    b = build_model("t-mlp", (12,), 3, torch_generator(0, "init"))
    c = build_model("t-mlp", (12,), 3, torch_generator(1, "init"), split="1")
    after = _rng_state()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
    assert a.stage_names == ("0", "1", "2", "3") and list(a.shallow._modules) == ["0", "1", "2"]
    assert list(c.shallow._modules) == ["0", "1"]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.state_dict()["shallow.1.weight"], c.state_dict()["shallow.1.weight"])
    ref = _mlp_factory((12,), 3, None)
    ref.load_state_dict({k.split(".", 1)[1]: v for k, v in a.state_dict().items()})
    x = torch.randn(4, 12)
    torch.testing.assert_close(a(x), ref(x))  # the stages compose to the factory's own forward
    flops = measure_flops(a, (12,))
    assert flops.shallow_forward == 2 * 12 * 32 and flops.deep_forward == 2 * 32 * 3


class _FlattenInForward(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


@pytest.mark.parametrize(
    "factory, split, expected",
    [
        (lambda s, n, g: nn.Sequential(nn.Flatten(), nn.Linear(16, n)), "bogus", "split 'bogus' is not a split point"),
        (
            lambda s, n, g: nn.Sequential(nn.Linear(16, n)),
            None,
            "has 1 named child(ren) (0); a split model needs at least two",
        ),
        (lambda s, n, g: _FlattenInForward(n), None, "do not reproduce its forward"),
        (lambda s, n, g: nn.Sequential(nn.Flatten(), nn.Linear(99, n)), None, "cannot take samples of shape (4, 4)"),
        (
            lambda s, n, g: nn.Sequential(nn.Flatten(), nn.Linear(16, n + 1)),
            None,
            "expected logits [batch, num_classes]",
        ),
        (lambda s, n, g: "not a module", None, "returned str, not an nn.Module"),
    ],
)
def test_model_that_cannot_be_split_is_a_one_line_error(factory, split, expected):
    register_model("t-badmodel", factory)
    with pytest.raises(ValueError) as info:
        build_model("t-badmodel", (4, 4), 3, torch_generator(0, "init"), split=split)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_torchvision_resnet18_split_after_layer1_with_the_flatten_rule():
    torch.manual_seed(5)
    before = _rng_state()
    m = build_model("torchvision:resnet18", (3, 32, 32), 10, torch_generator(0, "init"), split="layer1")
    assert torch.equal(before[0], _rng_state()[0])
    assert m.stage_names == ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc")
    assert list(m.shallow._modules)[-1] == "layer1" and isinstance(m.deep.fc[0], nn.Flatten)
    import torchvision

    ref = torchvision.models.resnet18(num_classes=10)
    ref.load_state_dict({k.split(".", 1)[1].replace("fc.1.", "fc."): v for k, v in m.state_dict().items()})
    x = torch.randn(2, 3, 32, 32)
    m.eval(), ref.eval()
    torch.testing.assert_close(m(x), ref(x))
    again = build_model("torchvision:resnet18", (3, 32, 32), 10, torch_generator(0, "init"), split="layer1")
    assert all(torch.equal(p, q) for p, q in zip(m.state_dict().values(), again.state_dict().values()))
    flops = measure_flops(m, (3, 32, 32))
    assert 0 < flops.shallow_forward < flops.deep_forward  # measured per part, as for the presets
    with pytest.raises(
        ValueError,
        match=r"cannot take samples of shape \(1, 28, 28\) \(torchvision models take "
        r"3-channel images.*expected input.*to have 3 channels",
    ):
        build_model("torchvision:resnet18", (1, 28, 28), 10, torch_generator(0, "init"))
    with pytest.raises(ValueError, match="'torchvision:mobilenet_v2'.*do not reproduce its forward"):
        build_model("torchvision:mobilenet_v2", (3, 64, 64), 10, torch_generator(0, "init"))  # pools in forward


# -- register_task -------------------------------------------------------------------------------------------------
def test_user_tensors_and_module_as_an_env_pass_both_checkers_and_compare(tmp_path):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    from prunegym.agents import compare
    from prunegym.envs import register_task, replay

    x, y = _toy(600)
    env_id = register_task(
        "test14/Toy-v0",
        {"train": (x, y)},
        _mlp_factory,
        model_split="2",
        epochs=3,
        val_size=100,
        test_size=100,
        batch_size=64,
    )
    env = gymnasium.make(env_id, pruner="infobatch")
    check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)
    env.close()
    result = compare(env_id, [0, 1], policies=["full", "infobatch"], out=tmp_path / "cmp")
    assert result.ran == 4 and not result.failed
    rows = [r for r in result.rows if r["policy"] == "infobatch"]
    assert all(r["compute_fraction"] < 1.0 for r in rows)
    env = gymnasium.make(env_id, pruner="infobatch")
    env.reset(seed=3)
    for _ in range(3):
        *_, info = env.step(env.unwrapped.encode_action(0.5))
    rep = replay(json.loads(json.dumps(info["episode_record"])))
    assert rep.final_info["test_accuracy"] == info["test_accuracy"] and rep.final_info["val_loss"] == info["val_loss"]


def test_register_task_checks_data_against_the_model_now():
    from prunegym.envs import register_task

    g = torch.Generator().manual_seed(0)
    gray = (torch.randn(64, 1, 32, 32, generator=g), torch.randint(0, 3, (64,), generator=g))
    with pytest.raises(ValueError, match=r"'torchvision:resnet18' cannot take samples of shape \(1, 32, 32\)"):
        register_task("test14/Gray-v0", {"train": gray}, "torchvision:resnet18", model_split="layer1")
    with pytest.raises(ValueError, match="split 'layer9' is not a split point.*allowed: conv1"):
        register_task(
            "test14/Split-v0",
            {"train": (gray[0].expand(-1, 3, -1, -1), gray[1])},
            "torchvision:resnet18",
            model_split="layer9",
        )
    with pytest.raises(ValueError, match="unknown RunConfig field.s. epochz; allowed: .*epochs"):
        register_task("test14/Kw-v0", {"train": _toy()}, _mlp_factory, epochz=3)
    assert "test14/Gray-v0" not in gymnasium.registry


# -- torchvision:KMNIST from a tiny fixture in the real file format (the test patches KMNIST.resources) ----------
def _idx(data: np.ndarray) -> bytes:
    magic = 0x0803 if data.ndim == 3 else 0x0801
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in data.shape)
    return header + data.astype(np.uint8).tobytes()


@pytest.fixture
def kmnist_root(tmp_path, monkeypatch):
    """``KMNIST/raw/*.gz``: 120 train / 40 test 28x28 images in idx format, gzip'ed; KMNIST.resources patched to
    the fixture's md5 sums (torchvision's published ones belong to the full archives)."""
    import torchvision

    rng = np.random.default_rng(0)
    raw = tmp_path / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    resources = []
    for split, n in (("train", 120), ("t10k", 40)):
        labels = np.arange(n) % 10
        images = (rng.integers(0, 128, (n, 28, 28)) + labels[:, None, None] * 12).astype(np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{split}-{kind}-ubyte.gz"
            blob = gzip.compress(_idx(arr), mtime=0)
            (raw / name).write_bytes(blob)
            resources.append((name, hashlib.md5(blob).hexdigest()))
    monkeypatch.setattr(torchvision.datasets.KMNIST, "resources", resources)
    return tmp_path


def test_torchvision_kmnist_fixture_loads_through_the_dataset_path(kmnist_root):
    s = splits("torchvision:KMNIST", 0, root=kmnist_root, download=False, val_size=20)
    assert (s.num_train, s.y_val.numel(), s.y_test.numel(), s.num_classes, s.input_shape) == (
        100,
        20,
        40,
        10,
        (1, 28, 28),
    )
    assert (kmnist_root / "KMNIST" / "raw" / "train-images-idx3-ubyte").is_file()  # extracted beside the archive
    assert abs(float(s.x_train.mean())) < 1e-5 and abs(float(s.x_train.std(unbiased=False)) - 1) < 1e-4
    assert torch.equal(torch.sort(torch.cat([s.y_train, s.y_val])).values, torch.sort(torch.arange(120) % 10).values)
    cfg = RunConfig(
        dataset="torchvision:KMNIST", model="cnn", data_root=str(kmnist_root), epochs=1, val_size=20, batch_size=32
    )
    run = TrainingRun(cfg)
    assert run.run_epoch(run.full_plan()).indices.numel() == 100


def test_wrong_checksum_archive_is_named_before_any_download(kmnist_root, monkeypatch):
    import torchvision

    monkeypatch.setattr(
        torchvision.datasets.KMNIST,
        "resources",
        [(n, "0" * 32) if "train-images" in n else (n, m) for n, m in torchvision.datasets.KMNIST.resources],
    )
    attempts = _offline_network(monkeypatch)
    with pytest.raises(DatasetMissingError) as info:
        splits("torchvision:KMNIST", 0, root=kmnist_root, download=True, val_size=20)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz' failed its check" in msg and "expected " + "0" * 32 in msg
    assert "\n" not in msg and attempts == []


def _offline_network(monkeypatch) -> list:
    """Make torchvision's downloads fail as offline (after its own makedirs); returns the list of attempts."""
    import torchvision

    attempts = []

    def offline(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(torchvision.datasets.utils, "_get_redirect_url", offline)
    monkeypatch.setattr(torchvision.datasets.utils, "_urlretrieve", offline)
    return attempts


def _fmnist_layout_ok(msg: str) -> bool:
    return "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz" in msg and "PRUNEGYM_DATA" in msg


def test_truncated_archive_fails_its_check_with_torchvisions_md5_and_no_download(data_root, tmp_path, monkeypatch):

    src = data_root / "FashionMNIST" / "raw"
    if not src.is_dir():
        pytest.skip("FashionMNIST not under the data root")
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in src.glob("*.gz"):
        shutil.copy(f, raw / f.name)
    blob = (raw / "train-images-idx3-ubyte.gz").read_bytes()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 3])  # truncated
    attempts = _offline_network(monkeypatch)
    with pytest.raises(DatasetMissingError) as info:
        splits("fashion_mnist", 0, root=tmp_path / "root", download=True)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz' failed its check" in msg and attempts == []
    assert "expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d" in msg and "\n" not in msg and _fmnist_layout_ok(msg)
    assert isinstance(info.value, ValueError)  # the CLI's one-line errors


def test_missing_root_download_fails_in_one_line_and_creates_nothing(tmp_path, monkeypatch):
    attempts = _offline_network(monkeypatch)
    root = tmp_path / "no" / "such" / "root"
    with pytest.raises(DatasetMissingError) as info:
        splits("fashion_mnist", 0, root=root, download=True)
    msg = str(info.value)
    assert f"data root {str(root)!r} does not exist and downloading it failed" in msg
    assert "\n" not in msg and _fmnist_layout_ok(msg) and "Traceback" not in msg
    assert attempts and not (tmp_path / "no").exists()  # the download ran (offline); the folders it made are gone
    existing = tmp_path / "empty"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(DatasetMissingError, match="does not hold it and downloading it failed"):
        splits("fashion_mnist", 0, root=existing, download=True)
    assert sorted(p.name for p in existing.iterdir()) == ["keep.txt"]


def test_unusable_roots_are_one_line_errors_without_writing(tmp_path, monkeypatch):
    import prunegym.training.tv_datasets as tv

    attempts = _offline_network(monkeypatch)
    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    with pytest.raises(DatasetMissingError, match=r"data root '.*data.txt' is not a folder.*FashionMNIST/raw"):
        splits("fashion_mnist", 0, root=a_file)
    ro = tmp_path / "readonly"
    ro.mkdir()
    monkeypatch.setattr(tv, "_writable", lambda p: False)  # as a read-only mount (the tests run as root)
    with pytest.raises(DatasetMissingError) as info:
        splits("fashion_mnist", 0, root=ro, download=True)
    assert "the root is not writable" in str(info.value) and _fmnist_layout_ok(str(info.value))
    assert list(ro.iterdir()) == []
    with pytest.raises(DatasetMissingError, match="does not exist"):
        splits("mnist", 0, root=tmp_path / "missing", download=False)
    assert not (tmp_path / "missing").exists() and attempts == []


def test_cli_prints_one_line_and_exits_2_for_a_missing_data_root(tmp_path, monkeypatch, capsys):
    from prunegym.agents.cli import main

    _offline_network(monkeypatch)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "nodata"
    code = main(
        [
            "compare",
            "--env",
            "prunegym/FashionMNIST-MLP-v0",
            "--env-kwargs",
            f"data_root='{root}'",
            "epochs=1",
            "train_size=100",
            "--seeds",
            "0",
            "--policies",
            "full",
            "--quiet",
            "--out",
            "out",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and str(root) in err
    assert "PRUNEGYM_DATA" in err and not root.exists()


_USER_MODULE = """
import torch
from torch import nn
from prunegym.envs import register_task

def factory(input_shape, num_classes, generator):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], 16), nn.ReLU(), nn.Linear(16, num_classes))

g = torch.Generator().manual_seed(0)
x, y = torch.randn(400, 6, generator=g), torch.randint(0, 3, (400,), generator=g)
register_task("test14/Mod-v0", {"train": (x, y)}, factory, model_split="2", epochs=2, val_size=50, test_size=50)
"""


def test_a_task_registered_in_a_module_replays_in_a_fresh_process_that_imports_it(tmp_path, monkeypatch):
    import subprocess
    import sys

    from prunegym.agents.env_factory import module_env_id
    from prunegym.envs import replay

    (tmp_path / "mytask14.py").write_text(_USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import mytask14  # noqa: F401  (registers the task)

    assert module_env_id("test14/Mod-v0") == "mytask14:test14/Mod-v0"  # what worker processes get
    env = gymnasium.make("test14/Mod-v0", pruner="uniform")
    env.reset(seed=5)
    for _ in range(2):
        *_, info = env.step(env.unwrapped.encode_action(0.5))
    record = json.dumps(info["episode_record"])
    code = (
        "import json, sys, gymnasium; from prunegym.envs import replay\n"
        "try:\n    replay(json.loads(sys.argv[1]))\nexcept ValueError as e:\n    print('ERR', e)\n"
        "import mytask14\nprint(json.dumps(replay(json.loads(sys.argv[1])).final_info['test_accuracy']))\n"
        "env = gymnasium.make('mytask14:test14/Mod-v0'); print(env.reset(seed=5)[1]['seed'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, record],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, acc, seed = proc.stdout.strip().splitlines()
    assert first.startswith("ERR unknown task 'test14/Mod-v0'") and "--gym-packages" in first
    assert json.loads(acc) == info["test_accuracy"] and seed == "5"
    assert replay(json.loads(record)).final_info["test_accuracy"] == info["test_accuracy"]


# -- other torchvision layouts: EMNIST (split= variant, train= via **kwargs; extracted idx files, no archive) and
# -- STL10 (split="train"/"test", .labels, [N, C, H, W]; the test patches its file md5 lists) ----------------------
def test_torchvision_emnist_from_extracted_idx_files_needs_its_split(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split, n in (("train", 94), ("test", 47)):
        labels = np.arange(n) % 47
        (raw / f"emnist-balanced-{split}-images-idx3-ubyte").write_bytes(_idx(rng.integers(0, 256, (n, 28, 28))))
        (raw / f"emnist-balanced-{split}-labels-idx1-ubyte").write_bytes(_idx(labels))
    with pytest.raises(ValueError, match=r"'torchvision:EMNIST'.*split.*allowed: byclass, bymerge, balanced"):
        splits("torchvision:EMNIST", 0, root=tmp_path, download=False, val_size=10)
    s = splits(
        "torchvision:EMNIST", 0, root=tmp_path, download=False, val_size=10, dataset_kwargs={"split": "balanced"}
    )
    assert (s.num_train, s.y_test.numel(), s.num_classes, s.input_shape) == (84, 47, 47, (1, 28, 28))
    assert torch.equal(torch.sort(s.y_test).values, torch.arange(47))


def _emnist_balanced(root) -> None:
    raw = root / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split, n in (("train", 188), ("test", 47)):
        (raw / f"emnist-balanced-{split}-images-idx3-ubyte").write_bytes(_idx(rng.integers(0, 256, (n, 28, 28))))
        (raw / f"emnist-balanced-{split}-labels-idx1-ubyte").write_bytes(_idx(np.arange(n) % 47))


def test_dataset_kwargs_reach_every_path_that_loads_data(tmp_path):
    """A ``torchvision:`` dataset that needs constructor arguments (EMNIST's ``split``) loads on every path: the
    single run, the harness's pre-check (``evaluate``), the batched engine's first load and its per-run reload
    (four call sites once dropped ``dataset_kwargs``)."""
    from prunegym.agents import evaluate
    from prunegym.envs import PruningEnv, PruningVectorEnv

    _emnist_balanced(tmp_path)
    kw = dict(
        dataset="torchvision:EMNIST",
        dataset_kwargs={"split": "balanced"},
        data_root=str(tmp_path),
        val_size=20,
        epochs=2,
        batch_size=32,
    )
    env = PruningEnv("fashion_mnist-mlp", pruner="uniform", **kw)
    env.reset(seed=0)
    *_, info = env.step(env.encode_action(0.5))
    assert info["kept_fraction"] == 1.0  # uniform's full warm-up epoch on 168 samples of 47 classes
    (row,) = evaluate("uniform", "prunegym/FashionMNIST-MLP-v0", [0], results=None, **kw)  # pre-check, then run
    assert row["error"] is None and row["steps"] == 2
    venv = PruningVectorEnv("fashion_mnist-mlp", 2, pruner="uniform", **kw)
    venv.reset(seed=0)
    venv.reset(seed=5, options={"reset_mask": np.array([False, True])})  # the batched engine reloads run 1
    assert venv.batch is not None and venv.batch.seeds == [0, 6]
    venv.close()


def test_torchvision_stl10_split_argument_labels_and_channels_first(tmp_path, monkeypatch):
    import torchvision

    base = tmp_path / "stl10_binary"
    base.mkdir()
    rng = np.random.default_rng(2)
    files = {}
    for name, n in (("train", 30), ("test", 20)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        images[:, 0] = 255  # the red channel is saturated: per-channel statistics must see it
        files[f"{name}_X.bin"] = images.tobytes()
        files[f"{name}_y.bin"] = (np.arange(n) % 10 + 1).astype(np.uint8).tobytes()  # 1-based on disk
    files["unlabeled_X.bin"] = rng.integers(0, 256, (1, 3, 96, 96), dtype=np.uint8).tobytes()
    for f, blob in files.items():
        (base / f).write_bytes(blob)
    md5 = {f: hashlib.md5(b).hexdigest() for f, b in files.items()}
    cls = torchvision.datasets.STL10
    monkeypatch.setattr(cls, "train_list", [[f, md5[f]] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, md5[f]] for f, _ in cls.test_list])
    s = splits("torchvision:STL10", 0, root=tmp_path, download=False, val_size=5)
    assert (s.num_train, s.y_test.numel(), s.num_classes, s.input_shape) == (25, 20, 10, (3, 96, 96))
    assert torch.equal(s.y_test, torch.arange(20) % 10)  # 0-based, the test split in file order
    assert float(s.x_train[:, 0].std()) == 0.0 and abs(float(s.x_train[:, 1].std()) - 1) < 0.05
