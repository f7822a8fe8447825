"""manage.py byoi_migrate against real peers: the platform's PostgreSQL and FalkorDB (defaults), the customer's
PostgreSQL (vector store and conversations), a second FalkorDB (the customer's graph) and an OpenAI-protocol
server (the customer's 3072-dimension embeddings)."""

import json
from io import StringIO

import psycopg
import pytest
import redis
from django.core.management import call_command
from django.core.management.base import CommandError
from psycopg import sql

import byoi
from byoi.models import AuditEvent, BYOIComponent
from byoi.services import byoi_set_enabled, component_save
from chatbots.chat import chat_answer
from chatbots.ingestion import document_add, document_ingest
from chatbots.services import chatbot_create
from conversations.services import conversation_append, message_new
from tests.peers import PEERS
from wizchat import embedded

TEXT = "\n\n".join(
    f"Section {n}: The Wombatrix Engine stores answers for Acme Corporation in Zurich. "
    f"Custom FalkorDB keeps the graph of Globex Industries near Basel, part {n}."
    for n in range(12)
)
QUESTION = "Where does the Wombatrix Engine store answers?"


@pytest.fixture
def knowledge(chatbot):
    """A document ingested into the defaults (platform pgvector with MiniLM 384, platform FalkorDB)."""
    return ingest(chatbot)


def ingest(chatbot):
    chatbot.chunk_size, chatbot.chunk_overlap = 200, 0  # about a dozen chunks: several batches
    chatbot.save()
    document, _ = document_add(chatbot, title="Wombatrix", text=TEXT, queue=False)
    document = document_ingest(document.id)
    assert document.status == "done", document.error_message
    return document


@pytest.fixture
def history(chatbot):
    """Two conversations in the default conversations store."""
    for conversation in ("c1", "c2"):
        conversation_append(chatbot, message_new(conversation, "user", f"Hello from {conversation}"),
                            message_new(conversation, "assistant", f"Answer in {conversation}"))
    return chatbot


def save(chatbot, kind, values: dict, secret_name: str, *, enabled=True):
    values = dict(values)
    secret = values.pop(secret_name, "")
    return component_save(chatbot, kind, values=values, secrets={secret_name: secret}, enabled=enabled)


@pytest.fixture
def custom_stores(chatbot, customer_db, customer_falkor, openai_server):
    """Custom vector store, conversations (same customer database), graph, embeddings (3072) and LLM saved and
    enabled; the chatbot-level BYOI switch is still off, so the chatbot uses the defaults until --switch."""
    save(chatbot, "vector_store", customer_db, "password")
    save(chatbot, "conversations", customer_db, "password")
    save(chatbot, "graph", {"host": "127.0.0.1", "port": customer_falkor.port, "ssl": False,
                            "password": customer_falkor.password}, "password")
    save(chatbot, "embeddings", openai_server.embeddings_settings(), "api_key")
    save(chatbot, "llm", openai_server.llm_settings(), "api_key")
    return chatbot


def migrate(chatbot, *args) -> str:
    out = StringIO()
    call_command("byoi_migrate", str(chatbot.id), *args, stdout=out)
    return out.getvalue()


def customer_count(db: dict, table: str) -> int:
    with psycopg.connect(PEERS.customer_pg.dsn(db["database"])) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0]
        if exists is None:
            return 0
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


