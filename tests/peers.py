"""Pytest plugin (loaded with `-p tests.peers`, before pytest-django configures Django): starts the
embedded peers once per test session and points the settings at them.

- platform PostgreSQL + pgvector (Django's test database lives here)
- a second PostgreSQL acting as a customer's server
- FalkorDB (platform graph and Celery broker)
"""

import contextlib
import os
import shutil
import signal
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from wizchat import embedded


class Peers:
    root: Path
    platform_pg: embedded.EmbeddedPostgres
    customer_pg: embedded.EmbeddedPostgres
    falkor: embedded.EmbeddedFalkor


PEERS = Peers()


def _sweep_orphans() -> None:
    """Stop the servers of earlier test sessions that were killed before they could clean up."""
    for root in Path(tempfile.gettempdir()).glob("wizchat-test-*"):
        owner = root / "owner.pid"
        try:
            pid = int(owner.read_text())
            os.kill(pid, 0)
            continue  # that session is still running
        except (OSError, ValueError):
            pass
        for data in root.glob("pg-*"):
            if data.is_dir() or data.is_symlink():  # not its .log
                embedded.EmbeddedPostgres(data, 0, "").discard()
        for pidfile in root.glob("**/redis.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


def _terminate(signum, frame):
    # `timeout` and CI runners send SIGTERM: turn it into pytest's clean shutdown so the servers stop.
    raise KeyboardInterrupt


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    if any(a in ("--help", "-h", "--version") for a in args):
        return
    _sweep_orphans()
    signal.signal(signal.SIGTERM, _terminate)
    root = Path(tempfile.mkdtemp(prefix="wizchat-test-"))
    # The session's own folder (mkdtemp made it 0700): as root, the TLS daemons and PostgreSQL run unprivileged
    # and read their files in it.
    root.chmod(0o711)
    (root / "owner.pid").write_text(str(os.getpid()))
    PEERS.root = root
    PEERS.platform_pg = embedded.EmbeddedPostgres(root / "pg-platform", embedded.free_port(), embedded.new_password())
    PEERS.customer_pg = embedded.EmbeddedPostgres(root / "pg-customer", embedded.free_port(), embedded.new_password())
    PEERS.falkor = embedded.EmbeddedFalkor(root / "falkordb", embedded.free_port(), embedded.new_password())
    for server in (PEERS.platform_pg, PEERS.customer_pg, PEERS.falkor):
        server.start()
    PEERS.platform_pg.ensure_database("wizchat")
    os.environ.update(
        {
            "WIZCHAT_STATE_DIR": str(root / "state"),
            "DATABASE_URL": PEERS.platform_pg.url("wizchat"),
            "FALKORDB_URL": PEERS.falkor.url(0),
            "CELERY_BROKER_URL": PEERS.falkor.url(1),
            "EGRESS_ALLOWED_NETWORKS": "127.0.0.0/8",
            "BYOI_CONNECT_TIMEOUT": "2",
            "BYOI_OPERATION_TIMEOUT": "10",
            "DEBUG": "false",
        }
    )


def pytest_unconfigure(config):
    root = getattr(PEERS, "root", None)
    if root is None:
        return
    for name in ("falkor", "customer_pg", "platform_pg"):
        server = getattr(PEERS, name, None)
        if isinstance(server, embedded.EmbeddedPostgres):
            server.discard()  # its data may be kept outside root (see embedded.PG_HOME)
        elif server is not None:
            server.stop()
    shutil.rmtree(root, ignore_errors=True)


def customer_database() -> dict:
    """A database on the customer's PostgreSQL owned by a least-privilege role (pgvector added by the admin)."""
    name = f"cust_{uuid.uuid4().hex[:10]}"
    role, password = f"r_{name}", embedded.new_password()
    admin = PEERS.customer_pg
    with psycopg.connect(admin.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
    with psycopg.connect(admin.dsn(name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return {"host": "127.0.0.1", "port": admin.port, "database": name, "username": role, "password": password,
            "ssl_mode": "disable"}


def drop_database(db: dict) -> None:
    with psycopg.connect(PEERS.customer_pg.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db["database"])))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db["username"])))
