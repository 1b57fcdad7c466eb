//! Safetensors weights files read straight into a runtime's host store.
//!
//! ```no_run
//! use ferry::{Backend, LoadOptions, Runtime, Weights};
//!
//! # fn main() -> ferry::Result<()> {
//! let weights = Weights::open("model/")?; // headers read and checked, no tensor bytes
//! let rt = Runtime::builder().backend(Backend::Sim).vram_budget(1 << 30).build()?;
//! let groups = rt.define_from(&weights, &["transformer_blocks."], 1, ferry::DType::Unknown)?;
//! rt.plan()?;
//! let report = rt.load(&weights, &LoadOptions::new())?;
//! rt.seal()?;
//! # let _ = (groups, report);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::ffi::{c_void, CStr, CString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};

use crate::{c_name, check, sys, DType, Error, Group, Result, Runtime, Status, Tensor};

/// One tensor of the files (`ferry_weights_tensor`), copied out of the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsTensor {
    /// Its full name in the files, e.g. "transformer_blocks.0.attn.to_q.weight".
    pub name: String,
    /// The file holding it.
    pub file: PathBuf,
    /// [`DType::Unknown`] for a safetensors dtype ferry has no enum for (raw bytes).
    pub dtype: DType,
    /// The header's dtype string: "BF16", "F8_E4M3", ...
    pub file_dtype: String,
    pub shape: Vec<i64>,
    pub bytes: u64,
    /// Of its first byte in the file.
    pub file_offset: u64,
}

/// A set of safetensors files (one file, the shards of an index, or a model folder),
/// opened with every header checked. Closed on drop. A runtime that reads from the files
/// at onload (disk tier) keeps them open itself, so the weights may be dropped once
/// loaded.
pub struct Weights {
    raw: NonNull<sys::ferry_weights>,
    path: PathBuf,
    tensors: Vec<WeightsTensor>,
    index: BTreeMap<String, usize>,
}

// Safety: a ferry_weights is immutable once opened and tied to no thread; moving it to
// another thread (and closing it there) is fine. It is not claimed Sync: ferry.h states
// no thread-safety for the weights calls, and this type makes none after open anyway.
unsafe impl Send for Weights {}

impl fmt::Debug for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Weights")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Drop for Weights {
    fn drop(&mut self) {
        // Safety: raw came from ferry_weights_open and is closed only here; `&mut self`
        // means nothing borrows it (runtimes keep their own reference in the library).
        let _ = unsafe { sys::ferry_weights_close(self.raw.as_ptr()) };
    }
}

fn c_path(path: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        Error::here(
            Status::InvalidArgument,
            format!("weights path {path:?} contains a NUL byte"),
        )
    })
}

