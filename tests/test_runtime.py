"""The standalone chatbot runtime (`python -m wizchat.runtime`), started the way a deployment starts it: its whole
configuration in its environment — the spec's CUSTOM_* variables for the customer's components and WIZCHAT_*
for the rest — and no platform database credentials at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from chatbots.apikeys import apikey_create
from chatbots.deployments import deployment_env
from chatbots.ingestion import document_add, document_ingest
from tests.peers import PEERS
from tests.test_data_residency import MARKER, QUESTION, TEXT, byoi_chatbot, conversations_db  # noqa: F401
from wizchat import embedded

BASE = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


def _base_env(tmp_path) -> dict:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "WIZCHAT_RUNTIME_HOST": "127.0.0.1",
            "WIZCHAT_RUNTIME_PORT": str(embedded.free_port()), "WIZCHAT_RUNTIME_STATE_DIR": str(tmp_path / "state")}


def start_runtime(env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "wizchat.runtime"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=str(BASE), start_new_session=True)


def wait_ready(port: int, proc: subprocess.Popen, log_path: Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"runtime exited {proc.returncode}: {log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            last = error.read().decode()
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"runtime never ready: {last} {log_path.read_text()[-3000:]}")


@pytest.fixture
def deployed(byoi_chatbot, tmp_path):  # noqa: F811
    """An all-custom chatbot with a document in the customer's stores, served by a runtime process."""
    document, _ = document_add(byoi_chatbot, title="Residency", text=TEXT, queue=False)
    document_ingest(document.id)
    _, key = apikey_create(byoi_chatbot, "tests")
    env = {**_base_env(tmp_path), **deployment_env(byoi_chatbot)}
    log_path = tmp_path / "runtime.log"
    proc = start_runtime(env, log_path)
    port = int(env["WIZCHAT_RUNTIME_PORT"])
    try:
        wait_ready(port, proc, log_path)
        yield {"port": port, "key": key, "env": env, "proc": proc, "log": log_path, "chatbot": byoi_chatbot,
               "client": openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)}
    finally:
        embedded.stop_process(proc)


def secret_values(env: dict) -> list[str]:
    from wizchat.runtime.config import is_secret

    return [v for k, v in env.items() if is_secret(k) and len(v) >= 6]


def test_it_gets_no_platform_database_credentials(byoi_chatbot):  # noqa: F811
    env = deployment_env(byoi_chatbot)
    platform = PEERS.platform_pg
    assert not [k for k in env if "DATABASE" in k and k.startswith("WIZCHAT")]
    assert "WIZCHAT_DEFAULT_STORE_URL" not in env and "WIZCHAT_DEFAULT_FALKORDB_URL" not in env
    assert not any(platform.password in v for v in env.values())
    assert env["CUSTOM_PGVECTOR_PASSWORD"] and env["CUSTOM_FALKORDB_PASSWORD"]


def test_it_answers_with_sources_from_the_customers_stores(deployed, openai_server):
    completion = deployed["client"].chat.completions.create(
        model=deployed["chatbot"].slug, messages=[{"role": "user", "content": QUESTION}])
    assert completion.choices[0].message.content == openai_server.reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens > 0
    sources = completion.model_extra["wizchat"]["sources"]
    assert sources and MARKER in sources[0]["snippet"]
    prompt = [r for r in openai_server.requests if r.path.endswith("/chat/completions")][-1]
    assert MARKER in prompt.body["messages"][0]["content"]  # the context came from the customer's pgvector


def test_it_streams_and_reports_usage(deployed, openai_server):
    stream = deployed["client"].chat.completions.create(
        model=deployed["chatbot"].slug, messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == openai_server.reply
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


def test_it_stores_a_conversation_in_the_customers_database(deployed, openai_server):
    import uuid

    import psycopg
    from psycopg import sql

    conversation = str(uuid.uuid4())
    deployed["client"].chat.completions.create(
        model=deployed["chatbot"].slug, messages=[{"role": "user", "content": QUESTION}],
        extra_body={"conversation_id": conversation})
    db = {k[len("CUSTOM_CONVERSATIONS_"):].lower(): v for k, v in deployed["env"].items()
          if k.startswith("CUSTOM_CONVERSATIONS_")}
    with psycopg.connect(PEERS.customer_pg.dsn(db["database"])) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'wizchat%'")]
        rows = []
        for table in tables:
            cols = [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                               "WHERE table_name = %s", [table])]
            if "conversation_id" in cols:
                rows += conn.execute(sql.SQL("SELECT role FROM {} WHERE conversation_id = %s").format(
                    sql.Identifier(table)), [uuid.UUID(conversation).hex]).fetchall()
    assert sorted(r[0] for r in rows) == ["assistant", "user"]


def test_it_refuses_a_wrong_key_and_an_unknown_model(deployed):
    bad = openai.OpenAI(base_url=f"http://127.0.0.1:{deployed['port']}/v1", api_key="wzc_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=deployed["chatbot"].slug, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        deployed["client"].chat.completions.create(model="someone-else", messages=[{"role": "user", "content": "x"}])
    models = deployed["client"].models.list()
    assert [m.id for m in models.data] == [deployed["chatbot"].slug]


def test_it_keeps_secrets_out_of_ps_and_its_log(deployed):
    deployed["client"].chat.completions.create(model=deployed["chatbot"].slug,
                                               messages=[{"role": "user", "content": QUESTION}])
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    log_text = deployed["log"].read_text()
    assert "POST /v1/chat/completions 200" in log_text  # one line per request
    for value in [*secret_values(deployed["env"]), deployed["key"]]:
        assert value not in ps
        assert value not in log_text


def test_it_hides_where_components_run_unless_the_platform_asks(deployed):
    url = f"http://127.0.0.1:{deployed['port']}/readyz"
    with urllib.request.urlopen(url) as response:
        public = json.loads(response.read())
    assert public["status"] == "ready"
    assert set(public["components"]) == {"llm", "embeddings", "vector_store", "graph", "conversations"}
    assert all(c["source"] == "custom" for c in public["components"].values())
    assert "127.0.0.1" not in json.dumps(public)
    request = urllib.request.Request(url, headers={"X-WizChat-Platform-Token": deployed["env"]["WIZCHAT_PLATFORM_TOKEN"]})
    with urllib.request.urlopen(request) as response:  # noqa: S310 - a loopback http:// URL
        private = json.loads(response.read())
    assert "127.0.0.1" in private["components"]["vector_store"]["location"]


def test_it_refuses_to_start_with_a_broken_environment(byoi_chatbot, tmp_path):  # noqa: F811
    env = {**_base_env(tmp_path), **deployment_env(byoi_chatbot)}
    password = env["CUSTOM_PGVECTOR_PASSWORD"]
    env["CUSTOM_PGVECTOR_PORT"] = "abc"
    env["CUSTOM_FALKORDB_SSL"] = "maybe"
    del env["WIZCHAT_CHATBOT_ID"]
    del env["CUSTOM_LLM_MODEL"]
    result = subprocess.run([sys.executable, "-m", "wizchat.runtime"], env=env, capture_output=True, text=True,
                            cwd=str(BASE), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("CUSTOM_PGVECTOR_PORT=abc: ") for line in lines)
    assert any(line.startswith("CUSTOM_FALKORDB_SSL=maybe: ") for line in lines)
    assert any(line.startswith("CUSTOM_LLM_MODEL: ") for line in lines)
    assert any(line.startswith("WIZCHAT_CHATBOT_ID: missing") for line in lines)
    assert "Traceback" not in result.stderr and password not in result.stderr and result.stdout == ""
