"""The website widget without a browser: allowed origins, the frame's CSP, the session endpoint's Origin check and
the session tokens (chatbots.widget, the widget views in chatbots.views_api). The browser half is
tests/e2e/test_widget_browser.py."""

import json
import re

import pytest
from django.core import signing

from chatbots import apikeys, widget
from chatbots.widget import OriginRejected, frame_ancestors, origins_clean

ALLOWED = "https://www.example.com"


# --- allowed origins ------------------------------------------------------------------------------------------


def test_it_normalises_origins_typed_one_per_line_or_comma_separated():
    typed = " HTTPS://WWW.Example.com/ \nhttp://127.0.0.1:8000, https://shop.example.com:443\n\nhttp://[::1]:81"
    assert origins_clean(typed) == ["https://www.example.com", "http://127.0.0.1:8000",
                                    "https://shop.example.com", "http://[::1]:81"]


def test_it_drops_duplicates_and_default_ports():
    assert origins_clean("https://a.example\nhttps://a.example:443/\nhttp://a.example:80") == [
        "https://a.example", "http://a.example"]


def test_it_reads_an_empty_list_as_nowhere():
    assert origins_clean("  \n ,, \n") == []


@pytest.mark.parametrize("typed,message", [
    ("*", "Wildcards are not accepted"),
    ("https://*.example.com", "Wildcards are not accepted"),
    ("https://www.example.com/shop", "has more than an origin"),
    ("https://www.example.com/?q=1", "has more than an origin"),
    ("https://user:pw@www.example.com", "has more than an origin"),
    ("ftp://www.example.com", "is not a website origin"),
    ("javascript:alert(1)", "is not a website origin"),
    ("file:///etc/passwd", "is not a website origin"),
    ("www.example.com", "is not a website origin"),
    ("null", "is not a website origin"),
    ("https://www.example.com:99999", "malformed port"),
    ("https://www.exa mple.com", "spaces or control characters"),
])
def test_it_rejects_what_is_not_an_origin_and_says_what_to_write(typed, message):
    with pytest.raises(OriginRejected, match=message) as caught:
        origins_clean(typed)
    if "Wildcards" not in message and "port" not in message and "spaces" not in message:
        assert "https://www.example.com" in str(caught.value)  # the example of what to write


def test_it_refuses_more_than_fifty_websites():
    with pytest.raises(OriginRejected, match="at most 50"):
        origins_clean("\n".join(f"https://site{i}.example" for i in range(51)))


def test_it_matches_a_browser_origin_only_against_the_list():
    assert widget.origin_allowed("https://www.example.com", [ALLOWED])
    assert widget.origin_allowed("HTTPS://www.example.com:443", [ALLOWED])
    assert not widget.origin_allowed("https://example.com", [ALLOWED])
    assert not widget.origin_allowed("http://www.example.com", [ALLOWED])
    assert not widget.origin_allowed("null", [ALLOWED])
    assert not widget.origin_allowed("", [ALLOWED])
    assert not widget.origin_allowed(ALLOWED, [])


def test_it_writes_the_frame_ancestors_directive():
    assert frame_ancestors([ALLOWED, "http://127.0.0.1:8000"]) == (
        "frame-ancestors https://www.example.com http://127.0.0.1:8000")
    assert frame_ancestors([]) == "frame-ancestors 'none'"


# --- the frame ------------------------------------------------------------------------------------------------


def _csp(response) -> dict[str, str]:
    directives = (d.strip().split(" ", 1) for d in response["Content-Security-Policy"].split(";") if d.strip())
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


