"""BYOI secrets at rest: encrypted with their own key, readable under old keys until rotated."""

import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django_cryptography.utils.crypto import InvalidToken

from byoi import services
from byoi.models import BYOIComponent, ConnectionTest

PG = {"host": "db.example.com", "port": 5432, "database": "vectors", "username": "svc", "ssl_mode": "require"}
PASSWORD = "plain-Pa55word-visible"
KEY_A, KEY_B = "key-A-" + "a" * 40, "key-B-" + "b" * 40


@pytest.fixture
def key_a(settings):
    settings.BYOI_ENCRYPTION_KEY = KEY_A
    settings.BYOI_ENCRYPTION_OLD_KEYS = []
    return settings


@pytest.fixture
def component(key_a, chatbot):
    return services.component_save(chatbot, "vector_store", values=PG, secrets={"password": PASSWORD})


def raw_column(model, pk) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT secret_values FROM {model._meta.db_table} WHERE id = %s", [pk])  # noqa: S608
        return bytes(cursor.fetchone()[0])


def switch_to_b(settings, old=(KEY_A,)):
    settings.BYOI_ENCRYPTION_KEY = KEY_B
    settings.BYOI_ENCRYPTION_OLD_KEYS = list(old)


def test_it_never_stores_the_plaintext_in_the_database_column(component):
    assert PASSWORD.encode() not in raw_column(BYOIComponent, component.pk)


def test_it_never_stores_a_connection_tests_candidate_secret_in_plaintext(key_a, chatbot):
    test = services.connection_test_start(chatbot.account, "vector_store", PG, {"password": PASSWORD})
    assert PASSWORD.encode() not in raw_column(ConnectionTest, test.pk)


def test_it_reads_values_written_under_an_old_key_before_rotation(component, settings):
    switch_to_b(settings)
    assert BYOIComponent.objects.get(pk=component.pk).secrets["password"] == PASSWORD


def test_it_refuses_a_value_no_configured_key_opens(component, settings):
    switch_to_b(settings, old=())
    with pytest.raises(InvalidToken):
        BYOIComponent.objects.get(pk=component.pk)


def test_it_does_not_depend_on_secret_key(component, settings):
    settings.SECRET_KEY = "a-completely-different-secret-key-for-django"
    assert BYOIComponent.objects.get(pk=component.pk).secrets["password"] == PASSWORD


def test_it_decrypts_every_row_with_only_the_new_key_after_rotation(component, settings):
    switch_to_b(settings)
    call_command("rotate_byoi_key", stdout=_Sink())
    settings.BYOI_ENCRYPTION_OLD_KEYS = []
    assert BYOIComponent.objects.get(pk=component.pk).secrets["password"] == PASSWORD


def test_it_rotates_the_candidate_secrets_of_pending_connection_tests(key_a, chatbot, settings):
    test = services.connection_test_start(chatbot.account, "vector_store", PG, {"password": PASSWORD})
    switch_to_b(settings)
    call_command("rotate_byoi_key", stdout=_Sink())
    settings.BYOI_ENCRYPTION_OLD_KEYS = []
    assert ConnectionTest.objects.get(pk=test.pk).secrets["password"] == PASSWORD


def test_it_keeps_a_tested_component_tested_across_rotation(component, settings):
    BYOIComponent.objects.filter(pk=component.pk).update(tested_fingerprint=component.fingerprint, status="ok")
    switch_to_b(settings)
    call_command("rotate_byoi_key", stdout=_Sink())
    rotated = BYOIComponent.objects.get(pk=component.pk)
    assert rotated.tested_fingerprint == rotated.fingerprint == rotated.compute_fingerprint()


def test_it_changes_nothing_on_a_dry_run(component, settings):
    before = raw_column(BYOIComponent, component.pk)
    switch_to_b(settings)
    call_command("rotate_byoi_key", "--dry-run", stdout=_Sink())
    assert raw_column(BYOIComponent, component.pk) == before


def test_it_reports_one_line_per_item_and_a_summary(component, settings):
    switch_to_b(settings)
    out = _Sink()
    call_command("rotate_byoi_key", stdout=out)
    assert f"component {component.pk}: re-encrypted" in out.text and "Done: 1 re-encrypted" in out.text


def test_it_reports_values_no_key_opens_and_leaves_them_untouched(component, settings):
    before = raw_column(BYOIComponent, component.pk)
    switch_to_b(settings, old=())
    with pytest.raises(CommandError):
        call_command("rotate_byoi_key", stdout=_Sink())
    assert raw_column(BYOIComponent, component.pk) == before


def test_it_documents_the_operator_procedure_in_the_help():
    from byoi.management.commands.rotate_byoi_key import Command

    assert "BYOI_ENCRYPTION_OLD_KEYS" in Command.help and "remove the old key" in Command.help


