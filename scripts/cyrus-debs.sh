#!/usr/bin/env bash
# Unpacks Cyrus IMAP 3.6 from Debian's .debs into a private folder, for the
# tests' private Cyrus instances (testservers/src/cyrus.rs). Cyrus conflicts
# with the Dovecot packages (both provide imap-server), so it is never
# installed: `apt-get download` fetches the .debs and `dpkg-deb -x` unpacks
# them into $HERALD_CYRUS_DIR (default /opt/herald-cyrus), with the shared
# libraries they need that the system lacks (libical3, libpcre3, libxapian30).
# Also creates the `cyrus` system user (the user Debian's Cyrus runs as:
# its master switches to it when started as root).
#
# Idempotent and non-interactive: does nothing when the folder is complete
# (a `.complete` marker, written last) and the user exists. Run as root, or
# as a user with sudo. Called by scripts/install-test-deps.sh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
exec </dev/null

dest=${HERALD_CYRUS_DIR:-/opt/herald-cyrus}
packages=(cyrus-common cyrus-imapd cyrus-admin libical3 libpcre3 libxapian30)

log() { printf 'cyrus-debs: %s\n' "$*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo -n)
fi
as_root() { "${SUDO[@]}" "$@"; }

if [ -e "$dest/.complete" ] && getent passwd cyrus >/dev/null 2>&1; then
    log "ok: $dest is unpacked"
    exit 0
fi

if ! getent passwd cyrus >/dev/null 2>&1; then
    getent group mail >/dev/null 2>&1 || as_root groupadd --system mail
    as_root useradd --system --no-create-home --gid mail \
        --shell /usr/sbin/nologin --home-dir /nonexistent cyrus
    log "created user cyrus (uid $(id -u cyrus))"
fi

if [ ! -e "$dest/.complete" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # _apt must be able to write the download folder, else apt warns.
    chmod 0777 "$work"
    if ! (cd "$work" && as_root apt-get download -q "${packages[@]}"); then
        log "apt-get download failed; updating the package lists and retrying"
        as_root apt-get update -q
        (cd "$work" && as_root apt-get download -q "${packages[@]}")
    fi
    as_root rm -rf "$dest.partial"
    as_root mkdir -p "$dest.partial"
    for deb in "$work"/*.deb; do
        as_root dpkg-deb -x "$deb" "$dest.partial"
    done
    as_root rm -rf "$dest"
    as_root mv "$dest.partial" "$dest"
    as_root touch "$dest/.complete"
fi
log "ok: $(ls "$dest"/usr/share/doc | grep -c .) packages unpacked into $dest"
