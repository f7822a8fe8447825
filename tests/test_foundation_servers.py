"""The embedded servers really start and answer: pgvector, FalkorDB, Celery."""

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from falkordb import FalkorDB

from tests.peers import PEERS


def test_it_runs_a_pgvector_query_on_the_platform_database(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector")
        assert cursor.fetchone()[0] == pytest.approx(1.0)


def test_it_reports_postgresql_18_with_pgvector(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version_num')::int, extversion FROM pg_extension WHERE extname='vector'")
        version, vector = cursor.fetchone()
    assert version >= 180000
    assert tuple(int(x) for x in vector.split(".")[:2]) >= (0, 8)


def test_it_runs_a_falkordb_graph_query():
    client = FalkorDB.from_url(settings.FALKORDB_URL)
    graph = client.select_graph("foundation_probe")
    graph.query("CREATE (:Probe {name: $name})", {"name": "ok"})
    result = graph.query("MATCH (p:Probe) RETURN p.name")
    assert result.result_set == [["ok"]]
    graph.delete()


def test_it_refuses_falkordb_without_the_password():
    import redis

    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=PEERS.falkor.port).ping()


def test_it_refuses_postgresql_with_a_wrong_password():
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=PEERS.platform_pg.port, user="postgres", password="wrong",
                        dbname="postgres", connect_timeout=5)


def test_it_round_trips_a_task_through_a_real_celery_worker(celery_worker):
    from wizchat.celery import ping

    assert ping.delay("hello").get(timeout=30) == "pong:hello"
