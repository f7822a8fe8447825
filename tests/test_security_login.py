"""Log-in throttling (django-axes, wizchat.security): per account *and* client address, a per-address limit
across accounts, a short cool-off, a clear message — and no way to lock a customer out from elsewhere."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone

PASSWORD = "correct horse battery"
ATTACKER = "203.0.113.7"
CUSTOMER = "198.51.100.20"


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def log_in(client, username, password, address=ATTACKER, **extra):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address, **extra)


def fail(client, username, times, address=ATTACKER, **extra):
    for _ in range(times):
        response = log_in(client, username, "wrong password!", address, **extra)
    return response


def logged_in(client) -> bool:
    return client.get("/dashboard/chatbots/").status_code == 200


def test_it_refuses_the_right_password_after_ten_wrong_ones_and_says_for_how_long(client, owner):
    fail(client, "owner@example.com", 10)
    response = log_in(client, "owner@example.com", PASSWORD)
    body = response.content.decode()
    assert response.status_code == 429
    assert "Too many failed log-ins for this account from your network" in body
    assert "try again in 15 minutes" in body
    assert not logged_in(client)


def test_the_tenth_failure_already_shows_the_lockout_on_the_log_in_page(client, owner):
    response = fail(client, "owner@example.com", 10)
    assert response.status_code == 429
    assert "<form" in response.content.decode()  # the page, not a bare error
    assert 'value="owner@example.com"' in response.content.decode()


def test_nine_failures_do_not_lock_and_a_success_starts_the_count_again(client, owner):
    fail(client, "owner@example.com", 9)
    assert log_in(client, "owner@example.com", PASSWORD).status_code == 302
    client.post("/logout/")
    fail(client, "owner@example.com", 9)
    assert log_in(client, "owner@example.com", PASSWORD).status_code == 302


def test_the_customer_on_another_address_still_logs_in_while_the_guesser_is_locked(client, owner):
    fail(client, "owner@example.com", 25)
    customer = Client()
    assert log_in(customer, "owner@example.com", PASSWORD, address=CUSTOMER).status_code == 302
    assert logged_in(customer)


def test_the_lockout_ends_after_the_cool_off(client, owner):
    fail(client, "owner@example.com", 10)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert log_in(client, "owner@example.com", PASSWORD).status_code == 302


def test_failures_during_the_lockout_do_not_extend_it(client, owner):
    fail(client, "owner@example.com", 10)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=14))
    fail(client, "owner@example.com", 5)
    assert AccessAttempt.objects.get().failures_since_start == 10
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert log_in(client, "owner@example.com", PASSWORD).status_code == 302


def test_one_address_failing_across_many_accounts_is_paused_for_every_account(client, make_user, settings):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 12
    victim = make_user("victim@example.com")
    for n in range(4):
        fail(client, f"guess{n}@example.com", 3)
    response = log_in(client, victim.username, PASSWORD)
    assert response.status_code == 200
    assert "Too many failed log-ins from your network" in response.content.decode()
    assert "try again in 15 minutes" in response.content.decode()
    assert not logged_in(client)
    assert log_in(Client(), victim.username, PASSWORD, address=CUSTOMER).status_code == 302


def test_the_address_behind_trusted_proxies_is_the_one_the_proxy_saw(client, owner, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    fail(client, "owner@example.com", 10, address=proxy, HTTP_X_FORWARDED_FOR=ATTACKER)
    assert AccessAttempt.objects.get().ip_address == ATTACKER
    customer = Client()
    response = log_in(customer, "owner@example.com", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR=CUSTOMER)
    assert response.status_code == 302


def test_a_forged_forwarded_for_header_is_ignored_without_trusted_proxies(client, owner):
    for n in range(10):
        log_in(client, "owner@example.com", "wrong password!", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    response = log_in(client, "owner@example.com", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.99")
    assert response.status_code == 429


def test_the_lockout_page_and_the_failure_records_never_hold_the_password(client, owner):
    typed = "my-almost-right-password-9"
    for _ in range(10):
        response = log_in(client, "owner@example.com", typed)
    assert typed not in response.content.decode()
    attempt = AccessAttempt.objects.get()
    assert typed not in attempt.post_data and typed not in attempt.get_data


def test_the_admin_log_in_is_throttled_too(client, owner):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    for _ in range(10):
        client.post("/admin/login/", {"username": "owner@example.com", "password": "nope-nope-nope"},
                    REMOTE_ADDR=ATTACKER)
    response = client.post("/admin/login/?next=/admin/", {"username": "owner@example.com", "password": PASSWORD},
                           REMOTE_ADDR=ATTACKER)
    assert response.status_code == 429
    assert client.get("/admin/").status_code == 302


def test_a_nul_in_the_user_name_is_a_form_error_not_a_500(client, db):
    response = log_in(client, "owner\x00@example.com", PASSWORD)
    assert response.status_code == 200
    assert "<form" in response.content.decode()
