"""Real mail servers on loopback ports for herald's Python and Pascal tests.

* :class:`SmtpSink`: Postfix's ``smtp-sink``, dumping each accepted message
  into its own file (``-d DIR/%M.``).
* :class:`Dovecot`: a private Dovecot 2.3 (IMAP, POP3, submission relaying to
  its own smtp-sink) from ``tests/servers/dovecot.conf.in``, users alice,
  bob and carol (passwords alicepass, bobpass, carolpass). Needs root.

Each server runs in a process group of its own under a small ``/bin/sh``
supervisor that reads a pipe from this process: when the pipe closes (stop(),
or this process exiting or being killed, even with SIGKILL) the supervisor
kills the server's whole group and removes its temp dir. ``stop()`` (also
run by an atexit hook) then waits until no process of the group is alive.

As a program, ``python3 mailservers.py run -- CMD ARGS...`` starts an
smtp-sink and a Dovecot, runs CMD with HERALD_TEST_SMTP_PORT,
HERALD_TEST_SINK_DIR, HERALD_TEST_IMAP_PORT, HERALD_TEST_POP3_PORT,
HERALD_TEST_USER and HERALD_TEST_PASSWORD in its environment, stops the
servers and exits with CMD's status.
"""

import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
SMTP_SINK = "/usr/sbin/smtp-sink"
DOVECOT = "/usr/sbin/dovecot"
USERS = [("alice", "alicepass"), ("bob", "bobpass"), ("carol", "carolpass")]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

_REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DOVECOT_TEMPLATE = os.environ.get(
    "HERALD_DOVECOT_TEMPLATE", os.path.join(_REPO, "tests", "servers", "dovecot.conf.in")
)
_BASE = os.path.join(tempfile.gettempdir(), "herald-bindings-tests")

# $1 = log file, $2 = dir to remove at the end, $3... = the server's command.
# The server gets its own session and process group (setsid); its pid (= its
# pgid) is printed; then the supervisor blocks on stdin until EOF.
_SUPERVISOR = r"""
trap '' INT QUIT HUP TERM
log=$1; cleanup=$2; shift 2
setsid "$@" </dev/null >>"$log" 2>&1 &
pid=$!
echo "$pid"
exec >/dev/null
while read -r line; do :; done
kill -KILL -"$pid" 2>/dev/null
wait "$pid"
case "$cleanup" in
    */herald-bindings-tests/*) rm -rf -- "$cleanup" 2>/dev/null || { sleep 0.2; rm -rf -- "$cleanup"; } ;;
esac
exit 0
"""

_running = []


def _stop_all():
    for s in list(_running):
        s.stop()


atexit.register(_stop_all)


