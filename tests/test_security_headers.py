"""Response headers and production settings: the Content-Security-Policy on every page (and no inline code that
it would block), the widget frame's own policy, the usual hardening headers, and `check --deploy` clean with the
production variables README documents."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from byoi import services as byoi_services
from chatbots.ingestion import document_add

ROOT = Path(__file__).resolve().parent.parent
# Production as README's Configuration table describes it (behind one TLS-terminating proxy).
PRODUCTION = {"WIZCHAT_HTTPS": "true", "TRUSTED_PROXY_COUNT": "1", "ALLOWED_HOSTS": "chat.example.com",
              "CSRF_TRUSTED_ORIGINS": "https://chat.example.com", "DEBUG": "false"}
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\s(on[a-z]+|style)\s*=", re.I)


@pytest.fixture
def pages(owner_client, chatbot):
    """Every dashboard page a customer sees, with something in each section."""
    byoi_services.byoi_set_enabled(chatbot, True)
    byoi_services.component_save(chatbot, "llm", values={"endpoint": "https://llm.example.com/v1", "model": "m"},
                                 secrets={"api_key": "sk-headers-0123456789"})
    document_add(chatbot, title="Guide", text="Some text.", queue=False)
    base = f"/dashboard/chatbots/{chatbot.id}"
    return ["/dashboard/chatbots/", "/dashboard/chatbots/new/", f"{base}/", f"{base}/edit/", f"{base}/delete/",
            f"{base}/history/", f"{base}/data-locations/", f"/byoi/chatbots/{chatbot.id}/"]


def test_every_dashboard_page_carries_the_content_security_policy(owner_client, pages):
    for url in pages:
        response = owner_client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Security-Policy"] == settings.CSP_POLICY, url


def test_the_policy_allows_only_our_own_scripts_styles_and_no_framing():
    policy = dict(part.strip().split(" ", 1) for part in settings.CSP_POLICY.split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"


def test_log_in_and_sign_up_pages_carry_it_too(client, db):
    for url in ("/login/", "/signup/"):
        assert client.get(url)["Content-Security-Policy"] == settings.CSP_POLICY


def test_no_page_holds_inline_scripts_styles_or_event_handlers_the_policy_would_block(owner_client, pages, client):
    for url in [*pages, "/login/", "/signup/"]:
        body = (client if url in ("/login/", "/signup/") else owner_client).get(url).content.decode()
        assert not INLINE_SCRIPT.search(body), f"inline <script> in {url}"
        assert "<style" not in body, f"inline <style> in {url}"
        assert not INLINE_HANDLER.search(body), f"inline handler or style attribute in {url}: " \
                                                f"{INLINE_HANDLER.search(body).group(0)[:80]}"
        assert "javascript:" not in body, url


def test_the_htmx_partials_hold_no_inline_code_either(owner_client, chatbot):
    hx = {"HTTP_HX_REQUEST": "true"}
    for response in (owner_client.post("/byoi/panel/", {"byoi-enabled": "on"}, **hx),
                     owner_client.post("/byoi/panel/llm/", {"byoi-enabled": "on", "llm-enabled": "on"}, **hx),
                     owner_client.post(f"/dashboard/chatbots/{chatbot.id}/api-keys/", {"name": "Site"}, **hx)):
        body = response.content.decode()
        assert not INLINE_SCRIPT.search(body) and "<style" not in body and not INLINE_HANDLER.search(body)


def test_the_widget_frame_keeps_its_own_policy(client, chatbot):
    chatbot.allowed_origins = ["https://shop.example.com"]
    chatbot.save()
    policy = client.get(f"/widget/{chatbot.id}/")["Content-Security-Policy"]
    assert policy.startswith("frame-ancestors https://shop.example.com;")
    assert "frame-ancestors 'none'" not in policy


def test_pages_send_the_hardening_headers(owner_client, pages):
    response = owner_client.get(pages[2])
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_the_admin_works_under_the_policy(client, owner, chatbot):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    client.force_login(owner)
    for url in ("/admin/", "/admin/chatbots/chatbot/", f"/admin/chatbots/chatbot/{chatbot.id}/change/",
                "/admin/byoi/byoicomponent/", "/admin/axes/accessattempt/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Security-Policy"] == settings.CSP_POLICY
        assert not INLINE_SCRIPT.search(response.content.decode()), f"inline <script> in {url}"
        assert not INLINE_HANDLER.search(response.content.decode()), INLINE_HANDLER.search(response.content.decode()).group(0)


# -- development and production settings -----------------------------------------------------------------------

def test_local_development_stays_on_plain_http(client, db):
    response = client.get("/login/")
    assert not settings.SESSION_COOKIE_SECURE and not settings.CSRF_COOKIE_SECURE
    assert not settings.SECURE_SSL_REDIRECT
    assert not response.has_header("Strict-Transport-Security")


def run_manage(*args, env_extra: dict, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WIZCHAT_STATE_DIR": str(tmp_path), "WIZCHAT_IGNORE_RUNTIME_ENV": "true", **env_extra}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the browser tests' relaxation, never a deployment's
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_check_deploy_is_clean_with_the_production_variables(tmp_path):
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env_extra=PRODUCTION, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_without_them(tmp_path):
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env_extra={"DEBUG": "false"},
                        tmp_path=tmp_path)
    assert result.returncode != 0
    assert "SESSION_COOKIE_SECURE" in result.stderr


PRINT = ("from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
         "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER)")


def test_production_marks_cookies_secure_sends_hsts_and_believes_the_proxys_scheme(tmp_path):
    result = run_manage("shell", "--no-imports", "-c", PRINT, env_extra=PRODUCTION, tmp_path=tmp_path)
    assert result.stdout.split("\n")[0] == "True True True 31536000 ('HTTP_X_FORWARDED_PROTO', 'https')"


def test_without_a_proxy_the_forwarded_scheme_is_never_believed(tmp_path):
    result = run_manage("shell", "--no-imports", "-c", PRINT, env_extra={**PRODUCTION, "TRUSTED_PROXY_COUNT": "0"},
                        tmp_path=tmp_path)
    assert result.stdout.split("\n")[0] == "True True True 31536000 None"
