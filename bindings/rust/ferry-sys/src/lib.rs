//! Raw declarations of ferry's C API, written by hand to match `include/ferry/ferry.h`
//! exactly. Every item keeps its C name. The safe API lives in the `ferry` crate.
//!
//! C enums are declared as integer type aliases plus constants, not Rust enums: the header
//! says new status codes may be added, and a value a Rust enum does not list would be
//! undefined behaviour.
//!
//! `tests/symbols.rs` checks this file against the header and the built library: every
//! exported `ferry_*` symbol is declared here with the header's argument count, every
//! enum value and `#define` matches, and the structs have the C layout.

#![no_std]
#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_double, c_uint, c_void};
use core::marker::{PhantomData, PhantomPinned};

// ----------------------------------------------------------------------------------------
// Version
// ----------------------------------------------------------------------------------------

pub const FERRY_VERSION_MAJOR: u32 = 0;
pub const FERRY_VERSION_MINOR: u32 = 1;
pub const FERRY_VERSION_PATCH: u32 = 0;
/// MAJOR * 10000 + MINOR * 100 + PATCH of the header these declarations match.
pub const FERRY_VERSION_NUMBER: u32 =
    FERRY_VERSION_MAJOR * 10000 + FERRY_VERSION_MINOR * 100 + FERRY_VERSION_PATCH;

// ----------------------------------------------------------------------------------------
// Status codes (enum ferry_status)
// ----------------------------------------------------------------------------------------

pub type ferry_status = c_uint;
pub const FERRY_OK: ferry_status = 0;
pub const FERRY_ERROR_INVALID_ARGUMENT: ferry_status = 1;
pub const FERRY_ERROR_INVALID_HANDLE: ferry_status = 2;
pub const FERRY_ERROR_FOREIGN_HANDLE: ferry_status = 3;
pub const FERRY_ERROR_STALE_HANDLE: ferry_status = 4;
pub const FERRY_ERROR_WRONG_PHASE: ferry_status = 5;
pub const FERRY_ERROR_INVALID_SIZE: ferry_status = 6;
pub const FERRY_ERROR_SIZE_TOO_LARGE: ferry_status = 7;
pub const FERRY_ERROR_BUDGET_TOO_SMALL: ferry_status = 8;
pub const FERRY_ERROR_DUPLICATE_NAME: ferry_status = 9;
pub const FERRY_ERROR_NOT_ACQUIRED: ferry_status = 10;
pub const FERRY_ERROR_NO_FREE_SLOT: ferry_status = 11;
pub const FERRY_ERROR_GROUP_BUSY: ferry_status = 12;
pub const FERRY_ERROR_EMPTY: ferry_status = 13;
pub const FERRY_ERROR_OUT_OF_RANGE: ferry_status = 14;
pub const FERRY_ERROR_OUT_OF_HOST_MEMORY: ferry_status = 15;
pub const FERRY_ERROR_OUT_OF_DEVICE_MEMORY: ferry_status = 16;
pub const FERRY_ERROR_BACKEND_UNAVAILABLE: ferry_status = 17;
pub const FERRY_ERROR_DEVICE: ferry_status = 18;
pub const FERRY_ERROR_INTERNAL: ferry_status = 19;
pub const FERRY_ERROR_VERIFY_FAILED: ferry_status = 20;
pub const FERRY_ERROR_STREAM_CAPTURING: ferry_status = 21;
pub const FERRY_ERROR_IO: ferry_status = 22;
pub const FERRY_ERROR_FILE_TRUNCATED: ferry_status = 23;
pub const FERRY_ERROR_FILE_FORMAT: ferry_status = 24;
pub const FERRY_ERROR_WEIGHTS_MISMATCH: ferry_status = 25;
pub const FERRY_ERROR_FILE_CHANGED: ferry_status = 26;
pub const FERRY_ERROR_NOT_IN_MEMORY: ferry_status = 27;
pub const FERRY_ERROR_HOST_SHARE: ferry_status = 28;
pub const FERRY_ERROR_HOST_SHARE_LAYOUT: ferry_status = 29;

