//! Finds libferry and tells cargo how to link it. No build dependencies.
//!
//! Looks, in order:
//!   1. `$FERRY_LIB_DIR` (when set, it must hold the library: no fallback),
//!   2. `pkg-config --variable=libdir ferry`, when a `pkg-config` program exists,
//!   3. this repository's meson build tree, `<repo>/build`.
//!
//! Fails with a message listing every place looked at and why it was passed over.
//!
//! Emits, besides the link lines:
//!   - an rpath to the library's folder for this package's tests (cargo applies
//!     `rustc-link-arg` only to the package's own tests, examples and binaries; the `ferry`
//!     crate's build script adds the same for its own, from `DEP_FERRY_LIB_DIR`),
//!   - `cargo:lib_dir` / `cargo:include` metadata, seen by dependents' build scripts as
//!     `DEP_FERRY_LIB_DIR` / `DEP_FERRY_INCLUDE`,
//!   - `FERRY_SYS_LIB_DIR` in the crate's compile-time environment, used by the tests.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const LIB_FILE: &str = "libferry.so";

fn has_lib(dir: &Path) -> bool {
    dir.join(LIB_FILE).is_file()
}

fn pkg_config_libdir() -> Result<PathBuf, String> {
    let program = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let output = match Command::new(&program)
        .args(["--variable=libdir", "ferry"])
        .output()
    {
        Ok(output) => output,
        Err(err) => return Err(format!("`{program}` could not be run ({err})")),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let why = match stderr.trim() {
            "" => format!("no ferry.pc on its search path ({})", output.status),
            text => text.to_string(),
        };
        return Err(format!("`{program} --variable=libdir ferry` failed: {why}"));
    }
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if dir.is_empty() {
        return Err(format!(
            "`{program} --variable=libdir ferry` printed nothing"
        ));
    }
    Ok(PathBuf::from(dir))
}

fn find_lib(repo: &Path, looked: &mut Vec<String>) -> Option<PathBuf> {
    // 1. FERRY_LIB_DIR: an explicit choice, so a wrong one is an error, not a fallback.
    if let Some(dir) = env::var_os("FERRY_LIB_DIR") {
        let dir = PathBuf::from(dir);
        if has_lib(&dir) {
            return Some(dir);
        }
        looked.push(format!(
            "FERRY_LIB_DIR={}: no {LIB_FILE} there (FERRY_LIB_DIR is set, so nothing else \
             was tried)",
            dir.display()
        ));
        return None;
    }
    looked.push("FERRY_LIB_DIR: not set".to_string());

    // 2. pkg-config, when the program exists.
    match pkg_config_libdir() {
        Ok(dir) if has_lib(&dir) => return Some(dir),
        Ok(dir) => looked.push(format!(
            "pkg-config --variable=libdir ferry: {} has no {LIB_FILE}",
            dir.display()
        )),
        Err(why) => looked.push(format!("pkg-config: {why}")),
    }

    // 3. The repository's build tree.
    let dir = repo.join("build");
    if has_lib(&dir) {
        return Some(dir);
    }
    looked.push(format!(
        "{}: no {LIB_FILE} (build it with `meson setup build && meson compile -C build` \
         at the repository root)",
        dir.display()
    ));
    None
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "FERRY_LIB_DIR",
        "PKG_CONFIG",
        "PKG_CONFIG_PATH",
        "PKG_CONFIG_LIBDIR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    // <repo>/bindings/rust/ferry-sys
    let repo = manifest.join("../../..");
    let repo = repo.canonicalize().unwrap_or(repo);

    let mut looked = Vec::new();
    let Some(dir) = find_lib(&repo, &mut looked) else {
        let mut msg = format!("ferry-sys: could not find {LIB_FILE}. Looked at:\n");
        for line in &looked {
            msg.push_str("  - ");
            msg.push_str(line);
            msg.push('\n');
        }
        msg.push_str("Set FERRY_LIB_DIR to the folder holding libferry.so.");
        // Cargo shows a failed build script's stderr in its error output.
        eprintln!("{msg}");
        std::process::exit(1);
    };
    let dir = dir.canonicalize().unwrap_or(dir);
    let dir_str = dir.to_str().unwrap_or_else(|| {
        panic!(
            "ferry-sys: library folder {} is not valid UTF-8",
            dir.display()
        )
    });

    // Rebuild (and so re-link) when the library found is rebuilt or replaced.
    println!("cargo:rerun-if-changed={}", dir.join(LIB_FILE).display());
    println!("cargo:rustc-link-search=native={dir_str}");
    println!("cargo:rustc-link-lib=dylib=ferry");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir_str}");
    println!("cargo:rustc-env=FERRY_SYS_LIB_DIR={dir_str}");
    println!("cargo:lib_dir={dir_str}");
    let include = repo.join("include");
    if include.join("ferry/ferry.h").is_file() {
        println!("cargo:include={}", include.display());
    }
}
