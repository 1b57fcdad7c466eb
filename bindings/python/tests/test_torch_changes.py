"""ferry.torch: a model changed after offload (LoRA layers, a replaced module, a new
buffer or parameter, a parameter replaced) raises ModelChangedError at the next forward,
naming the tensors ferry does not hold; close() still gives back the original ones."""

import copy

import pytest

torch = pytest.importorskip("torch")

import ferry  # noqa: E402
import ferry.torch  # noqa: E402
from conftest import BACKEND  # noqa: E402
from models import Block, TinyTransformer, inputs  # noqa: E402
from torch import nn  # noqa: E402

if BACKEND == "cuda" and not torch.cuda.is_available():
    pytest.skip("FERRY_TEST_BACKEND=cuda, but this torch sees no cuda device",
                allow_module_level=True)

DEVICE = torch.device("cuda") if BACKEND == "cuda" else torch.device("cpu")


def offloaded(**kwargs):
    """(model, handle, reference copy, the original tensors by name and where)."""
    model = TinyTransformer().eval()
    ref = copy.deepcopy(model)
    handle = ferry.torch.offload(model, budget="40%", backend=BACKEND, **kwargs)
    params = dict(model.named_parameters())
    buffers = [(m, attr, f"{name}.{attr}" if name else attr)
               for name, m in model.named_modules() for attr in m._buffers]
    with torch.no_grad():
        model(inputs(n=1)[0].to(DEVICE))
    return model, handle, ref, (params, buffers)


def forward(model):
    with torch.no_grad():
        return model(inputs(n=1)[0].to(DEVICE))


def assert_change_reported(model, handle, *names):
    with pytest.raises(ferry.ModelChangedError) as info:
        forward(model)
    err = info.value
    assert isinstance(err, ferry.FerryError)
    for name in names:
        assert name in err.names and name in str(err), (name, err.names)
    assert "close()" in str(err) and "offload it again" in str(err)
    with pytest.raises(ferry.ModelChangedError):  # and again: nothing was taken
        forward(model)
    return err


def assert_originals_restored(handle, ref, originals):
    handle.close()
    params, buffers = originals
    want = ref.state_dict(keep_vars=True)
    for name, p in params.items():
        assert p.device.type == "cpu" and torch.equal(p, want[name]), name
    for m, attr, name in buffers:
        assert torch.equal(m._buffers[attr], dict(ref.named_buffers())[name]), name


def test_a_linear_inserted_into_a_block_is_named_and_close_restores_the_originals():
    model, handle, ref, originals = offloaded()
    model.blocks[2].fc1 = nn.Sequential(model.blocks[2].fc1, nn.Linear(128, 128))
    err = assert_change_reported(model, handle, "blocks.2.fc1.1.weight", "blocks.2.fc1.1.bias")
    assert len(err.names) == 2, "the moved fc1 (now fc1.0) is still ferry's"
    assert_originals_restored(handle, ref, originals)
    forward(model)  # the plain, changed model runs


def test_a_module_replacing_one_of_a_block_is_named():
    model, handle, ref, originals = offloaded()
    model.blocks[6].proj = nn.Linear(64, 64, bias=False)
    assert_change_reported(model, handle, "blocks.6.proj.weight")
    assert_originals_restored(handle, ref, originals)


def test_a_block_appended_to_the_container_is_named():
    model, handle, ref, originals = offloaded()
    model.blocks.append(Block(64, 16))
    err = assert_change_reported(model, handle, "blocks.12.qkv.weight", "blocks.12.rel_bias")
    assert all(name.startswith("blocks.12.") for name in err.names)
    assert_originals_restored(handle, ref, originals)


def test_a_new_buffer_registered_in_a_block_or_the_model_is_named():
    model, handle, ref, originals = offloaded()
    model.blocks[5].norm1.register_buffer("scale", torch.ones(64))
    assert_change_reported(model, handle, "blocks.5.norm1.scale")
    model.register_buffer("extra", torch.ones(3))
    assert_change_reported(model, handle, "blocks.5.norm1.scale", "extra")
    assert_originals_restored(handle, ref, originals)


def test_a_new_parameter_of_a_block_is_named():
    model, handle, ref, originals = offloaded()
    model.blocks[9].fc2.scale = nn.Parameter(torch.ones(64))
    assert_change_reported(model, handle, "blocks.9.fc2.scale")
    assert_originals_restored(handle, ref, originals)


