"""ferry.torch: an offloaded model gives the plain model's outputs, bit for bit."""

import copy
import io
import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import ferry  # noqa: E402
import ferry.torch  # noqa: E402
from conftest import BACKEND, PYTHON_DIR  # noqa: E402
from models import Nested, TinyTransformer, WithAdapter, inputs, model_bytes  # noqa: E402

if BACKEND == "cuda" and not torch.cuda.is_available():
    pytest.skip("FERRY_TEST_BACKEND=cuda, but this torch sees no cuda device",
                allow_module_level=True)

PASSES = 4
DEVICE = torch.device("cuda") if BACKEND == "cuda" else torch.device("cpu")


def fresh(cls=TinyTransformer):
    """(model to offload, plain reference copy on the compute device)."""
    model = cls()
    model.eval()
    return model, copy.deepcopy(model).to(DEVICE)


@torch.no_grad()
def outputs(model, xs):
    return [model(x.to(DEVICE)).cpu() for x in xs]


def offload(model, budget="40%", **kw):
    kw.setdefault("backend", BACKEND)
    return ferry.torch.offload(model, budget=budget, **kw)


def assert_restored(model, ref):
    got, want = model.state_dict(), ref.state_dict()
    assert list(got) == list(want)
    for k in want:
        assert got[k].device.type == "cpu", k
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k].cpu()), k
    for name, b in ref.named_buffers():
        assert torch.equal(dict(model.named_buffers())[name], b.cpu()), name
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert ferry.torch.handle_of(model) is None


@pytest.mark.parametrize("mode", ["calm", "chaos", "synchronous", "three_slots"])
def test_outputs_are_bitwise_identical_to_the_plain_model_over_several_passes(mode):
    if mode == "chaos" and BACKEND != "sim":
        pytest.skip("chaos is a sim setting")
    model, ref = fresh()
    xs = inputs()
    want = outputs(ref, xs)
    options = {"calm": {}, "chaos": {"sim_chaos": 1, "sim_seed": 7},
               "synchronous": {"synchronous": True}, "three_slots": {"slots_per_class": 3}}
    with offload(model, **options[mode]) as handle:
        for _ in range(PASSES):
            assert all(torch.equal(a, b) for a, b in zip(outputs(model, xs), want))
        s = handle.stats()
        assert s["bytes_d2h"] == 0 and s["writebacks"] == 0
        assert s["passes"] == PASSES * len(xs)
        assert s["vram_budget"] == int(0.4 * ferry.torch.laid_out_bytes(ref)) and s["slab_bytes"] <= s["vram_budget"]


def test_stats_show_streaming_with_prefetch_and_no_misses_after_the_first_pass():
    model, ref = fresh()
    xs = inputs(n=1)
    with offload(model) as handle:
        outputs(model, xs)  # pass 1: the schedule is learned
        first = handle.stats()
        for _ in range(PASSES):
            outputs(model, xs)
        s = handle.stats()
        groups = handle.groups()
    streamed = [g for g in groups if not g["resident"]]
    assert s["groups"] == len(groups) == 1 + 12 + 2  # root, 12 blocks, 2 refiner blocks
    root = groups[0]
    assert root["name"] == "root" and root["resident"], "held for the whole forward: preferred"
    assert root["resident_bytes"] == root["image_bytes"]
    assert streamed and s["resident_groups"] == len(groups) - len(streamed)
    assert s["acquires"] == s["releases"] == len(groups) * (PASSES + 1)
    assert s["acquires"] == s["resident_hits"] + s["hits"] + s["misses"]
    assert s["misses"] == first["misses"], "every acquire after the first pass is prefetched"
    assert s["prefetches_issued"] > 0 and s["prefetches_used"] >= len(streamed) * PASSES - 1
    assert s["bytes_d2h"] == 0
    assert s["passes"] == PASSES + 1


def test_compress_streams_bf16_weights_compressed_and_restores_them_exactly():
    torch.manual_seed(3)
    model = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(6)])
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    model = model.to(torch.bfloat16).eval()
    ref = copy.deepcopy(model).to(DEVICE)
    xs = [torch.randn(4, 256).to(torch.bfloat16) for _ in range(2)]
    want = outputs(ref, xs)
    handle = offload(model, budget="90%", compress=True)
    for _ in range(2):
        assert all(torch.equal(a, b) for a, b in zip(outputs(model, xs), want))
    s = handle.stats()
    assert s["compressed_groups"] > 0 and s["decodes"] > 0
    assert s["host_compressed_bytes"] < 0.8 * s["host_compressed_raw_bytes"]
    assert s["slab_bytes"] + s["slab_staging_bytes"] <= s["vram_budget"]
    handle.close()
    assert_restored(model, ref)