def test_the_frame_may_appear_only_inside_the_allowed_websites(client, chatbot):
    chatbot.allowed_origins = [ALLOWED, "http://127.0.0.1:8000"]
    chatbot.save()
    response = client.get(f"/widget/{chatbot.id}/")
    csp = _csp(response)
    assert response.status_code == 200
    assert csp["frame-ancestors"] == "https://www.example.com http://127.0.0.1:8000"
    assert csp["script-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert "X-Frame-Options" not in response  # frame-ancestors decides; DENY would block the allowed sites too
    assert 'class="wz"' in response.content.decode()


def test_the_frame_takes_a_question_only_once_its_script_is_ready(client, chatbot):
    """Rendered disabled, enabled by frame.js once Enter and Send are bound (a question typed before would be
    lost: a browser test under load typed it in that moment)."""
    chatbot.allowed_origins = [ALLOWED]
    chatbot.save()
    page = client.get(f"/widget/{chatbot.id}/").content.decode()
    assert re.search(r"<textarea [^>]*\bdisabled\b", page) and re.search(r'<button type="submit" disabled>', page)


def test_the_frame_of_a_chatbot_without_allowed_websites_appears_nowhere(client, chatbot):
    response = client.get(f"/widget/{chatbot.id}/")
    assert _csp(response)["frame-ancestors"] == "'none'"
    assert 'class="wz"' not in response.content.decode()
    assert "not available" in response.content.decode()


def test_the_frame_of_an_unknown_chatbot_appears_nowhere(client, db):
    response = client.get("/widget/00000000-0000-4000-8000-000000000000/")
    assert _csp(response)["frame-ancestors"] == "'none'"
    assert 'class="wz"' not in response.content.decode()


def test_the_script_is_public_and_points_at_this_server(client, db, settings):
    settings.ALLOWED_HOSTS = ["chat.example.net"]
    response = client.get("/widget.js", HTTP_HOST="chat.example.net")
    body = response.content.decode()
    assert response["Content-Type"].startswith("text/javascript")
    assert 'var base = "http://chat.example.net"' in body
    assert "{{" not in body and "{%" not in body


# --- sessions -------------------------------------------------------------------------------------------------


def session(client, chatbot, origin=None, method="post"):
    extra = {"HTTP_ORIGIN": origin} if origin is not None else {}
    return getattr(client, method)(f"/widget/{chatbot.id}/session", **extra)


@pytest.fixture
def allowed_bot(chatbot):
    chatbot.allowed_origins = [ALLOWED]
    chatbot.save()
    return chatbot


def test_an_allowed_website_gets_a_session_with_cors_for_it_alone(client, allowed_bot):
    response = session(client, allowed_bot, "https://www.example.com")
    body = response.json()
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ALLOWED
    assert "Access-Control-Allow-Credentials" not in response
    assert response["Vary"] == "Origin"
    assert body["token"].startswith("wzs_")
    assert body["model"] == allowed_bot.slug
    assert body["expires_in"] == widget.SESSION_SECONDS


def test_the_preflight_is_answered_for_an_allowed_website(client, allowed_bot):
    response = session(client, allowed_bot, ALLOWED, method="options")
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize("origin", [None, "", "null", "https://evil.example", "http://www.example.com",
                                    "https://www.example.com.evil.example", "https://www.example.com/path"])
@pytest.mark.parametrize("method", ["post", "options"])
def test_a_missing_or_wrong_origin_gets_403_and_no_cors(client, allowed_bot, origin, method):
    response = session(client, allowed_bot, origin, method=method)
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response
    if method == "post":
        assert response.json()["error"]["code"] == "origin_not_allowed"
        assert "token" not in response.content.decode()


def test_no_website_gets_a_session_when_the_list_is_empty(client, chatbot):
    response = session(client, chatbot, ALLOWED)
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response


def test_an_unknown_chatbot_gets_no_session(client, db):
    response = client.post("/widget/00000000-0000-4000-8000-000000000000/session", HTTP_ORIGIN=ALLOWED)
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response


# --- tokens against the API -----------------------------------------------------------------------------------


def ask(client, token, model):
    return client.post("/v1/chat/completions", json.dumps({"model": model, "messages": [
        {"role": "user", "content": "Hello?"}]}), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def key_of(chatbot) -> str:
    return widget.signing_key(apikeys.chatbot_pepper(chatbot.id))


def test_a_session_token_works_for_its_chatbot(client, allowed_bot, openai_server, settings):
    from byoi.resolver import clear_cache

    openai_server.as_default_llm(settings)
    try:
        token = session(client, allowed_bot, ALLOWED).json()["token"]
        response = ask(client, token, allowed_bot.slug)
    finally:
        clear_cache()
    assert response.status_code == 200, response.content
    assert response.json()["choices"][0]["message"]["content"] == openai_server.reply


def test_a_token_for_another_chatbot_is_rejected(client, allowed_bot, owner):
    from chatbots.models import Chatbot

    other = Chatbot.objects.create(account=owner.membership.account, name="Other bot", allowed_origins=[ALLOWED])
    token = session(client, allowed_bot, ALLOWED).json()["token"]
    assert ask(client, token, other.slug).status_code == 404  # the session covers its own chatbot alone
    # The same signed session relabelled for the other chatbot: its signature is not the other chatbot's.
    relabelled = f"wzs_{other.id.hex}.{token.partition('.')[2]}"
    assert ask(client, relabelled, other.slug).status_code == 401
    assert widget.session_verify(key_of(other), token, other.id) is None
    # Signed with the other chatbot's key but claiming this one: refused too.
    forged = widget.session_token(key_of(other), allowed_bot.id, ALLOWED)
    assert ask(client, forged, allowed_bot.slug).status_code == 401


def test_an_expired_token_is_rejected(client, allowed_bot, monkeypatch):
    old = signing.b62_encode(int(signing.time.time()) - widget.SESSION_SECONDS - 5)
    with monkeypatch.context() as patch:
        patch.setattr(signing.TimestampSigner, "timestamp", lambda self: old)
        token = widget.session_token(key_of(allowed_bot), allowed_bot.id, ALLOWED)
    assert widget.session_verify(key_of(allowed_bot), token, allowed_bot.id) is None
    response = ask(client, token, allowed_bot.slug)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_token_from_a_website_removed_since_is_rejected(client, allowed_bot):
    token = session(client, allowed_bot, ALLOWED).json()["token"]
    allowed_bot.allowed_origins = ["https://other.example"]
    allowed_bot.save()
    assert ask(client, token, allowed_bot.slug).status_code == 401


def test_a_tampered_token_is_rejected(client, allowed_bot):
    token = session(client, allowed_bot, ALLOWED).json()["token"]
    assert ask(client, token[:-2] + ("AA" if not token.endswith("AA") else "BB"), allowed_bot.slug).status_code == 401
    assert ask(client, "wzs_not-a-token", allowed_bot.slug).status_code == 401