// ----------------------------------------------------------------------------------------
// Configuration
// ----------------------------------------------------------------------------------------

pub type ferry_backend = c_uint;
pub const FERRY_BACKEND_AUTO: ferry_backend = 0;
pub const FERRY_BACKEND_CUDA: ferry_backend = 1;
pub const FERRY_BACKEND_SIM: ferry_backend = 2;

/// Runtime configuration. Always fill it with `ferry_config_init` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ferry_config {
    pub struct_size: usize,
    pub backend: ferry_backend,
    pub device: i32,
    pub vram_budget: u64,
    pub slots_per_class: u32,
    pub synchronous: i32,
    pub name: *const c_char,
    pub sim_h2d_gbps: c_double,
    pub sim_d2h_gbps: c_double,
    pub sim_latency_us: c_double,
    pub sim_chaos: i32,
    pub sim_seed: u64,
    pub publish_stats: i32,
    pub verify: i32,
    pub pinned_cap_bytes: u64,
    pub pageable_fallback: i32,
    pub host_share: *const c_char,
    pub host_share_timeout_ms: u32,
    pub compress: i32,
}

// ----------------------------------------------------------------------------------------
// Handles
// ----------------------------------------------------------------------------------------

/// Opaque runtime. Only ever used behind a pointer.
#[repr(C)]
pub struct ferry_runtime {
    _unused: [u8; 0],
    // Not Send, not Sync, not Unpin until a wrapper says otherwise.
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ferry_group {
    pub id: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ferry_tensor {
    pub id: u64,
}

pub type ferry_phase = c_uint;
pub const FERRY_PHASE_DEFINE: ferry_phase = 0;
pub const FERRY_PHASE_PLANNED: ferry_phase = 1;
pub const FERRY_PHASE_SEALED: ferry_phase = 2;

pub type ferry_dtype = c_uint;
pub const FERRY_DTYPE_UNKNOWN: ferry_dtype = 0;
pub const FERRY_DTYPE_U8: ferry_dtype = 1;
pub const FERRY_DTYPE_I8: ferry_dtype = 2;
pub const FERRY_DTYPE_I16: ferry_dtype = 3;
pub const FERRY_DTYPE_I32: ferry_dtype = 4;
pub const FERRY_DTYPE_I64: ferry_dtype = 5;
pub const FERRY_DTYPE_F16: ferry_dtype = 6;
pub const FERRY_DTYPE_BF16: ferry_dtype = 7;
pub const FERRY_DTYPE_F32: ferry_dtype = 8;
pub const FERRY_DTYPE_F64: ferry_dtype = 9;
pub const FERRY_DTYPE_BOOL: ferry_dtype = 10;

pub const FERRY_MAX_DIMS: u32 = 8;

/// Tensor flag: may be written on the device; written back on eviction, synchronize and
/// destroy. Default (0): immutable, never copied device-to-host.
pub const FERRY_TENSOR_MUTABLE: u32 = 1;

// ----------------------------------------------------------------------------------------
// Queries
// ----------------------------------------------------------------------------------------

/// Counters. Set `struct_size` to `size_of::<ferry_stats>()` before `ferry_stats_get`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ferry_stats {
    pub struct_size: usize,
    pub backend: u32,
    pub phase: u32,
    pub bytes_h2d: u64,
    pub bytes_d2h: u64,
    pub onloads: u64,
    pub acquires: u64,
    pub releases: u64,
    pub resident_hits: u64,
    pub hits: u64,
    pub misses: u64,
    pub prefetches_issued: u64,
    pub prefetches_used: u64,
    pub prefetches_wasted: u64,
    pub writebacks: u64,
    pub passes: u64,
    pub groups: u64,
    pub resident_groups: u64,
    pub size_classes: u64,
    pub streaming_slots: u64,
    pub model_bytes: u64,
    pub streamed_bytes_per_pass: u64,
    pub vram_budget: u64,
    pub slab_bytes: u64,
    pub slab_resident_bytes: u64,
    pub slab_streaming_bytes: u64,
    pub slab_used_bytes: u64,
    pub slab_used_peak_bytes: u64,
    pub host_pinned_bytes: u64,
    pub host_pinned_peak_bytes: u64,
    pub stall_ns: u64,
    pub writebacks_skipped: u64,
    pub verify_checks: u64,
    pub verify_failures: u64,
    pub host_pageable_bytes: u64,
    pub host_disk_bytes: u64,
    pub bytes_disk_read: u64,
    pub compressed_groups: u64,
    pub host_compressed_bytes: u64,
    pub host_compressed_raw_bytes: u64,
    pub bytes_h2d_compressed: u64,
    pub bytes_decoded: u64,
    pub decodes: u64,
    pub slab_staging_bytes: u64,
    pub host_pin_ns: u64,
    pub encode_ns: u64,
}

/// Pinning progress: `(user, pinned_bytes, pageable_bytes, total_bytes)`; `None` is NULL.
pub type ferry_pin_progress_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, pinned: u64, pageable: u64, total: u64)>;

