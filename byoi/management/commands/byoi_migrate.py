"""Copy a chatbot's data between WizChat's default stores and its own (BYOI) stores, in either direction."""


from django.core.management.base import BaseCommand, CommandError

from byoi.datamove import (
    DIRECTIONS,
    MIGRATABLE,
    MigrationFailed,
    MigrationInvalid,
    kinds_parse,
    migration_plan,
    migration_run,
)
from wizchat.plans import PlanLimitReached


class Command(BaseCommand):
    help = (
        "Copy a chatbot's vector store chunks, knowledge graph and conversations between WizChat's default "
        "infrastructure and the chatbot's custom (BYOI) components. --to custom copies from the defaults into "
        "the saved custom components; --to default copies from the custom components into the defaults. "
        "Nothing in the source is deleted. Resumable: a rerun skips what the target already holds. Chunks are "
        "re-embedded when the target's embeddings have another dimension. --switch enables (to custom) or "
        "disables (to default) the components once the copy is complete."
    )

    def add_arguments(self, parser):
        parser.add_argument("chatbot", metavar="CHATBOT_UUID", help="The chatbot's id.")
        parser.add_argument("--to", required=True, choices=DIRECTIONS,
                            help="custom: into the chatbot's own components; default: into WizChat's.")
        parser.add_argument("--kinds", default=None,
                            help=f"Comma-separated, from {','.join(MIGRATABLE)} (default: every kind the "
                                 "chatbot has a custom component for).")
        parser.add_argument("--dry-run", action="store_true",
                            help="Count what would be copied; write nothing.")
        parser.add_argument("--batch-size", type=int, default=500, help="Items read and written per batch.")
        parser.add_argument("--limit", type=int, default=None,
                            help="Copy at most this many items per kind in this run (run again to continue).")
        parser.add_argument("--re-embed", action="store_true",
                            help="Re-embed the chunks even when the dimensions match (another model).")
        parser.add_argument("--switch", action="store_true",
                            help="After a complete copy, enable (to custom) or disable (to default) the "
                                 "chatbot's components.")

    def handle(self, *args, **options):
        from chatbots.management.commands._chatbot_arg import chatbot_from_arg
        from conversations.models import Outbox

        chatbot = chatbot_from_arg(options["chatbot"])
        dry_run = options["dry_run"]
        try:
            plan = migration_plan(chatbot, options["to"], kinds_parse(options["kinds"]), switch=options["switch"])
            self.stdout.write(f"{'Dry run: ' if dry_run else ''}migrating chatbot {chatbot.id} ({chatbot.name}) "
                              f"to {options['to']}: {', '.join(step.kind for step in plan.steps)}")
            for step in plan.steps:
                self.stdout.write(f"{step.kind}: from {step.source.where} to {step.target.where}")
            queued = Outbox.objects.filter(chatbot=chatbot).count()
            results = migration_run(plan, batch_size=options["batch_size"], dry_run=dry_run,
                                    limit=options["limit"], re_embed=options["re_embed"], progress=self.stdout.write,
                                    queued_messages=queued)
        except MigrationInvalid as error:
            raise CommandError(str(error)) from None
        except MigrationFailed as error:
            raise CommandError(f"{error} {error.hint} Nothing in the source was deleted; run the command again "
                               "once it is fixed: it continues where it stopped.") from None
        except PlanLimitReached as error:  # --switch to custom on a plan without BYOI
            raise CommandError(f"The copy is done but the components were not switched: {error}") from None
        self.stdout.write("Summary:")
        for result in results:
            self.stdout.write(f"  {result.summary(dry_run)}")
