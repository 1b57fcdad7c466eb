"""ferry.torch on real diffusers and transformers model classes (tiny configs, seeded random
weights, built offline): ferry finds their blocks wherever they sit, and under budgets from
the smallest that plans up to 60% of the model, with 1 and 2 blocks per group, the outputs
are the plain model's bit for bit, nothing is copied back, and close() restores the state
dict exactly.

Needs torch 2.x with diffusers and transformers (tools/venv makes build-venv/ with them); a
model whose package cannot be imported is skipped, with the reason."""

import re

import pytest

torch = pytest.importorskip("torch")

import ferry  # noqa: E402
import ferry.torch  # noqa: E402
from conftest import BACKEND  # noqa: E402
from models import model_bytes  # noqa: E402
from real_models import MODELS, missing  # noqa: E402

if BACKEND == "cuda" and not torch.cuda.is_available():
    pytest.skip("FERRY_TEST_BACKEND=cuda, but this torch sees no cuda device",
                allow_module_level=True)

DEVICE = torch.device("cuda") if BACKEND == "cuda" else torch.device("cpu")
SEEDS = (1, 2)  # two inputs, each run twice: four forwards per offload


def model_param(name):
    why = missing(MODELS[name].package)
    return pytest.param(name, id=name, marks=pytest.mark.skipif(why is not None, reason=why or ""))


ALL = [model_param(name) for name in MODELS]
_references = {}


def build(name):
    return MODELS[name].build()


def to_device(value):
    if isinstance(value, torch.Tensor):
        return value.to(DEVICE)
    return value


@torch.no_grad()
def forward(name, model, seed):
    spec = MODELS[name]
    inputs = {k: to_device(v) for k, v in spec.inputs(seed).items()}
    return spec.output(model(**inputs)).cpu()


def reference(name):
    """The plain model's output for each seed, computed once per model."""
    if name not in _references:
        ref = build(name).to(DEVICE)
        _references[name] = [forward(name, ref, seed) for seed in SEEDS]
    return _references[name]


def offload(model, budget, **kw):
    kw.setdefault("backend", BACKEND)
    return ferry.torch.offload(model, budget=budget, **kw)


def smallest_budget(model, blocks_per_group):
    """The smallest budget that plans: every group must fit a budget on its own, so ask
    with the largest group's bytes and read the minimum off BudgetTooSmallError."""
    with offload(model, 2 * model_bytes(model), blocks_per_group=blocks_per_group) as handle:
        largest = max(g["image_bytes"] for g in handle.groups())
    try:
        offload(model, largest, blocks_per_group=blocks_per_group).close()
        return largest
    except ferry.BudgetTooSmallError as exc:
        return int(re.search(r"needs at least (\d+) bytes", str(exc)).group(1))


def group_names(model, containers, blocks_per_group):
    names = []
    for prefix in containers:
        n = len(model.get_submodule(prefix))
        for start in range(0, n, blocks_per_group):
            last = min(start + blocks_per_group, n) - 1
            names.append(f"{prefix}.{start}" if start == last else f"{prefix}.{start}-{last}")
    return names


def assert_restored(model, state):
    got = model.state_dict()
    assert list(got) == list(state)
    for k, want in state.items():
        assert got[k].device.type == "cpu" and got[k].dtype == want.dtype, k
        assert torch.equal(got[k], want), k
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert ferry.torch.handle_of(model) is None


@pytest.mark.parametrize("name", ALL)
def test_the_block_containers_are_found_wherever_they_sit(name):
    model = build(name)
    containers = MODELS[name].containers
    with offload(model, "150%") as handle:
        names = [g["name"] for g in handle.groups()]
    assert names == ["root"] + group_names(model, containers, 1)
    with offload(model, "150%", blocks=list(containers)) as handle:
        assert [g["name"] for g in handle.groups()] == names, "naming them gives the same"


@pytest.mark.parametrize("budget", ["smallest", "60%"])
@pytest.mark.parametrize("blocks_per_group", [1, 2])
@pytest.mark.parametrize("name", ALL)
def test_outputs_are_bitwise_the_plain_models_and_close_restores_the_state_dict(
        name, blocks_per_group, budget):
    want = reference(name)
    model = build(name)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    size = model_bytes(model)
    smallest = smallest_budget(model, blocks_per_group)
    assert smallest < 0.6 * size, "the config is too small for 60% to stream"
    vram = smallest if budget == "smallest" else int(0.6 * size)
    handle = offload(model, vram, blocks_per_group=blocks_per_group)
    names = [g["name"] for g in handle.groups()]
    assert names == ["root"] + group_names(model, MODELS[name].containers, blocks_per_group)
    for _ in range(2):
        for seed, out in zip(SEEDS, want):
            got = forward(name, model, seed)
            assert got.dtype == out.dtype and torch.equal(got, out), (seed, (got - out).abs().max())
    s = handle.stats()
    assert s["vram_budget"] == vram and s["slab_bytes"] <= vram
    assert s["streamed_bytes_per_pass"] > 0 and s["onloads"] > s["resident_groups"], s
    assert s["bytes_d2h"] == 0 and s["writebacks"] == 0
    assert s["passes"] == 2 * len(SEEDS)
    handle.close()
    assert_restored(model, state)


@pytest.mark.parametrize("name", [model_param("t5-encoder")])
def test_a_name_that_is_not_a_block_container_is_refused_with_the_candidates(name):
    model = build(name)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for wrong in ("encoder", "encoder.block.0", "no.such", ["encoder.block", "encoder.block.1.layer"]):
        with pytest.raises(ValueError) as info:
            offload(model, "150%", blocks=wrong)
        assert "candidates (* = split by default): *encoder.block (8 blocks" in str(info.value)
    assert_restored(model, state)
