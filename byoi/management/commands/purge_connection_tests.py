"""Delete expired Test Connection rows (and drop any candidate secrets a finished run still holds)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from byoi.services import connection_test_purge


class Command(BaseCommand):
    help = (
        "Delete Test Connection runs older than CONNECTION_TEST_TTL_SECONDS and drop the encrypted candidate "
        "settings of finished runs. Safe to run from cron at any interval."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Report what would be purged; change nothing.")

    def handle(self, *args, dry_run=False, **options):
        counts = connection_test_purge(dry_run=dry_run)
        prefix = "Would purge" if dry_run else "Purged"
        self.stdout.write(f"{prefix} {counts['expired']} expired connection test(s) (older than "
                          f"{settings.CONNECTION_TEST_TTL_SECONDS} s); "
                          f"{'would drop' if dry_run else 'dropped'} secrets of {counts['secrets_dropped']} "
                          "finished run(s).")
