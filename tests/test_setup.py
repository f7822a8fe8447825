"""What `make` sets up: the Debian packages check, the browser tests' opt-out."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _debian_deps(tmp_path, **env):
    # PATH without apt-get: the check cannot install, even as root.
    return subprocess.run(["/bin/bash", str(ROOT / ".ci" / "debian-deps")], capture_output=True, text=True,
                          env={"PATH": "/nonexistent", "WIZCHAT_DEPS_ROOT": str(tmp_path), **env})


def test_the_debian_packages_check_says_what_to_install_in_one_line(tmp_path):
    result = _debian_deps(tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert "apt-get install pgbouncer stunnel4 chromium" in result.stderr
    assert "WIZCHAT_SKIP_BROWSER=1" in result.stderr

    without_browser = _debian_deps(tmp_path, WIZCHAT_SKIP_BROWSER="1")
    assert without_browser.returncode == 1
    assert "apt-get install pgbouncer stunnel4 as root" in without_browser.stderr


def test_the_debian_packages_check_passes_when_they_are_there(tmp_path):
    for program in ("usr/sbin/pgbouncer", "usr/bin/stunnel4", "usr/bin/chromium"):
        (tmp_path / program).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / program).write_text("")
        (tmp_path / program).chmod(0o755)
    result = _debian_deps(tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_make_test_checks_the_debian_packages_before_installing_or_testing():
    steps = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = steps.splitlines()
    assert lines[0] == ".ci/debian-deps"
    assert any("pytest" in line for line in lines[1:])
    assert (ROOT / ".ci" / "run").read_text().count("make test") >= 1


def test_browser_tests_are_skipped_only_when_asked_and_the_summary_says_so():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/e2e", "-q", "-p", "no:cacheprovider"], cwd=ROOT,
        capture_output=True, text=True, env={**os.environ, "WIZCHAT_SKIP_BROWSER": "1"}, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"SKIPPED \[\d+\] .*WIZCHAT_SKIP_BROWSER=1: browser tests not run", result.stdout)
    assert " passed" not in result.stdout
