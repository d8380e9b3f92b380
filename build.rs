// 1. Gives libherald.so its SONAME on Linux (libherald.so.MAJOR, see the
//    README's "Installing"), so programs linked against it record the SONAME,
//    not the build directory's path.
// 2. Regenerates include/herald.h from the code when built with `--features header`.
//    The header is checked in; tests/header.rs fails when it drifts from the code.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // cargo-c (`cargo cinstall`, cfg cargo_c) sets the same SONAME itself.
    if os == "linux" && std::env::var_os("CARGO_CFG_CARGO_C").is_none() {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libherald.so.{major}");
    }
    #[cfg(feature = "header")]
    {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
        cbindgen::Builder::new()
            // Only the C ABI layer (tests/header.rs does the same).
            .with_src(format!("{dir}/src/ffi/mod.rs"))
            .with_config(config)
            .generate()
            .expect("cbindgen failed")
            .write_to_file(format!("{dir}/include/herald.h"));
        println!("cargo:rerun-if-changed=src");
    }
}
