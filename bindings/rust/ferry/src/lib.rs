//! Safe Rust API for ferry: stream a model's weights from one pinned host copy into a
//! fixed VRAM budget, one layer group at a time.
//!
//! ```no_run
//! use ferry::{Backend, Runtime};
//!
//! # fn main() -> ferry::Result<()> {
//! let rt = Runtime::builder().backend(Backend::Sim).vram_budget(1 << 20).build()?;
//! let block = rt.define_group("block.0")?;
//! let weight = rt.define_tensor(block, "weight", 4096)?;
//! rt.plan()?;
//! rt.copy_in(weight, 0, &[7u8; 4096])?;
//! rt.seal()?;
//! for _pass in 0..3 {
//!     let held = rt.acquire(block)?; // released when `held` is dropped
//!     let _device_address = held.device_ptr(weight)?;
//! }
//! println!("{:?}", rt.stats()?);
//! # Ok(())
//! # }
//! ```
//!
//! The phases of the C API are checked by the library at run time: a call in the wrong
//! phase returns an [`Error`] whose [`Status`] is [`Status::WrongPhase`]. Lifetimes make
//! the rest impossible to get wrong: group and tensor handles, acquired groups and host
//! byte views all borrow the [`Runtime`], so none can outlive it, and the runtime is
//! destroyed (by `Drop`) only once nothing borrows it.

use std::ffi::{c_void, CStr, CString};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};
use std::sync::{Mutex, MutexGuard};

pub use ferry_sys as sys;

mod weights;
pub use weights::{DefinedGroup, LoadOptions, LoadReport, Weights, WeightsTensor};

// ----------------------------------------------------------------------------------------
// Status and errors
// ----------------------------------------------------------------------------------------

/// Every status of `ferry.h`, plus [`Status::Unknown`] for codes added by a newer library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    Ok,
    InvalidArgument,
    InvalidHandle,
    ForeignHandle,
    StaleHandle,
    WrongPhase,
    InvalidSize,
    SizeTooLarge,
    BudgetTooSmall,
    DuplicateName,
    NotAcquired,
    NoFreeSlot,
    GroupBusy,
    Empty,
    OutOfRange,
    OutOfHostMemory,
    OutOfDeviceMemory,
    BackendUnavailable,
    Device,
    Internal,
    /// Verify mode found frozen bytes changed on the device.
    VerifyFailed,
    /// acquire or release on a stream that is capturing a CUDA graph.
    StreamCapturing,
    /// A weights file (or a shard its index names) could not be opened or read.
    Io,
    /// A weights file is shorter than its header says.
    FileTruncated,
    /// A malformed weights file (header, offsets, shapes, dtypes, names).
    FileFormat,
    /// Defined tensors and the files disagree; the message lists every difference.
    WeightsMismatch,
    /// A weights file was modified or replaced after it was opened.
    FileChanged,
    /// The tensor's bytes are on the disk tier: use [`Runtime::copy_out`].
    NotInMemory,
    /// The shared host store cannot be used: another user's, corrupt, or a timed-out wait.
    HostShare,
    /// The shared host store holds another layout; the message names the first difference.
    HostShareLayout,
    /// A code this crate does not know (a newer library).
    Unknown(u32),
}

impl Status {
    pub fn from_raw(raw: sys::ferry_status) -> Status {
        match raw {
            sys::FERRY_OK => Status::Ok,
            sys::FERRY_ERROR_INVALID_ARGUMENT => Status::InvalidArgument,
            sys::FERRY_ERROR_INVALID_HANDLE => Status::InvalidHandle,
            sys::FERRY_ERROR_FOREIGN_HANDLE => Status::ForeignHandle,
            sys::FERRY_ERROR_STALE_HANDLE => Status::StaleHandle,
            sys::FERRY_ERROR_WRONG_PHASE => Status::WrongPhase,
            sys::FERRY_ERROR_INVALID_SIZE => Status::InvalidSize,
            sys::FERRY_ERROR_SIZE_TOO_LARGE => Status::SizeTooLarge,
            sys::FERRY_ERROR_BUDGET_TOO_SMALL => Status::BudgetTooSmall,
            sys::FERRY_ERROR_DUPLICATE_NAME => Status::DuplicateName,
            sys::FERRY_ERROR_NOT_ACQUIRED => Status::NotAcquired,
            sys::FERRY_ERROR_NO_FREE_SLOT => Status::NoFreeSlot,
            sys::FERRY_ERROR_GROUP_BUSY => Status::GroupBusy,
            sys::FERRY_ERROR_EMPTY => Status::Empty,
            sys::FERRY_ERROR_OUT_OF_RANGE => Status::OutOfRange,
            sys::FERRY_ERROR_OUT_OF_HOST_MEMORY => Status::OutOfHostMemory,
            sys::FERRY_ERROR_OUT_OF_DEVICE_MEMORY => Status::OutOfDeviceMemory,
            sys::FERRY_ERROR_BACKEND_UNAVAILABLE => Status::BackendUnavailable,
            sys::FERRY_ERROR_DEVICE => Status::Device,
            sys::FERRY_ERROR_INTERNAL => Status::Internal,
            sys::FERRY_ERROR_VERIFY_FAILED => Status::VerifyFailed,
            sys::FERRY_ERROR_STREAM_CAPTURING => Status::StreamCapturing,
            sys::FERRY_ERROR_IO => Status::Io,
            sys::FERRY_ERROR_FILE_TRUNCATED => Status::FileTruncated,
            sys::FERRY_ERROR_FILE_FORMAT => Status::FileFormat,
            sys::FERRY_ERROR_WEIGHTS_MISMATCH => Status::WeightsMismatch,
            sys::FERRY_ERROR_FILE_CHANGED => Status::FileChanged,
            sys::FERRY_ERROR_NOT_IN_MEMORY => Status::NotInMemory,
            sys::FERRY_ERROR_HOST_SHARE => Status::HostShare,
            sys::FERRY_ERROR_HOST_SHARE_LAYOUT => Status::HostShareLayout,
            other => Status::Unknown(other),
        }
    }