def _group_alive(pgid):
    """True while a live (not zombie) process is in process group pgid."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return False
    for n in names:
        if not n.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % n) as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 1:].split()
        if len(rest) > 2 and rest[2] == str(pgid) and rest[0] not in ("Z", "X"):
            return True
    return False


def _pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


class Supervised:
    def __init__(self, name, argv, log, cleanup_dir):
        self.name = name
        with open(log, "ab") as logf:
            self._sup = subprocess.Popen(
                ["/bin/sh", "-c", _SUPERVISOR, "herald-%s-supervisor" % name, log, cleanup_dir]
                + list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logf,
                start_new_session=True,
            )
        line = self._sup.stdout.readline()
        self._sup.stdout.close()
        self.pid = int(line)
        _running.append(self)

    def running(self):
        return _pid_alive(self.pid)

    def stop(self):
        if self not in _running:
            return
        _running.remove(self)
        try:
            self._sup.stdin.close()  # EOF: the supervisor kills the group
        except OSError:
            pass
        try:
            self._sup.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
            self._sup.kill()
            self._sup.wait()
        deadline = time.monotonic() + STOP_TIMEOUT
        while _group_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.005)


def free_port():
    """A port free now, outside the ephemeral range when possible (so that no
    outgoing connection's source port takes it before the server binds)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999
    if lo >= 12000:
        span = (10000, lo)
    elif hi <= 55000:
        span = (hi + 1, 65535)
    else:
        span = None
    rnd = random.Random()
    for _ in range(1000):
        if span is None:
            break
        port = rnd.randrange(*span)
        s = socket.socket()
        try:
            s.bind((HOST, port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _greeting(port, timeout):
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.settimeout(timeout)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1)
            if not chunk:
                break
            data += chunk
        return data.decode("latin-1")


def _wait_ready(proc, checks, log):
    """checks: [(port, greeting prefix)]. Raises RuntimeError with the log."""
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(checks)
    while pending:
        if not proc.running():
            raise RuntimeError("%s exited during startup:\n%s" % (proc.name, _read(log)))
        port, prefix = pending[0]
        try:
            line = _greeting(port, 2.0)
            if not line.startswith(prefix):
                raise RuntimeError("%s port %d greeted %r" % (proc.name, port, line))
            pending.pop(0)
            continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("%s did not listen on %r:\n%s" % (proc.name, checks, _read(log)))
        time.sleep(0.005)


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _tempdir(prefix):
    os.makedirs(_BASE, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix + "-", dir=_BASE)


class SmtpSink:
    """``smtp-sink -u nobody EXTRA -d DIR/%M. 127.0.0.1:PORT 100``."""

    def __init__(self, extra_args=()):
        last = ""
        for _attempt in range(5):
            self.dir = _tempdir("smtp-sink")
            os.chmod(self.dir, 0o755)  # smtp-sink writes as nobody
            self.dump_dir = os.path.join(self.dir, "dumps")
            os.mkdir(self.dump_dir)
            os.chmod(self.dump_dir, 0o777)
            self.port = free_port()
            log = os.path.join(self.dir, "smtp-sink.log")
            argv = [SMTP_SINK]
            if os.geteuid() == 0:
                argv += ["-u", "nobody"]
            argv += list(extra_args) + ["-d", self.dump_dir + "/%M.", "%s:%d" % (HOST, self.port), "100"]
            self._proc = Supervised("smtp-sink", argv, log, self.dir)
            try:
                _wait_ready(self._proc, [(self.port, "220 ")], log)
                return
            except RuntimeError as e:
                last = str(e)
                self._proc.stop()
                shutil.rmtree(self.dir, ignore_errors=True)
                if "in use" not in last:
                    break
        raise RuntimeError("smtp-sink did not start: " + last)

    def dumps(self):
        """The contents of every message dump, oldest first."""
        out = []
        for n in os.listdir(self.dump_dir):
            p = os.path.join(self.dump_dir, n)
            with open(p, "rb") as f:
                out.append((os.stat(p).st_mtime, f.read()))
        return [d for _, d in sorted(out, key=lambda t: t[0])]

    def wait_dumps(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            d = self.dumps()
            if len(d) >= n or time.monotonic() > deadline:
                return d
            time.sleep(0.01)

    def stop(self):
        self._proc.stop()


class Dovecot:
    """A private Dovecot instance; needs root (it switches to user vmail)."""

    def __init__(self, extra_conf=""):
        if os.geteuid() != 0:
            raise RuntimeError("Dovecot must be started as root")
        import pwd

        vmail = pwd.getpwnam("vmail")
        self.sink = SmtpSink()
        last = ""
        try:
            for attempt in range(5):
                try:
                    self._start(vmail, extra_conf, attempt)
                    return
                except RuntimeError as e:
                    last = str(e)
                    if "in use" not in last:
                        break
            raise RuntimeError("Dovecot did not start: " + last)
        except BaseException:
            self.sink.stop()
            raise

    def _start(self, vmail, extra_conf, attempt):
        root = _tempdir("dovecot")
        os.chmod(root, 0o755)  # Dovecot's auth and mail processes read below it
        self.root = root
        tls = os.path.join(root, "tls")
        os.mkdir(tls)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", os.path.join(tls, "key.pem"), "-out", os.path.join(tls, "cert.pem"),
             "-days", "30", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.ca_file = os.path.join(tls, "cert.pem")
        with open(os.path.join(root, "passwd"), "w") as f:
            f.write("".join("%s:%s\n" % u for u in USERS))
        mail = os.path.join(root, "mail")
        for user, _ in USERS:
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(mail, user, "Maildir", sub))
        for dirpath, dirnames, filenames in os.walk(mail):
            os.chown(dirpath, vmail.pw_uid, vmail.pw_gid)
        for user, _ in USERS:
            os.chmod(os.path.join(mail, user), 0o700)
        ports = [free_port() for _ in range(5)]
        self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port, self.submission_port = ports
        with open(DOVECOT_TEMPLATE) as f:
            conf = f.read()
        instance = "herald-py-%d-%d-%d" % (os.getpid(), id(self) % 100000, attempt)
        for k, v in [("ROOT", root), ("INSTANCE", instance), ("IMAP_PORT", ports[0]),
                     ("IMAPS_PORT", ports[1]), ("POP3_PORT", ports[2]), ("POP3S_PORT", ports[3]),
                     ("SUBMISSION_PORT", ports[4]), ("SINK_PORT", self.sink.port)]:
            conf = conf.replace("@%s@" % k, str(v))
        conf += "\n# --- extra settings from the test\n" + extra_conf + "\n"
        self.conf = os.path.join(root, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        log = os.path.join(root, "dovecot.stderr")
        self._proc = Supervised("dovecot", [DOVECOT, "-F", "-c", self.conf], log, root)
        try:
            _wait_ready(self._proc, [(ports[0], "* OK"), (ports[2], "+OK"), (ports[4], "220 ")], log)
        except RuntimeError as e:
            text = str(e) + _read(os.path.join(root, "dovecot.log"))
            self._proc.stop()
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(text) from None

    def log(self):
        return _read(os.path.join(self.root, "dovecot.log"))

    def doveadm(self, args, stdin=b""):
        out = subprocess.run(["/usr/bin/doveadm", "-c", self.conf] + list(args), input=stdin,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if out.returncode != 0:
            raise RuntimeError("doveadm %r: %s%s" % (args, out.stdout, out.stderr))
        return out.stdout.decode()

    def save(self, user, mailbox, message):
        """Stores a message with ``doveadm save``, as a delivery would."""
        self.doveadm(["save", "-u", user, "-m", mailbox], message)

    def stop(self):
        self._proc.stop()
        self.sink.stop()


def _main(argv):
    if len(argv) < 3 or argv[1] != "run" or "--" not in argv:
        sys.stderr.write("usage: mailservers.py run -- CMD [ARGS...]\n")
        return 2
    cmd = argv[argv.index("--") + 1:]
    t0 = time.monotonic()
    sink = SmtpSink()
    dove = Dovecot()
    env = dict(os.environ)
    env.update({
        "HERALD_TEST_SMTP_PORT": str(sink.port),
        "HERALD_TEST_SINK_DIR": sink.dump_dir,
        "HERALD_TEST_IMAP_PORT": str(dove.imap_port),
        "HERALD_TEST_POP3_PORT": str(dove.pop3_port),
        "HERALD_TEST_USER": USERS[0][0],
        "HERALD_TEST_PASSWORD": USERS[0][1],
    })
    sys.stderr.write("mailservers: smtp-sink on %d, Dovecot IMAP %d POP3 %d (%.2f s)\n"
                     % (sink.port, dove.imap_port, dove.pop3_port, time.monotonic() - t0))
    try:
        rc = subprocess.call(cmd, env=env)
    finally:
        dove.stop()
        sink.stop()
    return rc


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
