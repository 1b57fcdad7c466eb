"""The ctypes layer: declarations match the header, errors map to their classes, views
read back the bytes that were loaded."""

import ctypes
import gc
import os
import re
import subprocess
import sys

import pytest

import ferry
from ferry import _lib, dlpack
from conftest import BACKEND, HEADER, PYTHON_DIR

np = pytest.importorskip("numpy")

HEADER_TEXT = HEADER.read_text()


def header_struct_fields(struct):
    body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (struct, struct), HEADER_TEXT, re.S)
    body = re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.S)
    return re.findall(r"(\w+)\s*;", body)


def header_enum(name):
    body = re.search(r"typedef enum %s \{(.*?)\} %s;" % (name, name), HEADER_TEXT, re.S)
    body = re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.S)
    return {k: int(v) for k, v in re.findall(r"(\w+)\s*=\s*(\d+)", body)}


def make_runtime(budget="1MiB", **kw):
    return ferry.Runtime(budget, backend=BACKEND, **kw)


# --- library and declarations -----------------------------------------------------------


def test_version_is_the_headers_version():
    macros = dict(re.findall(r"#define FERRY_VERSION_(MAJOR|MINOR|PATCH) (\d+)", HEADER_TEXT))
    expected = f"{macros['MAJOR']}.{macros['MINOR']}.{macros['PATCH']}"
    assert ferry.version() == expected
    major, minor, patch = (int(macros[k]) for k in ("MAJOR", "MINOR", "PATCH"))
    assert ferry.version_number() == major * 10000 + minor * 100 + patch


def test_config_struct_mirrors_the_header_field_by_field():
    assert [n for n, _ in _lib.ConfigStruct._fields_] == header_struct_fields("ferry_config")


def test_stats_struct_mirrors_the_header_field_by_field():
    assert [n for n, _ in _lib.StatsStruct._fields_] == header_struct_fields("ferry_stats")


def test_every_function_of_the_header_is_declared():
    in_header = set(re.findall(r"FERRY_API [^;]*?\b(ferry_\w+)\s*\(", HEADER_TEXT))
    assert in_header == set(_lib._DECLARATIONS)


def test_library_path_names_the_library_loaded():
    assert os.path.exists(ferry.library_path())


def test_missing_library_error_lists_every_place_searched(tmp_path):
    # A copy of the package outside the repository, with no library anywhere.
    import shutil

    shutil.copytree(PYTHON_DIR / "ferry", tmp_path / "ferry")
    env = {k: v for k, v in os.environ.items() if k not in ("FERRY_LIBRARY", "LD_LIBRARY_PATH")}
    code = "import ferry\ntry:\n    ferry.version()\nexcept ferry.LibraryNotFoundError as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert "next to the package" in out.stdout
    assert "build tree" in out.stdout and "system" in out.stdout
    assert "FERRY_LIBRARY" in out.stdout


def test_a_bad_ferry_library_is_reported_not_replaced(tmp_path):
    env = dict(os.environ, FERRY_LIBRARY=str(tmp_path / "nope.so"), PYTHONPATH=str(PYTHON_DIR))
    code = "import ferry\ntry:\n    ferry.version()\nexcept ferry.LibraryNotFoundError as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert "nope.so" in out.stdout and "no such file" in out.stdout