def test_a_parameter_replaced_or_its_data_swapped_is_named():
    model, handle, ref, originals = offloaded()
    model.blocks[1].proj.weight = nn.Parameter(torch.zeros(64, 64))
    err = assert_change_reported(model, handle, "blocks.1.proj.weight")
    assert "blocks.1.proj.weight (replaced)" in str(err)
    assert_originals_restored(handle, ref, originals)

    model, handle, ref, originals = offloaded()
    model.head.weight.data = torch.zeros(256, 64)
    err = assert_change_reported(model, handle, "head.weight")
    assert "head.weight (data replaced)" in str(err)
    handle.close()
    assert torch.equal(originals[0]["head.weight"], ref.head.weight)


def test_a_buffer_replaced_is_named():
    model, handle, ref, originals = offloaded()
    model.blocks[0].rel_bias = torch.zeros(16, 16, dtype=torch.float16)
    err = assert_change_reported(model, handle, "blocks.0.rel_bias")
    assert "blocks.0.rel_bias (replaced)" in str(err)
    handle.close()


def test_a_module_removed_after_offload_is_accepted():
    model, handle, ref, _ = offloaded()
    del model.blocks[11]
    del ref.blocks[11]
    x = inputs(n=1)[0]
    with torch.no_grad():
        assert torch.equal(forward(model).cpu(), ref(x))
        assert torch.equal(forward(model).cpu(), ref(x))
    handle.close()


class _LazyScale(nn.Module):
    """Builds a buffer the first time it runs, on the device of its input (as rotary
    embeddings build their cos/sin caches): registered as None, then filled."""

    def __init__(self):
        super().__init__()
        self.register_buffer("cache", None, persistent=False)

    def forward(self, x):
        if self.cache is None:
            self.cache = torch.full((x.shape[-1],), 0.5, device=x.device, dtype=x.dtype)
        return x * self.cache


def _with_lazy_scales():
    """TinyTransformer, whose block 4 and the model itself end with a _LazyScale."""
    model = TinyTransformer().eval()
    for m in (model, model.blocks[4]):
        m.lazy = _LazyScale()
        m.forward = (lambda m, f: lambda x: m.lazy(f(x)))(m, m.forward)
    return model


def test_buffers_the_forward_builds_lazily_are_the_models_own():
    model, ref = _with_lazy_scales(), _with_lazy_scales()
    handle = ferry.torch.offload(model, budget="40%", backend=BACKEND)
    x = inputs(n=1)[0]
    with torch.no_grad():
        want = ref(x)
        for _ in range(3):
            assert torch.equal(forward(model).cpu(), want)
    # What changes between forwards is still refused, every time.
    model.blocks[4].extra = nn.Linear(2, 2)
    assert_change_reported(model, handle, "blocks.4.extra.weight")
    handle.close()


def test_a_parameter_a_forward_replaces_is_named_at_the_next_forward():
    model, handle, ref, originals = offloaded()
    fc1 = model.blocks[2].fc1
    replaced = []

    def replace(module, args):
        if not replaced:
            replaced.append(nn.Parameter(module.weight.detach().clone()))
            module.weight = replaced[0]

    hook = fc1.register_forward_pre_hook(replace)
    forward(model)
    hook.remove()
    assert_change_reported(model, handle, "blocks.2.fc1.weight")
    assert_originals_restored(handle, ref, originals)


# --- PEFT ----------------------------------------------------------------------------


def _peft():
    try:
        import peft
    except Exception as exc:  # noqa: BLE001 - any import failure means: not here
        pytest.skip(f"peft is not importable: {exc}")
    return peft


@pytest.mark.parametrize("how", ["inject_adapter_in_model", "get_peft_model"])
def test_lora_layers_from_peft_run_with_their_blocks_and_close_restores_the_base_weights(how):
    """LoRA adapters are not a change of the model: their tensors live on the device
    beside ferry's slab (test_torch_lora.py); other changes still raise."""
    peft = _peft()
    model, handle, ref, originals = offloaded(adapter_budget="10%")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "fc1"])
    plain = copy.deepcopy(ref)
    if how == "inject_adapter_in_model":
        wrapped = peft.inject_adapter_in_model(config, model)
        plain = peft.inject_adapter_in_model(config, plain)
    else:
        wrapped = peft.get_peft_model(model, config)
        plain = peft.get_peft_model(plain, config)
    x = inputs(n=1)[0]
    with torch.no_grad():
        assert torch.equal(wrapped(x.to(DEVICE)).cpu(), plain(x))  # B starts at zero
    assert handle.adapter_bytes() == 14 * 4 * (2 * 4 * 64 + 4 * (3 * 64 + 2 * 64))
    model.blocks[2].extra = nn.Linear(4, 4)  # anything else is still refused
    assert_change_reported(model, handle, "blocks.2.extra.weight")
    del model.blocks[2].extra
    assert_originals_restored(handle, ref, originals)
