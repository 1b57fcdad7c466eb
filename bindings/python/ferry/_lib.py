"""The one place where libferry is found, loaded and declared.

Every C function of include/ferry/ferry.h is declared here exactly once, with its
argtypes and restype; the rest of the package calls the functions through ``lib()``.
The structs mirror the header field by field (tests/test_ctypes.py checks them against
the header text).
"""

import ctypes
import ctypes.util
import os
import pathlib
import threading

__all__ = [
    "ConfigStruct",
    "GroupHandle",
    "LibraryNotFoundError",
    "LoadOptionsStruct",
    "LoadProgressFn",
    "LoadReportStruct",
    "PinProgressFn",
    "ShareProgressFn",
    "StatsStruct",
    "TensorHandle",
    "WeightsTensorStruct",
    "lib",
    "library_path",
    "search_locations",
]

# The header this module mirrors. A library of another major version is refused.
HEADER_VERSION_MAJOR = 0
HEADER_VERSION_MINOR = 1

_ENV_VAR = "FERRY_LIBRARY"
_NAMES = ("libferry.so", "libferry.so.0")


class LibraryNotFoundError(OSError):
    """libferry could not be found or loaded. The message lists every place tried."""


# --------------------------------------------------------------------------------------
# Structs and handles
# --------------------------------------------------------------------------------------


class GroupHandle(ctypes.Structure):
    """ferry_group: a value holding one uint64. The zero value is never valid."""

    _fields_ = [("id", ctypes.c_uint64)]


class TensorHandle(ctypes.Structure):
    """ferry_tensor: a value holding one uint64. The zero value is never valid."""

    _fields_ = [("id", ctypes.c_uint64)]


class ConfigStruct(ctypes.Structure):
    """ferry_config. Always filled by ferry_config_init() before use."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("backend", ctypes.c_int),
        ("device", ctypes.c_int32),
        ("vram_budget", ctypes.c_uint64),
        ("slots_per_class", ctypes.c_uint32),
        ("synchronous", ctypes.c_int32),
        ("name", ctypes.c_char_p),
        ("sim_h2d_gbps", ctypes.c_double),
        ("sim_d2h_gbps", ctypes.c_double),
        ("sim_latency_us", ctypes.c_double),
        ("sim_chaos", ctypes.c_int32),
        ("sim_seed", ctypes.c_uint64),
        ("publish_stats", ctypes.c_int32),
        ("verify", ctypes.c_int32),
        ("pinned_cap_bytes", ctypes.c_uint64),
        ("pageable_fallback", ctypes.c_int32),
        ("host_share", ctypes.c_char_p),
        ("host_share_timeout_ms", ctypes.c_uint32),
        ("compress", ctypes.c_int32),
    ]


class StatsStruct(ctypes.Structure):
    """ferry_stats. struct_size must be set to ctypes.sizeof(StatsStruct) before use."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("backend", ctypes.c_uint32),
        ("phase", ctypes.c_uint32),
        ("bytes_h2d", ctypes.c_uint64),
        ("bytes_d2h", ctypes.c_uint64),
        ("onloads", ctypes.c_uint64),
        ("acquires", ctypes.c_uint64),
        ("releases", ctypes.c_uint64),
        ("resident_hits", ctypes.c_uint64),
        ("hits", ctypes.c_uint64),
        ("misses", ctypes.c_uint64),
        ("prefetches_issued", ctypes.c_uint64),
        ("prefetches_used", ctypes.c_uint64),
        ("prefetches_wasted", ctypes.c_uint64),
        ("writebacks", ctypes.c_uint64),
        ("passes", ctypes.c_uint64),
        ("groups", ctypes.c_uint64),
        ("resident_groups", ctypes.c_uint64),
        ("size_classes", ctypes.c_uint64),
        ("streaming_slots", ctypes.c_uint64),
        ("model_bytes", ctypes.c_uint64),
        ("streamed_bytes_per_pass", ctypes.c_uint64),
        ("vram_budget", ctypes.c_uint64),
        ("slab_bytes", ctypes.c_uint64),
        ("slab_resident_bytes", ctypes.c_uint64),
        ("slab_streaming_bytes", ctypes.c_uint64),
        ("slab_used_bytes", ctypes.c_uint64),
        ("slab_used_peak_bytes", ctypes.c_uint64),
        ("host_pinned_bytes", ctypes.c_uint64),
        ("host_pinned_peak_bytes", ctypes.c_uint64),
        ("stall_ns", ctypes.c_uint64),
        ("writebacks_skipped", ctypes.c_uint64),
        ("verify_checks", ctypes.c_uint64),
        ("verify_failures", ctypes.c_uint64),
        ("host_pageable_bytes", ctypes.c_uint64),
        ("host_disk_bytes", ctypes.c_uint64),
        ("bytes_disk_read", ctypes.c_uint64),
        ("compressed_groups", ctypes.c_uint64),
        ("host_compressed_bytes", ctypes.c_uint64),
        ("host_compressed_raw_bytes", ctypes.c_uint64),
        ("bytes_h2d_compressed", ctypes.c_uint64),
        ("bytes_decoded", ctypes.c_uint64),
        ("decodes", ctypes.c_uint64),
        ("slab_staging_bytes", ctypes.c_uint64),
        ("host_pin_ns", ctypes.c_uint64),
        ("encode_ns", ctypes.c_uint64),
    ]