/// A string of the library, copied. Safety: `ptr` is NULL or a NUL-terminated string
/// valid for the call.
unsafe fn owned(ptr: *const std::ffi::c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // Safety: the caller vouches for ptr.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

impl Weights {
    /// `ferry_weights_open`: a .safetensors file, a *.safetensors.index.json (its shards
    /// too), or a folder holding model.safetensors[.index.json] or
    /// diffusion_pytorch_model.safetensors[.index.json]. Reads and checks every header and
    /// no tensor byte: [`Status::Io`], [`Status::FileTruncated`] or [`Status::FileFormat`]
    /// with the file (and tensor) named.
    pub fn open(path: impl AsRef<Path>) -> Result<Weights> {
        let path = path.as_ref().to_path_buf();
        let c = c_path(&path)?;
        let mut raw = ptr::null_mut();
        // Safety: c is a NUL-terminated string alive for the call; raw a valid out pointer.
        check(unsafe { sys::ferry_weights_open(c.as_ptr(), &mut raw) })?;
        let raw = NonNull::new(raw).ok_or_else(|| {
            Error::here(Status::Internal, "ferry_weights_open returned OK and NULL")
        })?;
        let mut weights = Weights {
            raw,
            path,
            tensors: Vec::new(),
            index: BTreeMap::new(),
        };
        weights.read_tensors()?;
        Ok(weights)
    }

    fn read_tensors(&mut self) -> Result<()> {
        let mut count = 0u64;
        // Safety: raw is open; count a valid out pointer.
        check(unsafe { sys::ferry_weights_count(self.raw.as_ptr(), &mut count) })?;
        for i in 0..count {
            // Safety: all-zero bytes are a valid ferry_weights_tensor (NULL pointers and
            // integers); the library fills it.
            let mut t: sys::ferry_weights_tensor = unsafe { std::mem::zeroed() };
            // Safety: raw is open, i < count, t a valid out pointer.
            check(unsafe { sys::ferry_weights_tensor_at(self.raw.as_ptr(), i, &mut t) })?;
            let ndim = (t.ndim as usize).min(t.shape.len());
            // Safety: the strings are owned by the open weights and NUL-terminated; they
            // are copied before any other call.
            let (name, file, file_dtype) =
                unsafe { (owned(t.name), owned(t.file), owned(t.file_dtype)) };
            self.index.insert(name.clone(), self.tensors.len());
            self.tensors.push(WeightsTensor {
                name,
                file: PathBuf::from(file),
                dtype: DType::from_raw(t.dtype).unwrap_or(DType::Unknown),
                file_dtype,
                shape: t.shape[..ndim].to_vec(),
                bytes: t.bytes,
                file_offset: t.file_offset,
            });
        }
        Ok(())
    }

    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw handle, for calls this crate does not wrap; it must not be closed.
    pub fn as_raw(&self) -> *mut sys::ferry_weights {
        self.raw.as_ptr()
    }

    /// How many tensors the files hold.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The tensors, sorted by name.
    pub fn tensors(&self) -> &[WeightsTensor] {
        &self.tensors
    }

    pub fn iter(&self) -> std::slice::Iter<'_, WeightsTensor> {
        self.tensors.iter()
    }

    pub fn get(&self, name: &str) -> Option<&WeightsTensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// `ferry_weights_find`: the tensor's position in sorted order
    /// ([`Status::InvalidArgument`] when none has that name).
    pub fn find(&self, name: &str) -> Result<usize> {
        let c = c_name("tensor", name)?;
        let mut out = 0u64;
        // Safety: raw is open; c NUL-terminated and alive for the call; out valid.
        check(unsafe { sys::ferry_weights_find(self.raw.as_ptr(), c.as_ptr(), &mut out) })?;
        Ok(out as usize)
    }
}

impl<'a> IntoIterator for &'a Weights {
    type Item = &'a WeightsTensor;
    type IntoIter = std::slice::Iter<'a, WeightsTensor>;
    fn into_iter(self) -> Self::IntoIter {
        self.tensors.iter()
    }
}