def test_compress_restores_raw_tensors_between_encoded_ones():
    """Blocks of two Linears: each block's first bias (too small to encode) sits between
    two encoded weights, so the compressed image moves it and overwrites its raw place;
    close() must read it back from where it moved."""
    torch.manual_seed(4)
    blocks = [torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 256))
              for _ in range(6)]
    model = torch.nn.Sequential(*blocks)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    model = model.to(torch.bfloat16).eval()
    ref = copy.deepcopy(model).to(DEVICE)
    xs = [torch.randn(4, 256).to(torch.bfloat16)]
    want = outputs(ref, xs)
    handle = offload(model, budget="100%", compress=True)
    assert all(torch.equal(a, b) for a, b in zip(outputs(model, xs), want))
    assert handle.stats()["compressed_groups"] == 6
    handle.close()
    assert_restored(model, ref)


def test_close_restores_the_plain_model_exactly():
    model, ref = fresh()
    params = dict(model.named_parameters())
    xs = inputs()
    handle = offload(model)
    outputs(model, xs)
    handle.close()
    handle.close()  # idempotent
    assert_restored(model, ref)
    assert all(params[k] is p for k, p in model.named_parameters()), "same Parameter objects"
    assert model.blocks[3].proj.bias is model.blocks[7].fc2.bias, "sharing is kept"
    assert all(torch.equal(a, b) for a, b in zip(outputs(model, xs), outputs(ref, xs)))


def test_groups_split_each_top_level_container_by_blocks_per_group():
    model, ref = fresh()
    xs = inputs(n=2)
    with offload(model, budget="75%", blocks_per_group=5) as handle:
        names = [g["name"] for g in handle.groups()]
        assert names == ["root", "blocks.0-4", "blocks.5-9", "blocks.10-11", "refiner.0-1"]
        root = handle.groups()[0]
        assert "blocks.3.proj.bias" in root["tensors"] and "embed.weight" in root["tensors"]
        assert all(torch.equal(a, b) for a, b in zip(outputs(model, xs), outputs(ref, xs)))
    assert_restored(model, ref)


@pytest.mark.parametrize("blocks_per_group", [1, 2])
def test_blocks_are_found_at_any_depth_and_nothing_inside_a_chosen_block_is_split(
        blocks_per_group):
    model, ref = fresh(Nested)
    xs = inputs(n=2)
    with offload(model, budget="60%", blocks_per_group=blocks_per_group) as handle:
        names = [g["name"] for g in handle.groups()]
        labels = ["0", "1", "2", "3", "4", "5"] if blocks_per_group == 1 else ["0-1", "2-3", "4-5"]
        # The Sequential of embedding, body and head holds no repeated blocks: the search
        # goes on inside; the small time MLP stays in root; each block's extras stay in it.
        assert names == ["root"] + [f"net.1.layers.{label}" for label in labels]
        root = handle.groups()[0]
        assert "time_mlp.0.weight" in root["tensors"] and "net.0.weight" in root["tensors"]
        assert "net.1.layers.0.extras.1.weight" in handle.groups()[1]["tensors"]
        assert handle.stats()["streamed_bytes_per_pass"] > 0
        for _ in range(2):
            assert all(torch.equal(a, b) for a, b in zip(outputs(model, xs), outputs(ref, xs)))
        assert handle.stats()["bytes_d2h"] == 0
    assert_restored(model, ref)


def test_blocks_names_the_containers_to_split():
    model, ref = fresh()
    xs = inputs(n=1)
    with offload(model, budget="150%", blocks="refiner") as handle:
        assert [g["name"] for g in handle.groups()] == ["root", "refiner.0", "refiner.1"]
        assert torch.equal(outputs(model, xs)[0], outputs(ref, xs)[0])
    with offload(model, budget="150%", blocks=[]) as handle:
        assert [g["name"] for g in handle.groups()] == ["root"]
        assert torch.equal(outputs(model, xs)[0], outputs(ref, xs)[0])
    model, ref = fresh(Nested)
    with offload(model, budget="150%", blocks=["net.1.layers.0.extras", "time_mlp"]) as handle:
        names = [g["name"] for g in handle.groups()]
        assert names == ["root", "net.1.layers.0.extras.0", "net.1.layers.0.extras.1",
                         "time_mlp.0", "time_mlp.2"]  # time_mlp.1 (SiLU) holds no tensor
        assert torch.equal(outputs(model, xs)[0], outputs(ref, xs)[0])
    assert_restored(model, ref)


