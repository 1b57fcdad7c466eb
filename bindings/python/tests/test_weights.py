"""ferry.Weights and Runtime.define_from / load / Tensor.copy_out: safetensors files read
straight into the host store, checked before a byte is read, every bad file its own
error naming the file, and the disk tier past the pinned cap.

Files are written by hand (st_files), so these run without the safetensors package."""

import ctypes
import os

import pytest

import ferry
from ferry import _lib
from conftest import BACKEND
import st_files

np = pytest.importorskip("numpy")

BLOCKS = 6
D = 64


def model_tensors(seed=0, blocks=BLOCKS, d=D):
    """A transformer-shaped set of tensors: root ones and `blocks` blocks."""
    rng = np.random.default_rng(seed)
    out = {
        "embed.weight": st_files.entry(rng.standard_normal((32, d), dtype=np.float32)),
        "norm.weight": st_files.entry(rng.standard_normal(d, dtype=np.float32)),
        "steps": st_files.entry(np.arange(7, dtype=np.int64)),
    }
    for b in range(blocks):
        out[f"blocks.{b}.attn.weight"] = st_files.entry(
            rng.standard_normal((d, d), dtype=np.float32))
        out[f"blocks.{b}.attn.bias"] = st_files.entry(rng.standard_normal(d, dtype=np.float32))
        out[f"blocks.{b}.scale"] = st_files.entry(rng.standard_normal(d).astype(np.float16))
    return out


@pytest.fixture
def model_file(tmp_path):
    tensors = model_tensors()
    return st_files.write(tmp_path / "model.safetensors", tensors), tensors


def runtime(budget="4MiB", **kw):
    return ferry.Runtime(budget, backend=BACKEND, **kw)


def loaded(path, budget="4MiB", blocks_per_group=1, dtype=None, **kw):
    """(runtime PLANNED and loaded, groups, weights, report)."""
    w = ferry.Weights(path)
    rt = runtime(budget, **{k: kw.pop(k) for k in list(kw) if k in ("pinned_cap_bytes",
                                                                  "pageable_fallback")})
    groups = rt.define_from(w, ["blocks."], blocks_per_group=blocks_per_group, dtype=dtype)
    rt.plan()
    report = rt.load(w, progress=False, **kw)
    return rt, groups, w, report


# --- opening -------------------------------------------------------------------------


def test_weights_list_every_tensor_sorted_with_dtype_shape_bytes_and_file(model_file):
    path, tensors = model_file
    with ferry.Weights(path) as w:
        assert len(w) == len(tensors)
        got = list(w)
        assert [t.name for t in got] == sorted(tensors)
        for t in got:
            dtype, shape, raw = tensors[t.name]
            assert (t.dtype, t.shape, t.nbytes, t.file) == (dtype, tuple(shape), len(raw), str(path))
        assert "blocks.3.scale" in w and "blocks.9.scale" not in w and 3 not in w
        assert w["steps"].ferry_dtype == ferry.DType.I64
        assert w["blocks.0.scale"].ferry_dtype == ferry.DType.F16
        assert w.find(got[2].name) == 2
        with pytest.raises(KeyError):
            w["nope"]
        with pytest.raises(ferry.InvalidArgumentError):
            w.find("nope")
        assert w.nbytes == sum(len(raw) for _, _, raw in tensors.values())
    assert w.closed and "closed" in repr(w)
    with pytest.raises(ferry.ClosedError):
        w.find("steps")


def test_an_index_opens_every_shard_and_a_folder_finds_its_index(tmp_path):
    tensors = model_tensors()
    index = st_files.write_sharded(tmp_path, tensors, shards=3)
    for path in (index, tmp_path):
        with ferry.Weights(path) as w:
            assert [t.name for t in w] == sorted(tensors)
            assert len(w.files) == 3 and all(os.path.dirname(f) == str(tmp_path) for f in w.files)


def test_unknown_dtypes_are_raw_bytes_with_their_header_dtype(tmp_path):
    path = st_files.write(tmp_path / "u.safetensors",
                          {"a": st_files.entry(np.arange(6, dtype=np.uint16).reshape(2, 3))})
    with ferry.Weights(path) as w:
        t = w["a"]
        assert (t.dtype, t.ferry_dtype, t.shape, t.nbytes) == ("U16", ferry.DType.UNKNOWN, (2, 3), 12)


# --- bad files -------------------------------------------------------------------------


