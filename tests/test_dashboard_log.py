"""The connection log in words that fit: a Test Connection is credited to whoever clicked it, a save that changed
nothing is not logged, switching a component back on says so, and the log pages instead of growing."""

import re

from byoi import services
from byoi.activity import activity_list, activity_page
from byoi.models import AuditEvent

LLM = {"endpoint": "https://llm.example.com/v1", "model": "gpt-4o"}


def texts(chatbot) -> list[str]:
    return [entry.text for entry in activity_list(chatbot)]


def test_it_credits_a_test_connection_to_the_user_who_started_it(chatbot, owner):
    services.byoi_set_enabled(chatbot, True)
    services.component_save(chatbot, "llm", values={**LLM, "endpoint": "http://127.0.0.1:9/v1"},
                            secrets={"api_key": "k"})
    component = chatbot.components.get(kind="llm")
    test = services.connection_test_retest(component, actor=owner)
    services.connection_test_run(test.id)
    entry = activity_list(chatbot)[0]
    assert entry.text.startswith("Test Connection of LLM")
    assert entry.who == "owner@example.com"


def test_it_leaves_out_a_save_that_changed_nothing(chatbot, owner):
    services.byoi_set_enabled(chatbot, True, actor=owner)
    services.component_save(chatbot, "llm", values=LLM, secrets={"api_key": "k"}, actor=owner)
    services.component_save(chatbot, "llm", values=LLM, secrets={"api_key": "k"}, actor=owner)
    assert texts(chatbot) == ["LLM settings saved (changed: API Endpoint, API Key, Model Name)", "BYOI switched on"]


def test_it_says_a_component_was_switched_back_on(chatbot, owner):
    services.byoi_set_enabled(chatbot, True, actor=owner)
    services.component_save(chatbot, "llm", values=LLM, secrets={"api_key": "k"}, actor=owner)
    services.component_disable(chatbot, "llm", actor=owner)
    services.component_save(chatbot, "llm", values=LLM, secrets={"api_key": "k"}, actor=owner)
    assert texts(chatbot)[:2] == ["LLM switched on", "LLM switched off: WizChat's default is used"]


def test_it_pages_the_log(owner_client, chatbot):
    AuditEvent.objects.bulk_create([AuditEvent(account=chatbot.account, chatbot_id=chatbot.id, action="byoi.enabled")
                                    for _ in range(30)])
    first, older = activity_page(chatbot, 1)
    second, more = activity_page(chatbot, 2)
    assert (len(first), older, len(second), more) == (25, True, 5, False)
    body = owner_client.get(f"/byoi/chatbots/{chatbot.id}/").content.decode()
    assert 'href="?log=2#connection-log">Older entries</a>' in body
    body = owner_client.get(f"/byoi/chatbots/{chatbot.id}/?log=2").content.decode()
    assert 'href="?log=1#connection-log">Newer entries</a>' in body
    assert "Older entries" not in body


def test_it_answers_a_malformed_log_page_with_the_first(owner_client, chatbot):
    assert owner_client.get(f"/byoi/chatbots/{chatbot.id}/?log=abc").status_code == 200


def test_it_points_every_aria_describedby_at_an_element_of_the_page(owner_client):
    body = owner_client.post("/dashboard/chatbots/new/", {"byoi-enabled": "on", "llm-enabled": "on",
                                                          "vector_store-enabled": "on", "graph-enabled": "on",
                                                          "byoi-refresh": "1"}).content.decode()
    ids = set(re.findall(r'\bid="([^"]+)"', body))
    described = set(re.findall(r'aria-describedby="([^"]+)"', body))
    assert described
    assert described - ids == set()
