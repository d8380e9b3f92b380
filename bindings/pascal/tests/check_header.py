#!/usr/bin/env python3
"""Checks bindings/pascal/herald.pas against include/herald.h: every
constant with the same value and none the header lacks; every function
declared, with as many parameters as in C.

usage: check_header.py [HEADER [UNIT]]
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

# Pascal identifiers are not case-sensitive: C constants whose names equal a
# function's (herald_version, herald_version_number) get these names.
RENAMED = {
    "HERALD_VERSION": "HeraldHeaderVersion",
    "HERALD_VERSION_NUMBER": "HeraldHeaderVersionNumber",
}

# Added to the header by a later version; the unit may lack it (it then has
# no herald_version_number either), but a value it has must match.
OPTIONAL_IN_UNIT = {"HeraldHeaderVersionNumber", "herald_version_number"}


def c_value(text):
    text = text.strip()
    if text.startswith('"'):
        return text.strip('"')
    text = re.sub(r"^\(+|\)+$", "", text)
    text = re.sub(r"(?<=\d)[uUlL]+$", "", text)
    return int(text, 0)


def header_constants(path):
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*#\s*define\s+(HERALD_\w+)\s+(.*?)\s*(?:/[/*].*)?$", line)
            if m and m.group(1) != "HERALD_H":
                out[RENAMED.get(m.group(1), m.group(1))] = c_value(m.group(2))
    return out


def unit_constants(path):
    out = {}
    names = "|".join(["HERALD_\\w+"] + sorted(RENAMED.values()))
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*(%s)\s*=\s*(.+?)\s*;" % names, line)
            if not m:
                continue
            v = m.group(2)
            if v.startswith("'"):
                out[m.group(1)] = v.strip("'")
            else:
                v = v.replace("$", "0x") if v.startswith("$") else v
                out[m.group(1)] = int(v, 0)
    return out


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


def unit_functions(path):
    """{name: number of parameters} of the unit's external functions."""
    with open(path) as f:
        text = f.read()
    out = {}
    for m in re.finditer(r"^(?:function|procedure)\s+(herald_\w+)\s*(\(([^)]*)\))?[^;]*;[^\n]*external",
                         text, flags=re.M | re.I):
        n = 0
        for group in (m.group(3) or "").split(";"):
            if ":" in group:
                n += len([x for x in group.split(":")[0].split(",") if x.strip()])
        out[m.group(1)] = n
    return out


def main():
    header = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "include", "herald.h")
    unit = sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "bindings", "pascal", "herald.pas")
    h = header_constants(header)
    u = unit_constants(unit)
    errors = []
    if len(h) < 60:
        errors.append("read only %d constants from %s" % (len(h), header))
    for name in sorted(set(h) - set(u) - OPTIONAL_IN_UNIT):
        value = "'%s'" % h[name] if isinstance(h[name], str) else h[name]
        errors.append("missing in herald.pas: %s = %s;" % (name, value))
    for name in sorted(set(u) - set(h)):
        errors.append("in herald.pas but not in the header: %s" % name)
    for name in sorted(set(h) & set(u)):
        if h[name] != u[name]:
            errors.append("%s: header %r, herald.pas %r" % (name, h[name], u[name]))
    hf = header_functions(header)
    uf = unit_functions(unit)
    if len(hf) < 50:
        errors.append("read only %d functions from %s" % (len(hf), header))
    for name in sorted(set(hf) - set(uf) - OPTIONAL_IN_UNIT):
        errors.append("function missing in herald.pas: %s (%d parameters)" % (name, hf[name]))
    for name in sorted(set(uf) - set(hf)):
        errors.append("function in herald.pas but not in the header: %s" % name)
    for name in sorted(set(hf) & set(uf)):
        if hf[name] != uf[name]:
            errors.append("%s: %d parameters in C, %d in herald.pas" % (name, hf[name], uf[name]))
    for e in errors:
        print("check_header: " + e)
    print("check_header: %d constants and %d functions compared, %d problems"
          % (len(h), len(hf), len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
