"""Re-run Test Connection on customers' saved BYOI components: an operator's health sweep."""

import uuid

from django.core.management.base import BaseCommand, CommandError

from byoi.models import BYOIComponent, Status
from byoi.registry import KINDS
from byoi.services import connection_test_run, connection_test_start
from wizchat.plans import PlanLimitReached


class Command(BaseCommand):
    help = (
        "Run Test Connection again on the saved settings of enabled BYOI components (of chatbots with BYOI on), "
        "one line per component, and exit with status 1 if any failed — for cron or monitoring. Updates each "
        "component's status and the chatbot's connection log like Re-test does. Components of accounts whose "
        "plan no longer includes BYOI are reported as suspended and not contacted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--chatbot", action="append", default=[], metavar="UUID", help="Only this chatbot "
                            "(repeatable).")
        parser.add_argument("--account", action="append", default=[], type=int, metavar="ID",
                            help="Only this account's chatbots (repeatable).")
        parser.add_argument("--kind", action="append", default=[], choices=list(KINDS),
                            help="Only this kind of component (repeatable).")
        parser.add_argument("--failing", action="store_true",
                            help="Only components whose status is not OK (failed or untested).")
        parser.add_argument("--queue", action="store_true",
                            help="Hand the tests to the Celery workers instead of running them here, and exit.")

    def handle(self, *args, chatbot, account, kind, failing, queue, **options):
        components = (BYOIComponent.objects.filter(enabled=True, chatbot__byoi_enabled=True)
                      .select_related("chatbot__account__plan").order_by("chatbot__account_id", "chatbot_id", "kind"))
        if chatbot:
            try:
                components = components.filter(chatbot_id__in=[uuid.UUID(value) for value in chatbot])
            except ValueError:
                raise CommandError("--chatbot takes a chatbot's UUID, e.g. 2afbf7fa-2442-4252-b99e-9a5aac77f428.") from None
        if account:
            components = components.filter(chatbot__account_id__in=account)
        if kind:
            components = components.filter(kind__in=kind)
        if failing:
            components = components.exclude(status=Status.OK)
        components = list(components)
        counts = {"ok": 0, "failed": 0, "suspended": 0, "queued": 0}
        for component in components:
            bot = component.chatbot
            where = f"{bot.account.name} · {bot.name} ({bot.id}) · {KINDS[component.kind].label}"
            try:
                test = connection_test_start(bot.account, component.kind, component.values, {}, component=component,
                                             rate_limit=False, queue=queue)
            except PlanLimitReached:
                counts["suspended"] += 1
                self.stdout.write(f"SUSPENDED  {where}: the {bot.account.plan.name} plan has no BYOI")
                continue
            if queue:
                counts["queued"] += 1
                self.stdout.write(f"QUEUED     {where}: test {test.id}")
                continue
            test = connection_test_run(test.id)
            failed = test.failed_step
            if failed is None and test.state == "ok":
                counts["ok"] += 1
                self.stdout.write(f"OK         {where}")
            else:
                counts["failed"] += 1
                detail = f"{failed['code']} at {failed['label']}: {failed['message']}" if failed else test.state
                self.stdout.write(f"FAILED     {where}: {detail}")
        summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
        self.stdout.write(f"{len(components)} component(s) checked" + (f": {summary}." if summary else "."))
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} component(s) failed Test Connection.", returncode=1)
