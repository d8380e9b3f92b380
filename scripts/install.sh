#!/usr/bin/env bash
# Builds herald in release mode and installs it for C, C++ and pkg-config:
#
#   scripts/install.sh [--prefix DIR] [--destdir D] [--libdir DIR] [--no-build] [--build-only] [--no-strip]
#
#   PREFIX/lib/libherald.so.0.1.0              the shared library (SONAME libherald.so.0)
#   PREFIX/lib/libherald.so.0 -> libherald.so.0.1.0
#   PREFIX/lib/libherald.so   -> libherald.so.0  (what -lherald finds at link time)
#   PREFIX/lib/libherald.a                     the static library
#   PREFIX/include/herald.h, herald.hpp        the C header and the C++17 wrapper
#   PREFIX/lib/pkgconfig/herald.pc             `pkg-config --cflags --libs herald`
#                                              (`--static` adds the system libraries)
#
# --prefix defaults to /usr/local. --destdir stages the files under D (for
# packaging) while herald.pc still names PREFIX. --build-only builds and
# stops; --no-build installs what target/release holds from a previous build
# (so a system-wide install builds as you and installs as root:
# `scripts/install.sh --build-only && sudo scripts/install.sh --no-build`).
# --no-strip keeps the symbol table; the installed libraries carry no debug
# info either way (for that: `cargo build --profile profiling`).
#
# After installing into a directory the dynamic linker does not search, run
# programs with LD_LIBRARY_PATH=PREFIX/lib (or add it to /etc/ld.so.conf.d and
# run ldconfig).
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
destdir=
libdir=
build=1
build_only=0
do_strip=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --libdir) libdir=${2:?--libdir needs a directory}; shift 2 ;;
        --libdir=*) libdir=${1#*=}; shift ;;
        --no-build) build=0; shift ;;
        --build-only) build_only=1; shift ;;
        --no-strip) do_strip=0; shift ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$prefix" in
    /*) ;;
    *) prefix="$PWD/$prefix" ;;
esac
prefix=${prefix%/}
libdir=${libdir:-$prefix/lib}
includedir=$prefix/include

log() { printf 'install.sh: %s\n' "$*" >&2; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
major=${version%%.*}
soname=libherald.so.$major
release=target/release
native_libs_file=$release/herald-native-static-libs

if [ "$build" -eq 1 ]; then
    # Builds the cdylib and the staticlib at once; rustc prints the system
    # libraries the staticlib needs (cargo replays the note when nothing changed).
    log "building herald $version (release)"
    out=$(cargo rustc --release --locked --lib --crate-type cdylib,staticlib \
        -- --print native-static-libs 2>&1) || { printf '%s\n' "$out" >&2; exit 1; }
    libs=$(printf '%s\n' "$out" | sed -n 's/.*native-static-libs: //p' | tail -1)
    if [ -z "$libs" ]; then
        printf '%s\n' "$out" >&2
        log "rustc did not print native-static-libs"
        exit 1
    fi
    printf '%s\n' "$libs" >"$native_libs_file"
fi
if [ "$build_only" -eq 1 ]; then
    log "built target/release/libherald.so and libherald.a"
    exit 0
fi
for f in "$release/libherald.so" "$release/libherald.a" "$native_libs_file"; do
    [ -e "$f" ] || { log "$f is missing: run without --no-build"; exit 1; }
done
libs_private=$(cat "$native_libs_file")

if ! grep -q "Library soname: \[$soname\]" <<<"$(readelf -d "$release/libherald.so")"; then
    log "$release/libherald.so has no SONAME $soname (see build.rs)"
    exit 1
fi

d=$destdir
install -d "$d$libdir/pkgconfig" "$d$includedir"
install -m 0755 "$release/libherald.so" "$d$libdir/libherald.so.$version"
install -m 0644 "$release/libherald.a" "$d$libdir/libherald.a"
if [ "$do_strip" -eq 1 ]; then
    strip --strip-unneeded "$d$libdir/libherald.so.$version"
    strip --strip-debug "$d$libdir/libherald.a"
fi
ln -sfn "libherald.so.$version" "$d$libdir/$soname"
ln -sfn "$soname" "$d$libdir/libherald.so"
install -m 0644 include/herald.h include/herald.hpp "$d$includedir/"

cat >"$d$libdir/pkgconfig/herald.pc" <<EOF
prefix=$prefix
libdir=$libdir
includedir=$includedir

Name: herald
Description: Non-blocking SMTP, IMAP and POP3 for C, C++, Delphi and Python
Version: $version
Libs: -L\${libdir} -lherald
Libs.private: $libs_private
Cflags: -I\${includedir}
EOF
chmod 0644 "$d$libdir/pkgconfig/herald.pc"

log "installed herald $version into ${d}$prefix (SONAME $soname)"
