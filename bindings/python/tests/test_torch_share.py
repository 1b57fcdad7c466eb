"""ferry.torch.offload(..., share=NAME): one host store for every process of a model.

In one process, a second offload attaches to the first one's store (the library treats
two runtimes of one process as it treats two processes); test_share_torchrun.py runs 4
ranks under torchrun, and a chaos run that kills some of them."""
import os
import threading
import time

import pytest

torch = pytest.importorskip("torch")
import ferry  # noqa: E402
import ferry.torch  # noqa: E402
import st_files  # noqa: E402
from models import TinyTransformer, inputs  # noqa: E402
from test_torch_weights import DEVICE, offload, on_meta, outputs, same  # noqa: E402


def segment_path(name):
    return f"/dev/shm/ferry-host.{name}"


@pytest.fixture
def share(request):
    name = f"pytest-{os.getpid()}-{request.node.name[:60]}".replace("[", "-").replace("]", "")
    yield name
    assert not os.path.exists(segment_path(name)), "the last runtime removes the segment"


@pytest.fixture
def tiny(tmp_path):
    model = TinyTransformer().eval()
    xs = inputs(n=2)
    want = outputs(TinyTransformer().eval().to(DEVICE), xs)
    path = st_files.write_state_dict(tmp_path / "model.safetensors", model.state_dict())
    return model, path, xs, want


def test_a_meta_model_attaches_to_another_offloads_store_and_matches_bitwise(share, tiny):
    model, _, xs, want = tiny
    with offload(model, share=share) as loader:
        assert loader.host_share_role == "loader"
        assert os.path.exists(segment_path(share))
        meta = on_meta(TinyTransformer().eval(), buffers="all")  # not even its buffers
        with offload(meta, share=share) as attached:
            assert attached.host_share_role == "attached"
            assert same(outputs(meta, xs), want)
            assert same(outputs(model, xs), want)
        assert same(outputs(model, xs), want)


def test_with_weights_only_the_loader_reads_the_files(share, tiny):
    model, path, xs, want = tiny
    with offload(on_meta(model, buffers=True), weights=path, share=share) as loader:
        assert loader.load_report.bytes_read > 0
        meta = on_meta(model, buffers=True)
        with offload(meta, weights=path, share=share) as attached:
            assert attached.host_share_role == "attached"
            assert attached.load_report.bytes_read == 0
            assert same(outputs(meta, xs), want)


def test_a_meta_model_without_weights_that_comes_first_waits_for_one_that_can_load(share, tiny):
    model, _, xs, want = tiny
    meta = on_meta(TinyTransformer().eval(), buffers="all")
    got = {}

    def attach():
        try:
            got["handle"] = offload(meta, share=share, share_timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported below
            got["error"] = exc

    waiter = threading.Thread(target=attach)
    waiter.start()
    time.sleep(0.3)  # it plans first, finds nothing to load from, and retries
    assert waiter.is_alive()
    with offload(model, share=share) as loader:
        waiter.join(60)
        assert "error" not in got, got.get("error")
        with got["handle"] as attached:
            assert loader.host_share_role == "loader"
            assert attached.host_share_role == "attached"
            assert same(outputs(meta, xs), want)


def test_a_meta_model_without_weights_and_no_loader_fails_clearly(share):
    meta = on_meta(TinyTransformer().eval(), buffers="all")
    with pytest.raises(ferry.HostShareError, match="cannot: its model is on the meta device"):
        offload(meta, share=share, share_timeout=0.3)


def test_another_model_is_refused_naming_the_first_difference(share, tiny):
    model, _, _, _ = tiny
    with offload(model, share=share):
        other = TinyTransformer(d=32).eval()
        with pytest.raises(ferry.HostShareLayoutError, match="first at line 3 of the layout: the store has 'tensor 'blocks.3.proj.bias' of group 'root': 256 bytes"):
            offload(other, share=share)
        assert other.embed.weight.device.type == "cpu"  # left as it was


def test_a_bad_share_name_is_refused(tiny):
    model, _, _, _ = tiny
    with pytest.raises(ferry.InvalidArgumentError, match="no '/'"):
        offload(model, share="a/b")