def customer_dimensions(db: dict, table: str) -> int:
    with psycopg.connect(PEERS.customer_pg.dsn(db["database"])) as conn:
        return conn.execute("SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                            "AND attname = 'embedding'", [table]).fetchone()[0]


def default_count(kind: str, chatbot) -> int:
    backend = byoi.resolver.Stack({kind: byoi.resolver.default_slot(kind)}).backend(kind)
    return backend.count(chatbot.id)


def graph_counts(server, chatbot) -> tuple[int, int]:
    client = redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
    name = f"wizchat_{chatbot.id.hex}"
    if not client.exists(name):
        return 0, 0
    nodes = client.execute_command("GRAPH.QUERY", name, "MATCH (n) RETURN count(n)")[1][0][0]
    edges = client.execute_command("GRAPH.QUERY", name, "MATCH ()-[r]->() RETURN count(r)")[1][0][0]
    return nodes, edges


def platform_graph_counts(chatbot) -> tuple[int, int]:
    counts = default_count("graph", chatbot)
    return counts["nodes"], counts["relationships"]


def chunks_table(chatbot) -> str:
    return f"wizchat_chunks_{chatbot.id.hex}"


def messages_table(chatbot) -> str:
    return f"wizchat_messages_{chatbot.id.hex}"


# --- default → custom -------------------------------------------------------------------------------------


def test_it_copies_every_chunk_to_the_customers_vector_store(knowledge, custom_stores, customer_db):
    migrate(custom_stores, "--to", "custom", "--kinds", "vector_store")
    assert customer_count(customer_db, chunks_table(custom_stores)) == knowledge.chunks_total


def test_it_reembeds_with_the_customers_embeddings_when_the_dimension_changes(knowledge, custom_stores,
                                                                               customer_db, openai_server):
    openai_server.reset()
    out = migrate(custom_stores, "--to", "custom", "--kinds", "vector_store")
    embedded_texts = " ".join(json.dumps(call.body) for call in openai_server.calls("/embeddings"))
    assert customer_dimensions(customer_db, chunks_table(custom_stores)) == 3072
    assert "Wombatrix" in embedded_texts
    assert f"re-embedded {knowledge.chunks_total}" in out


def test_it_answers_from_the_customers_store_after_switching(knowledge, custom_stores, customer_db):
    migrate(custom_stores, "--to", "custom", "--switch")
    custom_stores.refresh_from_db()
    stack = byoi.resolve(custom_stores)
    answer = chat_answer(custom_stores, QUESTION)
    assert stack.sources["vector_store"] == "custom"
    assert answer["error"] is None
    assert [source["title"] for source in answer["sources"]][:1] == ["Wombatrix"]


def test_it_copies_the_graph_to_the_customers_falkordb(knowledge, custom_stores, customer_falkor):
    migrate(custom_stores, "--to", "custom", "--kinds", "graph")
    assert graph_counts(customer_falkor, custom_stores) == platform_graph_counts(custom_stores)


def test_it_copies_every_message_to_the_customers_conversations_database(history, custom_stores, customer_db):
    migrate(custom_stores, "--to", "custom", "--kinds", "conversations")
    assert customer_count(customer_db, messages_table(custom_stores)) == 4


def test_it_keeps_the_source_data(knowledge, history, custom_stores):
    before = (default_count("vector_store", custom_stores), default_count("conversations", custom_stores),
              platform_graph_counts(custom_stores))
    migrate(custom_stores, "--to", "custom", "--switch")
    after = (default_count("vector_store", custom_stores), default_count("conversations", custom_stores),
             platform_graph_counts(custom_stores))
    assert after == before


def test_it_switches_the_components_on_after_the_copy(knowledge, custom_stores):
    BYOIComponent.objects.filter(chatbot=custom_stores, kind="vector_store").update(enabled=False)
    migrate(custom_stores, "--to", "custom", "--kinds", "vector_store", "--switch")
    custom_stores.refresh_from_db()
    assert custom_stores.byoi_enabled
    assert BYOIComponent.objects.get(chatbot=custom_stores, kind="vector_store").enabled


def test_it_audits_the_migration(knowledge, custom_stores):
    migrate(custom_stores, "--to", "custom", "--kinds", "vector_store")
    event = AuditEvent.objects.get(chatbot_id=custom_stores.id, action="byoi.data_migrated")
    assert event.detail["copied"] == knowledge.chunks_total


# --- reruns, interruptions, dry runs ------------------------------------------------------------------------


def test_it_copies_nothing_on_a_rerun(knowledge, history, custom_stores, customer_db, customer_falkor):
    migrate(custom_stores, "--to", "custom")
    counts = (customer_count(customer_db, chunks_table(custom_stores)),
              customer_count(customer_db, messages_table(custom_stores)), graph_counts(customer_falkor, custom_stores))
    out = migrate(custom_stores, "--to", "custom")
    assert (customer_count(customer_db, chunks_table(custom_stores)),
            customer_count(customer_db, messages_table(custom_stores)),
            graph_counts(customer_falkor, custom_stores)) == counts
    assert out.count(": copied 0, skipped") == 3


def test_it_resumes_an_interrupted_migration(knowledge, custom_stores, customer_db):
    first = migrate(custom_stores, "--to", "custom", "--kinds", "vector_store", "--batch-size", "2", "--limit", "3")
    copied_first = customer_count(customer_db, chunks_table(custom_stores))
    second = migrate(custom_stores, "--to", "custom", "--kinds", "vector_store", "--batch-size", "2")
    assert copied_first == 3
    assert "run the command again to continue" in first
    assert f"copied {knowledge.chunks_total - 3}, skipped 3 already present" in second
    assert customer_count(customer_db, chunks_table(custom_stores)) == knowledge.chunks_total


def test_it_does_not_switch_after_an_incomplete_copy(knowledge, custom_stores):
    out = migrate(custom_stores, "--to", "custom", "--kinds", "vector_store", "--limit", "1", "--switch")
    custom_stores.refresh_from_db()
    assert "not switched" in out
    assert not custom_stores.byoi_enabled


def test_it_prints_a_line_per_batch(knowledge, custom_stores):
    out = migrate(custom_stores, "--to", "custom", "--kinds", "vector_store", "--batch-size", "4")
    batches = -(-knowledge.chunks_total // 4)
    assert out.count("vector_store: batch ") == batches


def test_it_writes_nothing_on_a_dry_run(knowledge, history, custom_stores, customer_db, customer_falkor,
                                        openai_server):
    openai_server.reset()
    out = migrate(custom_stores, "--to", "custom", "--dry-run", "--switch")
    custom_stores.refresh_from_db()
    assert customer_count(customer_db, chunks_table(custom_stores)) == 0
    assert customer_count(customer_db, messages_table(custom_stores)) == 0
    assert graph_counts(customer_falkor, custom_stores) == (0, 0)
    assert openai_server.calls("/embeddings") == []
    assert not custom_stores.byoi_enabled
    assert f"vector_store: would copy {knowledge.chunks_total}" in out


# --- custom → default -------------------------------------------------------------------------------------


@pytest.fixture
def byoi_knowledge(owner, customer_db, customer_falkor):
    """A chatbot whose vector store, graph and conversations are the customer's (default MiniLM embeddings),
    with a document and a conversation stored there."""
    chatbot = chatbot_create(owner.membership.account, name="Custom bot")
    save(chatbot, "vector_store", customer_db, "password")
    save(chatbot, "conversations", customer_db, "password")
    save(chatbot, "graph", {"host": "127.0.0.1", "port": customer_falkor.port, "ssl": False,
                            "password": customer_falkor.password}, "password")
    byoi_set_enabled(chatbot, True)
    document = ingest(chatbot)
    conversation_append(chatbot, message_new("c1", "user", "Hi"), message_new("c1", "assistant", "Hello"))
    return chatbot, document


def test_it_copies_the_customers_data_back_to_the_defaults(byoi_knowledge, customer_falkor):
    chatbot, document = byoi_knowledge
    migrate(chatbot, "--to", "default")
    assert default_count("vector_store", chatbot) == document.chunks_total
    assert default_count("conversations", chatbot) == 2
    assert platform_graph_counts(chatbot) == graph_counts(customer_falkor, chatbot)


def test_it_disables_the_components_when_switching_to_the_defaults(byoi_knowledge):
    chatbot, _ = byoi_knowledge
    migrate(chatbot, "--to", "default", "--switch")
    chatbot.refresh_from_db()
    assert byoi.resolve(chatbot).sources == {"llm": "default", "embeddings": "default", "vector_store": "default",
                                             "graph": "default", "conversations": "default"}
    assert chat_answer_sources(chatbot) == ["Wombatrix"]


def chat_answer_sources(chatbot) -> list[str]:
    from chatbots.chat import retrieve

    hits, _, titles = retrieve(chatbot, byoi.resolve(chatbot), QUESTION)
    return sorted({titles.get(hit.document_id, "") for hit in hits})


def test_it_copies_vectors_without_reembedding_when_the_dimensions_match(byoi_knowledge):
    chatbot, document = byoi_knowledge
    out = migrate(chatbot, "--to", "default", "--kinds", "vector_store")
    assert f"copied {document.chunks_total}, skipped 0 already present, re-embedded 0" in out


# --- bad input --------------------------------------------------------------------------------------------


def run_error(*args) -> str:
    with pytest.raises(CommandError) as caught:
        call_command("byoi_migrate", *args, stdout=StringIO())
    return str(caught.value)


def test_it_rejects_an_id_that_is_not_a_uuid(db):
    assert "is not a chatbot id" in run_error("nope", "--to", "custom")


def test_it_rejects_an_unknown_chatbot(db):
    assert "No chatbot has the id 00000000-0000-0000-0000-000000000000" in run_error(
        "00000000-0000-0000-0000-000000000000", "--to", "custom")


def test_it_rejects_an_unknown_kind(chatbot):
    assert "Unknown kind 'vectors': choose from vector_store, graph, conversations" in run_error(
        str(chatbot.id), "--to", "custom", "--kinds", "vectors")


def test_it_rejects_a_migration_to_custom_without_a_custom_component(chatbot):
    assert "has no custom Vector Store component" in run_error(str(chatbot.id), "--to", "custom", "--kinds",
                                                                 "vector_store")


def test_it_rejects_a_migration_to_custom_into_a_disabled_component(chatbot, customer_db):
    save(chatbot, "vector_store", customer_db, "password", enabled=False)
    assert "saved but disabled" in run_error(str(chatbot.id), "--to", "custom", "--kinds", "vector_store")


def test_it_rejects_a_migration_to_custom_on_a_plan_without_byoi(free_user):
    chatbot = chatbot_create(free_user.membership.account, name="Free bot")
    assert "plan does not include BYOI" in run_error(str(chatbot.id), "--to", "custom", "--kinds", "vector_store")


def test_it_rejects_a_migration_to_default_without_a_custom_component(chatbot):
    assert "nothing to migrate" in run_error(str(chatbot.id), "--to", "default")


def test_it_rejects_a_batch_size_of_zero(knowledge, custom_stores):
    assert "--batch-size must be between 1" in run_error(str(custom_stores.id), "--to", "custom", "--batch-size", "0")


def test_it_names_an_unreachable_target_with_the_fix(knowledge, chatbot, customer_db):
    unreachable = {**customer_db, "port": embedded.free_port()}
    save(chatbot, "vector_store", unreachable, "password")
    message = run_error(str(chatbot.id), "--to", "custom", "--kinds", "vector_store")
    assert "the target (your infrastructure, 127.0.0.1" in message
    assert "Connection refused" in message
    assert customer_db["password"] not in message


def test_it_names_an_unreachable_source_with_the_fix(byoi_knowledge, customer_db):
    chatbot, _ = byoi_knowledge
    component = BYOIComponent.objects.get(chatbot=chatbot, kind="vector_store")
    component.values = {**component.values, "port": embedded.free_port()}
    component.fingerprint = component.compute_fingerprint()
    component.save()
    message = run_error(str(chatbot.id), "--to", "default", "--kinds", "vector_store")
    assert "the source (your infrastructure, 127.0.0.1" in message
    assert "Nothing in the source was deleted" in message


def test_it_refuses_a_target_holding_vectors_of_another_dimension(knowledge, custom_stores, customer_db):
    from byoi.backends.vector_store import PgVectorStore

    PgVectorStore(customer_db).provision(custom_stores.id, 384)
    message = run_error(str(custom_stores.id), "--to", "custom", "--kinds", "vector_store")
    assert "already holds 384-dimension vectors for this chatbot, but its embeddings produce 3072" in message


def test_it_copies_3072_dimension_vectors_back_unchanged_while_custom_embeddings_stay(owner, customer_db,
                                                                                        openai_server):
    chatbot = chatbot_create(owner.membership.account, name="Big vectors")
    save(chatbot, "vector_store", customer_db, "password")
    save(chatbot, "embeddings", openai_server.embeddings_settings(), "api_key")
    byoi_set_enabled(chatbot, True)
    document = ingest(chatbot)
    openai_server.reset()
    out = migrate(chatbot, "--to", "default", "--kinds", "vector_store", "--switch")
    chatbot.refresh_from_db()
    assert f"copied {document.chunks_total}, skipped 0 already present, re-embedded 0" in out
    assert openai_server.calls("/embeddings") == []
    assert byoi.resolve(chatbot).sources["embeddings"] == "custom"
    assert chat_answer_sources(chatbot) == ["Wombatrix"]


def test_it_reembeds_with_the_default_minilm_when_byoi_is_off(owner, customer_db, openai_server):
    chatbot = chatbot_create(owner.membership.account, name="Leaving")
    save(chatbot, "vector_store", customer_db, "password")
    save(chatbot, "embeddings", openai_server.embeddings_settings(), "api_key")
    byoi_set_enabled(chatbot, True)
    document = ingest(chatbot)
    byoi_set_enabled(chatbot, False)
    out = migrate(chatbot, "--to", "default", "--kinds", "vector_store")
    assert f"re-embedded {document.chunks_total}" in out
    assert "vectors 3072 → 384 dimensions" in out
    assert chat_answer_sources(chatbot) == ["Wombatrix"]


class CutAfterFirstBatch(StringIO):
    """Command output that cuts the customer's database off (role locked out, sessions ended) once the first
    vector batch is reported: a target that goes away in the middle of a migration."""

    def __init__(self, db: dict):
        super().__init__()
        self.db, self.cut = db, False

    def write(self, text):
        if not self.cut and "vector_store: batch 1:" in text:
            self.cut = True
            with psycopg.connect(PEERS.customer_pg.dsn(), autocommit=True) as conn:
                conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(self.db["username"])))
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                             [self.db["username"]])
        return super().write(text)