MAX_DIMS = 8  # FERRY_MAX_DIMS

# ferry_load_progress_fn(user, bytes_done, bytes_total)
LoadProgressFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)


class WeightsTensorStruct(ctypes.Structure):
    """ferry_weights_tensor: one tensor of a set of weights files. Its strings belong to
    the weights and are valid until ferry_weights_close."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("file", ctypes.c_char_p),
        ("dtype", ctypes.c_int),
        ("file_dtype", ctypes.c_char_p),
        ("ndim", ctypes.c_uint32),
        ("shape", ctypes.c_int64 * MAX_DIMS),
        ("bytes", ctypes.c_uint64),
        ("file_offset", ctypes.c_uint64),
    ]


class LoadOptionsStruct(ctypes.Structure):
    """ferry_load_options. Always filled by ferry_load_options_init() before use."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("name_prefix", ctypes.c_char_p),
        ("tensors", ctypes.POINTER(TensorHandle)),
        ("tensor_count", ctypes.c_size_t),
        ("allow_unused", ctypes.c_int32),
        ("convert_dtype", ctypes.c_int32),
        ("threads", ctypes.c_uint32),
        ("direct", ctypes.c_int32),
        ("disk_tier", ctypes.c_int32),
        ("progress", LoadProgressFn),
        ("progress_user", ctypes.c_void_p),
    ]


