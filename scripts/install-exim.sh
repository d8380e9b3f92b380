#!/usr/bin/env bash
# Puts Debian's Exim 4 daemon (exim4-daemon-light) into a private folder for
# the tests' private Exim instance (testservers/src/exim.rs), without
# installing the package: Exim's packages conflict with Postfix's
# (mail-transport-agent), which the other tests need installed.
#
#   scripts/install-exim.sh [DIR]     (default /opt/herald-test-servers/exim)
#
# - `apt-get download` + `dpkg-deb -x` of exim4-daemon-light into DIR/root;
#   the binary is DIR/root/usr/sbin/exim4. Nothing of exim4-base or
#   exim4-config is needed: the tests write their own config
#   (tests/servers/exim/exim.conf.in) and point exim_path at this binary.
# - The shared libraries the binary links (its lib* Depends: libidn12,
#   libgnutls-dane0, ...) are apt-installed when missing: they conflict with
#   nothing. (LD_LIBRARY_PATH cannot stand in for them: Exim clears its
#   environment when it re-executes itself to deliver.)
# - Creates the system user and group Debian-exim, which the binary's
#   compiled-in exim_user names, when missing.
#
# Idempotent: a second run with everything in place does nothing (no apt, no
# network) and says so. Run as root (or with sudo), non-interactive.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
exec </dev/null

dir=${1:-/opt/herald-test-servers/exim}
bin=$dir/root/usr/sbin/exim4
log() { printf 'install-exim: %s\n' "$*" >&2; }

# Root is needed only for what must change: a run with everything in place
# works as any user.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        log "must run as root (or with sudo) to: $*"
        exit 1
    fi
}

if ! getent passwd Debian-exim >/dev/null 2>&1; then
    getent group Debian-exim >/dev/null 2>&1 || as_root groupadd --system Debian-exim
    as_root useradd --system --no-create-home --gid Debian-exim \
        --shell /usr/sbin/nologin --home-dir /nonexistent Debian-exim
    log "created user Debian-exim (uid $(id -u Debian-exim))"
fi

version() { { "$bin" -bV 2>/dev/null || true; } | sed -n 1p; }
links_ok() { [ -x "$bin" ] && ! ldd "$bin" 2>/dev/null | grep -q 'not found'; }
# The package's binary is setuid root; this private copy is only ever run
# by root (the tests), so it keeps no setuid bit lying around.
strip_setuid() {
    if [ -u "$bin" ] || [ -g "$bin" ]; then as_root chmod u-s,g-s "$bin"; fi
}
if [ -e "$bin" ]; then strip_setuid; fi
if links_ok; then
    log "ok: $(version) in $dir (nothing to do)"
    exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-exim.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"
if [ ! -x "$bin" ]; then
    log "downloading exim4-daemon-light"
    # _apt downloads into the current directory: it must be able to write it.
    (cd "$tmp" && as_root apt-get download exim4-daemon-light >/dev/null 2>&1) || {
        as_root apt-get update -q >/dev/null
        (cd "$tmp" && as_root apt-get download exim4-daemon-light)
    }
    deb=$(ls "$tmp"/exim4-daemon-light_*.deb)
    as_root mkdir -p "$dir"
    as_root rm -rf "$dir/root.new"
    as_root dpkg-deb -x "$deb" "$dir/root.new"
    as_root cp "$deb" "$dir/"
    as_root rm -rf "$dir/root"
    as_root mv "$dir/root.new" "$dir/root"
    strip_setuid
fi

# The libraries the binary needs, from the package's own Depends.
deb=$(ls "$dir"/exim4-daemon-light_*.deb | head -1)
missing=()
for pkg in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/ //g' | grep '^lib'); do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing the libraries Exim links: ${missing[*]}"
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}" || {
        as_root apt-get update -q
        as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
    }
fi
if ! links_ok; then
    ldd "$bin" >&2 || true
    log "FAIL: $bin does not link"
    exit 1
fi
log "ok: $(version) in $dir"
