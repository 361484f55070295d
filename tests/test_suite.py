"""The suite's own rules: what makes a run fail even when no single test did."""

import subprocess
import sys

from . import servers


def test_a_run_that_collects_no_tests_fails():
    """pytest's status 5 would reach CI through make as a plain 2; the suite makes it a 1."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "tests/test_suite.py",
            "-k",
            "no_test_has_this_name",
        ],
        cwd=servers.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "no tests ran" in result.stdout or "deselected" in result.stdout, result.stdout
    assert result.returncode == 1, result.stdout + result.stderr