@pytest.mark.parametrize("blocks", ["net.1", "net.1.layers.0", "net.9", "", [3], 3,
                                    ["net.1.layers", "net.1.layers.2.extras"]])
def test_a_blocks_name_that_is_not_a_container_of_blocks_is_refused_with_the_candidates(blocks):
    model, ref = fresh(Nested)
    with pytest.raises(ValueError) as info:
        offload(model, blocks=blocks)
    assert isinstance(info.value, ferry.InvalidArgumentError)
    message = str(info.value)
    assert "candidates (* = split by default): time_mlp (3 blocks, " in message
    assert ", net (3 blocks, " in message and ", *net.1.layers (6 blocks, " in message
    assert_restored(model, ref)


def test_between_passes_no_parameter_or_buffer_points_into_a_slot():
    model, _ = fresh()
    with offload(model):
        outputs(model, inputs(n=1))
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            assert t.numel() == 0, name


def test_after_offload_the_buffer_objects_first_registered_hold_no_bytes():
    # The handle keeps them (for their identity) after the modules point elsewhere.
    model, ref = fresh()
    originals = dict(model.named_buffers())
    with offload(model):
        for name, b in originals.items():
            assert b.numel() == 0, name
    assert_restored(model, ref)


def test_slot_views_are_built_once_per_slot_not_per_call():
    model, _ = fresh()
    xs = inputs(n=1)
    with offload(model) as handle:
        built = []
        make = handle._make_view
        handle._make_view = lambda e, ptr: built.append((e.name, ptr)) or make(e, ptr)
        for _ in range(3):
            outputs(model, xs)
        after_three = len(built)
        for _ in range(3):
            outputs(model, xs)
        assert len(built) == after_three
        assert len(set(built)) == len(built)
        for g, info in zip(handle._groups, handle.groups()):
            assert len(g.views) <= (1 if info["resident"] else 2), g.name


def test_a_mutable_parameter_updated_in_place_keeps_its_update_after_eviction():
    model, ref = fresh(WithAdapter)
    xs = inputs(n=2)
    # A budget this small streams every group (block 5 is the largest, as it has the
    # adapter: a larger one would keep it resident).
    handle = offload(model, budget="15%", mutable=["blocks.5.adapter", "blocks.5.calls"])
    info = {g["name"]: g for g in handle.groups()}["blocks.5"]
    assert not info["resident"], "the test needs block 5 streamed, so it gets evicted"
    for step in range(PASSES):
        with handle.acquired(model.blocks[5]), torch.no_grad():
            model.blocks[5].adapter.add_(0.25)
        with torch.no_grad():
            ref.blocks[5].adapter.add_(0.25)
        assert all(torch.equal(a, b) for a, b in zip(outputs(model, xs), outputs(ref, xs))), step
    s = handle.stats()
    assert s["writebacks"] > 0
    mutable_bytes = model_bytes(ref.blocks[5]) - model_bytes(TinyTransformer().blocks[5])
    assert 0 < s["bytes_d2h"] <= s["writebacks"] * mutable_bytes, "only mutable bytes go back"
    handle.close()
    assert int(model.blocks[5].calls) == PASSES * len(xs)
    assert torch.equal(model.blocks[5].adapter, ref.blocks[5].adapter.cpu())
    assert_restored(model, ref)


# --- errors leave the model usable ----------------------------------------------------------


def test_a_forward_that_raises_inside_a_block_leaves_the_next_pass_correct():
    model, ref = fresh()
    xs = inputs(n=1)
    with offload(model) as handle:
        outputs(model, xs)
        model.blocks[4].heads = 5  # 64 channels do not split in 5 heads: block 4 raises
        with pytest.raises(RuntimeError):
            outputs(model, xs)
        model.blocks[4].heads = 4
        assert torch.equal(outputs(model, xs)[0], outputs(ref, xs)[0])
        s = handle.stats()
    assert s["acquires"] == s["releases"]
    assert_restored(model, ref)



def test_a_budget_too_small_raises_budget_too_small_and_leaves_the_model_as_it_was():
    model, ref = fresh()
    largest_block = model_bytes(model.blocks[0])
    with pytest.raises(ferry.BudgetTooSmallError) as info:
        offload(model, budget=int(largest_block * 1.5))
    assert "ferry_plan" in str(info.value) and "at least" in str(info.value)
    assert_restored(model, ref)
    with offload(model):  # and it can still be offloaded with a budget that fits
        assert torch.equal(outputs(model, inputs(n=1))[0], outputs(ref, inputs(n=1))[0])


