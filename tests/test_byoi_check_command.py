"""`manage.py byoi_check`: operators re-run Test Connection on saved components, against real peers."""

import io

import pytest
from django.core.management import CommandError, call_command

from byoi.activity import activity_list
from byoi.models import BYOIComponent, ConnectionTest
from byoi.services import byoi_set_enabled, component_save
from chatbots.services import chatbot_create

WRONG = "wrong-password-51ab"


def run(*args) -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("byoi_check", *args, stdout=out)
    except CommandError as error:
        out.write(f"\n{error}")
        return out.getvalue(), error.returncode
    return out.getvalue(), 0


@pytest.fixture
def good_bot(chatbot, customer_db):
    component_save(chatbot, "vector_store", values=customer_db, secrets={"password": customer_db["password"]})
    byoi_set_enabled(chatbot, True)
    return chatbot


@pytest.fixture
def bad_bot(owner, customer_db):
    bot = chatbot_create(owner.membership.account, name="Broken bot")
    component_save(bot, "conversations", values=customer_db, secrets={"password": WRONG})
    byoi_set_enabled(bot, True)
    return bot


def test_it_checks_every_enabled_component_and_fails_when_one_fails(good_bot, bad_bot):
    output, code = run()
    assert code == 1
    assert f"OK         Acme · Support bot ({good_bot.id}) · Vector Store" in output
    assert f"FAILED     Acme · Broken bot ({bad_bot.id}) · Conversations: auth at" in output
    assert "2 component(s) checked: 1 ok, 1 failed." in output
    assert WRONG not in output
    statuses = dict(BYOIComponent.objects.values_list("chatbot__name", "status"))
    assert statuses == {"Support bot": "ok", "Broken bot": "failed"}
    assert activity_list(bad_bot)[0].text == "Test Connection of Conversations failed (auth)"


def test_it_exits_zero_when_everything_passes(good_bot):
    output, code = run("--chatbot", str(good_bot.id))
    assert (code, output.strip().splitlines()[-1]) == (0, "1 component(s) checked: 1 ok.")


def test_it_rechecks_only_failing_components_when_asked(good_bot, bad_bot):
    run()
    output, _ = run("--failing")
    assert "Broken bot" in output
    assert "Support bot" not in output


def test_it_does_not_contact_components_of_an_account_without_byoi(good_bot):
    from wizchat.models import Plan

    good_bot.account.plan = Plan.objects.get(slug="free")
    good_bot.account.save()
    output, code = run()
    assert (code, "SUSPENDED  Acme · Support bot") == (0, output.split(f" ({good_bot.id})")[0])
    assert not ConnectionTest.objects.exists()


def test_it_is_not_held_back_by_the_customers_rate_limit(good_bot, bad_bot, settings):
    settings.BYOI_TEST_RATE_LIMIT = 1
    output, _ = run()
    assert "2 component(s) checked: 1 ok, 1 failed." in output


def test_it_hands_the_tests_to_the_workers_when_asked(good_bot, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        output, code = run("--queue")
    test = ConnectionTest.objects.get()
    assert (code, f"QUEUED     Acme · Support bot ({good_bot.id}) · Vector Store: test {test.id}") == (
        0, output.splitlines()[0])
    assert len(queued) == 1  # the Celery task, sent once the test's row is committed
    assert test.state == ConnectionTest.State.QUEUED


def test_it_says_what_a_chatbot_option_takes():
    output, code = run("--chatbot", "not-a-uuid")
    assert code == 1
    assert "--chatbot takes a chatbot's UUID" in output