// ----------------------------------------------------------------------------------------
// Shared host store
// ----------------------------------------------------------------------------------------

pub type ferry_host_share_role = c_uint;
pub const FERRY_HOST_SHARE_NONE: ferry_host_share_role = 0;
pub const FERRY_HOST_SHARE_LOADER: ferry_host_share_role = 1;
pub const FERRY_HOST_SHARE_ATTACHED: ferry_host_share_role = 2;

pub type ferry_host_share_progress_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, loaded: u64, total: u64)>;

// ----------------------------------------------------------------------------------------
// Trace
// ----------------------------------------------------------------------------------------

/// Ring capacity of `ferry_trace_start(runtime, 0)`.
pub const FERRY_TRACE_DEFAULT_EVENTS: u32 = 65536;

// ----------------------------------------------------------------------------------------
// Weights files
// ----------------------------------------------------------------------------------------

/// Opaque set of opened safetensors files. Only ever used behind a pointer.
#[repr(C)]
pub struct ferry_weights {
    _unused: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// One tensor of the files. Strings are owned by the weights and valid until close.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ferry_weights_tensor {
    pub name: *const c_char,
    pub file: *const c_char,
    pub dtype: ferry_dtype,
    pub file_dtype: *const c_char,
    pub ndim: u32,
    pub shape: [i64; FERRY_MAX_DIMS as usize],
    pub bytes: u64,
    pub file_offset: u64,
}

/// Load progress: `(user, bytes_done, bytes_total)`; `None` is NULL.
pub type ferry_load_progress_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, bytes_done: u64, bytes_total: u64)>;

/// Options of `ferry_weights_load`. Always fill it with `ferry_load_options_init` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ferry_load_options {
    pub struct_size: usize,
    pub name_prefix: *const c_char,
    pub tensors: *const ferry_tensor,
    pub tensor_count: usize,
    pub allow_unused: i32,
    pub convert_dtype: i32,
    pub threads: u32,
    pub direct: i32,
    pub disk_tier: i32,
    pub progress: ferry_load_progress_fn,
    pub progress_user: *mut c_void,
}

/// What a load did. Set `struct_size` to `size_of::<ferry_load_report>()` before the call.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ferry_load_report {
    pub struct_size: usize,
    pub tensors_read: u64,
    pub tensors_converted: u64,
    pub tensors_on_disk: u64,
    pub bytes_read: u64,
    pub bytes_on_disk: u64,
    pub direct_bytes: u64,
    pub elapsed_ns: u64,
    pub threads: u32,
}

