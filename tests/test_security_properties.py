"""Property-based input testing (Hypothesis): whatever arrives — any bytes at the public API's parser, any text in
the dashboard's forms, any file at the upload parser, any string in a BYOI field — the answer is a value or the
module's own refusal, never another exception (a 500 over HTTP)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byoi.forms import component_form
from byoi.registry import KINDS
from chatbots.apikeys import KeyRejected, apikey_create
from chatbots.forms import ChatbotForm
from chatbots.ingestion import DocumentRejected, document_parse
from chatbots.publicapi import ApiError, CompletionRequest, completion_request
from chatbots.widget import OriginRejected, origin_normal, origins_clean
from wizchat.forms import SignupForm
from wizchat.textcheck import control_characters, control_characters_removed, text_problem

# Modest counts keep the suite fast; no example database in the repository.
FAST = settings(max_examples=100, deadline=None, database=None)
HTTP = settings(max_examples=50, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
HX = {"HTTP_HX_REQUEST": "true"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)
messages = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "developer", "tool", "x"]) | st.text(max_size=8)},
    optional={"content": json_values | st.text() | st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url"]), "text": json_values})), "tool_calls": json_values}),
    max_size=5)
api_bodies = st.fixed_dictionaries(
    {}, optional={"model": json_values, "messages": messages | json_values, "stream": json_values,
                  "stream_options": json_values, "temperature": json_values, "max_tokens": json_values,
                  "max_completion_tokens": json_values, "top_p": json_values, "n": json_values,
                  "response_format": json_values, "conversation_id": json_values, "logprobs": json_values,
                  "tools": json_values, "stop": json_values})


def parse(raw: bytes, header=None):
    try:
        return completion_request(raw, header)
    except ApiError as error:
        assert error.status in (400, 413), error.status
        return error


@FAST
@given(st.binary(max_size=2048))
def test_the_api_parser_answers_any_bytes_with_a_request_or_a_400(raw):
    assert isinstance(parse(raw), CompletionRequest | ApiError)


@FAST
@given(api_bodies, st.none() | st.text(max_size=40))
def test_the_api_parser_answers_any_json_shaped_body_with_a_request_or_a_400(body, header):
    result = parse(json.dumps(body).encode(), header)
    if isinstance(result, CompletionRequest):
        assert isinstance(result.question, str) and result.question.strip()
        assert isinstance(result.model, str)
        assert not control_characters(result.question, multiline=True)  # storable, and encodable for the LLM


@FAST
@given(st.integers(min_value=0, max_value=20_000))
def test_the_api_parser_survives_any_nesting_depth(depth):
    assert isinstance(parse(b"[" * depth + b"]" * depth), ApiError)


@FAST
@given(st.text())
def test_the_text_check_refuses_exactly_the_control_characters(text):
    assert bool(text_problem(text, "the text")) == bool(control_characters(text))
    assert not control_characters(control_characters_removed(text))
    assert not control_characters(control_characters_removed(text, multiline=True), multiline=True)


@FAST
@given(st.text(max_size=300))
def test_allowed_origins_are_origins_or_a_refusal(text):
    try:
        origins = origins_clean(text)
    except OriginRejected as refusal:
        assert str(refusal)
        return
    for origin in origins:
        assert origin_normal(origin) == origin  # normal form, stable
        assert not any(c.isspace() or ord(c) < 33 for c in origin)


PLAIN_FIELDS = [(kind, f) for kind, spec in KINDS.items() for f in spec.fields if not f.secret]


@FAST
@given(st.sampled_from(PLAIN_FIELDS), st.text(max_size=300) | st.integers().map(str))
def test_every_byoi_field_coerces_any_string_to_a_value_or_a_message(kind_field, raw):
    kind, field = kind_field
    try:
        value = field.coerce(raw)
    except ValueError as error:
        assert field.label in str(error) or str(error)
        return
    if isinstance(value, str):  # the registry refuses C0 and DEL (C1 controls pass: see docs/SECURITY.md)
        assert not any(ord(c) < 32 or ord(c) == 127 for c in value)


@FAST
@given(st.sampled_from(list(KINDS)), st.dictionaries(st.sampled_from(["endpoint", "api_key", "model", "dimensions",
                                                                     "host", "port", "database", "username",
                                                                     "password", "ssl_mode", "ssl"]),
                                                    st.text(max_size=80), max_size=8))
def test_every_byoi_form_validates_any_input_without_an_exception(kind, typed):
    form = component_form(kind, {f"{kind}-{k}": v for k, v in typed.items()})
    if form.is_valid():
        _, secrets = form.split()
        assert not any(control_characters(v) for v in secrets.values() if isinstance(v, str))


@FAST
@given(st.text(max_size=120), st.text(max_size=300))
def test_the_chatbot_form_validates_any_text(name, instructions):
    form = ChatbotForm({"name": name, "instructions": instructions})
    if form.is_valid():
        assert not control_characters(form.cleaned_data["name"])
        assert not control_characters(form.cleaned_data["instructions"], multiline=True)


@pytest.mark.django_db
@FAST
@given(st.text(max_size=60), st.text(max_size=120), st.text(max_size=40))
def test_the_sign_up_form_validates_any_text(email, team, password):
    SignupForm({"email": email, "team_name": team, "password": password}).is_valid()


@FAST
@given(st.sampled_from(["notes.txt", "page.html", "doc.md", "file.pdf", "x.bin", ""]), st.binary(max_size=4096))
def test_the_upload_parser_answers_any_file_with_text_or_a_refusal(name, data):
    if name.endswith(".pdf"):
        data = b"%PDF-1.4\n" + data
    try:
        file_type, text = document_parse(name, data)
    except DocumentRejected as refusal:
        assert str(refusal)
        return
    assert text and not control_characters(text, multiline=True)


# -- over HTTP: never a 500 ------------------------------------------------------------------------------------

@HTTP
@given(st.text(max_size=150), st.text(max_size=400))
def test_the_chatbot_create_page_never_fails_on_any_text(owner_client, name, instructions):
    response = owner_client.post("/dashboard/chatbots/new/", {"name": name, "instructions": instructions})
    assert response.status_code in (200, 302)


@HTTP
@given(st.text(max_size=150), st.text(max_size=400))
def test_the_chatbot_edit_page_never_fails_on_any_text(owner_client, chatbot, name, instructions):
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/edit/", {"name": name,
                                                                              "instructions": instructions})
    assert response.status_code in (200, 302)


@HTTP
@given(st.text(max_size=300), st.text(max_size=1000))
def test_the_document_paste_form_never_fails_on_any_text(owner_client, chatbot, title, text):
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/documents/",
                                 {"mode": "paste", "title": title, "text": text}, **HX)
    assert response.status_code == 200


@HTTP
@given(st.text(max_size=150), st.binary(max_size=2048), st.sampled_from(["a.txt", "b.html", "c.pdf", "d.md"]))
def test_the_upload_form_never_fails_on_any_file(owner_client, chatbot, tmp_path, title, data, name):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile(name, data)
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/documents/", {"title": title, "file": upload},
                                 **HX)
    assert response.status_code == 200


@HTTP
@given(st.text(max_size=150))
def test_an_api_key_name_is_a_key_or_a_refusal(chatbot, owner, name):
    try:
        row, _ = apikey_create(chatbot, name, user=owner)
    except KeyRejected:
        return
    except Exception as error:  # PlanLimitReached once the plan's keys are used: a refusal too
        assert type(error).__name__ == "PlanLimitReached"
        return
    assert not control_characters(row.name)
    row.delete()


@HTTP
@given(st.text(max_size=300))
def test_the_allowed_websites_form_never_fails_on_any_text(owner_client, chatbot, text):
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/allowed-origins/", {"allowed_origins": text}, **HX)
    assert response.status_code == 200


@HTTP
@given(st.dictionaries(st.sampled_from(["llm-endpoint", "llm-api_key", "llm-model", "vector_store-host",
                                        "vector_store-port", "vector_store-password", "graph-host", "graph-ssl"]),
                       st.text(max_size=80), max_size=6))
def test_the_byoi_settings_page_never_fails_on_any_text(owner_client, chatbot, typed):
    data = {"byoi-enabled": "on", "llm-enabled": "on", "vector_store-enabled": "on", "graph-enabled": "on", **typed}
    response = owner_client.post(f"/byoi/chatbots/{chatbot.id}/", data)
    assert response.status_code in (200, 302)