def test_python_dash_c_prints_the_version():
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    out = subprocess.run([sys.executable, "-c", "import ferry; print(ferry.version())"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ferry.version()


def test_importing_ferry_does_not_import_torch():
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    code = "import sys, ferry; ferry.version(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# --- statuses and errors -------------------------------------------------------------------


def test_status_enum_mirrors_the_header():
    expected = {k[len("FERRY_ERROR_"):] if k.startswith("FERRY_ERROR_") else k[len("FERRY_"):]: v
                for k, v in header_enum("ferry_status").items()}
    assert {s.name: int(s) for s in ferry.Status} == expected


def test_every_status_has_its_own_string():
    strings = [ferry.status_string(s) for s in ferry.Status]
    assert all(strings) and "unknown status" not in strings
    assert len(set(strings)) == len(strings)
    assert ferry.status_string(ferry.Status.OK) == "ok"
    assert ferry.status_string(9999) == "unknown status"


def test_every_error_status_has_its_own_ferry_error_subclass():
    classes = [ferry.error_class(s) for s in ferry.Status if s != ferry.Status.OK]
    assert len(set(classes)) == len(classes)
    for s, cls in zip([s for s in ferry.Status if s != ferry.Status.OK], classes):
        assert issubclass(cls, ferry.FerryError) and cls is not ferry.FerryError
        assert cls.status == s
    assert ferry.error_class(9999) is ferry.FerryError


def expect(cls, fn, *args, call):
    with pytest.raises(cls) as info:
        fn(*args)
    err = info.value
    assert isinstance(err, ferry.FerryError)
    assert call in str(err), f"message should name {call}: {err}"
    assert err.status == cls.status and err.status_string == ferry.status_string(cls.status)
    return err


def test_a_zero_budget_is_an_invalid_argument_named_by_create():
    expect(ferry.InvalidArgumentError, make_runtime, 0, call="ferry_create")


def test_wrong_phase_duplicate_name_and_empty_plan_raise_their_classes():
    with make_runtime() as rt:
        expect(ferry.EmptyError, rt.plan, call="ferry_plan")
        g = rt.define_group("g")
        expect(ferry.DuplicateNameError, rt.define_group, "g", call="ferry_group_define")
        expect(ferry.WrongPhaseError, g.acquire, call="ferry_acquire")
        expect(ferry.InvalidSizeError, g.define_tensor, "zero", 0, call="ferry_tensor_define")
        expect(ferry.InvalidSizeError, lambda: g.define_tensor("bad", 10, dtype="f32", shape=(2, 2)),
               call="ferry_tensor_define")
        t = g.define_tensor("t", dtype="float32", shape=(4,))
        expect(ferry.DuplicateNameError, lambda: g.define_tensor("t", 4),
               call="ferry_tensor_define")
        rt.plan()
        expect(ferry.OutOfRangeError, t.copy_in, b"x" * 17, call="ferry_tensor_copy_in")
        t.copy_in(b"\0" * 16)  # the runtime is still usable after each error
        rt.seal()
        expect(ferry.NotAcquiredError, g.release, call="ferry_release")
        expect(ferry.NotAcquiredError, t.device_ptr, call="ferry_tensor_device_ptr")
        assert rt.phase == ferry.Phase.SEALED


def test_a_tensor_larger_than_the_budget_is_size_too_large_at_define():
    with make_runtime(4096) as rt:
        g = rt.define_group("g")
        expect(ferry.SizeTooLargeError, g.define_tensor, "w", 64 * 1024,
               call="ferry_tensor_define")


def test_a_budget_below_the_minimum_raises_budget_too_small_with_the_minimum():
    with make_runtime(6000) as rt:
        for i in range(3):
            rt.define_group(f"g{i}").define_tensor("w", 4096)
        err = expect(ferry.BudgetTooSmallError, rt.plan, call="ferry_plan")
        assert re.search(r"\d", str(err))
        assert rt.phase == ferry.Phase.DEFINE


def define_in(rt, group_handle):
    """ferry_tensor_define on rt with a raw group handle (valid in DEFINE)."""
    out = _lib.TensorHandle()
    ferry.errors.check(rt._lib.ferry_tensor_define(
        rt._handle(), group_handle, b"t", 4, 0, 0, None, 0, ctypes.byref(out)))


def test_handles_of_another_runtime_are_foreign_and_of_a_destroyed_one_stale():
    a, b = make_runtime(), make_runtime()
    try:
        ga = a.define_group("g")
        b.define_group("g")
        expect(ferry.ForeignHandleError, define_in, b, ga._h, call="ferry_tensor_define")
        a.close()
        expect(ferry.StaleHandleError, define_in, b, ga._h, call="ferry_tensor_define")
        expect(ferry.InvalidHandleError, define_in, b, _lib.GroupHandle(0),
               call="ferry_tensor_define")
        b.define_group("still usable")
    finally:
        a.close()
        b.close()


def test_holding_more_groups_than_slots_is_no_free_slot_and_synchronize_busy():
    # Four equal groups and room for two slots only: the planner streams them all.
    with make_runtime(2 * 4096) as rt:
        groups = [rt.define_group(f"g{i}") for i in range(4)]
        for g in groups:
            g.define_tensor("w", 4096, mutable=True)
        rt.plan()
        rt.seal()
        groups[0].acquire()
        groups[1].acquire()
        expect(ferry.NoFreeSlotError, groups[2].acquire, call="ferry_acquire")
        expect(ferry.GroupBusyError, rt.synchronize, call="ferry_synchronize")
        groups[0].release()
        groups[1].release()
        rt.synchronize()


def test_a_closed_runtime_raises_closed_error_and_never_calls_the_library():
    rt = make_runtime()
    g = rt.define_group("g")
    rt.close()
    rt.close()  # idempotent
    with pytest.raises(ferry.ClosedError):
        rt.stats()
    with pytest.raises(ferry.StaleHandleError):  # ClosedError is one
        g.define_tensor("t", 4)


@pytest.mark.skipif(BACKEND == "cuda", reason="checks a run without cuda")
def test_asking_for_cuda_without_it_is_backend_unavailable():
    try:
        ferry.Runtime("1MiB", backend="cuda").close()
    except ferry.BackendUnavailableError as err:
        assert "ferry_create" in str(err)
    else:
        pytest.skip("this library has a usable cuda backend")


# --- stats -----------------------------------------------------------------------------------


def test_stats_is_a_dict_with_the_c_field_names():
    with make_runtime() as rt:
        s = rt.stats()
    assert list(s) == [f for f in header_struct_fields("ferry_stats") if f != "struct_size"]
    assert list(s) == list(ferry.STATS_KEYS)
    assert all(isinstance(v, int) for v in s.values())
    assert s["vram_budget"] == 1 << 20 and s["phase"] == ferry.Phase.DEFINE


def test_stats_count_a_pass_of_streamed_groups():
    with make_runtime(3 * 8192) as rt:
        groups = [rt.define_group(f"g{i}") for i in range(6)]
        for g in groups:
            g.define_tensor("w", 8192)
        rt.plan()
        for g in groups:
            g.tensors[0].copy_in(bytes(8192))
        rt.seal()
        for _ in range(3):
            for g in groups:
                with g.acquired():
                    pass
        s = rt.stats()
    assert s["acquires"] == s["releases"] == 18
    assert s["acquires"] == s["resident_hits"] + s["hits"] + s["misses"]
    assert s["bytes_d2h"] == 0 and s["writebacks"] == 0
    assert s["groups"] == 6 and s["model_bytes"] == 6 * 8192
    assert s["slab_bytes"] <= s["vram_budget"]


def test_a_preferred_group_is_resident_and_info_says_what_stays_on_the_device():
    # Ten groups of four 64 KiB tensors at half the model: the planner keeps heads of
    # split groups resident and streams their tails.
    kib = 1024
    with make_runtime(1280 * kib) as rt:
        groups = [rt.define_group(f"g{i}") for i in range(10)]
        for g in groups:
            for t in range(4):
                g.define_tensor(f"t{t}", 64 * kib)
        groups[4].prefer_resident()
        rt.plan()
        with pytest.raises(ferry.WrongPhaseError):
            groups[5].prefer_resident()
        infos = [g.info() for g in groups]
        s = rt.stats()
    assert infos[4]["resident"], "preferred"
    split = [i for i in infos if not i["resident"] and i["resident_bytes"] > 0]
    assert split, infos
    assert all(0 < i["resident_bytes"] < i["image_bytes"] for i in split)
    assert all(i["resident_bytes"] == i["image_bytes"] for i in infos if i["resident"])
    assert sum(i["resident_bytes"] for i in infos) == s["slab_resident_bytes"]
    assert s["streamed_bytes_per_pass"] == sum(
        i["image_bytes"] - i["resident_bytes"] for i in infos if not i["resident"])


# --- views -----------------------------------------------------------------------------------

ARRAYS = {
    "f32": np.arange(15, dtype=np.float32).reshape(3, 5) / 7,
    "f16": (np.arange(12, dtype=np.float16) - 6).reshape(2, 2, 3),
    "f64": np.linspace(-1, 1, 9),
    "i64": np.arange(-4, 4, dtype=np.int64).reshape(2, 4),
    "i32": np.array([7], dtype=np.int32),
    "i16": np.arange(6, dtype=np.int16),
    "i8": np.arange(-3, 3, dtype=np.int8),
    "u8": np.arange(250, 256, dtype=np.uint8),
    "bool": np.array([[True, False, True], [False, False, True]]),
}


@pytest.fixture
def loaded():
    """A sealed runtime holding ARRAYS (one group, plus a bf16 tensor and raw bytes)."""
    torch = pytest.importorskip("torch")
    rt = make_runtime()
    g = rt.define_group("views")
    tensors = {}
    for name, a in ARRAYS.items():
        tensors[name] = g.define_tensor(name, a.nbytes, dtype=a.dtype, shape=a.shape)
    bf16 = torch.linspace(-2, 2, 10, dtype=torch.bfloat16)
    tensors["bf16"] = g.define_tensor("bf16", 20, dtype=torch.bfloat16, shape=(10,))
    tensors["raw"] = g.define_tensor("raw", 11)
    rt.plan()
    for name, a in ARRAYS.items():
        tensors[name].copy_in(a)
    tensors["bf16"].copy_in_address(bf16.data_ptr(), 20)
    tensors["raw"].copy_in(b"hello ferry")
    rt.seal()
    yield rt, g, tensors, bf16
    rt.close()


def test_device_views_read_back_the_bytes_with_numpy(loaded):
    rt, g, tensors, _ = loaded
    if rt.backend != ferry.Backend.SIM:
        pytest.skip("__array_interface__ of device memory exists on sim only")
    with g.acquired():
        for name, a in ARRAYS.items():
            view = tensors[name].device_view()
            assert hasattr(view, "__array_interface__")
            assert not hasattr(view, "__cuda_array_interface__")
            got = np.asarray(view)
            assert got.dtype == a.dtype and got.shape == a.shape
            assert np.array_equal(got, a), name
        assert np.asarray(tensors["raw"].device_view()).tobytes() == b"hello ferry"


def test_device_views_read_back_the_bytes_with_torch_dlpack(loaded):
    import torch
    from torch.utils.dlpack import from_dlpack

    rt, g, tensors, bf16 = loaded
    with g.acquired():
        for name, a in ARRAYS.items():
            if name == "bool":
                continue  # torch 1.13 takes no bool through DLPack
            view = tensors[name].device_view()
            got = from_dlpack(view).cpu()
            assert torch.equal(got, torch.from_numpy(a)), name
        assert torch.equal(from_dlpack(tensors["bf16"].device_view()).cpu(), bf16)
        kind = ferry.dlpack.DeviceType.CUDA if rt.backend == ferry.Backend.CUDA \
            else ferry.dlpack.DeviceType.CPU
        assert tensors["f32"].device_view().__dlpack_device__() == (int(kind), rt.device if
                                                                     kind == 2 else 0)


def test_dlpack_capsules_are_freed_once_consumers_drop_them(loaded):
    from torch.utils.dlpack import from_dlpack

    rt, g, tensors, _ = loaded
    gc.collect()
    before = dlpack.live_capsules()
    with g.acquired():
        consumed = from_dlpack(tensors["f32"].device_view())
        unconsumed = tensors["f32"].device_view().__dlpack__()
        assert dlpack.live_capsules() == before + 2
        del consumed, unconsumed
    gc.collect()
    assert dlpack.live_capsules() == before


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def test_dlpack_capsules_hold_a_managed_tensor_whose_deleter_is_libferry_code():
    capsule = dlpack.make_capsule(0x1000, (2, 3), "float32", dlpack.DeviceType.CPU)
    # CPython: id() is the object's address.
    address = ctypes.pythonapi.PyCapsule_GetPointer(id(capsule), b"dltensor")
    managed = ctypes.cast(address, ctypes.POINTER(dlpack._DLManagedTensor)).contents
    t = managed.dl_tensor
    assert (t.data, t.ndim, t.shape[0], t.shape[1]) == (0x1000, 2, 2, 3)
    assert (t.dtype.code, t.dtype.bits, t.dtype.lanes, t.device.device_type) == (2, 32, 1, 1)
    assert not t.strides and t.byte_offset == 0
    # The consumer may call the deleter after the interpreter is gone: it must be C code of
    # libferry, not a ctypes callback.
    info = _DlInfo()
    libc = ctypes.CDLL(None)
    libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    deleter = ctypes.cast(managed.deleter, ctypes.c_void_p).value
    assert libc.dladdr(deleter, ctypes.byref(info))
    assert os.path.realpath(info.dli_fname.decode()) == os.path.realpath(_lib.lib()._name)
    before = dlpack.live_capsules()
    del capsule, managed, t
    gc.collect()
    assert dlpack.live_capsules() == before - 1, "an unconsumed capsule frees its tensor"


def test_dlpack_wrap_refuses_bad_shapes_with_invalid_argument():
    lib = _lib.lib()
    out = ctypes.c_void_p()
    shape = (ctypes.c_int64 * 9)(*[1] * 9)
    before = dlpack.live_capsules()
    assert lib.ferry_dlpack_wrap(None, None, 1, 0, 2, 32, 9, shape, ctypes.byref(out)) == 1
    assert b"ferry_dlpack_wrap" in lib.ferry_last_error() and b"ndim 9" in lib.ferry_last_error()
    assert lib.ferry_dlpack_wrap(None, None, 1, 0, 2, 32, 2, None, ctypes.byref(out)) == 1
    shape[1] = -1
    assert lib.ferry_dlpack_wrap(None, None, 1, 0, 2, 32, 2, shape, ctypes.byref(out)) == 1
    assert lib.ferry_dlpack_wrap(None, None, 1, 0, 2, 32, 0, None, None) == 1
    assert dlpack.live_capsules() == before


def test_host_views_of_sealed_immutable_tensors_are_read_only(loaded):
    rt, g, tensors, _ = loaded
    host = np.asarray(tensors["f32"].host_view())
    assert np.array_equal(host, ARRAYS["f32"])
    assert not host.flags.writeable
    assert tensors["i64"].read_host() == ARRAYS["i64"].tobytes()


def test_a_mutable_tensor_written_on_the_device_is_current_on_the_host_after_synchronize():
    if BACKEND != "sim":
        pytest.skip("writes through a sim device view")
    with make_runtime(2 * 4096) as rt:
        groups = [rt.define_group(f"g{i}") for i in range(4)]
        ts = [g.define_tensor("w", dtype="int32", shape=(1024,), mutable=True) for g in groups]
        rt.plan()
        for i, t in enumerate(ts):
            t.copy_in(np.full(1024, i, dtype=np.int32))
        rt.seal()
        with groups[1].acquired():
            np.asarray(ts[1].device_view())[:] += 100
        for g in groups:  # evict group 1's slot at least once
            with g.acquired():
                pass
        rt.synchronize()
        assert np.array_equal(np.asarray(ts[1].host_view()), np.full(1024, 101, np.int32))
        assert np.asarray(ts[1].host_view()).flags.writeable
        s = rt.stats()
        assert s["writebacks"] >= 1 and 0 < s["bytes_d2h"]


def test_units_parse_the_usual_spellings():
    assert ferry.parse_bytes("8GiB") == 8 << 30
    assert ferry.parse_bytes("512 MB") == 512_000_000
    assert ferry.parse_bytes("1.5G") == 3 << 29
    assert ferry.parse_bytes(4096) == 4096
    for bad in ("8 parsecs", "-1", "", True):
        with pytest.raises(ValueError):
            ferry.parse_bytes(bad)


# --- trust: verify mode and pinned-memory limits ------------------------------------------


def test_verify_mode_raises_verify_failed_naming_the_tensor_a_kernel_wrote():
    rt = ferry.Runtime("1MiB", backend="sim", verify=True)
    g = rt.define_group("block")
    w = g.define_tensor("weight", 4096)
    rt.plan()
    w.copy_in(bytes(range(256)) * 16)
    rt.seal()
    with g.acquired():
        ctypes.memset(w.device_ptr() + 100, 0xFF, 1)  # sim device memory is host memory
    with pytest.raises(ferry.VerifyFailedError) as info:
        rt.synchronize()
    assert "tensor 'weight'" in str(info.value)
    s = rt.stats()
    assert s["verify_checks"] == 1 and s["verify_failures"] == 1
    rt.close()


def test_a_pinned_cap_below_the_model_fails_plan_or_falls_back_to_pageable():
    rt = ferry.Runtime("1MiB", backend="sim", pinned_cap="64KiB")
    rt.define_group("block").define_tensor("weight", 256 * 1024)
    with pytest.raises(ferry.OutOfHostMemoryError, match="pinned cap"):
        rt.plan()
    rt.close()
    # Pinning stops at the last image end within the cap: one of four 64 KiB images.
    rt = ferry.Runtime("1MiB", backend="sim", pinned_cap="100KiB", pageable_fallback=True)
    for i in range(4):
        rt.define_group(f"block.{i}").define_tensor("weight", 64 * 1024)
    rt.plan()
    s = rt.stats()
    assert s["host_pinned_bytes"] == 64 * 1024
    assert s["host_pageable_bytes"] == 192 * 1024
    rt.close()


# --- pinning progress --------------------------------------------------------------------


def eight_groups(**kw):
    """A runtime in DEFINE with eight 100 000-byte groups."""
    rt = ferry.Runtime("8MiB", backend=BACKEND, **kw)
    for i in range(8):
        rt.define_group(f"block.{i}").define_tensor("weight", 100_000)
    return rt


def test_the_pin_progress_callback_sees_pinned_bytes_grow_chunk_by_chunk_to_the_total(
        monkeypatch):
    monkeypatch.setenv("FERRY_PIN_CHUNK", "65536")  # smaller than an image: one per chunk
    rt = eight_groups()
    calls = []
    rt.set_pin_progress(lambda *args: calls.append(args))  # only the runtime holds it
    gc.collect()
    rt.plan()
    pinned = [c[0] for c in calls]
    assert len(calls) >= 8 and pinned == sorted(set(pinned)), calls
    total = calls[-1][2]
    assert pinned[-1] == total == rt.stats()["host_pinned_bytes"] >= 8 * 100_000
    assert all(c[1] == 0 and c[2] == total for c in calls)
    rt.close()


def test_pin_progress_reports_what_stays_pageable_past_the_cap_last():
    rt = ferry.Runtime("1MiB", backend="sim", pinned_cap="100KiB", pageable_fallback=True)
    for i in range(4):
        rt.define_group(f"block.{i}").define_tensor("weight", 64 * 1024)
    calls = []
    rt.set_pin_progress(lambda *args: calls.append(args))
    rt.plan()
    assert calls[-1] == (64 * 1024, 192 * 1024, 256 * 1024)
    rt.close()


def test_an_exception_in_the_pin_progress_callback_is_raised_by_plan_and_the_runtime_works():
    rt = eight_groups()
    calls = []

    def broken(*args):
        calls.append(args)
        raise KeyError("from the callback")

    rt.set_pin_progress(broken)
    with pytest.raises(KeyError, match="from the callback"):
        rt.plan()
    assert len(calls) == 1, "not called again after it raised"
    assert rt.phase == ferry.Phase.PLANNED and rt.stats()["host_pinned_bytes"] >= 800_000
    rt.seal()
    with rt.groups[0].acquired():
        pass
    rt.close()


def test_pin_progress_can_be_cleared_and_is_set_only_before_plan():
    rt = eight_groups()
    calls = []
    rt.set_pin_progress(lambda *args: calls.append(args))
    rt.set_pin_progress(None)
    with pytest.raises(ferry.InvalidArgumentError):
        rt.set_pin_progress("not callable")
    rt.plan()
    assert calls == []
    with pytest.raises(ferry.WrongPhaseError, match="ferry_pin_progress_set"):
        rt.set_pin_progress(print)
    rt.close()
    with pytest.raises(ferry.ClosedError):
        rt.set_pin_progress(None)


def test_a_tensor_made_from_a_view_outlives_its_collected_runtime():
    torch = pytest.importorskip("torch")
    from torch.utils.dlpack import from_dlpack

    def make():  # a function that builds a runtime and returns only a tensor of it
        rt = ferry.Runtime("1MiB", backend="sim")
        t = rt.define_group("g").define_tensor("w", 64, dtype=torch.float32, shape=(16,))
        rt.plan()
        src = torch.arange(16, dtype=torch.float32)
        t.copy_in_address(src.data_ptr(), 64)
        return from_dlpack(t.host_view())

    before = dlpack.live_capsules()
    x = make()
    gc.collect()
    assert len(ferry.runtime._orphans) == 1, "collected with a view alive: kept"
    assert torch.equal(x, torch.arange(16, dtype=torch.float32))
    del x
    gc.collect()
    assert dlpack.live_capsules() == before
    ferry.Runtime("1MiB", backend="sim").close()  # destroys the runtime no view needs
    assert ferry.runtime._orphans == []


def test_declared_compute_is_taken_in_define_and_planned_and_refused_when_bad():
    with make_runtime(1 << 20) as rt:
        groups = [rt.define_group(f"g{i}") for i in range(4)]
        for g in groups:
            g.define_tensor("w", 64 * 1024)
        groups[0].declare_compute(2_000_000)  # DEFINE
        with pytest.raises(ferry.InvalidArgumentError):
            groups[1].declare_compute(-1)
        rt.plan()
        groups[1].declare_compute(1_000_000)  # PLANNED
        rt.seal()
        with pytest.raises(ferry.WrongPhaseError):
            groups[2].declare_compute(1_000_000)


def test_update_gives_a_frozen_tensor_new_bytes_and_each_bad_call_its_exception():
    with make_runtime(4 * 4096) as rt, make_runtime() as other:
        groups = [rt.define_group(f"g{i}") for i in range(6)]
        ts = [g.define_tensor("w", dtype="int32", shape=(1024,)) for g in groups]
        state = groups[0].define_tensor("state", dtype="int32", shape=(4,), mutable=True)
        foreign = other.define_group("g").define_tensor("w", 16)
        with pytest.raises(ferry.WrongPhaseError, match="ferry_tensor_update"):
            ts[0].update(bytes(16))
        rt.plan()
        with pytest.raises(ferry.WrongPhaseError, match="copy_in"):
            ts[0].update(bytes(16))
        for i, t in enumerate(ts):
            t.copy_in(np.full(1024, i, dtype=np.int32))
        rt.seal()
        for i, t in enumerate(ts):  # resident or streamed, each sees its new bytes
            t.update(np.full(1024, 100 + i, dtype=np.int32))
            t.update(np.full(8, -1, dtype=np.int32), offset=16)
        for i, t in enumerate(ts):
            want = np.full(1024, 100 + i, dtype=np.int32)
            want[4:12] = -1
            assert np.frombuffer(t.read(), dtype=np.int32).tolist() == want.tolist()
            if BACKEND == "sim":
                with t.group.acquired():
                    assert np.array_equal(np.asarray(t.device_view()), want)
        with pytest.raises(ferry.OutOfRangeError, match="cannot update"):
            ts[1].update(bytes(8), offset=4092)
        with pytest.raises(ferry.InvalidArgumentError, match="is mutable"):
            state.update(bytes(4))
        with pytest.raises(ferry.ForeignHandleError, match="another runtime"):
            ferry.errors.check(rt._lib.ferry_tensor_update(rt._handle(), foreign._h, 0, None, 0))
        with groups[2].acquired():
            with pytest.raises(ferry.GroupBusyError, match="release it first"):
                ts[2].update(bytes(4))
        assert rt.stats()["bytes_d2h"] == 0


# --- compressed streaming -----------------------------------------------------------------


def trained_bf16(n, seed):
    """n bf16 values of a normal distribution of std 0.02, as bytes."""
    values = np.random.default_rng(seed).normal(0.0, 0.02, n).astype(np.float32)
    return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()


def test_compress_encodes_bf16_weights_and_streams_them_back_bit_for_bit():
    with make_runtime("1MiB", compress=True) as rt:
        groups, tensors, data = [], [], []
        for i in range(4):
            g = rt.define_group(f"g{i}")
            groups.append(g)
            tensors.append(g.define_tensor("w", dtype="bfloat16", shape=(32768,)))
        rt.plan()
        for i, t in enumerate(tensors):
            data.append(trained_bf16(32768, i))
            t.copy_in(data[-1])
        rt.seal()
        for g in groups:
            with g.acquired():
                pass
        s = rt.stats()
        assert s["compressed_groups"] == 4
        assert s["host_compressed_bytes"] < 0.72 * s["host_compressed_raw_bytes"]
        assert s["slab_bytes"] + s["slab_staging_bytes"] <= s["vram_budget"]
        assert s["encode_ns"] > 0 and s["host_pin_ns"] > 0
        out = bytearray(65536)
        tensors[2].copy_out(out)
        assert bytes(out) == data[2]
        with pytest.raises(ferry.NotInMemoryError, match="compressed"):
            tensors[2].host_ptr()


def test_without_compress_nothing_is_encoded():
    with make_runtime("1MiB") as rt:
        t = rt.define_group("g").define_tensor("w", dtype="bfloat16", shape=(32768,))
        rt.plan()
        t.copy_in(trained_bf16(32768, 1))
        rt.seal()
        s = rt.stats()
        assert s["compressed_groups"] == 0 and s["slab_staging_bytes"] == 0
