"""Minimal test framework for Python test scripts, same protocol as test/testing.h:
each script ends with 'RESULT passed=P failed=F skipped=S' (read by test/run_tests.sh)."""
import os
import shutil
import subprocess
import sys
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_counts = {"passed": 0, "failed": 0, "skipped": 0}
_built = set()


class Skip(Exception):
    """Raise inside a test to count it as skipped, with the reason printed."""


def run(fn):
    try:
        fn()
    except Skip as e:
        _counts["skipped"] += 1
        print(f"skip {fn.__name__}: {e}")
    except Exception:
        _counts["failed"] += 1
        print(f"FAIL {fn.__name__}")
        traceback.print_exc(file=sys.stdout)
    else:
        _counts["passed"] += 1
        print(f"ok   {fn.__name__}")
    sys.stdout.flush()


def build_c_tool(src, out):
    """Builds the C tool src (relative to the repository root, e.g. "dev/ref_dump.c") into the binary out with
    the Makefile's CPU flags, once per process. Raises Skip without gcc, AssertionError when the build fails or
    warns."""
    if out in _built:
        return
    if shutil.which("gcc") is None:
        raise Skip(f"gcc not found: cannot build {src}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    r = subprocess.run(["gcc", "-O2", "-std=gnu11", "-fopenmp", "-Wall", "-Wextra", "-Wno-unused-function", "-I.", src,
                        "-o", out, "-lm"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"building {src} failed:\n{r.stderr}"
    assert "warning" not in r.stderr, f"{src} compiles with warnings:\n{r.stderr}"
    _built.add(out)


def finish():
    c = _counts
    print(f"RESULT passed={c['passed']} failed={c['failed']} skipped={c['skipped']}")
    sys.exit(1 if c["failed"] else 0)
