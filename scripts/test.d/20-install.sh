#!/usr/bin/env bash
# Installs herald the way a user does (scripts/install.sh into a temporary
# prefix) and builds programs against the installed files only, through
# pkg-config:
# - the installed library has its SONAME and links, and herald.pc is right;
#   a --destdir install stages the same files under the destdir;
# - examples-c/send_async.c, linked with `pkg-config --cflags --libs herald`,
#   records the SONAME (no build path, no rpath) and runs (PICKUP);
# - the same program linked statically (`pkg-config --static`) runs;
# - the README's first program, taken from README.md with the README's own
#   build command, compiles and links as written; its PICKUP variant (the
#   README's replacement lines) runs and writes the message;
# - a C++17 program over include/herald.hpp builds with pkg-config and runs,
#   and the README's C++ snippet compiles and links.
# Takes about 10 s after the release build (which install.sh does).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

fail() { printf '20-install: FAIL: %s\n' "$*" >&2; exit 1; }
say() { printf '20-install: %s\n' "$*"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

scripts/install.sh --prefix "$prefix"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
major=${version%%.*}
lib=$prefix/lib

# The files and links.
for f in "libherald.so.$version" libherald.a pkgconfig/herald.pc; do
    [ -f "$lib/$f" ] || fail "$lib/$f not installed"
done
[ "$(readlink "$lib/libherald.so.$major")" = "libherald.so.$version" ] || fail "libherald.so.$major link"
[ "$(readlink "$lib/libherald.so")" = "libherald.so.$major" ] || fail "libherald.so link"
for h in herald.h herald.hpp; do
    cmp -s "include/$h" "$prefix/include/$h" || fail "include/$h not installed"
done
# (grep -q on a here-string: with pipefail, `cmd | grep -q` can fail on SIGPIPE.)
grep -q "Library soname: \[libherald.so.$major\]" <<<"$(readelf -d "$lib/libherald.so.$version")" \
    || fail "installed library has no SONAME libherald.so.$major"
if grep -q '\.debug_' <<<"$(readelf -S "$lib/libherald.so.$version")"; then
    fail "installed library carries debug info"
fi
say "installed: $(du -k "$lib/libherald.so.$version" | cut -f1) KiB shared, $(du -k "$lib/libherald.a" | cut -f1) KiB static"

export PKG_CONFIG_PATH=$lib/pkgconfig
[ "$(pkg-config --modversion herald)" = "$version" ] || fail "pkg-config --modversion"
grep -q -- '-lssl' <<<"$(pkg-config --static --libs herald)" || fail "Libs.private lacks the static library's system libraries"

# A --destdir install: files under the destdir, herald.pc naming the prefix.
scripts/install.sh --no-build --destdir "$tmp/stage" --prefix /opt/herald
[ -f "$tmp/stage/opt/herald/lib/libherald.so.$version" ] || fail "--destdir: library not staged"
grep -qx 'prefix=/opt/herald' "$tmp/stage/opt/herald/lib/pkgconfig/herald.pc" || fail "--destdir: herald.pc prefix"

cd "$tmp"
# The installed header defines only herald_/HERALD_ names: a program's own
# MAX_LINE or FETCH_BODY (names that once leaked) does not clash with it.
printf '#define MAX_LINE 1\n#define MAX_LITERAL 2\n#define FETCH_BODY 3\n#include <herald.h>\nint main(void) { return MAX_LINE + MAX_LITERAL + FETCH_BODY - 6; }\n' >own_names.c
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror own_names.c $(pkg-config --cflags --libs herald) -o own_names \
    || fail "herald.h clashes with a program's own names"
# An example through pkg-config: records the SONAME, nothing of the build tree.
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$root/examples-c/send_async.c" $(pkg-config --cflags --libs herald) -o send_async
dyn=$(readelf -d send_async)
grep -q "Shared library: \[libherald.so.$major\]" <<<"$dyn" || fail "send_async does not record libherald.so.$major"
if grep -Eq 'RPATH|RUNPATH' <<<"$dyn"; then fail "send_async has an rpath"; fi
if grep -q "$root" send_async; then fail "send_async names the build tree"; fi
loaded=$(LD_LIBRARY_PATH=$lib ldd ./send_async | grep libherald || true)
grep -q "libherald.so.$major => $lib/libherald.so.$major" <<<"$loaded" \
    || fail "send_async does not load the installed library: $loaded"
out=$(LD_LIBRARY_PATH=$lib ./send_async -n 5 -o outbox-shared)
grep -q "5 sent, 0 failed" <<<"$out" || fail "send_async (shared): $out"
[ "$(ls outbox-shared | wc -l)" -eq 5 ] || fail "send_async (shared) wrote $(ls outbox-shared | wc -l) files"

# The same, linked statically: needs herald.pc's Libs.private.
static_libs=$(pkg-config --static --libs herald | sed 's/-lherald\b/-l:libherald.a/')
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror "$root/examples-c/send_async.c" $(pkg-config --cflags herald) $static_libs -o send_async_static
if grep -q libherald <<<"$(readelf -d send_async_static)"; then fail "static build needs libherald.so"; fi
out=$(./send_async_static -n 3 -o outbox-static)
grep -q "3 sent, 0 failed" <<<"$out" || fail "send_async (static): $out"

# The README's first program, and its build command, exactly as written.
python3 - "$root/README.md" <<'EOF'
import re, sys
readme = open(sys.argv[1]).read()
section = readme.split("## A first program", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
c_blocks = [b for lang, b in blocks if lang == "c"]
sh_blocks = [b for lang, b in blocks if lang == "sh"]
program, pickup_lines = c_blocks[0], c_blocks[1]
build = [l for l in sh_blocks[0].splitlines() if l.startswith("cc ")]
assert len(build) == 1, "the README's build command (a line starting with cc)"
open("first.c", "w").write(program)
open("build.sh", "w").write(build[0] + "\n")
# PICKUP variant: the README says to replace the four herald_options lines.
lines = program.splitlines(keepends=True)
first = next(i for i, l in enumerate(lines) if "herald_options_new(" in l)
assert all("herald_options_" in l for l in lines[first:first + 4]), lines[first:first + 4]
pickup = "".join(lines[:first]) + pickup_lines + "".join(lines[first + 4:])
open("first_pickup.c", "w").write(pickup)
EOF
grep -q 'pkg-config --cflags --libs herald' build.sh || fail "the README's build command does not use pkg-config"
bash -e build.sh || fail "the README's first program does not build: $(cat build.sh)"
grep -q "Shared library: \[libherald.so.$major\]" <<<"$(readelf -d first)" || fail "first does not record the SONAME"
mkdir readme-pickup
sed 's/first\.c/first_pickup.c/; s/-o first$/-o first_pickup/' build.sh >build_pickup.sh
bash -e build_pickup.sh || fail "the README's PICKUP variant does not build"
out=$(cd readme-pickup && LD_LIBRARY_PATH=$lib ../first_pickup)
grep -q '^message 1: ok' <<<"$out" || fail "the README's PICKUP program printed: $out"
n=$(ls readme-pickup/*.eml | wc -l)
[ "$n" -eq 1 ] || fail "the README's PICKUP program wrote $n messages"
grep -q '^Subject: Hello' readme-pickup/*.eml || fail "the README's message lacks its subject"

# C++ through the installed herald.hpp: a test program runs (PICKUP), and
# the README's C++ snippet (statements, put into a main) compiles and links.
# shellcheck disable=SC2046
g++ -std=c++17 -Wall -Wextra -Werror "$root/tests/cpp/installed.cpp" $(pkg-config --cflags --libs herald) -o installed_cpp
mkdir cpp-outbox
out=$(LD_LIBRARY_PATH=$lib ./installed_cpp cpp-outbox)
grep -q 'installed.cpp: ok' <<<"$out" || fail "installed.cpp: $out"
[ "$(ls cpp-outbox | wc -l)" -eq 3 ] || fail "installed.cpp wrote $(ls cpp-outbox | wc -l) messages"
python3 - "$root/README.md" <<'EOF'
import re, sys
section = open(sys.argv[1]).read().split("\n## C++\n", 1)[1].split("\n## ", 1)[0]
snippet = re.findall(r"```cpp\n(.*?)```", section, re.S)[0]
lines = snippet.splitlines()
includes = [l for l in lines if l.startswith("#include")]
body = [l for l in lines if not l.startswith("#include")]
open("readme_cpp.cpp", "w").write(
    "#include <future>\n#include <iostream>\n" + "\n".join(includes)
    + "\nint main()\n{\n" + "\n".join(body) + "\n    return 0;\n}\n")
EOF
# shellcheck disable=SC2046
g++ -std=c++17 -Wall -Wextra -Werror -Wno-unused-variable readme_cpp.cpp $(pkg-config --cflags --libs herald) -o readme_cpp \
    || fail "the README's C++ snippet does not build"

say "ok: install, SONAME, pkg-config (shared and static), README program, C++"
