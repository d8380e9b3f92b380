//! Proves the test-server infrastructure in herald-testservers: smtp-sink dumps,
//! a private Dovecot (IMAP, POP3, submission), connection counting, parallel
//! instances and cleanup when the test process is killed.
//!
//! Run: `cargo test -p herald-testservers --test servers_smoke` (as root, after
//! `scripts/install-test-deps.sh`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use herald_testservers::{established_connections, sink_form, wait_for_connections, Dovecot, SmtpSink, HOST};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A minimal line-oriented client for hand-written protocol exchanges.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn connect(port: u16) -> Conn {
        let stream = TcpStream::connect((HOST, port)).unwrap_or_else(|e| panic!("connect {port}: {e}"));
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Conn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read line");
        line
    }

    fn send(&mut self, data: &[u8]) {
        self.writer.write_all(data).expect("write");
    }

    /// Reads a (possibly multi-line) SMTP reply; returns all its lines.
    fn smtp_reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            assert!(line.len() >= 4, "short SMTP reply line {line:?}");
            let last = line.as_bytes()[3] == b' ';
            lines.push(line.trim_end().to_string());
            if last {
                return lines;
            }
        }
    }

    fn smtp(&mut self, cmd: &str, expect: &str) -> Vec<String> {
        self.send(format!("{cmd}\r\n").as_bytes());
        let reply = self.smtp_reply();
        assert!(
            reply.last().unwrap().starts_with(expect),
            "{cmd}: expected {expect}, got {reply:?}"
        );
        reply
    }
}

