//! Gives this crate's tests and examples an rpath to libferry's folder, so they run
//! without LD_LIBRARY_PATH. ferry-sys found the folder; cargo hands it over as
//! `DEP_FERRY_LIB_DIR` (ferry-sys has `links = "ferry"`). Cargo applies
//! `rustc-link-arg` only to a package's own tests, examples and binaries, so each package
//! that wants the rpath says so itself (see README.md for a program's build.rs).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_FERRY_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_FERRY_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