/// Options of [`Runtime::load`]; `LoadOptions::new()` has the library's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Prepended to each defined tensor's name to find it in the files.
    pub name_prefix: String,
    /// The tensors to read; `None`: every defined tensor.
    pub tensors: Option<Vec<sys::ferry_tensor>>,
    /// Tensors of the files that no tensor reads are fine (default: a mismatch).
    pub allow_unused: bool,
    /// Float tensors (F32, BF16, F16) defined with another float dtype are converted
    /// while read (default true; false: a mismatch).
    pub convert_dtype: bool,
    /// Reader threads; 0 (default): up to 4, by cores.
    pub threads: u32,
    /// O_DIRECT reads where the file system allows them (default false).
    pub direct: bool,
    /// Immutable tensors past the pinned prefix stay in the files (default true).
    pub disk_tier: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadOptions {
    pub fn new() -> LoadOptions {
        LoadOptions {
            name_prefix: String::new(),
            tensors: None,
            allow_unused: false,
            convert_dtype: true,
            threads: 0,
            direct: false,
            disk_tier: true,
        }
    }

    pub fn name_prefix(mut self, prefix: &str) -> Self {
        self.name_prefix = prefix.to_string();
        self
    }

    /// Reads only these tensors.
    pub fn tensors(mut self, tensors: &[Tensor<'_>]) -> Self {
        self.tensors = Some(tensors.iter().map(|t| t.raw()).collect());
        self
    }

    pub fn allow_unused(mut self, allow: bool) -> Self {
        self.allow_unused = allow;
        self
    }

    pub fn convert_dtype(mut self, convert: bool) -> Self {
        self.convert_dtype = convert;
        self
    }

    pub fn threads(mut self, threads: u32) -> Self {
        self.threads = threads;
        self
    }

    pub fn direct(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    pub fn disk_tier(mut self, disk_tier: bool) -> Self {
        self.disk_tier = disk_tier;
        self
    }
}

/// What a load did (`ferry_load_report`). More fields may come: not built outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LoadReport {
    /// Tensors read into the host store.
    pub tensors_read: u64,
    /// ... of which converted to another dtype.
    pub tensors_converted: u64,
    /// Tensors left on the disk tier.
    pub tensors_on_disk: u64,
    /// File bytes read.
    pub bytes_read: u64,
    /// File bytes left on the disk tier.
    pub bytes_on_disk: u64,
    /// Of `bytes_read`, read with O_DIRECT.
    pub direct_bytes: u64,
    pub elapsed_ns: u64,
    /// Reader threads used.
    pub threads: u32,
}

/// A group made by [`Runtime::define_from`], with its tensors, each under its full name
/// in the files.
#[derive(Debug, Clone)]
pub struct DefinedGroup<'rt> {
    pub name: String,
    pub group: Group<'rt>,
    pub tensors: Vec<(String, Tensor<'rt>)>,
}

fn is_float(d: DType) -> bool {
    matches!(d, DType::F16 | DType::BF16 | DType::F32)
}

/// Fills a list the C way: the count first, then the items (`fill(out, capacity, count)`).
fn listed<T: Copy + Default>(
    mut fill: impl FnMut(*mut T, usize, &mut usize) -> sys::ferry_status,
) -> Result<Vec<T>> {
    let mut count = 0usize;
    check(fill(ptr::null_mut(), 0, &mut count))?;
    let mut out = vec![T::default(); count];
    check(fill(out.as_mut_ptr(), out.len(), &mut count))?;
    out.truncate(count);
    Ok(out)
}

/// A name the library owns, copied. Safety: `ptr` is NULL or a NUL-terminated string.
fn name_of(status: sys::ferry_status, ptr: *const std::ffi::c_char) -> Result<String> {
    check(status)?;
    // Safety: on FERRY_OK the library wrote a valid NUL-terminated string (or NULL).
    Ok(unsafe { owned(ptr) })
}

/// Carries a Rust closure through `ferry_load_progress_fn`; a panic in it is caught (it
/// must not unwind into C) and resumed once the load returns.
struct Progress<'f> {
    f: &'f mut dyn FnMut(u64, u64),
    panic: Option<Box<dyn std::any::Any + Send>>,
}

unsafe extern "C" fn progress_trampoline(user: *mut c_void, done: u64, total: u64) {
    // Safety: user is the &mut Progress that Runtime::load_with_progress passed, alive
    // for the whole ferry_weights_load call, which calls back on the calling thread only.
    let progress = unsafe { &mut *user.cast::<Progress<'_>>() };
    if progress.panic.is_some() {
        return;
    }
    let f = &mut progress.f;
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(done, total))) {
        progress.panic = Some(panic);
    }
}

