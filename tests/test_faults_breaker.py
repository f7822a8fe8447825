"""The circuit breaker per component and the bounded thread shares (byoi.isolation), alone and through the access
layer against a real customer PostgreSQL behind a switchable proxy."""

import gc
import threading
import time

import pytest

from byoi import resolver
from byoi.access import ComponentFailed, component
from byoi.errors import BackendError
from byoi.isolation import Breaker, CircuitOpen, Lanes
from byoi.services import byoi_set_enabled, component_save
from conversations.services import conversation_list
from tests.fault_proxy import FaultProxy
from tests.peers import PEERS

TIMEOUT = BackendError("timeout", "The server did not answer.")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def breaker(clock):
    return Breaker(clock)


def fail(breaker, key="db", error=TIMEOUT, threshold=1):
    admission = breaker.admit(key, probe_timeout=30)
    return breaker.failed(admission, error, cooldown=5, max_cooldown=60, threshold=threshold)


def test_it_refuses_at_once_with_the_same_code_after_a_transient_failure(breaker, clock):
    fail(breaker)
    clock.now += 2
    with pytest.raises(CircuitOpen) as refused:
        breaker.admit("db", probe_timeout=30)
    assert refused.value.error.code == "timeout"
    assert "failed 2 s ago" in refused.value.error.message
    assert "retried in 3 s" in refused.value.error.message
    assert refused.value.retry_in == pytest.approx(3)


def test_it_lets_one_probe_through_after_the_cooldown(breaker, clock):
    fail(breaker)
    clock.now += 5
    probe = breaker.admit("db", probe_timeout=30)
    assert probe.probe
    with pytest.raises(CircuitOpen):
        breaker.admit("db", probe_timeout=30)  # one probe at a time
    breaker.succeeded(probe)
    assert not breaker.admit("db", probe_timeout=30).probe


def test_it_doubles_the_cooldown_while_the_probe_fails_up_to_the_maximum(breaker, clock):
    cooldowns = [fail(breaker)]
    for _ in range(6):
        clock.now += cooldowns[-1]
        probe = breaker.admit("db", probe_timeout=30)
        assert probe.probe
        cooldowns.append(breaker.failed(probe, TIMEOUT, cooldown=5, max_cooldown=60))
    assert cooldowns == [5, 10, 20, 40, 60, 60, 60]


def test_a_lost_probe_frees_its_turn_after_its_timeout(breaker, clock):
    fail(breaker)
    clock.now += 5
    assert breaker.admit("db", probe_timeout=30).probe  # its caller never reports
    clock.now += 30
    assert breaker.admit("db", probe_timeout=30).probe


def test_an_abandoned_probe_lets_the_next_caller_probe(breaker, clock):
    fail(breaker)
    clock.now += 5
    breaker.released(breaker.admit("db", probe_timeout=30))
    assert breaker.admit("db", probe_timeout=30).probe


def test_a_failure_that_is_not_transient_closes_it(breaker, clock):
    fail(breaker)
    clock.now += 5
    probe = breaker.admit("db", probe_timeout=30)
    breaker.failed(probe, BackendError("auth", "Wrong password."), cooldown=5, max_cooldown=60)
    assert not breaker.admit("db", probe_timeout=30).probe


def test_it_keeps_other_components_closed(breaker):
    fail(breaker, "customer-a")
    assert not breaker.admit("customer-b", probe_timeout=30).probe


def test_it_opens_after_the_threshold_only(breaker):
    assert fail(breaker, threshold=3) is None
    assert fail(breaker, threshold=3) is None
    assert fail(breaker, threshold=3) == 5
    with pytest.raises(CircuitOpen):
        breaker.admit("db", probe_timeout=30)


