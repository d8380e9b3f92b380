//! herald.dll: cross-built with mingw-w64 for x86_64-pc-windows-gnu and
//! i686-pc-windows-gnu, its exports checked against the header, and the C
//! contract test, the POP3/IMAP C tests, a TLS verification test and the
//! examples built with mingw and run under wine against the Linux loopback
//! servers (smtp-sink, Dovecot) — TLS through SChannel, completions through
//! the event HANDLE.
//!
//! Needs the rustup targets, mingw-w64 and wine64, so these tests are
//! ignored by a plain `cargo test`; `scripts/test.d/40-windows.sh` installs
//! what is missing and runs them with `cargo test --test windows -- --ignored`.
//!
//! One wine prefix per test run (the first `wineboot` of a prefix takes a
//! few seconds), in a temp dir, with its wineserver stopped at exit.
//!
//! Wine 8.0 has no bcryptprimitives.dll, which Rust's std imports
//! `ProcessPrng` from: tests/windows/bcryptprimitives.c, built here and put
//! beside the test programs, stands in for it. It is never shipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use herald_testservers::*;

const X64: &str = "x86_64-pc-windows-gnu";
const X86: &str = "i686-pc-windows-gnu";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// target/, where cargo put this test binary (target/<profile>/deps/<test>).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// The mingw-w64 tool prefix for a Rust target.
fn mingw(target: &str) -> &'static str {
    match target {
        X64 => "x86_64-w64-mingw32",
        X86 => "i686-w64-mingw32",
        _ => panic!("no mingw for {target}"),
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// What one target's tests need: herald.dll (release, as shipped), and a
/// directory of test programs with herald.dll and the bcryptprimitives
/// stand-in beside them.
struct Built {
    target: &'static str,
    /// target/<target>/release: herald.dll and its import library.
    dll_dir: PathBuf,
    /// target/windows-tests/<target>: the .exe files and the DLLs they load.
    bin_dir: PathBuf,
}

/// Cross-builds herald.dll for `target` and the stand-in DLL, once per process.
fn built(target: &'static str) -> &'static Built {
    static BUILT: [OnceLock<Built>; 2] = [OnceLock::new(), OnceLock::new()];
    let slot = if target == X64 { &BUILT[0] } else { &BUILT[1] };
    slot.get_or_init(|| {
        let gcc = format!("{}-gcc-posix", mingw(target));
        assert!(
            have(&gcc),
            "{gcc} is missing: run scripts/install-test-deps.sh (scripts/deps.d/windows.list)"
        );
        let t0 = Instant::now();
        run_ok(
            Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--release",
                    "--lib",
                    "--locked",
                    "--quiet",
                    "--target",
                    target,
                ])
                .current_dir(root()),
            &format!("cargo build --release --lib --target {target} (rustup target add {target}?)"),
        );
        eprintln!("herald.dll for {target}: built in {:.1?}", t0.elapsed());
        let dll_dir = target_dir().join(target).join("release");
        let dll = dll_dir.join("herald.dll");
        assert!(dll.exists(), "no {}", dll.display());

        let bin_dir = target_dir().join("windows-tests").join(target);
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::copy(&dll, bin_dir.join("herald.dll")).unwrap();
        let src = root().join("tests/windows");
        let mut cmd = Command::new(&gcc);
        cmd.args(["-shared", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(bin_dir.join("bcryptprimitives.dll"))
            .arg(src.join("bcryptprimitives.c"))
            .arg(src.join("bcryptprimitives.def"))
            .arg("-ladvapi32");
        if target == X86 {
            // The .def names the stdcall function undecorated, as Windows' own DLL does.
            cmd.arg("-Wl,--enable-stdcall-fixup");
        }
        run_ok(&mut cmd, "building the bcryptprimitives stand-in");
        Built {
            target,
            dll_dir,
            bin_dir,
        }
    })
}

impl Built {
    /// Compiles one C file (relative to the repository) into an .exe that
    /// links herald.dll through its import library.
    fn compile(&self, source: &str, libs: &[&str]) -> PathBuf {
        let name = Path::new(source)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let exe = self.bin_dir.join(format!("{name}.exe"));
        let mut cmd = Command::new(format!("{}-gcc-posix", mingw(self.target)));
        cmd.args(["-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(root().join("include"))
            .arg("-I")
            .arg(root().join("tests/c"))
            .arg(root().join(source))
            .arg("-o")
            .arg(&exe)
            .arg("-L")
            .arg(&self.dll_dir)
            .arg("-lherald")
            .args(libs);
        run_ok(
            &mut cmd,
            &format!("{source} does not build cleanly for {}", self.target),
        );
        exe
    }

    fn exports(&self) -> BTreeSet<String> {
        let out = run_ok(
            Command::new(format!("{}-objdump", mingw(self.target)))
                .arg("-p")
                .arg(self.dll_dir.join("herald.dll")),
            "objdump -p herald.dll",
        );
        let table = out
            .split("[Ordinal/Name Pointer] Table")
            .nth(1)
            .expect("herald.dll has an export table");
        table
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.split(']').nth(1).map(|n| n.trim().to_string()))
            .collect()
    }

    fn imports(&self) -> BTreeSet<String> {
        let out = run_ok(
            Command::new(format!("{}-objdump", mingw(self.target)))
                .arg("-p")
                .arg(self.dll_dir.join("herald.dll")),
            "objdump -p herald.dll",
        );
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("DLL Name: "))
            .map(|n| n.to_ascii_lowercase())
            .collect()
    }
}

/// Every function the header declares.
fn header_functions() -> BTreeSet<String> {
    let h = std::fs::read_to_string(root().join("include/herald.h")).unwrap();
    let mut names = BTreeSet::new();
    for line in h.lines() {
        let l = line.trim_start();
        if l.starts_with('*')
            || l.starts_with("/*")
            || l.starts_with("//")
            || l.starts_with("typedef")
            || l.starts_with('#')
        {
            continue;
        }
        // `herald_status herald_cancel(...`: the name right before the first '('.
        if let Some(paren) = l.find('(') {
            let before = &l[..paren];
            let start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            if before[start..].starts_with("herald_") {
                names.insert(before[start..].to_string());
            }
        }
    }
    names
}

/// The wine loader for 64-bit programs.
fn wine64() -> &'static str {
    for p in ["/usr/lib/wine/wine64", "/usr/bin/wine64"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("wine64 is missing: run scripts/install-test-deps.sh (scripts/deps.d/windows.list)");
}

/// Wine's 32-bit loader, when the wine32 package (i386 multiarch) is installed.
fn wine32() -> Option<&'static str> {
    ["/usr/lib/wine/wine", "/usr/lib/i386-linux-gnu/wine/wine"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

static PREFIX_PATH: Mutex<Option<PathBuf>> = Mutex::new(None);

extern "C" fn stop_wine_prefix() {
    let Some(prefix) = PREFIX_PATH.lock().ok().and_then(|mut p| p.take()) else {
        return;
    };
    // Stops this prefix's wineserver (and the wine processes of the prefix).
    let _ = Command::new("/usr/lib/wine/wineserver")
        .arg("-k")
        .env("WINEPREFIX", &prefix)
        .status()
        .or_else(|_| {
            Command::new("wineserver")
                .arg("-k")
                .env("WINEPREFIX", &prefix)
                .status()
        });
    if std::env::var_os("HERALD_KEEP_TEMP").is_none() {
        let _ = std::fs::remove_dir_all(&prefix);
    }
}

/// The wine prefix of this test run: made (wineboot) once, stopped and
/// removed at exit.
fn wine_prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let dir = TempDir::new("wine");
        let prefix = dir.path().join("prefix");
        std::mem::forget(dir); // removed by stop_wine_prefix
        *PREFIX_PATH.lock().unwrap() = Some(prefix.clone());
        // SAFETY: registers a plain extern "C" fn with no arguments.
        unsafe { libc::atexit(stop_wine_prefix) };
        let t0 = Instant::now();
        let out = Command::new(wine64())
            .args(["wineboot", "--init"])
            .env("WINEPREFIX", &prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=") // no Mono/Gecko prompts
            .output()
            .expect("run wineboot");
        assert!(
            out.status.success() && prefix.join("system.reg").exists(),
            "wineboot --init failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "wine prefix {}: wineboot took {:.1?}",
            prefix.display(),
            t0.elapsed()
        );
        prefix
    })
}

/// A Linux path as wine's Windows programs see it (drive Z: is /).
fn wine_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// Runs a Windows program under `loader` in the test run's prefix, with
/// `dir` as its current directory, and returns its stdout; fails on a
/// non-zero exit (wine's exit code is the program's) or after 5 minutes.
fn wine_run(loader: &str, exe: &Path, args: &[&str], env: &[(&str, String)], dir: &Path) -> String {
    let out = Command::new("timeout")
        .args(["--kill-after=10", "300", loader])
        .arg(exe)
        .args(args)
        .env("WINEPREFIX", wine_prefix())
        .env("WINEDEBUG", "-all")
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .output()
        .expect("run wine");
    let stdout = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} under wine failed ({}):\n{stdout}\n{stderr}",
        exe.display(),
        out.status
    );
    stdout
}

