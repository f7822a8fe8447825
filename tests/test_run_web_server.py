"""The web server `make run` starts (wizchat.run.web_server_command): a new gunicorn worker loads the default
in-process embedding model before it takes requests, so its first question does not pay for the load; the wait
is bounded."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from chatbots.apikeys import apikey_create
from tests.load_harness import load_env, loaded_chatbot, start_web_server  # noqa: F401 - load_env: fixture
from wizchat import embedded
from wizchat.run import worker_ready

LOADED = re.compile(r"The in-process embedding model was loaded in [\d.]+ s \(process (\d+)\)")
BOOTED = re.compile(r"Booting worker with pid: (\d+)")


@pytest.mark.django_db(transaction=True)
def test_a_new_worker_has_loaded_the_model_before_its_first_question(make_user, load_env, tmp_path,  # noqa: F811
                                                                     monkeypatch):
    monkeypatch.setenv("WIZCHAT_WEB_WORKERS", "1")  # read where the command is built
    _, chatbot = loaded_chatbot(make_user)
    _, key = apikey_create(chatbot, "warm")
    log = tmp_path / "gunicorn.log"
    proc, base = start_web_server(load_env, log)
    try:
        # Readiness (the harness waits for /login/, which embeds nothing): the worker answering has loaded it.
        before = log.read_text()
        workers = BOOTED.findall(before)
        assert len(workers) == 1
        assert LOADED.findall(before) == workers
        answer = httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                            json={"model": chatbot.slug, "messages": [{"role": "user", "content": "What is kept?"}]})
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json()["choices"][0]["message"]["content"]
        assert LOADED.findall(log.read_text()) == workers  # the question did not load it again
    finally:
        embedded.stop_process(proc, 70)


def test_the_wait_for_the_model_is_bounded(monkeypatch):
    from byoi.backends.embeddings import LocalEmbeddings

    release = threading.Event()
    monkeypatch.setattr(LocalEmbeddings, "embed", lambda self, texts: release.wait(10))
    started = time.monotonic()
    try:
        assert worker_ready(None, timeout=0.3) is False
        assert time.monotonic() - started < 2
    finally:
        release.set()


def test_an_embeddings_api_as_the_default_is_not_called_at_start(settings, monkeypatch):
    from byoi.backends.embeddings import LocalEmbeddings, OpenAICompatibleEmbeddings

    settings.DEFAULT_EMBEDDINGS_ENDPOINT = "http://127.0.0.1:9/v1"
    called = []
    monkeypatch.setattr(OpenAICompatibleEmbeddings, "embed", lambda self, texts: called.append(texts))
    monkeypatch.setattr(LocalEmbeddings, "embed", lambda self, texts: called.append(texts))
    assert worker_ready(None) is True
    assert called == []
