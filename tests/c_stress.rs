//! tests/c/stress.c under valgrind: rounds of clients against a server whose
//! connections misbehave, with short deadlines, cancels and frees racing
//! the workers and the deadline watchdog. (scripts/asan.sh runs it under
//! AddressSanitizer too.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the cdylib (cargo test builds only the rlib) and the program.
fn build() -> PathBuf {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--lib", "--quiet"]).current_dir(root());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().expect("run cargo build").success(),
        "cargo build --lib"
    );
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let out = lib.join("c").join("stress");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let st = Command::new("gcc")
        .args(["-std=c11", "-g", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root().join("include"))
        .arg(root().join("tests/c/stress.c"))
        .arg("-o")
        .arg(&out)
        .arg("-L")
        .arg(&lib)
        .args(["-lherald", "-lpthread"])
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .status()
        .expect("run gcc");
    assert!(st.success(), "tests/c/stress.c does not compile cleanly");
    out
}

#[test]
fn stress_in_c_under_valgrind() {
    let exe = build();
    let out = Command::new("valgrind")
        .args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible",
        ])
        .arg(&exe)
        .output()
        .expect("run valgrind (scripts/install-test-deps.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "stress failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("=="), "valgrind reported something:\n{stderr}");
    assert!(stdout.contains("every op completed once"), "{stdout}");
    eprintln!("{stdout}");
}
