import os
import subprocess
import time
import uuid

import pytest
from django.conf import settings

from tests.faults import behind_proxy, fault_record, fault_settings  # noqa: F401 - fixtures of the fault tests
from tests.openai_server import llama_server, openai_server  # noqa: F401
from tests.peers import PEERS, customer_database, drop_database
from tests.tls_peers import *  # noqa: F403 - TLS peer fixtures (names in tests.tls_peers.__all__)
from wizchat import embedded


@pytest.fixture
def peers():
    return PEERS


def _ensure_plans():
    """Transactional tests flush the seeded plans; put them back (same data as wizchat 0002_seed_plans)."""
    from wizchat.models import Plan
    from wizchat.plans import API_KEYS_PER_CHATBOT, PLANS

    if Plan.objects.count() == len(PLANS):
        return
    for position, (slug, name, byoi, chatbots, documents, messages) in enumerate(PLANS):
        Plan.objects.update_or_create(slug=slug, defaults=dict(
            name=name, byoi_allowed=byoi, max_chatbots=chatbots, max_documents=documents,
            max_messages_per_month=messages, position=position, max_api_keys=API_KEYS_PER_CHATBOT[slug]))


@pytest.fixture
def make_user(db):
    from wizchat.accounts import account_signup

    _ensure_plans()

    def make(email=None, plan="pro", team_name="Team"):
        email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        return account_signup(email=email, password="correct horse battery", team_name=team_name, plan_slug=plan)

    return make


@pytest.fixture
def owner(make_user):
    return make_user("owner@example.com", team_name="Acme")


@pytest.fixture
def teammate(owner):
    from django.contrib.auth import get_user_model

    from wizchat.models import Membership

    user = get_user_model().objects.create_user("mate@example.com", "mate@example.com", "correct horse battery")
    Membership.objects.create(user=user, account=owner.membership.account)
    return user


@pytest.fixture
def outsider(make_user):
    return make_user("outsider@example.com", team_name="Other Co")


@pytest.fixture
def free_user(make_user):
    return make_user("free@example.com", plan="free", team_name="Freebies")


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def chatbot(owner):
    from chatbots.services import chatbot_create

    return chatbot_create(owner.membership.account, name="Support bot", instructions="Be brief.")


@pytest.fixture
def customer_db():
    """A fresh database on the customer's PostgreSQL with a least-privilege role that owns it.

    Returns a dict of BYOI settings (host, port, database, username, password, ssl_mode)."""
    database = customer_database()
    yield database
    drop_database(database)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real Celery worker process consuming the test broker and using the test database.

    Tests using it need `transactional_db` so that what they write is committed and visible to the worker."""
    env = dict(os.environ)
    test_db = settings.DATABASES["default"]["NAME"]
    env["DATABASE_URL"] = PEERS.platform_pg.url(test_db)
    log = PEERS.root / "celery.log"
    proc = embedded.start_celery_worker(env, log, concurrency=2)
    from wizchat.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Celery worker exited: {log.read_text()[-3000:]}")
        replies = app.control.ping(timeout=0.5)
        if replies:
            break
    else:
        raise RuntimeError(f"Celery worker did not answer: {log.read_text()[-3000:]}")
    yield proc
    embedded.stop_process(proc)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


@pytest.fixture(autouse=True)
def _closed_breakers():
    """Every test starts with every component's circuit breaker closed (the defaults' keys are shared by tests)."""
    from byoi.isolation import BREAKER

    BREAKER.clear()


@pytest.fixture(scope="session", autouse=True)
def _close_backend_pools(django_db_setup):
    """Close cached backend pools before pytest-django drops the test database (they hold connections to it)."""
    yield
    from byoi import resolver

    resolver.clear_cache()


@pytest.fixture(scope="session")
def customer_falkor(tmp_path_factory):
    """A second FalkorDB, the customer's own, with its own password."""
    server = embedded.EmbeddedFalkor(tmp_path_factory.mktemp("customer-falkor"), embedded.free_port(),
                                     embedded.new_password())
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_rate_limits(settings):
    """Rate-limit counters in memory, fresh for each test: one test's requests never limit another's."""
    from chatbots import publicapi

    settings.RATE_LIMIT_STORAGE_URL = "memory://"
    publicapi._limiter.cache_clear()
    yield
    publicapi._limiter.cache_clear()


def _plans_after_flush(sender, **kwargs):
    """A transactional test's flush empties every table, the plans a data migration seeded included, and emits
    post_migrate: put the plans back, so a test that runs next on the same process (pytest-xdist hands whole files
    to each process in any order) finds them as a fresh database would have them."""
    if sender.name == "wizchat":
        _ensure_plans()


@pytest.fixture(scope="session", autouse=True)
def _reseed_plans_after_flush(django_db_setup):
    from django.db.models.signals import post_migrate

    post_migrate.connect(_plans_after_flush, dispatch_uid="tests-plans-after-flush")
    yield
    post_migrate.disconnect(dispatch_uid="tests-plans-after-flush")
