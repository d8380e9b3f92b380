"""The package's constants and record layout against include/herald.h."""

import ctypes
import os
import re
import subprocess
import tempfile

import herald
from herald import _native, constants

_SKIP = {"HERALD_H", "HERALD_VERSION", "HERALD_VERSION_MAJOR", "HERALD_VERSION_MINOR",
         "HERALD_VERSION_PATCH", "HERALD_VERSION_NUMBER"}


def header_defines(path):
    """Every `#define HERALD_X <integer>` of the header, as {name: int}."""
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*#\s*define\s+(HERALD_\w+)\s+(.*?)\s*(?:/[/*].*)?$", line)
            if not m or m.group(1) in _SKIP:
                continue
            value = m.group(2).strip()
            value = re.sub(r"^\(+|\)+$", "", value)
            value = re.sub(r"(?<=\d)[uUlL]+$", "", value)
            assert re.fullmatch(r"-?(0x[0-9a-fA-F]+|\d+)", value), (
                "%s: cannot read the value %r" % (m.group(1), m.group(2)))
            out[m.group(1)] = int(value, 0)
    return out


def test_every_header_constant_is_bound_with_its_value(header_path):
    defines = header_defines(header_path)
    assert len(defines) > 60, "parsed too few constants from %s" % header_path
    missing = sorted(set(defines) - set(constants.C_NAMES))
    assert not missing, "add these to bindings/python/src/herald/constants.py: %s" % ", ".join(
        "%s = %d" % (n, defines[n]) for n in missing)
    extra = sorted(set(constants.C_NAMES) - set(defines))
    assert not extra, "not in the header: %s" % extra
    wrong = {n: (constants.C_NAMES[n], v) for n, v in defines.items() if constants.C_NAMES[n] != v}
    assert not wrong, "value differs from the header (python, header): %s" % wrong
    # the module-level C names are the enums' values
    assert herald.HERALD_STATUS_INVALID_ARGUMENT == herald.Status.INVALID_ARGUMENT
    assert herald.HERALD_OPT_MAX_MESSAGE_BYTES == herald.Option.MAX_MESSAGE_BYTES


def test_version_matches_header(header_path):
    with open(header_path) as f:
        text = f.read()
    v = re.search(r'#define HERALD_VERSION "([^"]+)"', text).group(1)
    assert herald.version() == v
    major, minor, patch = (int(x) for x in v.split("."))
    assert herald.version_number() == major * 1000000 + minor * 1000 + patch
    m = re.search(r"#define HERALD_VERSION_NUMBER (\d+)", text)
    if m:
        assert herald.version_number() == int(m.group(1))


def test_status_str_for_every_status():
    for s in herald.Status:
        assert herald.status_str(s)
    assert herald.status_str(9999)  # unknown codes too


def test_completion_layout_matches_c(header_path):
    src = r"""
#include <stddef.h>
#include <stdio.h>
#include "herald.h"
int main(void) {
    printf("%zu %zu %zu %zu %zu %zu %zu %zu\n", sizeof(herald_completion),
           offsetof(herald_completion, op), offsetof(herald_completion, status),
           offsetof(herald_completion, cancelled), offsetof(herald_completion, user_token),
           offsetof(herald_completion, reply_code), offsetof(herald_completion, detail),
           offsetof(herald_completion, result));
    return 0;
}
"""
    with tempfile.TemporaryDirectory() as d:
        c = os.path.join(d, "layout.c")
        exe = os.path.join(d, "layout")
        with open(c, "w") as f:
            f.write(src)
        subprocess.run(["cc", "-Wall", "-Werror", "-I", os.path.dirname(header_path), c, "-o", exe],
                       check=True)
        expected = [int(x) for x in subprocess.check_output([exe]).split()]
    C = _native.Completion
    got = [ctypes.sizeof(C)] + [getattr(C, f).offset for f, _ in C._fields_]
    assert got == expected


def header_functions(path):
    """{name: number of parameters} of the functions the header declares."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = text[text.index('extern "C" {'):]
    out = {}
    for m in re.finditer(r"\b(herald_\w+)\s*\(([^()]*)\)\s*;", text):
        params = m.group(2).strip()
        out[m.group(1)] = 0 if params in ("", "void") else params.count(",") + 1
    return out


def test_every_header_function_is_declared(header_path):
    functions = header_functions(header_path)
    assert len(functions) > 50
    declared = dict(_native._PROTOTYPES)
    declared.update(_native._OPTIONAL)
    missing = sorted(set(functions) - set(declared))
    assert not missing, "declare these in bindings/python/src/herald/_native.py: %s" % missing
    extra = sorted(set(_native._PROTOTYPES) - set(functions))
    assert not extra, "declared but not in the header: %s" % extra
    arity = {n: (len(declared[n][1]), functions[n]) for n in functions
             if len(declared[n][1]) != functions[n]}
    assert not arity, "parameter counts differ (python, C): %s" % arity
    # and the library exports every one of them
    lib = _native.lib()
    assert all(getattr(lib, n) is not None for n in _native._PROTOTYPES)