    pub fn to_raw(self) -> sys::ferry_status {
        match self {
            Status::Ok => sys::FERRY_OK,
            Status::InvalidArgument => sys::FERRY_ERROR_INVALID_ARGUMENT,
            Status::InvalidHandle => sys::FERRY_ERROR_INVALID_HANDLE,
            Status::ForeignHandle => sys::FERRY_ERROR_FOREIGN_HANDLE,
            Status::StaleHandle => sys::FERRY_ERROR_STALE_HANDLE,
            Status::WrongPhase => sys::FERRY_ERROR_WRONG_PHASE,
            Status::InvalidSize => sys::FERRY_ERROR_INVALID_SIZE,
            Status::SizeTooLarge => sys::FERRY_ERROR_SIZE_TOO_LARGE,
            Status::BudgetTooSmall => sys::FERRY_ERROR_BUDGET_TOO_SMALL,
            Status::DuplicateName => sys::FERRY_ERROR_DUPLICATE_NAME,
            Status::NotAcquired => sys::FERRY_ERROR_NOT_ACQUIRED,
            Status::NoFreeSlot => sys::FERRY_ERROR_NO_FREE_SLOT,
            Status::GroupBusy => sys::FERRY_ERROR_GROUP_BUSY,
            Status::Empty => sys::FERRY_ERROR_EMPTY,
            Status::OutOfRange => sys::FERRY_ERROR_OUT_OF_RANGE,
            Status::OutOfHostMemory => sys::FERRY_ERROR_OUT_OF_HOST_MEMORY,
            Status::OutOfDeviceMemory => sys::FERRY_ERROR_OUT_OF_DEVICE_MEMORY,
            Status::BackendUnavailable => sys::FERRY_ERROR_BACKEND_UNAVAILABLE,
            Status::Device => sys::FERRY_ERROR_DEVICE,
            Status::Internal => sys::FERRY_ERROR_INTERNAL,
            Status::VerifyFailed => sys::FERRY_ERROR_VERIFY_FAILED,
            Status::StreamCapturing => sys::FERRY_ERROR_STREAM_CAPTURING,
            Status::Io => sys::FERRY_ERROR_IO,
            Status::FileTruncated => sys::FERRY_ERROR_FILE_TRUNCATED,
            Status::FileFormat => sys::FERRY_ERROR_FILE_FORMAT,
            Status::WeightsMismatch => sys::FERRY_ERROR_WEIGHTS_MISMATCH,
            Status::FileChanged => sys::FERRY_ERROR_FILE_CHANGED,
            Status::NotInMemory => sys::FERRY_ERROR_NOT_IN_MEMORY,
            Status::HostShare => sys::FERRY_ERROR_HOST_SHARE,
            Status::HostShareLayout => sys::FERRY_ERROR_HOST_SHARE_LAYOUT,
            Status::Unknown(raw) => raw,
        }
    }

    /// The library's description ("ok", "wrong phase", ...; "unknown status" for codes it
    /// does not know).
    pub fn description(self) -> &'static str {
        // Safety: ferry_status_string accepts any value and returns a static, never-NULL,
        // NUL-terminated string.
        let text = unsafe { CStr::from_ptr(sys::ferry_status_string(self.to_raw())) };
        text.to_str().unwrap_or("(status string is not UTF-8)")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// A failed ferry call: its status and the library's message (`ferry_last_error()`),
/// which names the call, the object and the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    /// An error for `status` with the calling thread's last-error message. Call it right
    /// after the failed call, on the same thread: the message is per thread and is
    /// replaced by the thread's next ferry call.
    fn last(status: sys::ferry_status) -> Error {
        // Safety: ferry_last_error takes no arguments and returns a NUL-terminated string
        // owned by the calling thread, valid until its next ferry call; it is copied
        // before any other call.
        let message = unsafe { CStr::from_ptr(sys::ferry_last_error()) };
        Error {
            status: Status::from_raw(status),
            message: message.to_string_lossy().into_owned(),
        }
    }

    /// An error found by this crate before calling the library.
    fn here(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// The status the library returned (never [`Status::Ok`]).
    pub fn status(&self) -> Status {
        self.status
    }

    /// The library's message for the failed call (may be empty).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "ferry: {}", self.status)
        } else {
            write!(f, "{} [{}]", self.message, self.status)
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn check(status: sys::ferry_status) -> Result<()> {
    if status == sys::FERRY_OK {
        Ok(())
    } else {
        Err(Error::last(status))
    }
}

fn c_name(what: &str, name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| {
        Error::here(
            Status::InvalidArgument,
            format!("{what} name {name:?} contains a NUL byte"),
        )
    })
}

// ----------------------------------------------------------------------------------------
// Small enums
// ----------------------------------------------------------------------------------------

/// The device backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// cuda when built and a device exists, else sim.
    #[default]
    Auto,
    Cuda,
    /// The device emulated in host memory.
    Sim,
}

impl Backend {
    pub fn to_raw(self) -> sys::ferry_backend {
        match self {
            Backend::Auto => sys::FERRY_BACKEND_AUTO,
            Backend::Cuda => sys::FERRY_BACKEND_CUDA,
            Backend::Sim => sys::FERRY_BACKEND_SIM,
        }
    }

    pub fn from_raw(raw: u32) -> Option<Backend> {
        match raw {
            sys::FERRY_BACKEND_AUTO => Some(Backend::Auto),
            sys::FERRY_BACKEND_CUDA => Some(Backend::Cuda),
            sys::FERRY_BACKEND_SIM => Some(Backend::Sim),
            _ => None,
        }
    }
}

/// The phase of a runtime: DEFINE -> (plan) -> PLANNED -> (seal) -> SEALED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Define,
    Planned,
    Sealed,
}

impl Phase {
    pub fn from_raw(raw: u32) -> Option<Phase> {
        match raw {
            sys::FERRY_PHASE_DEFINE => Some(Phase::Define),
            sys::FERRY_PHASE_PLANNED => Some(Phase::Planned),
            sys::FERRY_PHASE_SEALED => Some(Phase::Sealed),
            _ => None,
        }
    }
}

/// Element types carried with a tensor, for frameworks that build views of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DType {
    /// Raw bytes: the shape is not checked.
    #[default]
    Unknown,
    U8,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
    Bool,
}

impl DType {
    pub fn to_raw(self) -> sys::ferry_dtype {
        match self {
            DType::Unknown => sys::FERRY_DTYPE_UNKNOWN,
            DType::U8 => sys::FERRY_DTYPE_U8,
            DType::I8 => sys::FERRY_DTYPE_I8,
            DType::I16 => sys::FERRY_DTYPE_I16,
            DType::I32 => sys::FERRY_DTYPE_I32,
            DType::I64 => sys::FERRY_DTYPE_I64,
            DType::F16 => sys::FERRY_DTYPE_F16,
            DType::BF16 => sys::FERRY_DTYPE_BF16,
            DType::F32 => sys::FERRY_DTYPE_F32,
            DType::F64 => sys::FERRY_DTYPE_F64,
            DType::Bool => sys::FERRY_DTYPE_BOOL,
        }
    }

