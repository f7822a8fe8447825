"""Every call to a customer component has a deadline, on fresh and pooled connections alike: each backend against
its real peer behind a proxy that is stopped (refused), silent from the start, or silent after it worked (the
backend's pooled connection then hangs): the taxonomy's code comes within the timeout + 1 s."""

import time
import uuid

import pytest

from byoi.backends.conversation_store import PgConversationStore
from byoi.backends.embeddings import OpenAICompatibleEmbeddings
from byoi.backends.graph import FalkorGraph
from byoi.backends.llm import OpenAICompatibleLLM
from byoi.backends.pg import CHECK_AFTER_IDLE
from byoi.backends.vector_store import PgVectorStore
from byoi.errors import BackendError
from tests.fault_proxy import FaultProxy
from tests.peers import PEERS

CONNECT, OPERATION = 1.0, 2.0
LIBPQ_CONNECT = 2.0  # libpq waits whole seconds, at least 2
CHATBOT = uuid.uuid4()


@pytest.fixture
def pg_proxy():
    proxy = FaultProxy(PEERS.customer_pg.port)
    yield proxy
    proxy.close()


@pytest.fixture
def falkor_proxy(customer_falkor):
    proxy = FaultProxy(customer_falkor.port)
    yield proxy
    proxy.close()


@pytest.fixture
def llm_proxy(openai_server):
    proxy = FaultProxy(openai_server.port)
    yield proxy
    proxy.close()


def conversations(customer_db, proxy):
    store = PgConversationStore({**customer_db, "port": proxy.port}, connect_timeout=CONNECT,
                                operation_timeout=OPERATION)
    return store, lambda: store.history(CHATBOT, "c1")


def vectors(customer_db, proxy):
    store = PgVectorStore({**customer_db, "port": proxy.port}, connect_timeout=CONNECT, operation_timeout=OPERATION)
    return store, lambda: store.search(CHATBOT, [0.1, 0.2, 0.3], k=2)


def graph(customer_falkor, proxy):
    store = FalkorGraph({"host": "127.0.0.1", "port": proxy.port, "password": customer_falkor.password, "ssl": False},
                        connect_timeout=CONNECT, operation_timeout=OPERATION)
    return store, lambda: store.neighbourhood(CHATBOT, ["Acme"])


def llm(openai_server, proxy):
    backend = OpenAICompatibleLLM(openai_server.llm_settings(endpoint=f"http://127.0.0.1:{proxy.port}/v1"),
                                  connect_timeout=CONNECT, operation_timeout=OPERATION)
    return backend, lambda: "".join(backend.stream([{"role": "user", "content": "Hello"}]))


def embeddings(openai_server, proxy):
    backend = OpenAICompatibleEmbeddings(
        openai_server.embeddings_settings(endpoint=f"http://127.0.0.1:{proxy.port}/v1", dimensions=8,
                                          model="text-embedding-3-small"),
        connect_timeout=CONNECT, operation_timeout=OPERATION)
    return backend, lambda: backend.embed(["Hello"])


PEER_OF = {"conversations": (conversations, "pg_proxy", "customer_db"),
           "vector_store": (vectors, "pg_proxy", "customer_db"),
           "graph": (graph, "falkor_proxy", "customer_falkor"),
           "llm": (llm, "llm_proxy", "openai_server"),
           "embeddings": (embeddings, "llm_proxy", "openai_server")}
# What each failure may take at most: the connect or the operation timeout, + 1 s.
SILENT_START = {"conversations": LIBPQ_CONNECT, "vector_store": LIBPQ_CONNECT, "graph": OPERATION,
                "llm": OPERATION, "embeddings": OPERATION}


def outcome(call) -> tuple[str, float]:
    started = time.monotonic()
    try:
        call()
        code = "ok"
    except BackendError as error:
        code = error.code
    return code, time.monotonic() - started


def build(request, kind):
    make, proxy_name, peer_name = PEER_OF[kind]
    proxy = request.getfixturevalue(proxy_name)
    backend, call = make(request.getfixturevalue(peer_name), proxy)
    request.addfinalizer(backend.close)
    return proxy, (backend, call)


@pytest.mark.parametrize("kind", list(PEER_OF))
def test_a_stopped_peer_is_refused_at_once(request, kind, fault_record):
    proxy, (backend, call) = build(request, kind)
    proxy.refuse()
    code, seconds = outcome(call)
    fault_record(kind, "stopped", "backend call", code, seconds)
    assert code == "refused"
    assert seconds < CONNECT + 1


@pytest.mark.parametrize("kind", list(PEER_OF))
def test_a_peer_silent_from_the_start_times_out_within_its_timeout(request, kind, fault_record):
    proxy, (backend, call) = build(request, kind)
    proxy.silent()
    code, seconds = outcome(call)
    fault_record(kind, "silent from the start", "backend call", code, seconds)
    assert code == "timeout"
    assert seconds < SILENT_START[kind] + 1


@pytest.mark.parametrize("idle", [0.0, CHECK_AFTER_IDLE + 0.5], ids=["just-used", "idle"])
@pytest.mark.parametrize("kind", list(PEER_OF))
def test_a_pooled_connection_whose_peer_went_silent_times_out_within_the_operation_timeout(request, kind, idle,
                                                                                           fault_record):
    proxy, (backend, call) = build(request, kind)
    assert outcome(call)[0] == "ok"
    time.sleep(idle)
    proxy.silent()
    code, seconds = outcome(call)
    fault_record(kind, f"silent after working ({'idle' if idle else 'just used'})", "backend call", code, seconds)
    assert code == "timeout"
    assert seconds < OPERATION + 1
    proxy.forward()
    assert outcome(call)[0] == "ok"  # the same backend, and its pool, work again: nothing to restart