def expect_file_error(cls, path, named):
    with pytest.raises(cls) as info:
        ferry.Weights(path)
    assert isinstance(info.value, ferry.FerryError) and info.value.status == cls.status
    assert str(named) in str(info.value), info.value
    return info.value


def test_a_truncated_file_is_file_truncated_naming_the_file(tmp_path, model_file):
    path, _ = model_file
    data = path.read_bytes()
    bad = tmp_path / "short.safetensors"
    bad.write_bytes(data[:-100])
    expect_file_error(ferry.FileTruncatedError, bad, bad)


def test_a_garbage_header_is_file_format_naming_the_file(tmp_path):
    bad = tmp_path / "garbage.safetensors"
    text = b"{this is not json" + b" " * 7
    bad.write_bytes(len(text).to_bytes(8, "little") + text + b"\0" * 64)
    expect_file_error(ferry.FileFormatError, bad, bad)


def test_offsets_past_the_data_and_shape_against_bytes_are_file_format(tmp_path):
    raw = np.zeros(4, np.float32).tobytes()
    bad = st_files.write(tmp_path / "shape.safetensors", {"x": ("F32", (5,), raw)})
    err = expect_file_error(ferry.FileFormatError, bad, bad)
    assert "x" in str(err)


def test_a_missing_shard_is_an_io_error_naming_the_shard(tmp_path):
    st_files.write_sharded(tmp_path, model_tensors(), shards=2)
    missing = tmp_path / "model-00002-of-00002.safetensors"
    missing.unlink()
    err = expect_file_error(ferry.WeightsIOError, tmp_path, missing.name)
    assert isinstance(err, OSError)


def test_a_path_that_does_not_exist_is_an_io_error(tmp_path):
    expect_file_error(ferry.WeightsIOError, tmp_path / "nothing.safetensors", "nothing.safetensors")


def test_a_folder_without_weights_is_an_io_error_naming_the_folder(tmp_path):
    expect_file_error(ferry.WeightsIOError, tmp_path, tmp_path)


# --- define_from ------------------------------------------------------------------------


def test_define_from_makes_root_then_one_group_per_block(model_file):
    path, tensors = model_file
    with ferry.Weights(path) as w, runtime() as rt:
        groups = rt.define_from(w, ["blocks."])
        assert [g.name for g in groups] == ["root"] + [f"blocks.{b}" for b in range(BLOCKS)]
        assert [t.name for t in groups[0].tensors] == ["embed.weight", "norm.weight", "steps"]
        assert [t.name for t in groups[2].tensors] == [
            "blocks.1.attn.bias", "blocks.1.attn.weight", "blocks.1.scale"]
        assert groups[2].tensors[2].dtype == ferry.DType.F16
        assert sum(t.nbytes for g in groups for t in g.tensors) == w.nbytes


def test_define_from_with_blocks_per_group_names_first_and_last_block(model_file):
    path, _ = model_file
    with ferry.Weights(path) as w, runtime() as rt:
        groups = rt.define_from(w, "blocks.", blocks_per_group=4)
        assert [g.name for g in groups] == ["root", "blocks.0-3", "blocks.4-5"]


def test_define_from_groups_blocks_by_number_even_with_gaps(tmp_path):
    # Blocks 0, 1, 5 and 6 in twos: N // 2 decides, so 5 and 6 are apart.
    tensors = {f"blocks.{b}.w": st_files.entry(np.ones(4, np.float32)) for b in (0, 1, 5, 6)}
    tensors["empty"] = st_files.entry(np.ones(0, np.float32))
    path = st_files.write(tmp_path / "gaps.safetensors", tensors)
    with ferry.Weights(path) as w, runtime() as rt:
        groups = rt.define_from(w, ["blocks."], blocks_per_group=2)
        assert [g.name for g in groups] == ["blocks.0-1", "blocks.5-5", "blocks.6-6"]
        rt.plan()
        rt.load(w, progress=False)  # the empty tensor is neither defined nor missed


def test_define_from_agrees_with_the_library_s_own_define(model_file):
    path, _ = model_file
    with ferry.Weights(path) as w:
        stats = []
        for how in ("binding", "library"):
            with runtime() as rt:
                if how == "binding":
                    rt.define_from(w, ["blocks."], blocks_per_group=2, dtype="bfloat16")
                else:
                    prefixes = (ctypes.c_char_p * 1)(b"blocks.")
                    ferry.check(_lib.lib().ferry_weights_define(
                        rt._handle(), w._handle(), prefixes, 1, 2, int(ferry.DType.BF16)))
                rt.plan()
                s = rt.stats()
                stats.append({k: s[k] for k in ("groups", "model_bytes", "resident_groups",
                                                 "size_classes", "streamed_bytes_per_pass")})
        assert stats[0] == stats[1]