fn wine(exe: &Path, args: &[&str], env: &[(&str, String)], dir: &Path) -> String {
    wine_run(wine64(), exe, args, env, dir)
}

fn files_in(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "needs the windows targets, mingw-w64 and wine: scripts/test.d/40-windows.sh"]
fn dll_exports_are_the_headers_functions_undecorated_for_both_targets() {
    let want = header_functions();
    assert!(
        want.len() > 40,
        "parsed only {} functions from herald.h",
        want.len()
    );
    for target in [X64, X86] {
        let b = built(target);
        let got = b.exports();
        for name in &got {
            assert!(
                !name.contains('@') && !name.starts_with('_'),
                "{target}: decorated export {name}"
            );
        }
        assert_eq!(
            got, want,
            "{target}: herald.dll exports differ from herald.h's functions"
        );
        // Self-contained: no libgcc/winpthread/libstdc++ DLL to ship beside it.
        let imports = b.imports();
        for i in &imports {
            assert!(
                !i.starts_with("libgcc") && !i.starts_with("libwinpthread") && !i.starts_with("libstdc++"),
                "{target}: herald.dll needs {i}"
            );
        }
        assert!(
            imports.contains("secur32.dll"),
            "{target}: no SChannel (secur32) import: {imports:?}"
        );
        assert!(
            !imports.iter().any(|i| i.contains("ssl") || i.contains("crypto-")),
            "{imports:?}"
        );
        let size = std::fs::metadata(b.dll_dir.join("herald.dll")).unwrap().len();
        eprintln!(
            "{target}: herald.dll {size} bytes, {} exports, imports {imports:?}",
            got.len()
        );
    }
}