    /// The dtype of a raw value; `None` for a value this crate does not know.
    pub fn from_raw(raw: sys::ferry_dtype) -> Option<DType> {
        Some(match raw {
            sys::FERRY_DTYPE_UNKNOWN => DType::Unknown,
            sys::FERRY_DTYPE_U8 => DType::U8,
            sys::FERRY_DTYPE_I8 => DType::I8,
            sys::FERRY_DTYPE_I16 => DType::I16,
            sys::FERRY_DTYPE_I32 => DType::I32,
            sys::FERRY_DTYPE_I64 => DType::I64,
            sys::FERRY_DTYPE_F16 => DType::F16,
            sys::FERRY_DTYPE_BF16 => DType::BF16,
            sys::FERRY_DTYPE_F32 => DType::F32,
            sys::FERRY_DTYPE_F64 => DType::F64,
            sys::FERRY_DTYPE_BOOL => DType::Bool,
            _ => return None,
        })
    }

    /// Bytes per element; `None` for [`DType::Unknown`].
    pub fn size(self) -> Option<usize> {
        match self {
            DType::Unknown => None,
            DType::U8 | DType::I8 | DType::Bool => Some(1),
            DType::I16 | DType::F16 | DType::BF16 => Some(2),
            DType::I32 | DType::F32 => Some(4),
            DType::I64 | DType::F64 => Some(8),
        }
    }
}

/// The `FERRY_VERSION_*` string ("MAJOR.MINOR.PATCH") of the library actually loaded.
pub fn version() -> &'static str {
    // Safety: ferry_version takes no arguments and returns a static NUL-terminated string.
    let text = unsafe { CStr::from_ptr(sys::ferry_version()) };
    text.to_str().unwrap_or("(version is not UTF-8)")
}

/// `FERRY_VERSION_NUMBER` of the library actually loaded.
pub fn version_number() -> u32 {
    // Safety: no arguments, no preconditions.
    unsafe { sys::ferry_version_number() }
}

// ----------------------------------------------------------------------------------------
// Configuration
// ----------------------------------------------------------------------------------------

/// Builds a [`Runtime`]. Starts from the library's defaults (`ferry_config_init`); the
/// VRAM budget is required.
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    config: sys::ferry_config,
    name: Option<String>,
    host_share: Option<String>,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RuntimeBuilder {
    pub fn new() -> RuntimeBuilder {
        let mut config = std::mem::MaybeUninit::<sys::ferry_config>::zeroed();
        // Safety: ferry_config_init writes every field of the struct it is given; the
        // zeroed memory is a valid ferry_config (integers, doubles and a NULL pointer) in
        // any case.
        let config = unsafe {
            sys::ferry_config_init(config.as_mut_ptr());
            config.assume_init()
        };
        RuntimeBuilder {
            config,
            name: None,
            host_share: None,
        }
    }

    /// Bytes of VRAM ferry may hold (required, > 0).
    pub fn vram_budget(mut self, bytes: u64) -> Self {
        self.config.vram_budget = bytes;
        self
    }

    pub fn backend(mut self, backend: Backend) -> Self {
        self.config.backend = backend.to_raw();
        self
    }

    /// CUDA device ordinal (default 0).
    pub fn device(mut self, ordinal: i32) -> Self {
        self.config.device = ordinal;
        self
    }

    /// Streaming slots per size class, >= 2 (default 2): prefetch depth + 1.
    pub fn slots_per_class(mut self, slots: u32) -> Self {
        self.config.slots_per_class = slots;
        self
    }

    /// Copies on the caller's stream, no copy stream, no prefetch (default false).
    pub fn synchronous(mut self, synchronous: bool) -> Self {
        self.config.synchronous = i32::from(synchronous);
        self
    }

    /// The runtime's name (default "ferry").
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// The name of a host store shared with other processes of the same model (ferry.h,
    /// "Shared host store"): the first runtime of that name loads it, the others attach.
    pub fn host_share(mut self, name: &str) -> Self {
        self.host_share = Some(name.to_string());
        self
    }

    /// Longest wait in plan for another process to load the shared store (0: 30 min).
    pub fn host_share_timeout_ms(mut self, ms: u32) -> Self {
        self.config.host_share_timeout_ms = ms;
        self
    }

    /// sim: modeled host-to-device GB/s, 0 = unlimited.
    pub fn sim_h2d_gbps(mut self, gbps: f64) -> Self {
        self.config.sim_h2d_gbps = gbps;
        self
    }

    /// sim: modeled device-to-host GB/s, 0 = unlimited.
    pub fn sim_d2h_gbps(mut self, gbps: f64) -> Self {
        self.config.sim_d2h_gbps = gbps;
        self
    }

    /// sim: modeled cost of each copy call in microseconds.
    pub fn sim_latency_us(mut self, us: f64) -> Self {
        self.config.sim_latency_us = us;
        self
    }

    /// sim: random delays, and slot memory poisoned on reuse.
    pub fn sim_chaos(mut self, chaos: bool) -> Self {
        self.config.sim_chaos = i32::from(chaos);
        self
    }

    /// sim: seed of the chaos generator.
    pub fn sim_seed(mut self, seed: u64) -> Self {
        self.config.sim_seed = seed;
        self
    }

    /// Most host bytes ferry may pin (0: a safe share of RAM).
    pub fn pinned_cap_bytes(mut self, bytes: u64) -> Self {
        self.config.pinned_cap_bytes = bytes;
        self
    }

    /// Past the pinned cap, keep the rest pageable (or, loaded from weights files, on the
    /// disk tier) instead of failing plan.
    pub fn pageable_fallback(mut self, fallback: bool) -> Self {
        self.config.pageable_fallback = i32::from(fallback);
        self
    }

    /// Encode immutable bf16/f16 tensors at seal and decode them on the device at each
    /// onload (compressed streaming; `FERRY_COMPRESS` overrides).
    pub fn compress(mut self, compress: bool) -> Self {
        self.config.compress = i32::from(compress);
        self
    }

    /// The raw configuration as it stands (the name is applied at `build`).
    pub fn raw_config(&self) -> &sys::ferry_config {
        &self.config
    }

    /// Creates the runtime (phase DEFINE). The library validates every field and names a
    /// bad one in the error.
    pub fn build(self) -> Result<Runtime> {
        let mut config = self.config;
        let name = match &self.name {
            Some(name) => Some(c_name("runtime", name)?),
            None => None,
        };
        if let Some(name) = &name {
            config.name = name.as_ptr();
        }
        let share = match &self.host_share {
            Some(share) => Some(c_name("host share", share)?),
            None => None,
        };
        if let Some(share) = &share {
            config.host_share = share.as_ptr();
        }
        let mut raw = ptr::null_mut();
        // Safety: config is an initialised ferry_config whose name and host_share (if any)
        // point to CStrings alive for the call (the library copies them); raw is a valid
        // out pointer.
        check(unsafe { sys::ferry_create(&config, &mut raw) })?;
        let raw = NonNull::new(raw).ok_or_else(|| {
            Error::here(
                Status::Internal,
                "ferry_create returned OK and a NULL runtime",
            )
        })?;
        let mut runtime = Runtime {
            raw,
            backend: Backend::Auto,
            lent: Mutex::new(Vec::new()),
            shared: Mutex::new(Vec::new()),
            destroyed: false,
        };
        let stats = runtime.stats()?;
        runtime.backend = stats.backend;
        Ok(runtime)
    }
}