class LoadReportStruct(ctypes.Structure):
    """ferry_load_report. struct_size must be set to its sizeof before use."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("tensors_read", ctypes.c_uint64),
        ("tensors_converted", ctypes.c_uint64),
        ("tensors_on_disk", ctypes.c_uint64),
        ("bytes_read", ctypes.c_uint64),
        ("bytes_on_disk", ctypes.c_uint64),
        ("direct_bytes", ctypes.c_uint64),
        ("elapsed_ns", ctypes.c_uint64),
        ("threads", ctypes.c_uint32),
    ]


# --------------------------------------------------------------------------------------
# Declarations: name -> (restype, argtypes)
# --------------------------------------------------------------------------------------

_status = ctypes.c_int  # ferry_status
# ferry_pin_progress_fn(user, pinned_bytes, pageable_bytes, total_bytes)
PinProgressFn = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64
)
# ferry_host_share_progress_fn(user, loaded_bytes, total_bytes)
ShareProgressFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)
_rt = ctypes.c_void_p  # ferry_runtime *
_vp = ctypes.c_void_p
_u64 = ctypes.c_uint64

_DECLARATIONS = {
    "ferry_version": (ctypes.c_char_p, []),
    "ferry_version_number": (ctypes.c_uint32, []),
    "ferry_status_string": (ctypes.c_char_p, [_status]),
    "ferry_last_error": (ctypes.c_char_p, []),
    "ferry_config_init": (None, [ctypes.POINTER(ConfigStruct)]),
    "ferry_create": (_status, [ctypes.POINTER(ConfigStruct), ctypes.POINTER(_rt)]),
    "ferry_destroy": (_status, [_rt]),
    "ferry_phase_get": (_status, [_rt, ctypes.POINTER(ctypes.c_int)]),
    "ferry_group_define": (_status, [_rt, ctypes.c_char_p, ctypes.POINTER(GroupHandle)]),
    "ferry_tensor_define": (
        _status,
        [
            _rt,
            GroupHandle,
            ctypes.c_char_p,
            _u64,
            ctypes.c_int,
            ctypes.c_uint32,
            ctypes.POINTER(ctypes.c_int64),
            ctypes.c_uint32,
            ctypes.POINTER(TensorHandle),
        ],
    ),
    "ferry_schedule_declare": (
        _status,
        [_rt, ctypes.POINTER(GroupHandle), ctypes.c_size_t],
    ),
    "ferry_plan": (_status, [_rt]),
    "ferry_tensor_host_ptr": (_status, [_rt, TensorHandle, ctypes.POINTER(_vp)]),
    "ferry_tensor_copy_in": (_status, [_rt, TensorHandle, _u64, _vp, _u64]),
    "ferry_seal": (_status, [_rt]),
    "ferry_acquire": (_status, [_rt, GroupHandle, _vp]),
    "ferry_release": (_status, [_rt, GroupHandle, _vp]),
    "ferry_tensor_device_ptr": (_status, [_rt, TensorHandle, ctypes.POINTER(_vp)]),
    "ferry_synchronize": (_status, [_rt]),
    "ferry_stats_get": (_status, [_rt, ctypes.POINTER(StatsStruct)]),
    "ferry_group_info": (
        _status,
        [
            _rt,
            GroupHandle,
            ctypes.POINTER(ctypes.c_int32),
            ctypes.POINTER(ctypes.c_int32),
            ctypes.POINTER(ctypes.c_uint64),
        ],
    ),
    "ferry_group_resident_bytes": (_status, [_rt, GroupHandle, ctypes.POINTER(ctypes.c_uint64)]),
    "ferry_group_prefer_resident": (_status, [_rt, GroupHandle]),
    "ferry_group_compute_declare": (_status, [_rt, GroupHandle, ctypes.c_uint64]),
    "ferry_groups_list": (
        _status, [_rt, ctypes.POINTER(GroupHandle), ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
    ),
    "ferry_group_tensors": (
        _status,
        [_rt, GroupHandle, ctypes.POINTER(TensorHandle), ctypes.c_size_t,
         ctypes.POINTER(ctypes.c_size_t)],
    ),
    "ferry_group_find": (_status, [_rt, ctypes.c_char_p, ctypes.POINTER(GroupHandle)]),
    "ferry_tensor_find": (
        _status, [_rt, GroupHandle, ctypes.c_char_p, ctypes.POINTER(TensorHandle)]
    ),
    "ferry_group_name": (_status, [_rt, GroupHandle, ctypes.POINTER(ctypes.c_char_p)]),
    "ferry_tensor_name": (_status, [_rt, TensorHandle, ctypes.POINTER(ctypes.c_char_p)]),
    "ferry_trace_start": (_status, [_rt, ctypes.c_uint32]),
    "ferry_trace_stop": (_status, [_rt]),
    "ferry_trace_dump": (_status, [_rt, ctypes.c_char_p]),
    "ferry_pin_progress_set": (_status, [_rt, PinProgressFn, _vp]),
    "ferry_host_share_role_get": (_status, [_rt, ctypes.POINTER(ctypes.c_int)]),
    "ferry_host_share_progress_set": (_status, [_rt, ShareProgressFn, _vp]),
    "ferry_weights_open": (_status, [ctypes.c_char_p, ctypes.POINTER(_vp)]),
    "ferry_weights_close": (_status, [_vp]),
    "ferry_weights_count": (_status, [_vp, ctypes.POINTER(_u64)]),
    "ferry_weights_tensor_at": (_status, [_vp, _u64, ctypes.POINTER(WeightsTensorStruct)]),
    "ferry_weights_find": (_status, [_vp, ctypes.c_char_p, ctypes.POINTER(_u64)]),
    "ferry_weights_define": (
        _status,
        [_rt, _vp, ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t, ctypes.c_uint32,
         ctypes.c_int],
    ),
    "ferry_load_options_init": (None, [ctypes.POINTER(LoadOptionsStruct)]),
    "ferry_weights_load": (
        _status,
        [_rt, _vp, ctypes.POINTER(LoadOptionsStruct), ctypes.POINTER(LoadReportStruct)],
    ),
    "ferry_tensor_copy_out": (_status, [_rt, TensorHandle, _u64, _vp, _u64]),
    "ferry_tensor_update": (_status, [_rt, TensorHandle, _u64, _vp, _u64]),
    "ferry_dlpack_wrap": (
        _status,
        [_rt, _vp, ctypes.c_int32, ctypes.c_int32, ctypes.c_uint8, ctypes.c_uint8,
         ctypes.c_int32, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(_vp)],
    ),
    "ferry_dlpack_live": (_status, [_rt, ctypes.POINTER(_u64)]),
}

# --------------------------------------------------------------------------------------
# Finding and loading the library
# --------------------------------------------------------------------------------------

_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
_lock = threading.Lock()
_loaded = None  # (CDLL, path)


def search_locations():
    """The candidate paths, in order, as (description, path-or-name) pairs.

    FERRY_LIBRARY first; then next to the package (inside it, then beside it); then the
    build tree of the repository this package sits in (<repo>/build/libferry.so); then
    the system's search path (ctypes.util.find_library, then dlopen's own search).
    """
    out = []
    env = os.environ.get(_ENV_VAR)
    if env:
        out.append((_ENV_VAR, env))
    for directory in (_PACKAGE_DIR, _PACKAGE_DIR.parent):
        for name in _NAMES:
            out.append(("next to the package", str(directory / name)))
    repo = _PACKAGE_DIR.parent.parent.parent  # <repo>/bindings/python/ferry
    out.append(("build tree", str(repo / "build" / "libferry.so")))
    found = ctypes.util.find_library("ferry")
    if found:
        out.append(("system (find_library)", found))
    for name in reversed(_NAMES):
        out.append(("system (dlopen search path)", name))
    return out


def _declare(cdll):
    for name, (restype, argtypes) in _DECLARATIONS.items():
        fn = getattr(cdll, name)  # AttributeError: a library missing a symbol
        fn.restype = restype
        fn.argtypes = argtypes


def _try(where, path):
    """Loads and declares one candidate; returns (cdll, None) or (None, why-not)."""
    if os.sep in path and not os.path.exists(path):
        return None, "no such file"
    try:
        cdll = ctypes.CDLL(path)
    except OSError as exc:
        return None, str(exc)
    try:
        _declare(cdll)
    except AttributeError as exc:
        return None, f"not a ferry library: {exc}"
    major = cdll.ferry_version_number() // 10000
    if major != HEADER_VERSION_MAJOR:
        return None, (
            f"version {cdll.ferry_version().decode()}, "
            f"these bindings need {HEADER_VERSION_MAJOR}.x"
        )
    return cdll, None


def _load():
    tried = []
    for where, path in search_locations():
        cdll, why = _try(where, path)
        if cdll is not None:
            return cdll, path
        tried.append(f"  {where}: {path} ({why})")
        if where == _ENV_VAR:
            # An explicit choice that fails is reported, never silently replaced.
            raise LibraryNotFoundError(
                f"ferry: could not load libferry from {_ENV_VAR}:\n"
                + "\n".join(tried)
                + f"\nfix {_ENV_VAR} or unset it to search the usual places"
            )
    raise LibraryNotFoundError(
        "ferry: could not load libferry; looked in:\n"
        + "\n".join(tried)
        + f"\nset {_ENV_VAR}=/path/to/libferry.so, or build the library with "
        "`meson setup build && meson compile -C build`"
    )


def lib():
    """The loaded, declared libferry (loaded on first use, then cached)."""
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _load()
    return _loaded[0]


def library_path():
    """The path (or name) libferry was loaded from."""
    lib()
    return _loaded[1]