#[test]
#[ignore = "needs the windows targets, mingw-w64 and wine: scripts/test.d/40-windows.sh"]
fn both_dlls_load_by_undecorated_name() {
    let names: Vec<String> = header_functions().into_iter().collect();
    let args: Vec<&str> = names.iter().map(String::as_str).collect();
    let tmp = TempDir::new("win-load");
    let b = built(X64);
    let exe = b.compile("tests/windows/load_by_name.c", &[]);
    let out = wine(&exe, &args, &[], tmp.path());
    assert!(
        out.contains(&format!("{n} of {n} names resolved", n = names.len())) && out.contains("calls ok"),
        "{out}"
    );

    // i686 (Delphi Win32, FPC win32): always built and linked; run where
    // wine can run 32-bit programs (the wine32 package).
    let b = built(X86);
    let exe = b.compile("tests/windows/load_by_name.c", &[]);
    b.compile("tests/c/api_contract.c", &["-lws2_32"]);
    match wine32() {
        Some(loader) => {
            let out = wine_run(loader, &exe, &args, &[], tmp.path());
            assert!(out.contains("calls ok"), "{out}");
        }
        None => eprintln!(
            "\n!!! i686 herald.dll built, exports checked and linked, but NOT RUN: \
             no 32-bit wine here (the wine32 package, i386 multiarch) !!!\n"
        ),
    }
}

#[test]
#[ignore = "needs the windows targets, mingw-w64 and wine: scripts/test.d/40-windows.sh"]
fn api_contract_in_c_under_wine() {
    require_servers();
    let sink = SmtpSink::start(&[]);
    let exe = built(X64).compile("tests/c/api_contract.c", &["-lws2_32"]);
    let tmp = TempDir::new("win-api");
    let out = wine(
        &exe,
        &[],
        &[("HERALD_TEST_SMTP_PORT", sink.port.to_string())],
        tmp.path(),
    );
    assert!(out.contains("all checks passed (with SMTP)"), "{out}");
    assert_eq!(sink.wait_for_dumps(300, Duration::from_secs(30)).len(), 300);
}