// ----------------------------------------------------------------------------------------
// Handles
// ----------------------------------------------------------------------------------------

/// A group of a runtime: the unit of onload. A plain value that cannot outlive its
/// runtime.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Group<'rt> {
    raw: sys::ferry_group,
    _runtime: PhantomData<&'rt Runtime>,
}

impl<'rt> Group<'rt> {
    /// Wraps a raw handle. Safe: the library checks every handle it is given (wrong kind,
    /// another runtime's, a destroyed runtime's) and fails the call.
    pub fn from_raw(_runtime: &'rt Runtime, raw: sys::ferry_group) -> Group<'rt> {
        Group {
            raw,
            _runtime: PhantomData,
        }
    }

    pub fn raw(self) -> sys::ferry_group {
        self.raw
    }
}

impl fmt::Debug for Group<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Group({:#x})", self.raw.id)
    }
}

/// A tensor of a runtime: a named byte range of a group. Carries its group, size and
/// mutability (the C API has no query for them), so that byte views have the right
/// length.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tensor<'rt> {
    raw: sys::ferry_tensor,
    group: sys::ferry_group,
    bytes: u64,
    mutable: bool,
    _runtime: PhantomData<&'rt Runtime>,
}

impl<'rt> Tensor<'rt> {
    /// Wraps a raw handle.
    ///
    /// # Safety
    /// `raw` must be a tensor of `group` defined with exactly `bytes` bytes and, when
    /// `mutable` is false, without `FERRY_TENSOR_MUTABLE`: byte views are built from them.
    pub unsafe fn from_raw(
        _runtime: &'rt Runtime,
        raw: sys::ferry_tensor,
        group: Group<'rt>,
        bytes: u64,
        mutable: bool,
    ) -> Tensor<'rt> {
        Tensor {
            raw,
            group: group.raw,
            bytes,
            mutable,
            _runtime: PhantomData,
        }
    }

    pub fn raw(self) -> sys::ferry_tensor {
        self.raw
    }

    pub fn group(self) -> Group<'rt> {
        Group {
            raw: self.group,
            _runtime: PhantomData,
        }
    }

    pub fn bytes(self) -> u64 {
        self.bytes
    }

    pub fn is_mutable(self) -> bool {
        self.mutable
    }

    fn len(self) -> Result<usize> {
        usize::try_from(self.bytes).map_err(|_| {
            Error::here(
                Status::SizeTooLarge,
                "tensor bytes exceed this platform's usize",
            )
        })
    }
}

impl fmt::Debug for Tensor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("id", &format_args!("{:#x}", self.raw.id))
            .field("group", &format_args!("{:#x}", self.group.id))
            .field("bytes", &self.bytes)
            .field("mutable", &self.mutable)
            .finish()
    }
}

/// Optional properties of a tensor: dtype and shape (checked against its bytes when both
/// are given) and mutability.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TensorOptions {
    pub dtype: DType,
    pub shape: Vec<i64>,
    /// May be written on the device; written back on eviction, synchronize and destroy.
    pub mutable: bool,
}

impl TensorOptions {
    pub fn new() -> TensorOptions {
        TensorOptions::default()
    }

    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    pub fn shape(mut self, shape: &[i64]) -> Self {
        self.shape = shape.to_vec();
        self
    }

    pub fn mutable(mut self, mutable: bool) -> Self {
        self.mutable = mutable;
        self
    }
}

/// What the planner decided for a group. More fields may come: not built outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// Kept on the device for the runtime's life.
    pub resident: bool,
    /// The group's size class; `None` when resident.
    pub size_class: Option<u32>,
    /// Bytes of the group's image (tensors at 256-byte-aligned offsets).
    pub image_bytes: u64,
    /// Bytes kept on the device for good: `image_bytes` when resident, the head of a
    /// group the planner split (its tail streams), 0 when streamed whole.
    pub resident_bytes: u64,
}

/// The runtime's counters (`ferry_stats`). Totals since create.
/// Invariant: `acquires == resident_hits + hits + misses`.
///
/// [`sys::ferry_stats`] field for field, with `backend` and `phase` as enums and without
/// `struct_size` (the raw struct stays reachable through `ferry::sys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// The backend actually used (Cuda or Sim).
    pub backend: Backend,
    pub phase: Phase,
    pub bytes_h2d: u64,
    /// Device-to-host bytes: writebacks of mutable tensors only.
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
    /// Host store bytes left pageable past the pinned cap.
    pub host_pageable_bytes: u64,
    /// ... of which on the disk tier: read from the weights files at each onload.
    pub host_disk_bytes: u64,
    /// Bytes read from weights files at onload (disk tier).
    pub bytes_disk_read: u64,
    /// Groups whose host image is compressed (`compress`).
    pub compressed_groups: u64,
    /// Host store bytes of their compressed images.
    pub host_compressed_bytes: u64,
    /// ... and of the raw images they stand for.
    pub host_compressed_raw_bytes: u64,
    /// Of `bytes_h2d`, compressed images.
    pub bytes_h2d_compressed: u64,
    /// Raw bytes the device decoded them into.
    pub bytes_decoded: u64,
    /// Decodes of compressed images on the device.
    pub decodes: u64,
    /// VRAM staging area for compressed images, within the budget, outside `slab_bytes`.
    pub slab_staging_bytes: u64,
    /// `plan`: nanoseconds spent allocating and pinning the host store (wall time).
    pub host_pin_ns: u64,
    /// `seal`: nanoseconds spent encoding compressed images (wall time).
    pub encode_ns: u64,
}

