#!/usr/bin/env bash
# Installs what herald's integration tests need to start REAL mail servers on
# loopback ports (see testservers/, the herald-testservers crate, and tests/servers/):
#   Postfix's smtp-sink, Dovecot (imapd, pop3d, submissiond), valgrind,
#   openssl, iproute2 (ss), python3, gcc + libc6-dev, make, and setsid
#   (util-linux, present on every Debian/Ubuntu system); and what building
#   herald itself needs beyond Rust: libssl-dev and pkg-config (native-tls).
#
# Idempotent and non-interactive (works with CI=true and no stdin). Run as root,
# or as a user with sudo. Debian/Ubuntu (apt) only.
#
# - apt-get is skipped entirely when every needed binary is already present.
# - postfix is preseeded to "No configuration": it stays unconfigured and is
#   never started; we only use /usr/sbin/smtp-sink.
# - The packages' own dovecot/postfix services are prevented from starting
#   during installation (a temporary policy-rc.d when none exists) and are
#   stopped and disabled afterwards if they run anyway. Tests start private
#   instances with their own configs.
# - Creates the `vmail` system user/group (uid/gid 5000) that owns test maildirs.
# - Unpacks Cyrus IMAP 3.6 from Debian's .debs into /opt/herald-cyrus and
#   creates the `cyrus` user (scripts/cyrus-debs.sh).
# - The tests' Dovecot template is for Dovecot 2.3.x (Debian 12, Ubuntu 22.04/24.04).
#
# With --build-only it installs just what building herald needs (a C
# compiler, libssl-dev, pkg-config): the demo's case.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
exec </dev/null

build_only=0
if [ "${1-}" = "--build-only" ]; then
    build_only=1
fi

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

# Root (or sudo) is needed only when something must change; checked lazily.
SUDO=()
need_root() {
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        log "$1: must run as root (or with sudo available)"
        exit 1
    fi
}
as_root() { "${SUDO[@]}" "$@"; }

# "binary-path package" pairs: a package is installed when its binary is missing.
NEEDS=(
    "/usr/sbin/smtp-sink postfix"
    "/usr/sbin/dovecot dovecot-core"
    "/usr/bin/doveadm dovecot-core"
    "/usr/lib/dovecot/imap dovecot-imapd"
    "/usr/lib/dovecot/pop3 dovecot-pop3d"
    "/usr/lib/dovecot/submission dovecot-submissiond"
    "valgrind valgrind"
    "openssl openssl"
    "ss iproute2"
    "python3 python3"
    "gcc gcc"
    "/usr/include/stdio.h libc6-dev"
    "make make"
    "setsid util-linux"
    "/usr/include/openssl/ssl.h libssl-dev"
    "pkg-config pkg-config"
)
# More "binary package" lines, one file per area of the suite (scripts/deps.d/*.list;
# lines starting with # are comments).
for list in "$(dirname "$0")"/deps.d/*.list; do
    [ -e "$list" ] || continue
    while read -r bin pkg; do
        case "$bin" in ''|'#'*) continue ;; esac
        NEEDS+=("$bin $pkg")
    done <"$list"
done
if [ "$build_only" -eq 1 ]; then
    NEEDS=(
        "gcc gcc"
        "/usr/include/stdio.h libc6-dev"
        "/usr/include/openssl/ssl.h libssl-dev"
        "pkg-config pkg-config"
    )
fi

have() {
    case "$1" in
        /*) [ -e "$1" ] ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

missing=()
for pair in "${NEEDS[@]}"; do
    bin=${pair%% *}
    pkg=${pair#* }
    if ! have "$bin"; then
        case " ${missing[*]-} " in
            *" $pkg "*) ;;
            *) missing+=("$pkg") ;;
        esac
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing packages (${missing[*]}) and no apt-get; install them by hand"
        exit 1
    fi
    need_root "installing ${missing[*]}"
    log "installing: ${missing[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
    echo "postfix postfix/mailname string localhost" | as_root debconf-set-selections

    # Keep the packages' services from starting during installation.
    # invoke-rc.d and deb-systemd-invoke both honour policy-rc.d (101 = deny).
    temp_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 0755 /usr/sbin/policy-rc.d
        temp_policy=1
    fi
    cleanup_policy() {
        if [ "$temp_policy" -eq 1 ]; then
            as_root rm -f /usr/sbin/policy-rc.d
        fi
    }
    trap cleanup_policy EXIT

    # dovecot-core is pulled in by the protocol packages; list it if needed.
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}"
    cleanup_policy
    temp_policy=0
    trap - EXIT
else
    log "all needed binaries are present; skipping apt-get"
fi
if [ "$build_only" -eq 1 ]; then
    exit 0
fi

# The mail user that owns test maildirs (Dovecot refuses uids below 500).
if ! getent group vmail >/dev/null 2>&1 || ! getent passwd vmail >/dev/null 2>&1; then
    need_root "creating the vmail user"
fi
if ! getent group vmail >/dev/null 2>&1; then
    if getent group 5000 >/dev/null 2>&1; then
        as_root groupadd --system vmail
    else
        as_root groupadd --system --gid 5000 vmail
    fi
fi
if ! getent passwd vmail >/dev/null 2>&1; then
    if getent passwd 5000 >/dev/null 2>&1; then
        log "uid 5000 is taken; creating vmail with another uid"
        as_root useradd --system --no-create-home --gid vmail \
            --shell /usr/sbin/nologin --home-dir /nonexistent vmail
    else
        as_root useradd --system --no-create-home --uid 5000 --gid vmail \
            --shell /usr/sbin/nologin --home-dir /nonexistent vmail
    fi
    log "created user vmail (uid $(id -u vmail))"
fi
vmail_uid=$(id -u vmail)
if [ "$vmail_uid" -lt 500 ]; then
    log "vmail has uid $vmail_uid < 500; Dovecot will refuse it (first_valid_uid)"
    exit 1
fi

# Make sure the system-wide services are not running (and, under systemd,
# not enabled): tests run their own private instances.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    for svc in dovecot.service dovecot.socket postfix.service; do
        if systemctl list-unit-files "$svc" >/dev/null 2>&1 \
            && systemctl list-unit-files "$svc" | grep -q "^$svc"; then
            as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
        fi
    done
else
    if [ -s /run/dovecot/master.pid ] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
        log "stopping the system dovecot"
        as_root doveadm stop 2>/dev/null || as_root kill "$(cat /run/dovecot/master.pid)" || true
    fi
    if [ -s /var/spool/postfix/pid/master.pid ] \
        && kill -0 "$(tr -d ' ' </var/spool/postfix/pid/master.pid)" 2>/dev/null; then
        log "stopping the system postfix"
        as_root postfix stop 2>/dev/null || true
    fi
fi

# Cyrus IMAP, unpacked from its .debs (it conflicts with the Dovecot packages).
"$(dirname "$0")"/cyrus-debs.sh
# Exim 4 for the tests' private instance: extracted from its .deb, never
# installed (it conflicts with the postfix package).
"$(dirname "$0")"/install-exim.sh

# Report versions (useful in CI logs).
dovecot_version=$(/usr/sbin/dovecot --version 2>/dev/null || echo unknown)
case "$dovecot_version" in
    2.3.*) ;;
    *) log "warning: Dovecot $dovecot_version; tests/servers/dovecot.conf.in targets 2.3.x" ;;
esac
log "ok: dovecot $dovecot_version, $(/usr/sbin/postconf -d mail_version 2>/dev/null || echo 'postfix ?'), vmail uid $vmail_uid"
