"""Where the package finds libherald: bundled, HERALD_LIB, the system path."""

import os
import shutil
import subprocess
import sys

import herald

PROBE = "import herald; print(herald.library_path()); print(herald.version())"


def run(code, env):
    full = {k: v for k, v in os.environ.items() if k not in ("HERALD_LIB", "LD_LIBRARY_PATH")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True)


def test_herald_lib_is_used():
    lib = os.environ["HERALD_LIB"]
    assert herald.library_path() == lib
    out = run(PROBE, {"HERALD_LIB": lib})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [lib, herald.version()]


def test_a_bad_herald_lib_is_an_error_not_a_fallback():
    out = run(PROBE, {"HERALD_LIB": "/nonexistent/libherald.so",
                      "LD_LIBRARY_PATH": os.path.dirname(os.environ["HERALD_LIB"])})
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "/nonexistent/libherald.so" in out.stderr


def test_system_path():
    libdir = os.path.dirname(os.environ["HERALD_LIB"])
    out = run(PROBE, {"LD_LIBRARY_PATH": libdir})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == herald.version()


def test_bundled_library_comes_first(tmp_path):
    pkg = tmp_path / "herald"
    shutil.copytree(os.path.dirname(herald.__file__), pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "libherald*"))
    shutil.copy(os.environ["HERALD_LIB"], pkg / "libherald.so")
    out = run(PROBE, {"PYTHONPATH": str(tmp_path), "HERALD_LIB": "/nonexistent/libherald.so"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(pkg / "libherald.so"), herald.version()]


def test_no_library_anywhere_says_how_to_fix():
    out = run(PROBE, {})
    if out.returncode == 0:
        return  # installed on the system path: nothing to test here
    assert "HERALD_LIB" in out.stderr