impl Stats {
    fn from_raw(s: &sys::ferry_stats) -> Result<Stats> {
        // Every field named, no `..`: a field added to ferry_stats does not compile until
        // Stats mirrors it.
        let sys::ferry_stats {
            struct_size: _,
            backend,
            phase,
            bytes_h2d,
            bytes_d2h,
            onloads,
            acquires,
            releases,
            resident_hits,
            hits,
            misses,
            prefetches_issued,
            prefetches_used,
            prefetches_wasted,
            writebacks,
            passes,
            groups,
            resident_groups,
            size_classes,
            streaming_slots,
            model_bytes,
            streamed_bytes_per_pass,
            vram_budget,
            slab_bytes,
            slab_resident_bytes,
            slab_streaming_bytes,
            slab_used_bytes,
            slab_used_peak_bytes,
            host_pinned_bytes,
            host_pinned_peak_bytes,
            stall_ns,
            writebacks_skipped,
            verify_checks,
            verify_failures,
            host_pageable_bytes,
            host_disk_bytes,
            bytes_disk_read,
            compressed_groups,
            host_compressed_bytes,
            host_compressed_raw_bytes,
            bytes_h2d_compressed,
            bytes_decoded,
            decodes,
            slab_staging_bytes,
            host_pin_ns,
            encode_ns,
        } = *s;
        let backend = Backend::from_raw(backend).ok_or_else(|| {
            Error::here(
                Status::Internal,
                format!("ferry_stats_get: unknown backend {backend}"),
            )
        })?;
        let phase = Phase::from_raw(phase).ok_or_else(|| {
            Error::here(
                Status::Internal,
                format!("ferry_stats_get: unknown phase {phase}"),
            )
        })?;
        Ok(Stats {
            backend,
            phase,
            bytes_h2d,
            bytes_d2h,
            onloads,
            acquires,
            releases,
            resident_hits,
            hits,
            misses,
            prefetches_issued,
            prefetches_used,
            prefetches_wasted,
            writebacks,
            passes,
            groups,
            resident_groups,
            size_classes,
            streaming_slots,
            model_bytes,
            streamed_bytes_per_pass,
            vram_budget,
            slab_bytes,
            slab_resident_bytes,
            slab_streaming_bytes,
            slab_used_bytes,
            slab_used_peak_bytes,
            host_pinned_bytes,
            host_pinned_peak_bytes,
            stall_ns,
            writebacks_skipped,
            verify_checks,
            verify_failures,
            host_pageable_bytes,
            host_disk_bytes,
            bytes_disk_read,
            compressed_groups,
            host_compressed_bytes,
            host_compressed_raw_bytes,
            bytes_h2d_compressed,
            bytes_decoded,
            decodes,
            slab_staging_bytes,
            host_pin_ns,
            encode_ns,
        })
    }
}

// ----------------------------------------------------------------------------------------
// Runtime
// ----------------------------------------------------------------------------------------

/// One ferry runtime (one per process and device). Destroyed on drop: in-flight work is
/// waited for and dirty mutable tensors are written back.
pub struct Runtime {
    raw: NonNull<sys::ferry_runtime>,
    backend: Backend,
    /// Tensors whose host bytes are lent out as a [`HostBytes`] right now. Taken by every
    /// call that writes host bytes (copy-in, seal) so none runs while a view is alive.
    lent: Mutex<Vec<u64>>,
    /// Tensors whose host bytes `host_bytes` lent out as a `&[u8]`, which may live as long
    /// as the runtime is borrowed: `update` refuses them, so no shared slice sees a write.
    shared: Mutex<Vec<u64>>,
    /// Set by close(), so that Drop does not destroy twice.
    destroyed: bool,
}

// Safety: ferry.h allows a runtime to be used from any thread; nothing in it is tied to the
// thread that created it. The one call that must not race, ferry_destroy, runs only in
// Drop/close, which take the Runtime by value or `&mut`, so no other call is in flight.
unsafe impl Send for Runtime {}
// Safety: ferry.h: "a runtime may be used from several threads at once. Every call that
// takes a runtime takes its one internal lock"; the calls made through `&Runtime` are all
// of those, never ferry_destroy. The Rust-side state (`lent`) is behind a Mutex, and the
// per-thread last-error message is read on the thread that made the failed call.
unsafe impl Sync for Runtime {}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("raw", &self.raw)
            .field("backend", &self.backend)
            .finish()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.destroyed {
            return;
        }
        // Safety: self.raw came from ferry_create and was not destroyed (close() sets
        // `destroyed`); `&mut self` means no other call is running and no handle, guard or
        // view borrows the runtime any more.
        let _ = unsafe { sys::ferry_destroy(self.raw.as_ptr()) };
    }
}

