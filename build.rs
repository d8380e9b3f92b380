// Regenerates include/herald.h from the code when built with `--features header`.
// The header is checked in; tests/header.rs fails when it drifts from the code.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "header")]
    {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
        cbindgen::Builder::new()
            .with_crate(&dir)
            .with_config(config)
            .generate()
            .expect("cbindgen failed")
            .write_to_file(format!("{dir}/include/herald.h"));
        println!("cargo:rerun-if-changed=src");
    }
}
