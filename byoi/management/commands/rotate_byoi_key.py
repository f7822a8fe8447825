"""Re-encrypt every encrypted value under the current BYOI_ENCRYPTION_KEY."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from byoi.audit import audit_record
from byoi.crypto import KEY_RING, encrypted_models, new_key
from byoi.models import BYOIComponent
from chatbots.deployments import deployments_mark_stale


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted value (BYOI component secrets, pending connection tests, document staging, "
        "the chat outbox) under the current BYOI_ENCRYPTION_KEY.\n\n"
        "Operator procedure: 1) put the new key in BYOI_ENCRYPTION_KEY and move the old one to "
        "BYOI_ENCRYPTION_OLD_KEYS (comma-separated; the *_FILE variants work too) on every web and worker "
        "process, and restart them; 2) run this command (try --dry-run first); 3) when it reports nothing "
        "left under an old key, remove the old key from BYOI_ENCRYPTION_OLD_KEYS and restart again.\n"
        "Embedded development setup (key generated into the state folder): --generate writes a new key to "
        "STATE_DIR/secrets/byoi_encryption_key, appends the old one to "
        "STATE_DIR/secrets/byoi_encryption_old_keys and re-encrypts; restart the servers, run the command "
        "once more (values written meanwhile under the old key), then --forget-old-keys deletes the old keys "
        "file once nothing needs it. Values no key can open are reported and left untouched."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Report what would be re-encrypted; change nothing.")
        parser.add_argument("--generate", action="store_true",
                            help="Development: generate a new key in the state folder first (old one kept as old key).")
        parser.add_argument("--forget-old-keys", action="store_true",
                            help="Development: delete the state folder's old keys file once every value is under the "
                                 "current key.")

    def handle(self, *args, dry_run=False, generate=False, forget_old_keys=False, **options):
        if forget_old_keys:
            return self._forget_old_keys(dry_run)
        if generate:
            self._generate(dry_run)
        counts = {"re-encrypted": 0, "already current": 0, "unreadable": 0}
        for model, fields in encrypted_models():
            label = model._meta.verbose_name
            for pk, raws in self._raw_rows(model, fields):
                outcome = self._rotate_one(model, fields, pk, raws, dry_run)
                counts[outcome] += 1
                verb = "would be re-encrypted" if dry_run and outcome == "re-encrypted" else outcome
                self.stdout.write(f"{label} {pk}: {verb}")
        summary = ", ".join(f"{n} {what}" for what, n in counts.items())
        self.stdout.write(("Dry run: " if dry_run else "Done: ") + summary + ".")
        if not dry_run:
            audit_record("byoi.key_rotated", reencrypted=counts["re-encrypted"],
                         current=counts["already current"], unreadable=counts["unreadable"])
            stale = deployments_mark_stale("The encryption key of BYOI secrets was rotated.")
            if stale:
                self.stdout.write(f"{stale} deployment(s) marked out of date: redeploy them to run with "
                                  "secrets read under the new key.")
        if counts["unreadable"]:
            raise CommandError(f"{counts['unreadable']} value(s) could not be decrypted with the current key or "
                               "any key in BYOI_ENCRYPTION_OLD_KEYS; they were left unchanged. Add the missing old "
                               "key to BYOI_ENCRYPTION_OLD_KEYS and run the command again.")
        if not dry_run and settings.BYOI_ENCRYPTION_OLD_KEYS:
            self.stdout.write("Every value is under the current key: the old keys in BYOI_ENCRYPTION_OLD_KEYS can "
                              "be removed once every process runs with the new key.")

    def _forget_old_keys(self, dry_run: bool) -> None:
        if not settings.BYOI_ENCRYPTION_KEY_IN_STATE_DIR:
            raise CommandError("--forget-old-keys only works when the key lives in the state folder; remove the old "
                               "key from BYOI_ENCRYPTION_OLD_KEYS instead.")
        stale = sum(1 for model, fields in encrypted_models() for _, raws in self._raw_rows(model, fields)
                    if any(raw is not None and not KEY_RING.is_current(raw) for raw in raws))
        if stale:
            raise CommandError(f"{stale} value(s) are still encrypted under an old key. Run rotate_byoi_key first; "
                               "the old keys were kept.")
        old_file = settings.STATE_DIR / "secrets" / "byoi_encryption_old_keys"
        if dry_run:
            self.stdout.write(f"Every value is under the current key; would delete {old_file}.")
            return
        old_file.unlink(missing_ok=True)
        settings.BYOI_ENCRYPTION_OLD_KEYS = []
        audit_record("byoi.old_keys_forgotten")
        self.stdout.write(f"Every value is under the current key; deleted {old_file}. Restart the servers.")

    def _generate(self, dry_run: bool) -> None:
        if not settings.BYOI_ENCRYPTION_KEY_IN_STATE_DIR:
            raise CommandError("--generate only works when the key lives in the state folder. BYOI_ENCRYPTION_KEY "
                               "(or BYOI_ENCRYPTION_KEY_FILE) is set: follow the operator procedure instead.")
        folder = settings.STATE_DIR / "secrets"
        if dry_run:
            self.stdout.write(f"Would write a new key to {folder / 'byoi_encryption_key'}.")
            return
        old = settings.BYOI_ENCRYPTION_KEY
        key = new_key()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        old_file = folder / "byoi_encryption_old_keys"
        with old_file.open("a") as f:
            f.write(old + "\n")
        old_file.chmod(0o600)
        key_file = folder / "byoi_encryption_key"
        tmp = key_file.with_suffix(".new")
        tmp.write_text(key)
        tmp.chmod(0o600)
        tmp.replace(key_file)
        settings.BYOI_ENCRYPTION_KEY = key
        settings.BYOI_ENCRYPTION_OLD_KEYS = [old, *[k for k in settings.BYOI_ENCRYPTION_OLD_KEYS if k != old]]
        self.stdout.write(f"New key written to {key_file}; the old key was appended to {old_file}.")

    @staticmethod
    def _raw_rows(model, fields: list[str]):
        quote = connection.ops.quote_name
        columns = ", ".join(quote(model._meta.get_field(name).column) for name in fields)
        pk = quote(model._meta.pk.column)
        with connection.cursor() as cursor:
            # Table and column names come from the models, never from input.
            cursor.execute(f"SELECT {pk}, {columns} FROM {quote(model._meta.db_table)} ORDER BY {pk}")  # noqa: S608
            return [(row[0], [bytes(v) if v is not None else None for v in row[1:]]) for row in cursor.fetchall()]

    @staticmethod
    def _rotate_one(model, fields: list[str], pk, raws: list, dry_run: bool) -> str:
        stale = [raw for raw in raws if raw is not None and not KEY_RING.is_current(raw)]
        if not stale:
            return "already current"
        try:
            for raw in stale:
                KEY_RING.decrypt(raw)
        except Exception:
            return "unreadable"
        if dry_run:
            return "re-encrypted"
        with transaction.atomic():
            obj = model.objects.select_for_update().get(pk=pk)  # decrypts with whichever key opens it
            update = list(fields)  # saved again: encrypted under the current key
            if isinstance(obj, BYOIComponent):
                # Fingerprints are keyed with the encryption key: keep "tested" meaning "these settings".
                was_tested = obj.fingerprint and obj.fingerprint == obj.tested_fingerprint
                obj.fingerprint = obj.compute_fingerprint()
                if was_tested:
                    obj.tested_fingerprint = obj.fingerprint
                update += ["fingerprint", "tested_fingerprint"]
            obj.save(update_fields=update)
        return "re-encrypted"