def test_offloading_twice_raises_already_offloaded_and_the_first_handle_keeps_working():
    model, ref = fresh()
    xs = inputs(n=1)
    with offload(model) as handle:
        with pytest.raises(ferry.AlreadyOffloadedError) as info:
            offload(model)
        assert "already offloaded" in str(info.value)
        with pytest.raises(ferry.AlreadyOffloadedError):
            offload(model.blocks[2])
        assert torch.equal(outputs(model, xs)[0], outputs(ref, xs)[0])
        assert ferry.torch.handle_of(model) is handle
    assert_restored(model, ref)


def test_after_close_the_model_runs_plain_and_the_handle_raises_closed_error():
    model, ref = fresh()
    xs = inputs(n=1)
    handle = offload(model)
    handle.close()
    assert torch.equal(outputs(model, xs)[0], outputs(ref, xs)[0])
    for use in (handle.stats, handle.synchronize, lambda: handle.acquired(model).__enter__()):
        with pytest.raises(ferry.ClosedError) as info:
            use()
        assert isinstance(info.value, ferry.FerryError) and "closed" in str(info.value)


def test_a_forward_through_a_hook_of_a_closed_handle_raises_closed_error():
    model, ref = fresh()
    handle = offload(model)
    kept = copy.copy(model.blocks[0]._forward_pre_hooks)  # e.g. a copy taken while offloaded
    handle.close()
    model.blocks[0]._forward_pre_hooks.update(kept)
    with pytest.raises(ferry.ClosedError):
        outputs(model, inputs(n=1))
    model.blocks[0]._forward_pre_hooks.clear()
    assert_restored(model, ref)


def test_a_failure_while_loading_puts_every_tensor_back():
    model, ref = fresh()
    calls = []
    original = ferry.Tensor.copy_in_address

    def flaky(self, address, nbytes, offset=0):
        calls.append(self.name)
        if len(calls) == 40:
            raise ferry.OutOfHostMemoryError("injected failure")
        return original(self, address, nbytes, offset)

    ferry.Tensor.copy_in_address = flaky
    try:
        with pytest.raises(ferry.OutOfHostMemoryError):
            offload(model)
    finally:
        ferry.Tensor.copy_in_address = original
    assert_restored(model, ref)


def _buffer_objects(model):
    """[(module, attribute, the buffer object, a copy of its values)] of every buffer."""
    return [(m, attr, b, b.clone()) for m in model.modules() for attr, b in m._buffers.items()
            if b is not None]


def assert_buffer_objects_restored(kept):
    for m, attr, b, want in kept:
        assert m._buffers[attr] is b, attr
        assert b.device.type == "cpu" and torch.equal(b, want), attr


@pytest.mark.parametrize("ending", ["close", "failed load"])
def test_buffer_objects_get_their_values_back_and_stay_registered(ending, monkeypatch):
    # A rotary embedding keeps its buffer under a second name too (transformers'
    # original_inv_freq = inv_freq), and a caller may hold one: the load empties the
    # object, so close() and a failed load must refill that same object.
    model, ref = fresh()
    kept = _buffer_objects(model)
    if ending == "close":
        handle = offload(model)
        outputs(model, inputs(n=1))
        handle.close()
    else:
        def failing(self):
            raise ferry.OutOfHostMemoryError("injected failure")

        monkeypatch.setattr(ferry.Runtime, "seal", failing)
        with pytest.raises(ferry.OutOfHostMemoryError):
            offload(model)
        monkeypatch.undo()
    assert_buffer_objects_restored(kept)
    assert_restored(model, ref)


def test_mutable_names_that_match_nothing_are_refused():
    model, ref = fresh()
    with pytest.raises(ferry.InvalidArgumentError, match="no.such"):
        offload(model, mutable=["no.such"])
    assert_restored(model, ref)


def test_budget_spellings():
    assert ferry.torch.parse_budget("40%", 1000) == 400
    assert ferry.torch.parse_budget("1KiB", 1) == 1024
    assert ferry.torch.parse_budget(5000, 1) == 5000
    with pytest.raises(ferry.InvalidArgumentError):
        ferry.torch.parse_budget("lots", 1)


# --- host memory ---------------------------------------------------------------------------