impl Runtime {
    /// A builder for the configuration; `build()` creates the runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::new()
    }

    /// The raw runtime pointer, for calls this crate does not wrap. Using it is `unsafe`
    /// (ferry-sys); it must not be destroyed.
    pub fn as_raw(&self) -> *mut sys::ferry_runtime {
        self.raw.as_ptr()
    }

    /// The backend actually used (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Destroys the runtime now and reports the library's status (Drop ignores it).
    pub fn close(mut self) -> Result<()> {
        // Safety: self.raw came from ferry_create; self is owned, so no other call is in
        // flight and nothing borrows the runtime; `destroyed` stops Drop from destroying
        // it again.
        let status = unsafe { sys::ferry_destroy(self.raw.as_ptr()) };
        self.destroyed = true;
        check(status)
    }

    fn lent_lock(&self) -> MutexGuard<'_, Vec<u64>> {
        // A panic while the lock was held cannot leave the Vec inconsistent.
        self.lent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shared_lock(&self) -> MutexGuard<'_, Vec<u64>> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn phase(&self) -> Result<Phase> {
        let mut raw = 0;
        // Safety: self.raw is a live runtime; raw is a valid out pointer.
        check(unsafe { sys::ferry_phase_get(self.raw.as_ptr(), &mut raw) })?;
        Phase::from_raw(raw)
            .ok_or_else(|| Error::here(Status::Internal, format!("unknown phase {raw}")))
    }

    /// DEFINE. Names are unique per runtime, 1..255 bytes.
    pub fn define_group(&self, name: &str) -> Result<Group<'_>> {
        let name = c_name("group", name)?;
        let mut raw = sys::ferry_group::default();
        // Safety: self.raw is a live runtime, name a NUL-terminated string alive for the
        // call (the library copies it), raw a valid out pointer.
        check(unsafe { sys::ferry_group_define(self.raw.as_ptr(), name.as_ptr(), &mut raw) })?;
        Ok(Group {
            raw,
            _runtime: PhantomData,
        })
    }

    /// DEFINE. Asks the planner to keep `group` resident before any other: for a group
    /// held while others are acquired. When the budget cannot hold the preferred groups
    /// and the streaming slots, they are planned like the others.
    pub fn prefer_resident(&self, group: Group<'_>) -> Result<()> {
        // Safety: self.raw is a live runtime; the handle is checked by the library.
        check(unsafe { sys::ferry_group_prefer_resident(self.raw.as_ptr(), group.raw) })
    }

    /// DEFINE or PLANNED. The device time one acquire of `group` computes for, for the
    /// compute-aware planner: declared for every group before `plan`, it is used at once;
    /// otherwise ferry times the first pass and re-plans once.
    pub fn declare_compute(&self, group: Group<'_>, nanoseconds: u64) -> Result<()> {
        // Safety: self.raw is a live runtime; the handle is checked by the library.
        check(unsafe {
            sys::ferry_group_compute_declare(self.raw.as_ptr(), group.raw, nanoseconds)
        })
    }

    /// DEFINE. An immutable tensor of raw bytes.
    pub fn define_tensor(&self, group: Group<'_>, name: &str, bytes: u64) -> Result<Tensor<'_>> {
        self.define_tensor_with(group, name, bytes, &TensorOptions::default())
    }

    /// DEFINE. A tensor with a dtype, shape and mutability.
    pub fn define_tensor_with(
        &self,
        group: Group<'_>,
        name: &str,
        bytes: u64,
        options: &TensorOptions,
    ) -> Result<Tensor<'_>> {
        let name = c_name("tensor", name)?;
        let ndim = u32::try_from(options.shape.len())
            .map_err(|_| Error::here(Status::InvalidArgument, "too many dimensions"))?;
        let shape = if options.shape.is_empty() {
            ptr::null()
        } else {
            options.shape.as_ptr()
        };
        let flags = if options.mutable {
            sys::FERRY_TENSOR_MUTABLE
        } else {
            0
        };
        let mut raw = sys::ferry_tensor::default();
        // Safety: self.raw is a live runtime; name is NUL-terminated and shape points to
        // ndim i64 values (or is NULL with ndim 0), both alive for the call and copied by
        // the library; raw is a valid out pointer.
        check(unsafe {
            sys::ferry_tensor_define(
                self.raw.as_ptr(),
                group.raw,
                name.as_ptr(),
                bytes,
                options.dtype.to_raw(),
                ndim,
                shape,
                flags,
                &mut raw,
            )
        })?;
        Ok(Tensor {
            raw,
            group: group.raw,
            bytes,
            mutable: options.mutable,
            _runtime: PhantomData,
        })
    }

    /// DEFINE or PLANNED. The order in which groups are acquired in one pass (a group may
    /// appear more than once). Without one, the order of the first pass is learned.
    pub fn declare_schedule(&self, order: &[Group<'_>]) -> Result<()> {
        let raw: Vec<sys::ferry_group> = order.iter().map(|g| g.raw).collect();
        // Safety: self.raw is a live runtime; raw holds raw.len() handles, alive for the
        // call.
        check(unsafe { sys::ferry_schedule_declare(self.raw.as_ptr(), raw.as_ptr(), raw.len()) })
    }

    /// DEFINE -> PLANNED: layout, residency, size classes, the pinned host arena and the
    /// VRAM slab.
    pub fn plan(&self) -> Result<()> {
        // Safety: self.raw is a live runtime.
        check(unsafe { sys::ferry_plan(self.raw.as_ptr()) })
    }

    /// PLANNED. Copies `src` into the tensor's host bytes at `offset`.
    pub fn copy_in(&self, tensor: Tensor<'_>, offset: u64, src: &[u8]) -> Result<()> {
        let lent = self.lent_lock();
        if lent.contains(&tensor.raw.id) {
            return Err(Error::here(
                Status::WrongPhase,
                "copy_in: the tensor's host bytes are lent out as a HostBytes view",
            ));
        }
        // Safety: self.raw is a live runtime; src is valid for src.len() bytes. The library
        // checks phase, handle and range, so it writes only inside the tensor's host bytes,
        // and no HostBytes view of this tensor exists (checked under the lock that views
        // are created under).
        let status = unsafe {
            sys::ferry_tensor_copy_in(
                self.raw.as_ptr(),
                tensor.raw,
                offset,
                src.as_ptr().cast(),
                src.len() as u64,
            )
        };
        drop(lent);
        check(status)
    }

    /// SEALED, the tensor's group not acquired. Replaces `src.len()` bytes of an immutable
    /// tensor at `offset` (a LoRA fused into a weight), without a reload and without a
    /// byte copied device-to-host: resident and split copies are rewritten in stream
    /// order, a streamed group's slot is emptied, and the next acquire sees the new bytes
    /// (ferry.h, `ferry_tensor_update`). [`Status::GroupBusy`] while the group is acquired,
    /// [`Status::WrongPhase`] before seal (use [`Runtime::copy_in`]),
    /// [`Status::InvalidArgument`] for a mutable tensor, or for one whose bytes
    /// [`Runtime::host_bytes`] lent out as a `&[u8]` (read those with `copy_out` instead),
    /// [`Status::OutOfRange`] past its end.
    pub fn update(&self, tensor: Tensor<'_>, offset: u64, src: &[u8]) -> Result<()> {
        let shared = self.shared_lock();
        if shared.contains(&tensor.raw.id) {
            return Err(Error::here(
                Status::InvalidArgument,
                "update: host_bytes lent this tensor's host bytes out as a &[u8], which \
                 must not change while the runtime is borrowed; read a tensor that is \
                 updated with copy_out or read instead",
            ));
        }
        // Safety: self.raw is a live runtime; src is valid for src.len() bytes. The library
        // checks phase, handle, range and that the group is not acquired, so it writes only
        // the tensor's host bytes (read-only again when it returns) and device copies no
        // holder can see; no `&[u8]` of those host bytes exists (checked under the lock
        // host_bytes lends them under).
        let status = unsafe {
            sys::ferry_tensor_update(
                self.raw.as_ptr(),
                tensor.raw,
                offset,
                src.as_ptr().cast(),
                src.len() as u64,
            )
        };
        drop(shared);
        check(status)
    }

    /// PLANNED. A writable view of the tensor's host bytes, to load it in place. One view
    /// per tensor at a time; `seal` fails while any view is alive.
    pub fn host_bytes_mut(&self, tensor: Tensor<'_>) -> Result<HostBytes<'_>> {
        let mut lent = self.lent_lock();
        // Under the lock, the phase cannot change (seal takes the same lock).
        let phase = self.phase()?;
        if phase != Phase::Planned {
            return Err(Error::here(
                Status::WrongPhase,
                format!(
                    "host_bytes_mut: host bytes are writable only in phase PLANNED, \
                     not {phase:?}"
                ),
            ));
        }
        if lent.contains(&tensor.raw.id) {
            return Err(Error::here(
                Status::InvalidArgument,
                "host_bytes_mut: the tensor's host bytes are already lent out",
            ));
        }
        let len = tensor.len()?;
        let ptr = self.host_ptr(tensor)?;
        lent.push(tensor.raw.id);
        Ok(HostBytes {
            runtime: self,
            id: tensor.raw.id,
            ptr,
            len,
        })
    }

    /// SEALED, immutable tensors only. The tensor's host bytes, read-only from seal on.
    pub fn host_bytes(&self, tensor: Tensor<'_>) -> Result<&[u8]> {
        if tensor.mutable {
            return Err(Error::here(
                Status::InvalidArgument,
                "host_bytes: a mutable tensor's host bytes may be rewritten by writebacks",
            ));
        }
        let phase = self.phase()?;
        if phase != Phase::Sealed {
            return Err(Error::here(
                Status::WrongPhase,
                format!("host_bytes: immutable host bytes are read-only only once SEALED, not {phase:?}"),
            ));
        }
        let len = tensor.len()?;
        let mut shared = self.shared_lock();
        let ptr = self.host_ptr(tensor)?;
        if !shared.contains(&tensor.raw.id) {
            shared.push(tensor.raw.id);
        }
        // Safety: ptr points to the tensor's `len` host bytes (tensor carries the size it
        // was defined with). The runtime is SEALED (phases only move forward), so these
        // immutable bytes are read-only; the one call that writes them, ferry_tensor_update,
        // is refused by `update` for tensors in `shared` (pushed here under the same lock
        // update holds for its call), and ferry_destroy cannot run while `&self` is
        // borrowed by the returned slice.
        Ok(unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) })
    }

    fn host_ptr(&self, tensor: Tensor<'_>) -> Result<NonNull<u8>> {
        let mut out = ptr::null_mut();
        // Safety: self.raw is a live runtime; out is a valid out pointer.
        check(unsafe { sys::ferry_tensor_host_ptr(self.raw.as_ptr(), tensor.raw, &mut out) })?;
        NonNull::new(out.cast()).ok_or_else(|| {
            Error::here(
                Status::Internal,
                "ferry_tensor_host_ptr returned OK and NULL",
            )
        })
    }

    /// PLANNED -> SEALED: immutable images become read-only, resident groups are onloaded.
    /// Fails while a [`HostBytes`] view is alive.
    pub fn seal(&self) -> Result<()> {
        let lent = self.lent_lock();
        if !lent.is_empty() {
            return Err(Error::here(
                Status::WrongPhase,
                format!(
                    "seal: host bytes of {} tensor(s) are still lent out",
                    lent.len()
                ),
            ));
        }
        // Safety: self.raw is a live runtime. No writable view of host bytes exists, and
        // none can be made while the lock is held, so making the images read-only cannot
        // invalidate a live `&mut [u8]`.
        let status = unsafe { sys::ferry_seal(self.raw.as_ptr()) };
        drop(lent);
        check(status)
    }

    /// SEALED. Makes the group's bytes available; returns once they are in place on sim,
    /// and on cuda orders them before work on the legacy default stream. The group is
    /// released when the returned guard is dropped.
    pub fn acquire(&self, group: Group<'_>) -> Result<Acquired<'_>> {
        // Safety: a NULL stream is valid on every backend (the legacy default stream on
        // cuda, the calling thread on sim).
        unsafe { self.acquire_on(group, ptr::null_mut()) }
    }

    /// SEALED. Like [`Runtime::acquire`], on a caller's stream; the guard releases on the
    /// same stream.
    ///
    /// # Safety
    /// `stream` must be NULL or a stream valid for the runtime's backend and device (a
    /// `cudaStream_t` on cuda) that outlives the returned guard.
    pub unsafe fn acquire_on(&self, group: Group<'_>, stream: *mut c_void) -> Result<Acquired<'_>> {
        // Safety: self.raw is a live runtime; the caller vouches for stream.
        check(unsafe { sys::ferry_acquire(self.raw.as_ptr(), group.raw, stream) })?;
        Ok(Acquired {
            runtime: self,
            group: group.raw,
            stream,
            done: false,
        })
    }

    /// Any phase. Writes back dirty mutable tensors of groups not acquired and waits for
    /// ferry's copies ([`Status::GroupBusy`] if a group with mutable tensors is acquired).
    pub fn synchronize(&self) -> Result<()> {
        // Safety: self.raw is a live runtime.
        check(unsafe { sys::ferry_synchronize(self.raw.as_ptr()) })
    }

    /// Any phase. The counters.
    pub fn stats(&self) -> Result<Stats> {
        let mut raw = sys::ferry_stats {
            struct_size: std::mem::size_of::<sys::ferry_stats>(),
            ..Default::default()
        };
        // Safety: self.raw is a live runtime; raw is a ferry_stats with struct_size set.
        check(unsafe { sys::ferry_stats_get(self.raw.as_ptr(), &mut raw) })?;
        Stats::from_raw(&raw)
    }

    /// After plan. What the planner decided for the group.
    pub fn group_info(&self, group: Group<'_>) -> Result<GroupInfo> {
        let (mut resident, mut size_class, mut image_bytes) = (0i32, 0i32, 0u64);
        // Safety: self.raw is a live runtime; the three out pointers are valid.
        check(unsafe {
            sys::ferry_group_info(
                self.raw.as_ptr(),
                group.raw,
                &mut resident,
                &mut size_class,
                &mut image_bytes,
            )
        })?;
        let mut resident_bytes = 0u64;
        // Safety: as above; one valid out pointer.
        check(unsafe {
            sys::ferry_group_resident_bytes(self.raw.as_ptr(), group.raw, &mut resident_bytes)
        })?;
        Ok(GroupInfo {
            resident: resident != 0,
            size_class: u32::try_from(size_class).ok(),
            image_bytes,
            resident_bytes,
        })
    }

    /// Any phase. Records ferry's timeline (Chrome trace-event JSON, for Perfetto) into a
    /// ring of `capacity` events (0: [`sys::FERRY_TRACE_DEFAULT_EVENTS`]), discarding any
    /// earlier trace.
    pub fn trace_start(&self, capacity: u32) -> Result<()> {
        // Safety: self.raw is a live runtime.
        check(unsafe { sys::ferry_trace_start(self.raw.as_ptr(), capacity) })
    }

    /// Any phase. Stops recording; the events so far stay for [`Runtime::trace_dump`].
    pub fn trace_stop(&self) -> Result<()> {
        // Safety: self.raw is a live runtime.
        check(unsafe { sys::ferry_trace_stop(self.raw.as_ptr()) })
    }

    /// After [`Runtime::trace_start`]. Writes the events recorded so far to `path`. Call
    /// [`Runtime::synchronize`] first to include copies still in flight.
    pub fn trace_dump(&self, path: &std::path::Path) -> Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            Error::here(
                Status::InvalidArgument,
                format!("trace path {path:?} contains a NUL byte"),
            )
        })?;
        // Safety: self.raw is a live runtime; path is a NUL-terminated string alive for the
        // call (the library does not keep it).
        check(unsafe { sys::ferry_trace_dump(self.raw.as_ptr(), path.as_ptr()) })
    }
}

