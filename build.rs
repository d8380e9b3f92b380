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
        soname_link(&format!("libherald.so.{major}"));
    }
    #[cfg(feature = "header")]
    {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
        cbindgen::Builder::new()
            // Only the C ABI layer and the status codes it exports (tests/header.rs
            // does the same).
            .with_src(format!("{dir}/src/ffi/mod.rs"))
            .with_src(format!("{dir}/src/status/codes.rs"))
            .with_config(config)
            .generate()
            .expect("cbindgen failed")
            .write_to_file(format!("{dir}/include/herald.h"));
        println!("cargo:rerun-if-changed=src");
    }
}

/// Programs linked against target/<profile>/libherald.so record its SONAME,
/// so the dynamic linker looks for that name: a link to libherald.so beside
/// it lets them run from the build tree (the C tests, the demo, bindings),
/// as scripts/install.sh's links do in an install. OUT_DIR is
/// target/<profile>/build/herald-<hash>/out.
fn soname_link(soname: &str) {
    let Some(out) = std::env::var_os("OUT_DIR") else {
        return;
    };
    let Some(profile_dir) = std::path::Path::new(&out).ancestors().nth(3) else {
        return;
    };
    let link = profile_dir.join(soname);
    if std::fs::read_link(&link).is_ok_and(|t| t == std::path::Path::new("libherald.so")) {
        return;
    }
    let _ = std::fs::remove_file(&link);
    #[cfg(unix)]
    if let Err(e) = std::os::unix::fs::symlink("libherald.so", &link) {
        println!("cargo:warning=could not link {}: {e}", link.display());
    }
}