def test_define_from_refuses_a_group_name_already_defined_and_defines_nothing(model_file):
    path, _ = model_file
    with ferry.Weights(path) as w, runtime() as rt:
        rt.define_group("blocks.2")
        with pytest.raises(ferry.DuplicateNameError, match="blocks.2"):
            rt.define_from(w, ["blocks."])
        assert [g.name for g in rt.groups] == ["blocks.2"]


# --- load -------------------------------------------------------------------------------


def test_load_reads_every_tensor_bitwise_and_reports_it(model_file):
    path, tensors = model_file
    rt, groups, w, report = loaded(path, threads=2)
    with rt, w:
        assert report.tensors_read == len(tensors) and report.tensors_converted == 0
        assert report.bytes_read == w.nbytes and report.tensors_on_disk == 0
        assert report.threads >= 1 and report.elapsed_ns > 0
        assert report.as_dict()["tensors_read"] == len(tensors)
        for g in groups:
            for t in g.tensors:
                assert t.read() == tensors[t.name][2], t.name
                assert t.read_host() == tensors[t.name][2], t.name
        rt.seal()
        t = groups[3].tensors[1]
        assert t.read(offset=8, nbytes=16) == tensors[t.name][2][8:24]
        buf = bytearray(t.nbytes)
        t.copy_out(buf)
        assert bytes(buf) == tensors[t.name][2]
        for g in groups:
            with g.acquired():
                for t in g.tensors:
                    assert t.device_view().tobytes() == tensors[t.name][2], t.name


def test_load_converts_f32_to_bf16_rounding_to_nearest_even(tmp_path):
    values = np.array([1.0, 1.00390625, 1.01171875, -3.14159, 1e-40, 65504.0, 3.4e38],
                      np.float32)
    path = st_files.write(tmp_path / "f.safetensors", {"x": st_files.entry(values)})
    with ferry.Weights(path) as w, runtime() as rt:
        (root,) = rt.define_from(w, ["blocks."], dtype="bfloat16")
        rt.plan()
        report = rt.load(w, progress=False)
        assert report.tensors_converted == 1
        assert root.tensors[0].read() == st_files.bf16_words(values).tobytes()


def test_without_convert_dtype_another_dtype_is_a_mismatch(tmp_path):
    path = st_files.write(tmp_path / "f.safetensors",
                          {"x": st_files.entry(np.ones(4, np.float32))})
    with ferry.Weights(path) as w, runtime() as rt:
        rt.define_from(w, ["blocks."], dtype="float16")
        rt.plan()
        with pytest.raises(ferry.WeightsMismatchError, match="x"):
            rt.load(w, convert_dtype=False, progress=False)


def test_a_mismatch_lists_missing_extra_shape_and_dtype_in_one_error(tmp_path):
    f32 = np.ones((4, 4), np.float32)
    path = st_files.write(tmp_path / "m.safetensors", {
        "same": st_files.entry(f32),
        "wide": st_files.entry(np.ones((4, 8), np.float32)),
        "ints": st_files.entry(np.ones((4, 4), np.int32)),
        "extra": st_files.entry(f32),
    })
    with ferry.Weights(path) as w, runtime() as rt:
        g = rt.define_group("g")
        g.define_tensor("same", dtype="float32", shape=(4, 4))
        g.define_tensor("wide", dtype="float32", shape=(4, 4))
        g.define_tensor("ints", dtype="float32", shape=(4, 4))
        g.define_tensor("absent", dtype="float32", shape=(4, 4))
        rt.plan()
        with pytest.raises(ferry.WeightsMismatchError) as info:
            rt.load(w, progress=False)
        message = str(info.value)
        for name in ("wide", "ints", "absent", "extra"):
            assert name in message, message
        assert str(path) in message or "m.safetensors" in message, message
        # Matching failed before a byte was read: the runtime is PLANNED as before.
        assert rt.phase == ferry.Phase.PLANNED
        assert "'same'" not in message, message


