"""Minimal test framework for Python test scripts, same protocol as test/testing.h:
each script ends with 'RESULT passed=P failed=F skipped=S' (read by test/run_tests.sh)."""
import sys
import traceback

_counts = {"passed": 0, "failed": 0, "skipped": 0}


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


def finish():
    c = _counts
    print(f"RESULT passed={c['passed']} failed={c['failed']} skipped={c['skipped']}")
    sys.exit(1 if c["failed"] else 0)