// ----------------------------------------------------------------------------------------
// Guards
// ----------------------------------------------------------------------------------------

/// A writable view of a tensor's host bytes (PLANNED only). Dropping it ends the loan.
pub struct HostBytes<'rt> {
    runtime: &'rt Runtime,
    id: u64,
    ptr: NonNull<u8>,
    len: usize,
}

// Safety: the view is plain host memory owned by the runtime, which stays alive and in
// phase PLANNED (seal fails while the view exists) for the view's life; no other view of the
// same bytes exists and copy_in refuses them, so moving the view to another thread (say, to
// load tensors in parallel) moves the only access to them.
unsafe impl Send for HostBytes<'_> {}
// Safety: `&HostBytes` only reads the bytes (as `&[u8]`), and the exclusive loan means no
// one writes them meanwhile.
unsafe impl Sync for HostBytes<'_> {}

impl Deref for HostBytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // Safety: ptr points to len writable host bytes of a live runtime in phase PLANNED;
        // this view holds the only loan of them (see Runtime::host_bytes_mut).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for HostBytes<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // Safety: as in deref; `&mut self` makes this the only reference to the bytes, and
        // they stay writable because seal fails while the view exists.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HostBytes<'_> {
    fn drop(&mut self) {
        let mut lent = self.runtime.lent_lock();
        if let Some(i) = lent.iter().position(|&id| id == self.id) {
            lent.swap_remove(i);
        }
    }
}

