"""The peer: langchain-postgres' PGVector, the stack many teams would build this with, on the same PostgreSQL and
with the same embedder (WizChat's LocalEmbeddings wrapped as a LangChain `Embeddings`).

Installed only for the benchmark (pyproject's `bench` extra and the Makefile's `bench` target; not in
requirements.lock). langchain-postgres 0.0.19 caps pgvector-python below 0.4 while WizChat pins 0.5.1, so the
Makefile installs it without its dependencies beside the ones that do resolve with ours; `peer_available` says
whether it imports."""

from __future__ import annotations

import time
import uuid


def peer_available() -> str | None:
    """None when langchain-postgres imports, else why not."""
    try:
        import langchain_postgres  # noqa: F401
    except ImportError as error:
        return f"langchain-postgres is not installed ({error}); `make bench` installs it"
    return None


def embeddings_for_langchain():
    """WizChat's default embedder (in-process MiniLM) as a LangChain Embeddings object, batching as WizChat's
    ingestion does."""
    from langchain_core.embeddings import Embeddings

    from byoi.backends.embeddings import LocalEmbeddings
    from byoi.resolver import default_settings
    from chatbots.ingestion import EMBED_BATCH

    local = LocalEmbeddings(default_settings("embeddings"))

    class MiniLM(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            out: list[list[float]] = []
            for s in range(0, len(texts), EMBED_BATCH):
                out.extend(local.embed(texts[s:s + EMBED_BATCH]))
            return out

        def embed_query(self, text: str) -> list[float]:
            return local.embed([text])[0]

    return MiniLM()


def engine(settings: dict, ef_search: int | None = None):
    """An SQLAlchemy engine on the same database WizChat's default vector store uses (psycopg 3 driver, pooled);
    `ef_search`: the HNSW search width set on each new connection, as WizChat sets its own."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import URL

    url = URL.create("postgresql+psycopg", username=settings["username"], password=settings["password"],
                     host=settings["host"], port=int(settings["port"]), database=settings["database"])
    eng = create_engine(url, pool_size=5, pool_pre_ping=False)
    if ef_search:
        @event.listens_for(eng, "connect")
        def _width(dbapi_connection, _record):
            with dbapi_connection.cursor() as cur:
                cur.execute(f"SET hnsw.ef_search = {int(ef_search)}")
            dbapi_connection.commit()
    return eng


def store(settings: dict, collection: str, embeddings=None, eng=None, fresh: bool = True):
    """PGVector on `collection`; `fresh` empties it first (pre_delete_collection), else reattaches to it."""
    import logging

    from langchain_postgres import PGVector

    logging.getLogger("langchain_postgres").setLevel(logging.ERROR)  # "Collection not found" before a fresh one
    return PGVector(embeddings=embeddings or embeddings_for_langchain(), connection=eng or engine(settings),
                    collection_name=collection, embedding_length=384, use_jsonb=True, pre_delete_collection=fresh)


def ids_of(peer, vector, k: int = 10) -> list[str]:
    return [doc.id for doc, _ in peer.similarity_search_with_score_by_vector(list(vector), k=k)]


def retrieval_at_scale(settings: dict, data, queries, truth, ours) -> dict:
    """The peer on the same vectors as WizChat's table: rows loaded by COPY into PGVector's own table under a
    collection; queried through `similarity_search_with_score_by_vector` (what `similarity_search` runs after
    embedding the query). First as PGVector creates its table (no vector index: exact search), then with the HNSW
    index its documentation tells users to add (same definition and ef_search as WizChat's). WizChat's search is
    measured again beside each, query by query alternating."""
    import psycopg
    from pgvector import Vector
    from pgvector.psycopg import register_vector

    from bench.retrieval import _dsn, paired
    from byoi.backends.vector_store import EF_SEARCH

    name = f"bench-scale-{uuid.uuid4().hex[:8]}"
    eng = engine(settings)
    peer = store(settings, name, eng=eng)
    dsn = _dsn(settings)
    start = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        collection = conn.execute("SELECT uuid FROM langchain_pg_collection WHERE name = %s", [name]).fetchone()[0]
        with conn.cursor() as cur, cur.copy("COPY langchain_pg_embedding (id, collection_id, embedding, document, "
                                            "cmetadata) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["varchar", "uuid", "vector", "varchar", "jsonb"])
            from psycopg.types.json import Jsonb

            empty = Jsonb({})
            for i in range(len(data)):
                copy.write_row((str(i), collection, Vector(data[i]), f"chunk {i}", empty))
        conn.execute("VACUUM ANALYZE langchain_pg_embedding")
    copy_s = time.perf_counter() - start

    def peer_search(q, p=peer):
        return [int(i) for i in ids_of(p, q)]

    exact_n = min(60, len(queries))
    plain = paired(ours, peer_search, queries[:exact_n], truth[:exact_n])
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        built = time.perf_counter()
        conn.execute("CREATE INDEX langchain_pg_embedding_hnsw ON langchain_pg_embedding "
                     "USING hnsw (embedding vector_cosine_ops)")
        build_s = time.perf_counter() - built
        conn.execute("ANALYZE langchain_pg_embedding")
        # The shape of PGVector's k-NN query (a join to its collection, filtered by collection id): does the
        # planner use the index for it?
        conn.execute(f"SET hnsw.ef_search = {int(EF_SEARCH)}")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT e.id, e.embedding <=> %s AS distance FROM langchain_pg_embedding e "
            "JOIN langchain_pg_collection c ON e.collection_id = c.uuid WHERE e.collection_id = %s "
            "ORDER BY distance LIMIT 10", [Vector(queries[0]), collection]).fetchall())
    eng.dispose()
    indexed_peer = store(settings, name, eng=engine(settings, EF_SEARCH), fresh=False)
    indexed = paired(ours, lambda q: [int(i) for i in ids_of(indexed_peer, q)], queries, truth)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX langchain_pg_embedding_hnsw")
        conn.execute("DELETE FROM langchain_pg_collection WHERE name = %s", [name])
    return {"n": len(data), "copy_s": copy_s, "build_s": build_s, "exact": plain, "hnsw": indexed,
            "plan_uses_index": "langchain_pg_embedding_hnsw" in plan}
