"""Secrets never reach the logs: the scrub filter and what the services log."""

import io
import logging

import pytest

from byoi import services
from byoi.scrub import SecretScrubFilter, secrets_known


@pytest.fixture
def log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretScrubFilter())
    logger = logging.getLogger("tests.scrub")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_it_scrubs_the_password_of_a_url(log):
    logger, stream = log
    logger.info("connecting to %s", "postgres://svc:Sup3r-Secret@db.example.com:5432/vectors")
    assert "Sup3r-Secret" not in stream.getvalue() and "db.example.com" in stream.getvalue()


def test_it_scrubs_an_openai_style_api_key(log):
    logger, stream = log
    logger.info("using key sk-proj-abcdef1234567890")
    assert "abcdef1234567890" not in stream.getvalue()


def test_it_scrubs_an_authorization_header(log):
    logger, stream = log
    logger.info("headers: %s", {"Authorization": "Bearer tok_9f8e7d6c5b4a"})
    assert "tok_9f8e7d6c5b4a" not in stream.getvalue()


def test_it_scrubs_key_value_pairs(log):
    logger, stream = log
    logger.info("dsn host=db password=hunter2hunter api_key=abc123xyz")
    assert "hunter2hunter" not in stream.getvalue() and "abc123xyz" not in stream.getvalue()


def test_it_scrubs_exception_tracebacks(log):
    logger, stream = log
    try:
        raise RuntimeError("connection to postgres://u:TraceSecret@h/db failed")
    except RuntimeError:
        logger.exception("boom")
    assert "TraceSecret" not in stream.getvalue() and "RuntimeError" in stream.getvalue()


def test_it_scrubs_the_exact_secret_values_of_the_component_in_use(log):
    logger, stream = log
    with secrets_known(["bare-secret-value"]):
        logger.warning("server said: bad credential bare-secret-value")
    assert "bare-secret-value" not in stream.getvalue()


def test_it_forgets_known_secrets_after_the_block(log):
    logger, stream = log
    with secrets_known(["temporary-value"]):
        pass
    logger.warning("temporary-value")
    assert "temporary-value" in stream.getvalue()


def test_it_logs_no_secret_while_running_a_failing_test_connection(chatbot, openai_server, caplog):
    component = services.component_save(chatbot, "llm", values={"endpoint": openai_server.base_url,
                                                                "model": "gpt-4o-mini"},
                                        secrets={"api_key": "sk-never-logged-0123456789"})
    caplog.set_level(logging.DEBUG)
    services.connection_test_run(services.connection_test_retest(component).id)
    assert "sk-never-logged-0123456789" not in caplog.text