// ----------------------------------------------------------------------------------------
// Functions, in the header's order
// ----------------------------------------------------------------------------------------

extern "C" {
    pub fn ferry_version() -> *const c_char;
    pub fn ferry_version_number() -> u32;

    pub fn ferry_status_string(status: ferry_status) -> *const c_char;
    pub fn ferry_last_error() -> *const c_char;

    pub fn ferry_config_init(config: *mut ferry_config);

    pub fn ferry_create(config: *const ferry_config, out: *mut *mut ferry_runtime) -> ferry_status;
    pub fn ferry_destroy(runtime: *mut ferry_runtime) -> ferry_status;
    pub fn ferry_phase_get(runtime: *mut ferry_runtime, out: *mut ferry_phase) -> ferry_status;

    pub fn ferry_group_define(
        runtime: *mut ferry_runtime,
        name: *const c_char,
        out: *mut ferry_group,
    ) -> ferry_status;
    pub fn ferry_tensor_define(
        runtime: *mut ferry_runtime,
        group: ferry_group,
        name: *const c_char,
        bytes: u64,
        dtype: ferry_dtype,
        ndim: u32,
        shape: *const i64,
        flags: u32,
        out: *mut ferry_tensor,
    ) -> ferry_status;
    pub fn ferry_schedule_declare(
        runtime: *mut ferry_runtime,
        order: *const ferry_group,
        count: usize,
    ) -> ferry_status;

    pub fn ferry_plan(runtime: *mut ferry_runtime) -> ferry_status;
    pub fn ferry_tensor_host_ptr(
        runtime: *mut ferry_runtime,
        tensor: ferry_tensor,
        out: *mut *mut c_void,
    ) -> ferry_status;
    pub fn ferry_tensor_copy_in(
        runtime: *mut ferry_runtime,
        tensor: ferry_tensor,
        offset: u64,
        src: *const c_void,
        bytes: u64,
    ) -> ferry_status;
    pub fn ferry_seal(runtime: *mut ferry_runtime) -> ferry_status;
    pub fn ferry_tensor_update(
        runtime: *mut ferry_runtime,
        tensor: ferry_tensor,
        offset: u64,
        src: *const c_void,
        bytes: u64,
    ) -> ferry_status;

    pub fn ferry_acquire(
        runtime: *mut ferry_runtime,
        group: ferry_group,
        stream: *mut c_void,
    ) -> ferry_status;
    pub fn ferry_release(
        runtime: *mut ferry_runtime,
        group: ferry_group,
        stream: *mut c_void,
    ) -> ferry_status;
    pub fn ferry_tensor_device_ptr(
        runtime: *mut ferry_runtime,
        tensor: ferry_tensor,
        out: *mut *mut c_void,
    ) -> ferry_status;
    pub fn ferry_synchronize(runtime: *mut ferry_runtime) -> ferry_status;

    pub fn ferry_stats_get(runtime: *mut ferry_runtime, out: *mut ferry_stats) -> ferry_status;
    pub fn ferry_group_info(
        runtime: *mut ferry_runtime,
        group: ferry_group,
        resident: *mut i32,
        size_class: *mut i32,
        image_bytes: *mut u64,
    ) -> ferry_status;
    pub fn ferry_group_prefer_resident(
        runtime: *mut ferry_runtime,
        group: ferry_group,
    ) -> ferry_status;
    pub fn ferry_group_compute_declare(
        runtime: *mut ferry_runtime,
        group: ferry_group,
        nanoseconds: u64,
    ) -> ferry_status;
    pub fn ferry_group_resident_bytes(
        runtime: *mut ferry_runtime,
        group: ferry_group,
        out: *mut u64,
    ) -> ferry_status;
    pub fn ferry_groups_list(
        runtime: *mut ferry_runtime,
        out: *mut ferry_group,
        capacity: usize,
        count: *mut usize,
    ) -> ferry_status;
    pub fn ferry_group_tensors(
        runtime: *mut ferry_runtime,
        group: ferry_group,
        out: *mut ferry_tensor,
        capacity: usize,
        count: *mut usize,
    ) -> ferry_status;
    pub fn ferry_group_find(
        runtime: *mut ferry_runtime,
        name: *const c_char,
        out: *mut ferry_group,
    ) -> ferry_status;
    pub fn ferry_tensor_find(
        runtime: *mut ferry_runtime,
        group: ferry_group,
        name: *const c_char,
        out: *mut ferry_tensor,
    ) -> ferry_status;
    pub fn ferry_group_name(
        runtime: *mut ferry_runtime,
        group: ferry_group,
        out: *mut *const c_char,
    ) -> ferry_status;
    pub fn ferry_tensor_name(
        runtime: *mut ferry_runtime,
        tensor: ferry_tensor,
        out: *mut *const c_char,
    ) -> ferry_status;

    pub fn ferry_trace_start(runtime: *mut ferry_runtime, capacity: u32) -> ferry_status;
    pub fn ferry_trace_stop(runtime: *mut ferry_runtime) -> ferry_status;
    pub fn ferry_trace_dump(runtime: *mut ferry_runtime, path: *const c_char) -> ferry_status;
    pub fn ferry_pin_progress_set(
        runtime: *mut ferry_runtime,
        callback: ferry_pin_progress_fn,
        user: *mut c_void,
    ) -> ferry_status;
    pub fn ferry_host_share_role_get(
        runtime: *mut ferry_runtime,
        out: *mut ferry_host_share_role,
    ) -> ferry_status;
    pub fn ferry_host_share_progress_set(
        runtime: *mut ferry_runtime,
        callback: ferry_host_share_progress_fn,
        user: *mut c_void,
    ) -> ferry_status;

    pub fn ferry_weights_open(path: *const c_char, out: *mut *mut ferry_weights) -> ferry_status;
    pub fn ferry_weights_close(weights: *mut ferry_weights) -> ferry_status;
    pub fn ferry_weights_count(weights: *const ferry_weights, out: *mut u64) -> ferry_status;
    pub fn ferry_weights_tensor_at(
        weights: *const ferry_weights,
        index: u64,
        out: *mut ferry_weights_tensor,
    ) -> ferry_status;
    pub fn ferry_weights_find(
        weights: *const ferry_weights,
        name: *const c_char,
        out_index: *mut u64,
    ) -> ferry_status;
    pub fn ferry_weights_define(
        runtime: *mut ferry_runtime,
        weights: *const ferry_weights,
        block_prefixes: *const *const c_char,
        prefix_count: usize,
        blocks_per_group: u32,
        dtype: ferry_dtype,
    ) -> ferry_status;
    pub fn ferry_load_options_init(options: *mut ferry_load_options);
    pub fn ferry_weights_load(
        runtime: *mut ferry_runtime,
        weights: *const ferry_weights,
        options: *const ferry_load_options,
        report: *mut ferry_load_report,
    ) -> ferry_status;
    pub fn ferry_tensor_copy_out(
        runtime: *mut ferry_runtime,
        tensor: ferry_tensor,
        offset: u64,
        dst: *mut c_void,
        bytes: u64,
    ) -> ferry_status;

    /// Returns, in `out_managed`, a `DLManagedTensor *` (dlpack.h) whose deleter is
    /// libferry's and frees it; it counts in `ferry_dlpack_live(owner)` until then.
    pub fn ferry_dlpack_wrap(
        owner: *mut ferry_runtime,
        data: *mut c_void,
        device_type: i32,
        device_id: i32,
        dtype_code: u8,
        dtype_bits: u8,
        ndim: i32,
        shape: *const i64,
        out_managed: *mut *mut c_void,
    ) -> ferry_status;
    pub fn ferry_dlpack_live(owner: *mut ferry_runtime, out_live: *mut u64) -> ferry_status;
}
