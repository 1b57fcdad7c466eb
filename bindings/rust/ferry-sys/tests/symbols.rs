//! Keeps `src/lib.rs`, `include/ferry/ferry.h` and the built `libferry.so` from drifting:
//!
//! - every `ferry_*` symbol the library exports (`nm -D --defined-only`) is declared in
//!   `src/lib.rs`, and every declared function is exported;
//! - every function of the header is declared with the header's argument count;
//! - every enum value and numeric `#define` of the header has a constant of that value;
//! - the structs have the C layout (sizes and field offsets from a C compiler, when one
//!   is available);
//! - every declared function links (the test takes each one's address).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

const LIB_DIR: &str = env!("FERRY_SYS_LIB_DIR");
const SYS_SOURCE: &str = include_str!("../src/lib.rs");

fn header_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../include/ferry/ferry.h")
}

fn header() -> Option<String> {
    std::fs::read_to_string(header_path()).ok()
}

/// Removes `/* */` and `//` comments (neither file has comment markers inside strings that
/// matter here).
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let bytes = src.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"/*") {
            match src[i + 2..].find("*/") {
                Some(end) => i += 2 + end + 2,
                None => break,
            }
            out.push(' ');
        } else if bytes[i..].starts_with(b"//") {
            match src[i..].find('\n') {
                Some(end) => i += end,
                None => break,
            }
        } else {
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn count_args(args: &str) -> usize {
    let args = args.trim();
    if args.is_empty() || args == "void" {
        return 0;
    }
    args.split(',').filter(|a| !a.trim().is_empty()).count()
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Functions of the header: name -> argument count.
fn header_functions(header: &str) -> BTreeMap<String, usize> {
    // Preprocessor lines go first: `#define FERRY_API ...` is no prototype.
    let text: String = strip_comments(header)
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    let mut out = BTreeMap::new();
    let mut rest = text.as_str();
    while let Some(pos) = rest.find("FERRY_API ") {
        rest = &rest[pos + "FERRY_API ".len()..];
        let Some(end) = rest.find(';') else { break };
        let decl = &rest[..end];
        let open = decl.find('(').expect("prototype without '('");
        let close = decl.rfind(')').expect("prototype without ')'");
        let before = decl[..open].trim_end();
        let name_start = before
            .rfind(|c: char| !is_ident_char(c))
            .map_or(0, |p| p + 1);
        let name = &before[name_start..];
        out.insert(name.to_string(), count_args(&decl[open + 1..close]));
        rest = &rest[end..];
    }
    out
}

/// Functions declared in `src/lib.rs`: name -> argument count.
fn declared_functions() -> BTreeMap<String, usize> {
    let text = strip_comments(SYS_SOURCE);
    let mut out = BTreeMap::new();
    let mut rest = text.as_str();
    while let Some(pos) = rest.find("pub fn ") {
        rest = &rest[pos + "pub fn ".len()..];
        let open = rest.find('(').unwrap();
        let name = rest[..open].trim().to_string();
        // Parameters hold no parentheses, so the first ')' closes the list.
        let close = rest.find(')').unwrap();
        out.insert(name, count_args(&rest[open + 1..close]));
        rest = &rest[close..];
    }
    out
}

/// `NAME = VALUE` inside the header's enums and numeric `#define NAME VALUE` lines.
fn header_constants(header: &str) -> BTreeMap<String, u64> {
    let text = strip_comments(header);
    let mut out = BTreeMap::new();
    let parse = |v: &str| v.trim().trim_end_matches(['u', 'U']).parse::<u64>().ok();
    for line in text.lines() {
        let line = line.trim();
        if let Some(def) = line.strip_prefix("#define ") {
            let mut parts = def.split_whitespace();
            if let (Some(name), Some(value), None) = (parts.next(), parts.next(), parts.next()) {
                if let Some(v) = parse(value) {
                    out.insert(name.to_string(), v);
                }
            }
        }
    }
    // Enum bodies: between "typedef enum" and the closing '}'.
    let mut rest = text.as_str();
    while let Some(pos) = rest.find("typedef enum") {
        rest = &rest[pos..];
        let open = rest.find('{').unwrap();
        let close = rest.find('}').unwrap();
        for item in rest[open + 1..close].split(',') {
            if let Some((name, value)) = item.split_once('=') {
                let v = parse(value).unwrap_or_else(|| panic!("enum value {item:?}"));
                out.insert(name.trim().to_string(), v);
            }
        }
        rest = &rest[close..];
    }
    out
}

/// `pub const NAME: T = VALUE;` of `src/lib.rs` whose value is a plain integer.
fn declared_constants() -> BTreeMap<String, u64> {
    let text = strip_comments(SYS_SOURCE);
    let mut out = BTreeMap::new();
    let mut rest = text.as_str();
    while let Some(pos) = rest.find("pub const ") {
        rest = &rest[pos + "pub const ".len()..];
        let end = rest.find(';').unwrap();
        let item = &rest[..end];
        let (name, value) = item.split_once('=').unwrap();
        let name = name.split(':').next().unwrap().trim();
        if let Ok(v) = value.trim().parse::<u64>() {
            out.insert(name.to_string(), v);
        }
        rest = &rest[end..];
    }
    out
}

fn exported_symbols() -> Vec<String> {
    let lib = PathBuf::from(LIB_DIR).join("libferry.so");
    let output = Command::new("nm")
        .arg("-D")
        .arg("--defined-only")
        .arg(&lib)
        .output()
        .unwrap_or_else(|e| panic!("could not run `nm` (binutils) on {}: {e}", lib.display()));
    assert!(
        output.status.success(),
        "nm -D --defined-only {} failed: {}",
        lib.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut out: Vec<String> = stdout
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .map(|sym| sym.split('@').next().unwrap().to_string())
        .filter(|sym| sym.starts_with("ferry_"))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn parsers_see_the_whole_api() {
    // Guards the text parsing itself: a parser that finds nothing would pass vacuously.
    let declared = declared_functions();
    assert!(
        declared.len() >= 20,
        "only {} declarations parsed",
        declared.len()
    );
    assert_eq!(declared["ferry_tensor_define"], 9);
    assert_eq!(declared["ferry_version"], 0);
    if let Some(h) = header() {
        let funcs = header_functions(&h);
        assert!(
            funcs.len() >= 20,
            "only {} header prototypes parsed",
            funcs.len()
        );
        assert_eq!(funcs["ferry_tensor_define"], 9);
        assert_eq!(funcs["ferry_version"], 0);
        let consts = header_constants(&h);
        assert_eq!(consts["FERRY_ERROR_INTERNAL"], 19);
        assert_eq!(consts["FERRY_TENSOR_MUTABLE"], 1);
    }
}

#[test]
fn every_exported_symbol_is_declared() {
    let exported = exported_symbols();
    assert!(
        !exported.is_empty(),
        "libferry.so in {LIB_DIR} exports no ferry_* symbol"
    );
    let declared = declared_functions();
    let missing: Vec<_> = exported
        .iter()
        .filter(|s| !declared.contains_key(*s))
        .collect();
    assert!(
        missing.is_empty(),
        "exported by {LIB_DIR}/libferry.so but not declared in ferry-sys: {missing:?}"
    );
    let unexported: Vec<_> = declared.keys().filter(|d| !exported.contains(d)).collect();
    assert!(
        unexported.is_empty(),
        "declared in ferry-sys but not exported by {LIB_DIR}/libferry.so: {unexported:?}"
    );
}

#[test]
fn declarations_match_the_header() {
    let Some(header) = header() else {
        eprintln!(
            "note: {} not found; header checks skipped",
            header_path().display()
        );
        return;
    };
    let in_header = header_functions(&header);
    let declared = declared_functions();
    let mut problems = Vec::new();
    for (name, nargs) in &in_header {
        match declared.get(name) {
            None => problems.push(format!("{name}: in ferry.h, not declared")),
            Some(n) if n != nargs => problems.push(format!(
                "{name}: {nargs} arguments in ferry.h, {n} declared"
            )),
            Some(_) => {}
        }
    }
    for name in declared.keys() {
        if !in_header.contains_key(name) {
            problems.push(format!("{name}: declared, not in ferry.h"));
        }
    }
    assert!(
        problems.is_empty(),
        "ferry-sys and ferry.h disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn constants_match_the_header() {
    let Some(header) = header() else {
        eprintln!(
            "note: {} not found; header checks skipped",
            header_path().display()
        );
        return;
    };
    let in_header = header_constants(&header);
    let declared = declared_constants();
    let mut problems = Vec::new();
    for (name, value) in &in_header {
        match declared.get(name) {
            None => problems.push(format!("{name} = {value}: in ferry.h, not declared")),
            Some(v) if v != value => {
                problems.push(format!("{name}: {value} in ferry.h, {v} declared"))
            }
            Some(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "ferry-sys and ferry.h disagree:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        ferry_sys::FERRY_VERSION_NUMBER,
        (in_header["FERRY_VERSION_MAJOR"] * 10000
            + in_header["FERRY_VERSION_MINOR"] * 100
            + in_header["FERRY_VERSION_PATCH"]) as u32
    );
}

macro_rules! layout_lines {
    ($($ty:ident { $($field:ident),* })*) => {{
        let mut c = String::new();
        let mut rust = String::new();
        $(
            c.push_str(&format!(
                "printf(\"{} %zu %zu\\n\", sizeof({}), _Alignof({}));\n",
                stringify!($ty), stringify!($ty), stringify!($ty)));
            rust.push_str(&format!("{} {} {}\n", stringify!($ty),
                std::mem::size_of::<ferry_sys::$ty>(), std::mem::align_of::<ferry_sys::$ty>()));
            $(
                c.push_str(&format!(
                    "printf(\"{}.{} %zu\\n\", offsetof({}, {}));\n",
                    stringify!($ty), stringify!($field), stringify!($ty), stringify!($field)));
                rust.push_str(&format!("{}.{} {}\n", stringify!($ty), stringify!($field),
                    std::mem::offset_of!(ferry_sys::$ty, $field)));
            )*
        )*
        (c, rust)
    }};
}

#[test]
fn struct_layouts_match_c() {
    let (c_body, rust) = layout_lines! {
        ferry_config { struct_size, backend, device, vram_budget, slots_per_class,
                       synchronous, name, sim_h2d_gbps, sim_d2h_gbps, sim_latency_us,
                       sim_chaos, sim_seed, publish_stats, verify, pinned_cap_bytes,
                       pageable_fallback, host_share, host_share_timeout_ms, compress }
        ferry_stats { struct_size, backend, phase, bytes_h2d, bytes_d2h, onloads, acquires,
                      releases, resident_hits, hits, misses, prefetches_issued,
                      prefetches_used, prefetches_wasted, writebacks, passes, groups,
                      resident_groups, size_classes, streaming_slots, model_bytes,
                      streamed_bytes_per_pass, vram_budget, slab_bytes, slab_resident_bytes,
                      slab_streaming_bytes, slab_used_bytes, slab_used_peak_bytes,
                      host_pinned_bytes, host_pinned_peak_bytes, stall_ns,
                      writebacks_skipped, verify_checks, verify_failures,
                      host_pageable_bytes, host_disk_bytes, bytes_disk_read,
                      compressed_groups, host_compressed_bytes, host_compressed_raw_bytes,
                      bytes_h2d_compressed, bytes_decoded, decodes, slab_staging_bytes,
                      host_pin_ns, encode_ns }
        ferry_weights_tensor { name, file, dtype, file_dtype, ndim, shape, bytes, file_offset }
        ferry_load_options { struct_size, name_prefix, tensors, tensor_count, allow_unused,
                             convert_dtype, threads, direct, disk_tier, progress,
                             progress_user }
        ferry_load_report { struct_size, tensors_read, tensors_converted, tensors_on_disk,
                            bytes_read, bytes_on_disk, direct_bytes, elapsed_ns, threads }
        ferry_group { id }
        ferry_tensor { id }
        ferry_status { }
        ferry_backend { }
        ferry_phase { }
        ferry_dtype { }
    };
    let header = header_path();
    if !header.is_file() {
        eprintln!("note: {} not found; layout check skipped", header.display());
        return;
    }
    let include = header.parent().unwrap().parent().unwrap().to_path_buf();
    let dir = std::env::temp_dir().join(format!("ferry-sys-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(
        &src,
        format!(
            "#include <stddef.h>\n#include <stdio.h>\n#include <ferry/ferry.h>\n\
             int main(void) {{\n{c_body}return 0;\n}}\n"
        ),
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let compiled = Command::new(&cc)
        .args(["-std=c11", "-I"])
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output();
    let compiled = match compiled {
        Ok(out) => out,
        Err(e) => {
            eprintln!("note: no C compiler `{cc}` ({e}); layout check skipped");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    };
    assert!(
        compiled.status.success(),
        "{cc} failed on the layout probe: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let c = String::from_utf8(run.stdout).unwrap();
    assert_eq!(c, rust, "C layout (left) differs from ferry-sys (right)");
}

#[test]
fn every_declared_function_links() {
    use ferry_sys::*;
    // Taking each address makes the linker resolve it against libferry.so.
    macro_rules! addresses {
        ($($f:ident),* $(,)?) => { &[$((stringify!($f), $f as *const ())),*] };
    }
    let fns: &[(&str, *const ())] = addresses![
        ferry_version,
        ferry_version_number,
        ferry_status_string,
        ferry_last_error,
        ferry_config_init,
        ferry_create,
        ferry_destroy,
        ferry_phase_get,
        ferry_group_define,
        ferry_tensor_define,
        ferry_schedule_declare,
        ferry_plan,
        ferry_tensor_host_ptr,
        ferry_tensor_copy_in,
        ferry_seal,
        ferry_acquire,
        ferry_release,
        ferry_tensor_device_ptr,
        ferry_synchronize,
        ferry_stats_get,
        ferry_group_info,
        ferry_group_resident_bytes,
        ferry_group_prefer_resident,
        ferry_group_compute_declare,
        ferry_groups_list,
        ferry_group_tensors,
        ferry_group_find,
        ferry_tensor_find,
        ferry_group_name,
        ferry_tensor_name,
        ferry_trace_start,
        ferry_trace_stop,
        ferry_trace_dump,
        ferry_pin_progress_set,
        ferry_host_share_role_get,
        ferry_host_share_progress_set,
        ferry_weights_open,
        ferry_weights_close,
        ferry_weights_count,
        ferry_weights_tensor_at,
        ferry_weights_find,
        ferry_weights_define,
        ferry_load_options_init,
        ferry_weights_load,
        ferry_tensor_copy_out,
        ferry_tensor_update,
        ferry_dlpack_wrap,
        ferry_dlpack_live,
    ];
    for (name, f) in fns {
        assert!(!f.is_null(), "{name}");
    }
    let mut listed: Vec<&str> = fns.iter().map(|(n, _)| *n).collect();
    listed.sort();
    let declared: Vec<String> = declared_functions().into_keys().collect();
    assert_eq!(
        listed, declared,
        "update this list when a function is added"
    );
}

#[test]
fn library_version_matches_declarations() {
    // Safety: ferry_version_number takes no arguments and has no preconditions.
    let loaded = unsafe { ferry_sys::ferry_version_number() };
    assert_eq!(loaded, ferry_sys::FERRY_VERSION_NUMBER);
    // Safety: ferry_version returns a static, NUL-terminated string.
    let text = unsafe { std::ffi::CStr::from_ptr(ferry_sys::ferry_version()) };
    let expected = format!(
        "{}.{}.{}",
        ferry_sys::FERRY_VERSION_MAJOR,
        ferry_sys::FERRY_VERSION_MINOR,
        ferry_sys::FERRY_VERSION_PATCH
    );
    assert_eq!(text.to_str().unwrap(), expected);
}