def test_it_resumes_after_the_target_went_away_mid_way(knowledge, custom_stores, customer_db):
    out = CutAfterFirstBatch(customer_db)
    with pytest.raises(CommandError) as caught:
        call_command("byoi_migrate", str(custom_stores.id), "--to", "custom", "--kinds", "vector_store",
                     "--batch-size", "4", stdout=out)
    with psycopg.connect(PEERS.customer_pg.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(customer_db["username"])))
    second = migrate(custom_stores, "--to", "custom", "--kinds", "vector_store", "--batch-size", "4")
    assert "the target (your infrastructure" in str(caught.value)
    assert f"copied {knowledge.chunks_total - 4}, skipped 4 already present" in second
    assert customer_count(customer_db, chunks_table(custom_stores)) == knowledge.chunks_total


def test_it_reads_nothing_from_a_store_without_the_chatbots_table(chatbot, customer_db):
    from byoi.backends.vector_store import PgVectorStore

    store = PgVectorStore(customer_db)
    assert (list(store.iter_chunks(chatbot.id)), store.ids_present(chatbot.id, ["a:0"]),
            store.dimensions(chatbot.id)) == ([], set(), None)


def test_it_explains_its_options_in_help():
    from byoi.management.commands.byoi_migrate import Command

    text = " ".join(Command().create_parser("manage.py", "byoi_migrate").format_help().split())
    assert all(option in text for option in ("--to {custom,default}", "--kinds", "--dry-run", "--batch-size",
                                             "--limit", "--switch", "Nothing in the source is deleted"))


def test_it_brings_a_downgraded_accounts_data_back_to_the_defaults(byoi_knowledge):
    from wizchat.models import Plan

    chatbot, document = byoi_knowledge
    chatbot.account.plan = Plan.objects.get(slug="free")
    chatbot.account.save()
    migrate(chatbot, "--to", "default", "--switch")
    chatbot.refresh_from_db()
    assert default_count("vector_store", chatbot) == document.chunks_total
    assert chat_answer_sources(chatbot) == ["Wombatrix"]