#[test]
#[ignore = "needs the windows targets, mingw-w64 and wine: scripts/test.d/40-windows.sh"]
fn tls_through_schannel_verifies_with_the_test_ca_and_refuses_without() {
    require_servers();
    let d = Dovecot::start();
    let exe = built(X64).compile("tests/windows/tls_verify.c", &[]);
    let tmp = TempDir::new("win-tls");
    let out = wine(
        &exe,
        &[],
        &[
            ("HERALD_TEST_HOST", "localhost".into()),
            ("HERALD_TEST_CA_FILE", wine_path(&d.ca_file)),
            ("HERALD_TEST_SUBMISSION_PORT", d.submission_port.to_string()),
            ("HERALD_TEST_IMAPS_PORT", d.imaps_port.to_string()),
            ("HERALD_TEST_POP3_PORT", d.pop3_port.to_string()),
        ],
        tmp.path(),
    );
    assert!(out.contains("tls_verify: all checks passed"), "{out}");
    if let Some(l) = out.lines().find(|l| l.starts_with("by IP address")) {
        eprintln!("SChannel under wine, {l}");
    }
    // Refused ones never reached the server's MAIL FROM: two sends relayed.
    assert_eq!(
        d.sink.wait_for_dumps(2, Duration::from_secs(30)).len(),
        2,
        "{out}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.sink.count_dumps(), 2, "{out}");
}

/// Not run by scripts/test.d/40-windows.sh: Wine 8.0's SChannel stalls
/// TLS connections that carry several exchanges, in about half the runs.
/// When a TLS record arrives split across two recv calls, its
/// DecryptMessage answers SEC_E_INCOMPLETE_MESSAGE with a SECBUFFER_MISSING
/// count of the whole record instead of the bytes still missing (the "a bit
/// weird" second buffer in dlls/secur32/schannel.c), so the schannel crate
/// waits for bytes that never come, until IO_TIMEOUT_MS (seen with
/// WINEDEBUG=+secur32: "Expected 1293 bytes, but buffer only contains 1024
/// bytes"). Windows itself reports the missing bytes. Run it by hand:
/// `cargo test --test windows -- --ignored pop3_and_imap`.
#[test]
#[ignore = "stalls now and then under Wine 8's SChannel; run by hand"]
fn pop3_and_imap_in_c_under_wine() {
    require_servers();
    let d = Dovecot::start();
    let messages: Vec<Vec<u8>> = (0..12)
        .map(|i| {
            format!("From: a@example.org\r\nSubject: wine test {i}\r\n\r\n.dot line\r\nbody {i}\r\n")
                .into_bytes()
        })
        .collect();
    imap_append(d.imap_port, "bob", "bobpass", "INBOX", &messages);
    let b = built(X64);
    let pop3 = b.compile("tests/c/pop3.c", &[]);
    let imap = b.compile("tests/c/imap.c", &[]);
    let tmp = TempDir::new("win-mail");
    let ca = wine_path(&d.ca_file);
    let out = wine(
        &pop3,
        &[],
        &[
            ("HERALD_TEST_HOST", "localhost".into()),
            ("HERALD_TEST_POP3_PORT", d.pop3_port.to_string()),
            ("HERALD_TEST_CA_FILE", ca.clone()),
        ],
        tmp.path(),
    );
    assert!(
        out.contains("12 messages listed, retrieved, read with TOP and deleted"),
        "{out}"
    );
    assert!(out.contains("pop3: all checks passed"), "{out}");
    let out = wine(
        &imap,
        &[],
        &[
            ("HERALD_TEST_HOST", "localhost".into()),
            ("HERALD_TEST_IMAP_PORT", d.imap_port.to_string()),
            ("HERALD_TEST_CA_FILE", ca),
        ],
        tmp.path(),
    );
    assert!(out.contains("imap.c: ok"), "{out}");
}

#[test]
#[ignore = "needs the windows targets, mingw-w64 and wine: scripts/test.d/40-windows.sh"]
fn examples_under_wine_with_the_event_handle() {
    require_servers();
    let b = built(X64);
    let send = b.compile("examples-c/send_async.c", &[]);
    let lp = b.compile("examples-c/windows_event_loop.c", &[]);
    let tmp = TempDir::new("win-examples");

    // PICKUP: .eml files appear in the directory given.
    let out = wine(&send, &["-n", "25", "-o", "outbox"], &[], tmp.path());
    assert!(out.contains("25 sent, 0 failed"), "{out}");
    assert_eq!(files_in(&tmp.path().join("outbox"), ".eml"), 25);
    let out = wine(&lp, &["-n", "40", "-o", "loop-outbox"], &[], tmp.path());
    assert!(
        out.contains("40 of 40 completed on the main thread, 40 sent"),
        "{out}"
    );
    assert!(
        !out.contains("spurious") && !out.contains("still signalled"),
        "{out}"
    );
    assert_eq!(files_in(&tmp.path().join("loop-outbox"), ".eml"), 40);

    // SMTP to smtp-sink on the Linux loopback.
    let sink = SmtpSink::start(&[]);
    let port = sink.port.to_string();
    let out = wine(
        &send,
        &["-n", "30", "-k", "-p", &port, "127.0.0.1"],
        &[],
        tmp.path(),
    );
    assert!(out.contains("30 sent, 0 failed"), "{out}");
    let out = wine(
        &lp,
        &["-n", "50", "-k", "-p", &port, "127.0.0.1"],
        &[],
        tmp.path(),
    );
    assert!(
        out.contains("50 of 50 completed on the main thread, 50 sent"),
        "{out}"
    );
    let dumps = sink.wait_for_dumps(80, Duration::from_secs(30));
    assert_eq!(dumps.len(), 80);
    let from_loop = dumps
        .iter()
        .filter(|d| d.body_str().contains("Subject: windows event loop "))
        .count();
    assert_eq!(from_loop, 50);
}
