"""What a comparison test does when its reference (a Python package, a tool, test files) is missing.

Outside CI it is skipped (exit 77, which CTest reports as skipped). In CI (CI=true) it fails: a
check that silently stops checking hides exactly the bugs it was written for.
"""
import os
import sys


def in_ci():
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def unavailable(reason):
    if in_ci():
        print(f"FAIL: {reason} (CI=true: a missing reference fails instead of skipping)")
        sys.exit(1)
    print(f"SKIP: {reason}")
    sys.exit(77)