RSS_SCRIPT = r"""
import gc, json, random, resource, sys, time
import torch
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import ferry.torch
from ferry import _heap
from models import Block, TinyTransformer, model_bytes, inputs

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

# The host memory of torch itself (its thread pool, the kernels a forward loads lazily;
# on cuda the driver, context, cuBLAS and ferry's CUDA runtime) is not ferry's: bring all
# of it in before the baseline, with one block of the same widths run once on the device,
# and a ferry runtime created and closed on it.
device = "cuda" if sys.argv[3] == "cuda" else "cpu"
if device == "cuda":
    torch.cuda.init()
warm = torch.nn.Sequential(torch.nn.Embedding(1024, 512), Block(512, 16),
                           torch.nn.LayerNorm(512), torch.nn.Linear(512, 1024))
warm = warm.eval().to(device)
with torch.no_grad():
    for x in inputs(n=1, seq=16, vocab=1024):
        warm(x.to(device))
ferry.Runtime("1MiB", backend=sys.argv[3]).close()
del warm
if device == "cuda":
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
gc.collect()
start = rss()
churn = 0
if sys.argv[4] == "churned":
    # What a pipeline does before it offloads (a checkpoint read, another model built):
    # a model's worth of mid-size tensors allocated, then freed. glibc then serves tensors
    # of those sizes from its heap, which free() does not give back to the OS.
    sizes, rng = [], random.Random(0)
    while churn < 150 << 20:
        sizes.append(rng.randrange(1 << 18, 1 << 20))
        churn += 4 * sizes[-1]
    junk = [torch.ones(n) for n in sizes]
    del junk
gc.collect()
trims = []
_trim = _heap.trim
def timed_trim():
    t = time.perf_counter()
    _trim()
    trims.append(time.perf_counter() - t)
_heap.trim = timed_trim
model = TinyTransformer(vocab=1024, d=512, seq=16, n_blocks=16, n_refiner=2).eval()
gc.collect()
m = model_bytes(model)
before, peak_before = rss(), peak()
t = time.perf_counter()
handle = ferry.torch.offload(model, budget="40%", backend=sys.argv[3], progress=False)
offload_s = time.perf_counter() - t
gc.collect()
after = rss()
with torch.no_grad():
    for x in inputs(n=2, seq=16, vocab=1024):
        model(x)
gc.collect()
after_pass = rss()
s = handle.stats()
print(json.dumps(dict(model_bytes=m, budget=s["vram_budget"], slab_bytes=s["slab_bytes"],
    host_pinned_bytes=s["host_pinned_bytes"], churn_bytes=churn, rss_start=start,
    rss_before=before, rss_after_offload=after, rss_after_pass=after_pass,
    peak_growth=peak() - max(peak_before, before), offload_s=offload_s,
    trims=len(trims), trim_s=sum(trims), heap_trim=_heap.available())))
handle.close()
"""


@pytest.mark.parametrize("process", ["fresh", "churned"])
def test_host_rss_growth_from_building_the_model_to_after_offload_is_one_model(process):
    # RSS from before the model is built: the model (1x), then ferry's host store
    # replacing it. "churned" first allocates and frees a model's worth of mid-size
    # tensors, as any pipeline has, which leaves the module's freed memory (and the
    # churn's) in the C heap unless ferry gives it back to the OS.
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(PYTHON_DIR), tests_dir, BACKEND, process],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print("\nhost memory:", json.dumps(r, indent=1))
    if not r["heap_trim"] and process == "churned":
        pytest.skip("no malloc_trim in this C library: freed heap memory stays")
    slab = r["slab_bytes"] if BACKEND == "sim" else 0  # sim's "device" memory is host memory
    model = r["model_bytes"]
    assert r["rss_after_offload"] - r["rss_start"] <= 1.05 * model + slab
    assert r["rss_after_pass"] - r["rss_start"] <= 1.15 * model + slab
    assert r["host_pinned_bytes"] <= 1.05 * model


def test_the_example_script_runs_both_models_and_their_outputs_agree():
    script = PYTHON_DIR / "examples" / "compare.py"
    out = subprocess.run(
        [sys.executable, str(script), "--dim", "64", "--blocks", "8", "--tokens", "8",
         "--iters", "1", "--backend", BACKEND],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "outputs identical: True" in out.stdout and "it/s" in out.stdout


class BigFirst(torch.nn.Module):
    """Blocks whose first parameter is their largest, so that when the planner splits
    them (it streams the biggest tensors that fit the slot) that one stays in the
    resident head while later ones stream."""

    def __init__(self, d=64, n=12):
        super().__init__()
        h = d // 2
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Linear(d, 8 * d), torch.nn.ReLU(),
                                torch.nn.Linear(8 * d, h), torch.nn.Tanh(),
                                *[torch.nn.Linear(h, h) for _ in range(6)],
                                torch.nn.Linear(h, d))
            for _ in range(n))

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return x