def test_it_generates_a_new_key_in_the_state_folder(component, settings, tmp_path):
    settings.STATE_DIR = tmp_path
    settings.BYOI_ENCRYPTION_KEY_IN_STATE_DIR = True
    call_command("rotate_byoi_key", "--generate", stdout=_Sink())
    new_key = (tmp_path / "secrets" / "byoi_encryption_key").read_text()
    old_keys = (tmp_path / "secrets" / "byoi_encryption_old_keys").read_text().split()
    assert (new_key != KEY_A, old_keys) == (True, [KEY_A])


def test_it_reencrypts_under_the_generated_key(component, settings, tmp_path):
    settings.STATE_DIR = tmp_path
    settings.BYOI_ENCRYPTION_KEY_IN_STATE_DIR = True
    call_command("rotate_byoi_key", "--generate", stdout=_Sink())
    settings.BYOI_ENCRYPTION_KEY = (tmp_path / "secrets" / "byoi_encryption_key").read_text()
    settings.BYOI_ENCRYPTION_OLD_KEYS = []
    assert BYOIComponent.objects.get(pk=component.pk).secrets["password"] == PASSWORD


def test_it_refuses_to_generate_when_the_key_comes_from_the_environment(component, settings):
    settings.BYOI_ENCRYPTION_KEY_IN_STATE_DIR = False
    with pytest.raises(CommandError):
        call_command("rotate_byoi_key", "--generate", stdout=_Sink())


def test_settings_read_the_old_keys_file_of_the_state_folder(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "byoi_encryption_key").write_text(KEY_B)
    (secrets / "byoi_encryption_old_keys").write_text(KEY_A + "\n")
    env = {"WIZCHAT_STATE_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "wizchat.settings",
           "WIZCHAT_IGNORE_RUNTIME_ENV": "1", "PATH": "/usr/bin:/bin"}
    code = ("from django.conf import settings as s; "
            f"print(s.BYOI_ENCRYPTION_KEY == {KEY_B!r}, s.BYOI_ENCRYPTION_OLD_KEYS == [{KEY_A!r}])")
    out = subprocess.run([sys.executable, "-c", code],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True True"


def make_outbox(chatbot, text="an outbox message body"):
    from conversations.models import Outbox

    return Outbox.objects.create(message_id="m-1", chatbot=chatbot, payload=text)


def test_it_encrypts_other_apps_fields_with_the_byoi_key_ring(key_a, chatbot, settings):
    from conversations.models import Outbox

    outbox = make_outbox(chatbot)
    settings.SECRET_KEY = "another-django-secret-key-entirely-different"
    assert Outbox.objects.get(pk=outbox.pk).payload == "an outbox message body"


def test_it_rotates_every_encrypted_field_of_the_project(key_a, chatbot, settings):
    from conversations.models import Outbox

    outbox = make_outbox(chatbot)
    switch_to_b(settings)
    call_command("rotate_byoi_key", stdout=_Sink())
    settings.BYOI_ENCRYPTION_OLD_KEYS = []
    assert Outbox.objects.get(pk=outbox.pk).payload == "an outbox message body"


def test_it_reads_and_rotates_values_in_django_cryptographys_own_format(component, settings):
    import pickle

    from django_cryptography.core.signing import FernetSigner
    from django_cryptography.utils.crypto import FernetBytes

    from byoi.crypto import _derive_legacy

    legacy = FernetBytes(_derive_legacy(KEY_A), FernetSigner(settings.SECRET_KEY)).encrypt(
        pickle.dumps('{"password": "legacy-pw-1"}'))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE byoi_byoicomponent SET secret_values = %s WHERE id = %s", [legacy, component.pk])
    call_command("rotate_byoi_key", stdout=_Sink())
    assert raw_column(BYOIComponent, component.pk) != legacy
    assert BYOIComponent.objects.get(pk=component.pk).secrets == {"password": "legacy-pw-1"}


class _Sink:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_it_forgets_the_old_keys_once_everything_is_rotated(component, settings, tmp_path):
    settings.STATE_DIR = tmp_path
    settings.BYOI_ENCRYPTION_KEY_IN_STATE_DIR = True
    call_command("rotate_byoi_key", "--generate", stdout=_Sink())
    call_command("rotate_byoi_key", "--forget-old-keys", stdout=_Sink())
    assert not (tmp_path / "secrets" / "byoi_encryption_old_keys").exists()


def test_it_keeps_the_old_keys_while_a_value_still_needs_them(component, settings, tmp_path):
    settings.STATE_DIR = tmp_path
    settings.BYOI_ENCRYPTION_KEY_IN_STATE_DIR = True
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "byoi_encryption_old_keys").write_text(KEY_A + "\n")
    settings.BYOI_ENCRYPTION_KEY, settings.BYOI_ENCRYPTION_OLD_KEYS = KEY_B, [KEY_A]
    with pytest.raises(CommandError):
        call_command("rotate_byoi_key", "--forget-old-keys", stdout=_Sink())
    assert (tmp_path / "secrets" / "byoi_encryption_old_keys").exists()