impl Runtime {
    /// DEFINE. Groups and tensors from the files, by the rule of `ferry_weights_define`: a
    /// tensor named "<prefix><N>.<rest>" (N decimal) goes to the group "<prefix><N>", or
    /// with `blocks_per_group` > 1 to "<prefix><first>-<last>" of that many consecutive
    /// blocks; every other tensor to "root", which prefers residency. Groups come root
    /// first, then by prefix and block number (blocks N and M share a group when
    /// N / blocks_per_group equals M / blocks_per_group); tensors by name, immutable, of
    /// the file's shape and of `dtype` ([`DType::Unknown`]: the file's; F32, BF16 or F16:
    /// float tensors are converted at load). Tensors of no bytes are left out.
    ///
    /// Nothing is defined when a group name is taken ([`Status::DuplicateName`]). The
    /// handles come from `ferry_groups_list` and `ferry_group_tensors`.
    pub fn define_from(
        &self,
        weights: &Weights,
        block_prefixes: &[&str],
        blocks_per_group: u32,
        dtype: DType,
    ) -> Result<Vec<DefinedGroup<'_>>> {
        let prefixes = block_prefixes
            .iter()
            .map(|p| c_name("block prefix", p))
            .collect::<Result<Vec<CString>>>()?;
        let pointers: Vec<*const std::ffi::c_char> = prefixes.iter().map(|p| p.as_ptr()).collect();
        let rt = self.raw.as_ptr();
        // Safety (each closure): rt is a live runtime; out points to `capacity` writable
        // handles (or is NULL with capacity 0); count is a valid out pointer.
        let groups_now = || {
            listed(|out, capacity, count| unsafe {
                sys::ferry_groups_list(rt, out, capacity, count)
            })
        };
        let before = groups_now()?.len();
        // Safety: rt is live, weights open; pointers holds prefix_count NUL-terminated
        // strings alive for the call (the library copies them).
        check(unsafe {
            sys::ferry_weights_define(
                rt,
                weights.raw.as_ptr(),
                pointers.as_ptr(),
                pointers.len(),
                blocks_per_group,
                dtype.to_raw(),
            )
        })?;
        let mut out = Vec::new();
        for raw in groups_now()?.into_iter().skip(before) {
            let mut name = ptr::null();
            // Safety: rt is live; name a valid out pointer; the string is copied at once.
            let group_name = name_of(unsafe { sys::ferry_group_name(rt, raw, &mut name) }, name)?;
            let group = Group::from_raw(self, raw);
            // Safety: as for groups_now.
            let handles = listed(|out, capacity, count| unsafe {
                sys::ferry_group_tensors(rt, raw, out, capacity, count)
            })?;
            let mut tensors = Vec::with_capacity(handles.len());
            for handle in handles {
                let mut name = ptr::null();
                // Safety: as above.
                let tensor_name = name_of(
                    unsafe { sys::ferry_tensor_name(rt, handle, &mut name) },
                    name,
                )?;
                let file = weights.get(&tensor_name).ok_or_else(|| {
                    Error::here(
                        Status::Internal,
                        format!(
                            "ferry_weights_define made tensor '{tensor_name}', not in the files"
                        ),
                    )
                })?;
                let bytes = if dtype != DType::Unknown && is_float(file.dtype) {
                    file.bytes / file.dtype.size().unwrap_or(1) as u64
                        * dtype.size().unwrap_or(1) as u64
                } else {
                    file.bytes
                };
                // Safety: the library defined `handle` in `group`, immutable, with `bytes`
                // bytes: the file's, or its element count times the converted dtype's size
                // (ferry_weights_define's rule).
                let tensor = unsafe { Tensor::from_raw(self, handle, group, bytes, false) };
                tensors.push((tensor_name, tensor));
            }
            out.push(DefinedGroup {
                name: group_name,
                group,
                tensors,
            });
        }
        Ok(out)
    }

    /// PLANNED. `ferry_weights_load`: reads the tensors (all defined ones, or
    /// `options.tensors`) from the files into the host store. Before a byte is read,
    /// every tensor is matched: one [`Status::WeightsMismatch`] lists each one missing, of
    /// another shape or dtype (and, without `allow_unused`, each file tensor left unread).
    /// A failed read ([`Status::Io`], [`Status::FileChanged`]) leaves the runtime PLANNED;
    /// seal refuses it until a load succeeds. Fails while a [`crate::HostBytes`] view is
    /// alive.
    pub fn load(&self, weights: &Weights, options: &LoadOptions) -> Result<LoadReport> {
        self.load_raw(weights, options, None)
    }

    /// Like [`Runtime::load`], calling `progress(bytes_done, bytes_total)` on this thread as
    /// reading advances. A panic in it is resumed once the load has returned.
    pub fn load_with_progress(
        &self,
        weights: &Weights,
        options: &LoadOptions,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<LoadReport> {
        let mut state = Progress {
            f: &mut progress,
            panic: None,
        };
        let result = self.load_raw(weights, options, Some(&mut state));
        if let Some(panic) = state.panic.take() {
            std::panic::resume_unwind(panic);
        }
        result
    }

    fn load_raw(
        &self,
        weights: &Weights,
        options: &LoadOptions,
        progress: Option<&mut Progress<'_>>,
    ) -> Result<LoadReport> {
        let lent = self.lent_lock();
        if !lent.is_empty() {
            return Err(Error::here(
                Status::WrongPhase,
                format!("load: host bytes of {} tensor(s) are lent out", lent.len()),
            ));
        }
        let prefix = if options.name_prefix.is_empty() {
            None
        } else {
            Some(c_name("prefix", &options.name_prefix)?)
        };
        let mut raw = std::mem::MaybeUninit::<sys::ferry_load_options>::zeroed();
        // Safety: ferry_load_options_init fills every field; zeroed memory is a valid
        // ferry_load_options (integers, NULL pointers, a None callback) in any case.
        let mut raw = unsafe {
            sys::ferry_load_options_init(raw.as_mut_ptr());
            raw.assume_init()
        };
        raw.name_prefix = prefix.as_ref().map_or(ptr::null(), |p| p.as_ptr());
        if let Some(tensors) = &options.tensors {
            raw.tensors = tensors.as_ptr();
            raw.tensor_count = tensors.len();
        }
        raw.allow_unused = i32::from(options.allow_unused);
        raw.convert_dtype = i32::from(options.convert_dtype);
        raw.threads = options.threads;
        raw.direct = i32::from(options.direct);
        raw.disk_tier = i32::from(options.disk_tier);
        if let Some(progress) = progress {
            raw.progress = Some(progress_trampoline);
            raw.progress_user = (progress as *mut Progress<'_>).cast();
        }
        let mut report = sys::ferry_load_report {
            struct_size: std::mem::size_of::<sys::ferry_load_report>(),
            ..Default::default()
        };
        // Safety: self.raw is a live runtime and weights.raw open weights; raw's pointers
        // (prefix, tensor handles, the progress state) are alive for the call, which keeps
        // none of them; report has struct_size set. No HostBytes view exists (checked
        // under the lock that views are made under), so writing host bytes invalidates
        // no live reference.
        let status = unsafe {
            sys::ferry_weights_load(self.raw.as_ptr(), weights.raw.as_ptr(), &raw, &mut report)
        };
        drop(lent);
        check(status)?;
        Ok(LoadReport {
            tensors_read: report.tensors_read,
            tensors_converted: report.tensors_converted,
            tensors_on_disk: report.tensors_on_disk,
            bytes_read: report.bytes_read,
            bytes_on_disk: report.bytes_on_disk,
            direct_bytes: report.direct_bytes,
            elapsed_ns: report.elapsed_ns,
            threads: report.threads,
        })
    }

    /// PLANNED or SEALED. Copies `dst.len()` bytes of the tensor's host bytes at `offset`
    /// into `dst`: from the host store, or for a tensor on the disk tier from its file. A
    /// mutable tensor's bytes are current after [`Runtime::synchronize`].
    pub fn copy_out(&self, tensor: Tensor<'_>, offset: u64, dst: &mut [u8]) -> Result<()> {
        let lent = self.lent_lock();
        if lent.contains(&tensor.raw().id) {
            return Err(Error::here(
                Status::WrongPhase,
                "copy_out: the tensor's host bytes are lent out as a HostBytes view",
            ));
        }
        // Safety: self.raw is a live runtime; dst is valid for dst.len() writable bytes
        // and the library checks phase, handle and range; no HostBytes view of this
        // tensor exists (checked under the lock), so no `&mut` aliases what is read.
        let status = unsafe {
            sys::ferry_tensor_copy_out(
                self.raw.as_ptr(),
                tensor.raw(),
                offset,
                dst.as_mut_ptr().cast(),
                dst.len() as u64,
            )
        };
        drop(lent);
        check(status)
    }

    /// PLANNED or SEALED. The tensor's bytes, through [`Runtime::copy_out`].
    pub fn read(&self, tensor: Tensor<'_>) -> Result<Vec<u8>> {
        let len = usize::try_from(tensor.bytes()).map_err(|_| {
            Error::here(
                Status::SizeTooLarge,
                "tensor bytes exceed this platform's usize",
            )
        })?;
        let mut out = vec![0u8; len];
        self.copy_out(tensor, 0, &mut out)?;
        Ok(out)
    }
}
