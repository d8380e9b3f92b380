//! The C side: every C test and example compiles with -Wall -Wextra -Werror
//! against include/herald.h and the freshly built libherald, and runs under
//! valgrind with no errors and no leaks, against the servers it needs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use herald_testservers::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// target/<profile>, where this test binary and libherald live.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf() // target/<profile>/deps/<test> -> target/<profile>
}

/// Builds the cdylib (cargo test builds only the rlib), once per process.
fn libherald() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--lib", "--quiet"]).current_dir(root());
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build --lib failed");
        let dir = profile_dir();
        assert!(
            dir.join("libherald.so").exists(),
            "no libherald.so in {}",
            dir.display()
        );
        dir
    })
}

/// Compiles one C file into target/<profile>/c/.
fn compile(source: &str) -> PathBuf {
    let lib = libherald();
    let out_dir = lib.join("c");
    std::fs::create_dir_all(&out_dir).unwrap();
    let name = Path::new(source)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let out = out_dir.join(&name);
    let st = Command::new("gcc")
        .args(["-std=c11", "-g", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root().join("include"))
        .arg(root().join(source))
        .arg("-o")
        .arg(&out)
        .arg("-L")
        .arg(lib)
        .args(["-lherald", "-lpthread"])
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .status()
        .expect("run gcc");
    assert!(st.success(), "{source} does not compile cleanly");
    out
}

/// Runs a program under valgrind: any memory error or leak fails it.
fn valgrind(program: &Path, args: &[&str], env: &[(&str, String)], dir: &Path) -> String {
    let out = Command::new("valgrind")
        .args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible",
        ])
        .arg(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .output()
        .expect("run valgrind");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        program.display(),
        out.status
    );
    assert!(!stderr.contains("=="), "valgrind reported something:\n{stderr}");
    stdout
}

fn require_c_tools() {
    for tool in ["gcc", "valgrind"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{tool} is missing: run scripts/install-test-deps.sh");
    }
}

#[test]
fn api_contract_in_c_under_valgrind() {
    require_c_tools();
    require_servers();
    let sink = SmtpSink::start(&[]);
    let exe = compile("tests/c/api_contract.c");
    let tmp = TempDir::new("c-api");
    let out = valgrind(
        &exe,
        &[],
        &[("HERALD_TEST_SMTP_PORT", sink.port.to_string())],
        tmp.path(),
    );
    assert!(out.contains("all checks passed (with SMTP)"), "{out}");
}

#[test]
fn examples_compile_and_run_under_valgrind() {
    require_c_tools();
    require_servers();
    let tmp = TempDir::new("c-examples");
    let send = compile("examples-c/send_async.c");
    let lp = compile("examples-c/event_loop.c");

    // PICKUP, the default: .eml files appear.
    let out = valgrind(&send, &["-n", "25", "-o", "outbox"], &[], tmp.path());
    assert!(out.contains("25 sent, 0 failed"), "{out}");
    let files = std::fs::read_dir(tmp.path().join("outbox")).unwrap().count();
    assert_eq!(files, 25);
    let out = valgrind(&lp, &["-n", "10", "-o", "loop-outbox"], &[], tmp.path());
    assert!(
        out.contains("10 of 10 completed on the main thread, 10 sent"),
        "{out}"
    );

    // SMTP to a local smtp-sink.
    let sink = SmtpSink::start(&[]);
    let port = sink.port.to_string();
    let out = valgrind(
        &send,
        &["-n", "40", "-k", "-p", &port, "127.0.0.1"],
        &[],
        tmp.path(),
    );
    assert!(out.contains("40 sent, 0 failed"), "{out}");
    let out = valgrind(
        &lp,
        &["-n", "30", "-k", "-p", &port, "127.0.0.1"],
        &[],
        tmp.path(),
    );
    assert!(out.contains("30 of 30 completed"), "{out}");
    assert_eq!(
        sink.wait_for_dumps(70, std::time::Duration::from_secs(30)).len(),
        70
    );
}