impl fmt::Debug for HostBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostBytes({:#x}, {} bytes)", self.id, self.len)
    }
}

/// An acquired group. Dropping it releases the group (on the stream it was acquired on);
/// [`Acquired::release`] does the same and reports the status.
pub struct Acquired<'rt> {
    runtime: &'rt Runtime,
    group: sys::ferry_group,
    stream: *mut c_void,
    done: bool,
}

// Safety: ferry.h does not tie a release to the thread that acquired: any thread may call
// ferry_release on the runtime (a Sync Runtime), and the stream is a device queue
// (cudaStream_t), usable from any thread, or NULL. On sim a NULL stream stands for the
// calling thread's work, which the move of the guard orders before the release.
unsafe impl Send for Acquired<'_> {}
// Safety: `&Acquired` only makes locked, read-only library calls (device pointers) and
// reads immutable device bytes that cannot change while the group is held.
unsafe impl Sync for Acquired<'_> {}

impl<'rt> Acquired<'rt> {
    pub fn group(&self) -> Group<'rt> {
        Group {
            raw: self.group,
            _runtime: PhantomData,
        }
    }

    fn check_member(&self, tensor: Tensor<'_>) -> Result<()> {
        if tensor.group != self.group {
            return Err(Error::here(
                Status::NotAcquired,
                format!(
                    "tensor {:#x} belongs to group {:#x}, not to the acquired group {:#x}",
                    tensor.raw.id, tensor.group.id, self.group.id
                ),
            ));
        }
        Ok(())
    }

    /// The tensor's device address (the tensor must belong to this group). Valid while the
    /// guard lives; on cuda it is device memory, not readable from the host.
    pub fn device_ptr(&self, tensor: Tensor<'_>) -> Result<*mut c_void> {
        self.check_member(tensor)?;
        let mut out = ptr::null_mut();
        // Safety: the runtime is live (borrowed), out is a valid out pointer.
        check(unsafe {
            sys::ferry_tensor_device_ptr(self.runtime.raw.as_ptr(), tensor.raw, &mut out)
        })?;
        Ok(out)
    }

    /// Sim backend only, immutable tensors only, groups acquired with
    /// [`Runtime::acquire`] only: the tensor's "device" bytes, which on sim are host
    /// memory. For checking what was streamed.
    pub fn sim_device_bytes(&self, tensor: Tensor<'_>) -> Result<&[u8]> {
        if self.runtime.backend != Backend::Sim {
            return Err(Error::here(
                Status::InvalidArgument,
                "sim_device_bytes: device memory is host-readable on the sim backend only",
            ));
        }
        if !self.stream.is_null() {
            return Err(Error::here(
                Status::InvalidArgument,
                "sim_device_bytes: only for groups acquired with acquire() (the calling \
                 thread), whose bytes are in place when it returns",
            ));
        }
        if tensor.mutable {
            return Err(Error::here(
                Status::InvalidArgument,
                "sim_device_bytes: a mutable tensor's device bytes may be written by its holders",
            ));
        }
        let len = tensor.len()?;
        let ptr = self.device_ptr(tensor)?;
        if ptr.is_null() {
            return Err(Error::here(
                Status::Internal,
                "ferry_tensor_device_ptr returned NULL",
            ));
        }
        // Safety: on sim, device memory is ordinary host memory; ptr is the address of the
        // tensor's `len` bytes in the slot of this group, which this guard holds: the slot
        // is not reused (nor poisoned) until released, acquire with a NULL stream on sim
        // returned only once the bytes were in place, and immutable bytes are not written
        // while held (ferry_tensor_update refuses a group that is acquired). The slice
        // borrows the guard, so it ends before the release.
        Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
    }

    /// Releases the group now and reports the status.
    pub fn release(mut self) -> Result<()> {
        self.done = true;
        self.release_raw()
    }

    fn release_raw(&self) -> Result<()> {
        // Safety: the runtime is live (borrowed); stream is the one acquire was given,
        // valid per acquire_on's contract.
        check(unsafe { sys::ferry_release(self.runtime.raw.as_ptr(), self.group, self.stream) })
    }
}

impl Drop for Acquired<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.release_raw();
        }
    }
}

impl fmt::Debug for Acquired<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Acquired(group {:#x})", self.group.id)
    }
}