/// Dot-stuffs `msg` and terminates it for the DATA phase: CRLF before the
/// final "." if `msg` does not end with one.
fn data_payload(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at_line_start = true;
    for &b in msg {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !msg.is_empty() && !msg.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn send_message(c: &mut Conn, from: &str, rcpts: &[&str], msg: &[u8]) {
    c.smtp(&format!("MAIL FROM:<{from}> BODY=8BITMIME"), "250");
    for r in rcpts {
        c.smtp(&format!("RCPT TO:<{r}>"), "250");
    }
    c.smtp("DATA", "354");
    c.send(&data_payload(msg));
    let reply = c.smtp_reply();
    assert!(reply[0].starts_with("250"), "end of DATA: {reply:?}");
}

#[test]
fn smtp_sink_stores_messages() {
    let sink = SmtpSink::start(&[]);
    let mut c = Conn::connect(sink.port);
    assert!(c.smtp_reply()[0].starts_with("220"));
    let ehlo = c.smtp("EHLO client.test", "250");
    // smtp-sink's quirk: the last EHLO line is "250 " with an empty keyword.
    assert_eq!(ehlo.last().unwrap(), "250");

    // 1: a line starting with a dot (dot-stuffed on the wire), a lone dot
    //    line, 8-bit bytes, a NUL, trailing blanks.
    let msg1: &[u8] = b"Subject: first\r\nFrom: a@example.com\r\n\r\n.leading dot\r\n.\r\n..two dots\r\n\
                        caf\xc3\xa9 \xff\xfe raw 8-bit\x00nul\r\ntrailing  \r\n";
    // 2: no final CRLF; 40 recipients.
    let msg2: &[u8] = b"Subject: second\r\n\r\nline one\r\nno final newline";
    let rcpts2: Vec<String> = (0..40).map(|i| format!("r{i}@example.org")).collect();
    let rcpts2: Vec<&str> = rcpts2.iter().map(|s| s.as_str()).collect();

    send_message(
        &mut c,
        "sender@example.com",
        &["x@example.net", "y@example.net"],
        msg1,
    );
    send_message(&mut c, "", &rcpts2, msg2);
    // An aborted transaction leaves no dump.
    c.smtp("MAIL FROM:<aborted@example.com>", "250");
    c.smtp("RCPT TO:<x@example.net>", "250");
    c.smtp("RSET", "250");

    let dumps = sink.wait_for_dumps(2, TIMEOUT);
    assert_eq!(dumps.len(), 2, "dumps: {dumps:?}");
    let d1 = dumps
        .iter()
        .find(|d| d.header("Subject").as_deref() == Some("first"))
        .expect("first");
    let d2 = dumps
        .iter()
        .find(|d| d.header("Subject").as_deref() == Some("second"))
        .expect("second");

    // Exactly the original bytes, with CRLF stored as LF ...
    assert_eq!(
        d1.body,
        b"Subject: first\nFrom: a@example.com\n\n.leading dot\n.\n..two dots\n\
          caf\xc3\xa9 \xff\xfe raw 8-bit\x00nul\ntrailing  \n"
            .to_vec()
    );
    // ... and a message without a final CRLF gets one (the client has to
    // send CRLF before the final dot), stored as LF.
    assert_eq!(
        d2.body,
        b"Subject: second\n\nline one\nno final newline\n".to_vec()
    );
    assert_eq!(d1.body, sink_form(msg1));
    assert_eq!(d2.body, sink_form(msg2));

    assert_eq!(d1.mail_from, "sender@example.com");
    assert_eq!(d1.mail_args, "<sender@example.com> BODY=8BITMIME");
    assert_eq!(d1.rcpts, ["x@example.net", "y@example.net"]);
    assert_eq!(d1.helo.as_deref(), Some("client.test"));
    assert_eq!(d1.proto, "ESMTP");
    assert_eq!(d2.mail_from, "");
    assert_eq!(d2.rcpts, rcpts2);

    // Raw file layout (documented on SinkDump).
    let raw = std::fs::read(&d1.path).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with(
        "X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: client.test\n\
         X-Mail-Args: <sender@example.com> BODY=8BITMIME\nX-Rcpt-Args: <x@example.net>\n\
         X-Rcpt-Args: <y@example.net>\nReceived: from client.test ([127.0.0.1])\n\tby smtp-sink (smtp-sink) with ESMTP id "
    ));
    assert!(
        raw.ends_with(b"trailing  \n\n"),
        "smtp-sink appends one empty line"
    );
    let name = d1.path.file_name().unwrap().to_string_lossy().into_owned();
    let (minute, random) = name.split_once('.').unwrap();
    assert!(
        minute.len() == 2 && minute.parse::<u32>().unwrap() < 60 && u64::from_str_radix(random, 16).is_ok(),
        "dump file name {name:?} is <minute>.<hex>"
    );

    // A transaction in progress is not counted until its final dot.
    c.smtp("MAIL FROM:<late@example.com>", "250");
    c.smtp("RCPT TO:<x@example.net>", "250");
    c.smtp("DATA", "354");
    c.send(b"Subject: third\r\n\r\n");
    c.send(&vec![b'x'; 200_000]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        std::fs::read_dir(&sink.dump_dir).unwrap().count(),
        3,
        "the open file exists"
    );
    assert_eq!(sink.count_dumps(), 2, "but is not complete");
    c.send(b"\r\n.\r\n");
    assert!(c.smtp_reply()[0].starts_with("250"));
    let dumps = sink.wait_for_dumps(3, TIMEOUT);
    assert_eq!(dumps.len(), 3);
    let d3 = dumps
        .iter()
        .find(|d| d.header("Subject").as_deref() == Some("third"))
        .unwrap();
    assert_eq!(d3.body.len(), "Subject: third\n\n".len() + 200_000 + 1);
    c.smtp("QUIT", "221");

    sink.clear_dumps();
    assert_eq!(sink.count_dumps(), 0);
}

#[test]
fn smtp_sink_fault_options_and_stop() {
    // -f MAIL: hard 5xx for MAIL.
    let mut sink = SmtpSink::start(&["-f", "MAIL"]);
    let mut c = Conn::connect(sink.port);
    c.smtp_reply();
    c.smtp("EHLO t", "250");
    c.smtp("MAIL FROM:<a@b>", "5");
    let pid = sink.pid();
    sink.stop();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || !process_alive(pid),
        "smtp-sink stopped"
    );
    assert!(
        TcpStream::connect((HOST, sink.port)).is_err(),
        "port closed after stop()"
    );
    assert!(sink.dump_dir.exists(), "dumps stay until drop");
    let dir = sink.dump_dir.clone();
    drop(sink);
    assert!(!dir.exists(), "temp dir removed on drop");
}

fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// Pids of live processes whose command line contains `needle`.
fn processes_matching(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && process_alive(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn dovecot_imap_pop3_submission() {
    let t0 = Instant::now();
    let dovecot = Dovecot::start();
    eprintln!("Dovecot::start took {:?}", t0.elapsed());
    assert!(dovecot.ca_file.exists());
    assert!(dovecot.user_maildir("alice").join("new").is_dir());

    // IMAP, plain socket.
    let mut imap = Conn::connect(dovecot.imap_port);
    let greeting = imap.line();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    imap.send(b"a LOGIN alice alicepass\r\n");
    let ok = imap.line();
    assert!(ok.starts_with("a OK"), "{ok}");
    for cap in [
        "IDLE",
        "LITERAL+",
        "MULTIAPPEND",
        "UIDPLUS",
        "MOVE",
        "CONDSTORE",
        "QRESYNC",
    ] {
        assert!(ok.split([' ', ']']).any(|w| w == cap), "{cap} missing: {ok}");
    }

    // established_connections sees it (the client side, dport = imap port).
    assert_eq!(established_connections(dovecot.imap_port), 1);
    let extra: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect((HOST, dovecot.imap_port)).unwrap())
        .collect();
    assert_eq!(wait_for_connections(dovecot.imap_port, 4, TIMEOUT), 4);
    drop(extra);
    assert_eq!(wait_for_connections(dovecot.imap_port, 1, TIMEOUT), 1);

    imap.send(b"b LOGOUT\r\n");
    assert!(imap.line().starts_with("* BYE"));

    // Implicit TLS listeners accept TCP (std has no TLS; see the Python test).
    TcpStream::connect((HOST, dovecot.imaps_port)).expect("imaps accepts");
    TcpStream::connect((HOST, dovecot.pop3s_port)).expect("pop3s accepts");

    // A message stored with doveadm, then POP3.
    dovecot.append("bob", "INBOX", b"Subject: hello bob\r\n\r\nbody\r\n");
    let mut pop = Conn::connect(dovecot.pop3_port);
    assert!(pop.line().starts_with("+OK"));
    pop.send(b"USER bob\r\n");
    assert!(pop.line().starts_with("+OK"));
    pop.send(b"PASS bobpass\r\n");
    let ok = pop.line();
    assert!(ok.starts_with("+OK"), "{ok}");
    pop.send(b"STAT\r\n");
    let stat = pop.line();
    assert!(stat.starts_with("+OK 1 "), "{stat}");
    pop.send(b"QUIT\r\n");
    assert!(pop.line().starts_with("+OK"));

    // Submission: greeting, EHLO with STARTTLS, CHUNKING, AUTH PLAIN LOGIN.
    let mut smtp = Conn::connect(dovecot.submission_port);
    assert!(smtp.smtp_reply()[0].starts_with("220 "));
    let ehlo = smtp.smtp("EHLO client.test", "250");
    for kw in [
        "STARTTLS",
        "CHUNKING",
        "AUTH PLAIN LOGIN",
        "PIPELINING",
        "8BITMIME",
        "SIZE",
    ] {
        assert!(
            ehlo.iter().any(|l| l[4..].starts_with(kw)),
            "{kw} missing: {ehlo:?}"
        );
    }
    // AUTH without TLS is allowed (disable_plaintext_auth = no); relay to the sink.
    smtp.smtp("AUTH PLAIN AGNhcm9sAGNhcm9scGFzcw==", "235"); // \0carol\0carolpass
    send_message(
        &mut smtp,
        "carol@localhost",
        &["dest@example.com"],
        b"Subject: relayed\r\n\r\nvia submission\r\n",
    );
    smtp.smtp("QUIT", "221");
    let dumps = dovecot.sink.wait_for_dumps(1, TIMEOUT);
    assert_eq!(dumps.len(), 1, "{}", dovecot.log());
    assert_eq!(dumps[0].rcpts, ["dest@example.com"]);
    assert_eq!(dumps[0].mail_from, "carol@localhost");
    // Dovecot prepends its own Received: header and adds AUTH= to MAIL.
    assert!(dumps[0]
        .body_str()
        .starts_with("Received: from client.test ([127.0.0.1])\n\tby localhost with ESMTPA\n"));
    assert_eq!(
        dumps[0].body_after_received(),
        b"Subject: relayed\n\nvia submission\n"
    );
    assert_eq!(dumps[0].mail_args, "<carol@localhost> AUTH=carol BODY=8BITMIME");

    // Wrong password: fails quickly, and the next correct login is not
    // delayed by Dovecot's auth penalty (disabled in the config).
    let t = Instant::now();
    let mut imap = Conn::connect(dovecot.imap_port);
    imap.line();
    imap.send(b"a LOGIN alice wrong\r\na LOGIN alice alicepass\r\n");
    assert!(imap.line().starts_with("a NO"));
    let ok = imap.line();
    assert!(ok.starts_with("a OK"), "{ok}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "failed + good login took {:?}",
        t.elapsed()
    );

    assert!(dovecot.log().contains("imap-login: Info: Login: user=<alice>"));

    // Drop stops everything and removes the temp dir.
    let (root, sink_dir, instance, pid) = (
        dovecot.root.clone(),
        dovecot.sink.dump_dir.clone(),
        dovecot.instance.clone(),
        dovecot.pid(),
    );
    let t = Instant::now();
    drop(dovecot);
    eprintln!("dropping Dovecot took {:?}", t.elapsed());
    assert!(!process_alive(pid));
    assert_eq!(
        processes_matching(&format!("dovecot-{instance}/")),
        Vec::<u32>::new()
    );
    assert!(!root.exists() && !sink_dir.exists());
}

#[test]
fn python_clients_against_dovecot() {
    // Python's imaplib/poplib/smtplib are the independent checkers of later
    // tests; they also exercise TLS and ca_file, which Rust std cannot.
    let dovecot = Dovecot::start();
    let script = r#"
import imaplib, poplib, smtplib, ssl, sys
imap, imaps, pop3, pop3s, sub, ca = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL("localhost", int(imaps), ssl_context=ctx)
m.login("alice", "alicepass")
m.append("INBOX", None, None, b"Subject: py\r\n\r\nfrom imaplib\r\n")
typ, data = m.select("INBOX")
assert data == [b"1"], data
m.logout()
m = imaplib.IMAP4("127.0.0.1", int(imap))
m.starttls(ssl_context=ctx)
m.login("bob", "bobpass")
m.logout()
p = poplib.POP3_SSL("127.0.0.1", int(pop3s), context=ctx)
p.user("alice"); p.pass_("alicepass")
assert p.stat()[0] == 1
p.quit()
p = poplib.POP3("127.0.0.1", int(pop3))
p.stls(context=ctx)
p.user("carol"); p.pass_("carolpass")
p.quit()
s = smtplib.SMTP("127.0.0.1", int(sub))
s.starttls(context=ctx)
s.login("alice", "alicepass")
s.sendmail("alice@localhost", ["a@example.com", "b@example.com"], b"Subject: py smtp\r\n\r\nhello\r\n")
s.quit()
print("python ok")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(
            [
                dovecot.imap_port,
                dovecot.imaps_port,
                dovecot.pop3_port,
                dovecot.pop3s_port,
                dovecot.submission_port,
            ]
            .map(|p| p.to_string()),
        )
        .arg(&dovecot.ca_file)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed:\n{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        dovecot.log()
    );
    let dumps = dovecot.sink.wait_for_dumps(1, TIMEOUT);
    assert_eq!(dumps.len(), 1);
    assert_eq!(dumps[0].rcpts, ["a@example.com", "b@example.com"]);
    assert_eq!(dumps[0].header("Subject").as_deref(), Some("py smtp"));
    // imaplib's APPEND landed in the maildir.
    let new = std::fs::read_dir(dovecot.user_maildir("alice").join("new"))
        .unwrap()
        .count();
    let cur = std::fs::read_dir(dovecot.user_maildir("alice").join("cur"))
        .unwrap()
        .count();
    assert_eq!(new + cur, 1);
}

#[test]
fn parallel_dovecots_are_independent() {
    let handles: Vec<_> = (0..2).map(|_| std::thread::spawn(Dovecot::start)).collect();
    let a = handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>();
    let ports = |d: &Dovecot| {
        [
            d.imap_port,
            d.imaps_port,
            d.pop3_port,
            d.pop3s_port,
            d.submission_port,
            d.sink.port,
        ]
    };
    let (pa, pb) = (ports(&a[0]), ports(&a[1]));
    assert!(pa.iter().all(|p| !pb.contains(p)), "{pa:?} vs {pb:?}");
    assert_ne!(a[0].root, a[1].root);
    assert_ne!(a[0].instance, a[1].instance);
    for d in &a {
        let mut imap = Conn::connect(d.imap_port);
        imap.line();
        imap.send(b"a LOGIN carol carolpass\r\n");
        assert!(imap.line().starts_with("a OK"));
    }
}

/// Helper for `servers_die_with_the_test_process`: runs only in a child test
/// process (env HERALD_SMOKE_CHILD set), starts servers, prints their pids
/// and dirs, then waits to be killed with SIGKILL.
#[test]
#[ignore = "helper: run by servers_die_with_the_test_process"]
fn child_holding_servers() {
    if std::env::var_os("HERALD_SMOKE_CHILD").is_none() {
        return;
    }
    let dovecot = Dovecot::start();
    let sink = SmtpSink::start(&[]);
    println!(
        "READY {} {} {} {} {} {}",
        dovecot.pid(),
        sink.pid(),
        dovecot.sink.pid(),
        dovecot.root.display(),
        sink.dump_dir.display(),
        dovecot.instance
    );
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn servers_die_with_the_test_process() {
    herald_testservers::require_servers();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_holding_servers",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HERALD_SMOKE_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // With --nocapture, "READY ..." may follow "test child_holding_servers ... " on one line.
    while !line.contains("READY ") {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 || Instant::now() > deadline {
            let _ = child.kill();
            let mut rest = String::new();
            let _ = out.read_to_string(&mut rest);
            panic!("child did not report READY: {line}{rest}");
        }
    }
    let f: Vec<&str> = line[line.find("READY ").unwrap()..].split_whitespace().collect();
    let pids: Vec<u32> = f[1..4].iter().map(|p| p.parse().unwrap()).collect();
    let (root, dump_dir, instance) = (f[4].to_string(), f[5].to_string(), f[6].to_string());
    assert!(pids.iter().all(|&p| process_alive(p)));

    child.kill().unwrap(); // SIGKILL: no Drop runs in the child
    child.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| process_alive(p)).collect();
        let leftovers = processes_matching(&format!("dovecot-{instance}/"));
        let dirs = Path::new(&root).exists() || Path::new(&dump_dir).exists();
        if alive.is_empty() && leftovers.is_empty() && !dirs {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after SIGKILL of the test process: alive {alive:?}, dovecot children {leftovers:?}, dirs left: {dirs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn scripted_server_answers_and_resets() {
    use std::io::{BufRead, BufReader, Read, Write};
    let srv = herald_testservers::scripted::Scripted::start(|mut p| {
        p.send("220 hello\r\n")?;
        let l = p.line()?;
        p.send(format!("250 {l}\r\n"))?;
        p.reset();
        Ok(())
    });
    let mut c = std::net::TcpStream::connect((herald_testservers::HOST, srv.port())).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "220 hello\r\n");
    c.write_all(b"NOOP\r\n").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "250 NOOP\r\n");
    let mut rest = Vec::new();
    let e = r.read_to_end(&mut rest).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(srv.accepted(), 1);
}
