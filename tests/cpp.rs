//! The C++ wrapper, include/herald.hpp: its test program compiles with
//! g++ -std=c++17 -Wall -Wextra -Werror against the freshly built libherald
//! and runs under valgrind (no errors, no leaks: every std::function and
//! promise herald held is freed) against PICKUP, an smtp-sink and Dovecot
//! (IMAP with IDLE, and POP3).

use std::path::{Path, PathBuf};
use std::process::Command;

use herald_testservers::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the cdylib (cargo test builds only the rlib) and returns target/<profile>.
fn libherald() -> PathBuf {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--lib", "--quiet"]).current_dir(root());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().expect("run cargo build").success(),
        "cargo build --lib failed"
    );
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libherald.so").exists(),
        "no libherald.so in {}",
        dir.display()
    );
    dir
}

fn require(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{tool} is missing: run scripts/install-test-deps.sh");
}

fn compile(source: &str) -> PathBuf {
    let lib = libherald();
    let out_dir = lib.join("cpp");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(Path::new(source).file_stem().unwrap());
    let st = Command::new("g++")
        .args([
            "-std=c++17",
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pthread",
            "-I",
        ])
        .arg(root().join("include"))
        .arg(root().join(source))
        .arg("-o")
        .arg(&out)
        .arg("-L")
        .arg(&lib)
        .arg("-lherald")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .status()
        .expect("run g++");
    assert!(st.success(), "{source} does not compile cleanly");
    out
}

#[test]
fn cpp_wrapper_against_real_servers_under_valgrind() {
    require("g++");
    require("valgrind");
    require_servers();
    let exe = compile("tests/cpp/herald_test.cpp");
    let sink = SmtpSink::start(&[]);
    let d = Dovecot::start();
    let tmp = TempDir::new("cpp");
    let out = Command::new("valgrind")
        .args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible",
        ])
        .arg(&exe)
        .arg("outbox")
        .env("HERALD_TEST_SMTP_PORT", sink.port.to_string())
        .env("HERALD_TEST_IMAP_PORT", d.imap_port.to_string())
        .env("HERALD_TEST_POP3_PORT", d.pop3_port.to_string())
        .env("HERALD_TEST_CA_FILE", &d.ca_file)
        .current_dir(tmp.path())
        .output()
        .expect("run valgrind");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "herald_test.cpp failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("=="), "valgrind reported something:\n{stderr}");
    assert!(
        stdout.contains("herald_test.cpp: ok (PICKUP SMTP IMAP POP3)"),
        "{stdout}"
    );
    // 5 + 1 + 3 + 1 PICKUP messages; 10 + 1 through the sink.
    assert_eq!(std::fs::read_dir(tmp.path().join("outbox")).unwrap().count(), 10);
    assert_eq!(
        sink.wait_for_dumps(11, std::time::Duration::from_secs(30)).len(),
        11
    );
}