def test_lanes_cap_each_component_and_never_queue():
    lanes = Lanes("test-lanes", max_workers=4)
    release = threading.Event()
    held = [lanes.submit("stalled", 2, release.wait) for _ in range(3)]
    others = [lanes.submit("healthy", 4, release.wait) for _ in range(3)]
    try:
        assert [f is not None for f in held] == [True, True, False]  # its share is 2
        assert [f is not None for f in others] == [True, True, False]  # the pool (4) is full
        assert lanes.busy("stalled") == 2
    finally:
        release.set()
    for future in [*held, *others]:
        if future is not None:
            future.result(timeout=5)
    assert lanes.submit("healthy", 4, lambda: "ok").result(timeout=5) == "ok"


# --- through the access layer ------------------------------------------------------------------------------

class FakeStack:
    """A stack whose one component raises what the test says."""

    def __init__(self, error, source="custom"):
        self.error, self.sources = error, {"llm": source}

    def fingerprint(self, kind):
        return f"fake-{id(self)}"

    def describe(self):
        return {"llm": {"location": "llm.example.com"}}

    @property
    def llm(self):
        raise self.error


def call(stack):
    with pytest.raises(ComponentFailed) as failed, component(stack, "llm"):
        pass
    return failed.value


def test_wizchats_own_bugs_do_not_open_the_breaker():
    stack = FakeStack(KeyError("a bug"))
    call(stack)
    assert "ago" not in call(stack).message


def test_a_customer_component_opens_on_its_first_transient_failure():
    stack = FakeStack(ConnectionRefusedError())
    first = call(stack)
    second = call(stack)
    assert first.code == second.code == "refused"
    assert second.retry_after is not None
    assert "ago" in second.message and "ago" not in first.message


def test_a_wizchat_default_opens_after_three_failures_in_a_row():
    stack = FakeStack(ConnectionRefusedError(), source="default")
    assert ["ago" in call(stack).message for _ in range(4)] == [False, False, False, True]


@pytest.fixture
def short_timeouts(settings):
    settings.BYOI_CONNECT_TIMEOUT = 1
    settings.BYOI_OPERATION_TIMEOUT = 2
    settings.BYOI_BREAKER_COOLDOWN = 1
    resolver.clear_cache()
    yield
    resolver.clear_cache()


@pytest.fixture
def proxied_conversations(chatbot, customer_db, short_timeouts):
    proxy = FaultProxy(PEERS.customer_pg.port)
    component_save(chatbot, "conversations", values={**customer_db, "port": proxy.port},
                   secrets={"password": customer_db["password"]})
    byoi_set_enabled(chatbot, True)
    yield proxy
    proxy.close()


def timed_list(chatbot):
    started = time.monotonic()
    try:
        conversation_list(chatbot)
        return "ok", time.monotonic() - started, ""
    except ComponentFailed as failure:
        return failure.code, time.monotonic() - started, str(failure)


def test_a_silent_database_is_waited_for_once_then_refused_at_once(chatbot, proxied_conversations):
    assert timed_list(chatbot)[0] == "ok"
    proxied_conversations.silent()
    first, second = timed_list(chatbot), timed_list(chatbot)
    assert first[0] == second[0] == "timeout"
    assert 1.5 < first[1] < 2 + 1
    assert second[1] < 0.1
    assert "WizChat does not wait for it again until it is retried in" in second[2]


def test_the_probe_after_the_cooldown_finds_the_database_back_without_a_restart(chatbot, proxied_conversations):
    proxied_conversations.refuse()
    assert timed_list(chatbot)[0] == "refused"
    proxied_conversations.forward()
    assert timed_list(chatbot)[0] == "refused"  # still cooling down: not tried
    time.sleep(1.1)
    assert timed_list(chatbot)[0] == "ok"
    assert timed_list(chatbot)[0] == "ok"


def test_a_remembered_failure_keeps_no_connection_to_the_silent_server_open(chatbot, proxied_conversations):
    proxied_conversations.silent()
    assert timed_list(chatbot)[0] == "timeout"
    gc.collect()
    time.sleep(0.1)
    assert timed_list(chatbot)[0] == "timeout"  # the breaker still remembers it…
    deadline = time.monotonic() + 3
    while proxied_conversations.waiting and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.1)
    assert proxied_conversations.waiting == 0  # …without holding the timed-out connection's socket