#[test]
fn pop3_in_c_under_valgrind() {
    require_c_tools();
    require_servers();
    let d = Dovecot::start();
    let messages: Vec<Vec<u8>> = (0..12)
        .map(|i| {
            format!("From: a@example.org\r\nSubject: c test {i}\r\n\r\n.dot line\r\nbody {i}\r\n")
                .into_bytes()
        })
        .collect();
    imap_append(d.imap_port, "bob", "bobpass", "INBOX", &messages);
    let exe = compile("tests/c/pop3.c");
    let tmp = TempDir::new("c-pop3");
    let out = valgrind(
        &exe,
        &[],
        &[
            ("HERALD_TEST_POP3_PORT", d.pop3_port.to_string()),
            ("HERALD_TEST_CA_FILE", d.ca_file.to_string_lossy().into_owned()),
        ],
        tmp.path(),
    );
    assert!(
        out.contains("12 messages listed, retrieved, read with TOP and deleted"),
        "{out}"
    );
    assert!(out.contains("pop3: all checks passed"), "{out}");
}

#[test]
fn imap_in_c_under_valgrind() {
    require_c_tools();
    require_servers();
    let d = Dovecot::start();
    let exe = compile("tests/c/imap.c");
    let tmp = TempDir::new("c-imap");
    let out = valgrind(
        &exe,
        &[],
        &[
            ("HERALD_TEST_IMAP_PORT", d.imap_port.to_string()),
            ("HERALD_TEST_CA_FILE", d.ca_file.to_string_lossy().into_owned()),
        ],
        tmp.path(),
    );
    assert!(out.contains("imap.c: ok"), "{out}");
}

/// tests/c/stream.c: streaming fetch to a callback and through the queue,
/// and fetch to a directory.
#[test]
fn streaming_fetch_in_c_under_valgrind() {
    require_c_tools();
    require_servers();
    let d = Dovecot::start();
    let messages: Vec<Vec<u8>> = (0..25)
        .map(|i| format!("From: a@example.org\r\nSubject: stream {i}\r\n\r\nbody {i}\r\n").into_bytes())
        .collect();
    imap_append(d.imap_port, "alice", "alicepass", "INBOX", &messages);
    let exe = compile("tests/c/stream.c");
    let tmp = TempDir::new("c-stream");
    let out = valgrind(
        &exe,
        &[],
        &[
            ("HERALD_TEST_IMAP_PORT", d.imap_port.to_string()),
            ("HERALD_TEST_MESSAGES", messages.len().to_string()),
            ("HERALD_TEST_DIR", tmp.path().to_string_lossy().into_owned()),
        ],
        tmp.path(),
    );
    assert!(out.contains("stream.c: ok (25 messages"), "{out}");
    assert_eq!(
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".eml")
            })
            .count(),
        25
    );
}

/// tests/c/stress.c: rounds of clients against a server whose connections
/// misbehave, with short deadlines, cancels and frees racing the workers and
/// the deadline watchdog. (scripts/asan.sh runs it under AddressSanitizer too.)
#[test]
fn stress_in_c_under_valgrind() {
    require_c_tools();
    let exe = compile("tests/c/stress.c");
    let dir = exe.parent().unwrap().to_path_buf();
    let stdout = valgrind(&exe, &[], &[], &dir);
    assert!(stdout.contains("every op completed once"), "{stdout}");
    eprintln!("{stdout}");
}

/// tests/c/parse.c: herald_parse, the accessors and attachment_save; no server.
#[test]
fn parse_in_c_under_valgrind() {
    require_c_tools();
    let exe = compile("tests/c/parse.c");
    let tmp = TempDir::new("c-parse");
    let out = valgrind(&exe, &[], &[], tmp.path());
    assert!(out.contains("parse.c: ok"), "{out}");
}