def test_allow_unused_and_a_tensor_list_read_part_of_the_files(model_file):
    path, tensors = model_file
    with ferry.Weights(path) as w, runtime() as rt:
        g = rt.define_group("two")
        a = g.define_tensor("attn.weight", dtype="float32", shape=(D, D))
        b = g.define_tensor("attn.bias", dtype="float32", shape=(D,))
        rt.plan()
        with pytest.raises(ferry.WeightsMismatchError):
            rt.load(w, name_prefix="blocks.4.", progress=False)
        report = rt.load(w, name_prefix="blocks.4.", allow_unused=True, progress=False)
        assert report.tensors_read == 2
        assert a.read() == tensors["blocks.4.attn.weight"][2]
        assert b.read() == tensors["blocks.4.attn.bias"][2]
        rt.seal()


def test_load_progress_reaches_the_total_on_this_thread(model_file):
    path, _ = model_file
    seen = []
    with ferry.Weights(path) as w, runtime() as rt:
        rt.define_from(w, ["blocks."])
        rt.plan()
        rt.load(w, progress=lambda done, total: seen.append((done, total)))
        assert seen and seen[-1] == (w.nbytes, w.nbytes)
        assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


def test_an_exception_in_the_progress_callback_is_raised_by_load(model_file):
    path, _ = model_file

    def boom(done, total):
        raise KeyboardInterrupt("stop")

    with ferry.Weights(path) as w, runtime() as rt:
        rt.define_from(w, ["blocks."])
        rt.plan()
        with pytest.raises(KeyboardInterrupt):
            rt.load(w, progress=boom)


def test_a_file_changed_after_open_is_file_changed_and_the_runtime_stays_unsealable(tmp_path):
    tensors = model_tensors()
    path = st_files.write(tmp_path / "c.safetensors", tensors)
    with ferry.Weights(path) as w, runtime() as rt:
        rt.define_from(w, ["blocks."])
        rt.plan()
        st_files.write(tmp_path / "other.safetensors", model_tensors(seed=1))
        os.replace(tmp_path / "other.safetensors", path)
        with pytest.raises(ferry.FileChangedError) as info:
            rt.load(w, progress=False)
        assert "c.safetensors" in str(info.value)
        with pytest.raises(ferry.WrongPhaseError):
            rt.seal()


def test_a_weights_handle_may_close_once_loaded(model_file):
    path, tensors = model_file
    rt, groups, w, _ = loaded(path)
    w.close()
    with rt:
        rt.seal()
        with groups[1].acquired():
            t = groups[1].tensors[0]
            assert t.device_view().tobytes() == tensors[t.name][2]


# --- disk tier --------------------------------------------------------------------------


def test_past_the_pinned_cap_tensors_stay_on_disk_and_stream_from_the_files(tmp_path):
    tensors = model_tensors(blocks=12)
    path = st_files.write(tmp_path / "d.safetensors", tensors)
    total = sum(len(raw) for _, _, raw in tensors.values())
    rt, groups, w, report = loaded(path, budget="512KiB", pinned_cap_bytes=total // 4,
                                   pageable_fallback=True)
    w.close()
    with rt:
        assert report.tensors_on_disk > 0 and report.bytes_on_disk > 0
        assert report.bytes_read + report.bytes_on_disk == total
        s = rt.stats()
        assert s["host_disk_bytes"] > 0 and s["host_pinned_bytes"] <= total // 4 + (1 << 20)
        on_disk = [t for g in groups for t in g.tensors if _not_in_memory(t)]
        assert on_disk
        for t in on_disk:
            assert t.read() == tensors[t.name][2], t.name  # copy_out reads the file
        rt.seal()
        for _ in range(2):
            for g in groups:
                with g.acquired():
                    for t in g.tensors:
                        assert t.device_view().tobytes() == tensors[t.name][2], t.name
        assert rt.stats()["bytes_disk_read"] > 0


def _not_in_memory(t):
    try:
        t.host_ptr()
    except ferry.NotInMemoryError as exc:
        assert t.name in str(exc) or "disk" in str(exc)
        return True
    return False


def test_with_disk_tier_off_everything_is_read_into_memory(tmp_path):
    tensors = model_tensors(blocks=12)
    path = st_files.write(tmp_path / "d.safetensors", tensors)
    total = sum(len(raw) for _, _, raw in tensors.values())
    rt, groups, w, report = loaded(path, budget="512KiB", pinned_cap_bytes=total // 4,
                                   pageable_fallback=True, disk_tier=False)
    with rt, w:
        assert report.tensors_on_disk == 0 and report.bytes_read == total
        assert rt.stats()["host_disk_bytes"] == 0
        assert all(t.host_ptr() for g in groups for t in g.tensors)