def test_split_groups_keep_their_head_in_place_and_outputs_stay_exact():
    torch.manual_seed(5)
    model = BigFirst().eval()
    ref = copy.deepcopy(model).to(DEVICE)
    xs = [torch.randn(3, 64) for _ in range(2)]
    want = outputs(ref, xs)
    with offload(model, budget="70%") as handle:
        groups = {g["name"]: g for g in handle.groups()}
        split = [n for n, g in groups.items() if not g["resident"] and g["resident_bytes"] > 0]
        assert split, groups
        for name in split:
            assert 0 < groups[name]["resident_bytes"] < groups[name]["image_bytes"]

        # Acquired twice, with other groups in between: the head stays, the tail moves,
        # and every parameter is a view of where its tensor is now.
        def addresses(i):
            with handle.acquired(model.blocks[i]):
                g = handle._groups_of(model.blocks[i])[0]
                ptrs = [e.ferry.device_ptr() for e in g.entries]
                assert [e.tensor.data_ptr() for e in g.entries] == ptrs
                return ptrs
        i = int(split[0].split(".")[1])
        others = [j for j in range(len(model.blocks)) if j != i][:3]
        before = addresses(i)
        for j in others:
            addresses(j)
        after = addresses(i)
        stayed = [a == b for a, b in zip(before, after)]
        assert any(stayed) and not all(stayed), stayed
        assert stayed[0], "the test wants the first tensor in the head"

        for _ in range(PASSES):
            assert all(torch.equal(a, b) for a, b in zip(outputs(model, xs), want))
    assert_restored(model, ref)


# --- progress ------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _tqdm_or_skip():
    try:
        import tqdm  # noqa: F401
    except ImportError:
        pytest.skip("tqdm is not installed")


def test_offload_with_progress_true_writes_tqdm_bars_for_pinning_and_copying(
        capsys, monkeypatch):
    _tqdm_or_skip()
    monkeypatch.setenv("FERRY_PIN_CHUNK", "65536")
    model, ref = fresh()
    with offload(model, progress=True):
        pass
    err = capsys.readouterr().err
    assert "ferry: pinning" in err and "ferry: copying" in err and "100%" in err, err
    assert_restored(model, ref)


def test_offload_with_progress_true_and_no_tqdm_writes_plain_lines(capsys, monkeypatch):
    monkeypatch.setattr(ferry._progress, "_tqdm", None)
    model, _ = fresh()
    with offload(model, progress=True):
        pass
    lines = capsys.readouterr().err.splitlines()
    total = ferry.format_bytes(model_bytes(model))
    assert lines[-1] == f"ferry: copying: {total} of {total} (100%)", lines
    assert any(line.startswith("ferry: pinning: ") for line in lines), lines


def test_offload_with_progress_false_writes_nothing_even_on_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    model, _ = fresh()
    with offload(model, progress=False):
        pass
    assert sys.stderr.getvalue() == ""
    assert capsys.readouterr().err == ""


def test_offload_by_default_writes_a_bar_on_a_terminal_and_nothing_elsewhere(
        capsys, monkeypatch):
    model, _ = fresh()
    with offload(model):  # stderr is pytest's capture: not a terminal
        pass
    assert capsys.readouterr().err == ""
    _tqdm_or_skip()
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with offload(model):
        pass
    assert "ferry: copying" in terminal.getvalue()


def test_progress_must_be_none_true_or_false():
    model, ref = fresh()
    with pytest.raises(ferry.InvalidArgumentError, match="progress"):
        offload(model, progress="yes")
    assert_restored(model, ref)


def test_a_budget_of_100_percent_keeps_the_whole_model_resident():
    # Tensors far from ferry's 256-byte alignment: a share of their raw bytes would fall
    # short of the images and stream what fits.
    model = torch.nn.Sequential(*[torch.nn.Linear(7, 7) for _ in range(6)])
    x = torch.randn(2, 7)
    ref = model(x)
    handle = ferry.torch.offload(model, "100%", backend="sim", progress=False)
    try:
        assert torch.equal(model(x), ref)
        s = handle.stats()
        assert s["resident_groups"] == s["groups"], s
    finally:
        handle.close()
