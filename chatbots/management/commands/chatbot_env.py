"""Print a chatbot's deployment environment (CUSTOM_* and WIZCHAT_*), secrets masked as the spec shows them: what
a deploy would give its runtime now, or with --deployed what its running deployment was deployed with."""

import os

from django.core.management.base import BaseCommand, CommandError

from byoi.audit import audit_record
from chatbots.deployments import env_masked

from ._chatbot_arg import chatbot_from_arg, deployed_env_or_error, deployment_env_or_error


class Command(BaseCommand):
    help = ("Print the environment variables a chatbot's runtime is deployed with: the spec's CUSTOM_* variables for "
            "its own components and WIZCHAT_* for the rest. Secrets are shown as ***; --reveal --output FILE writes "
            "the real values to a new file (mode 0600) and records an audit event. --deployed: the variables the "
            "chatbot's current local deployment was deployed with (what its runtime restarts with), not the ones a "
            "deploy would give now.")

    def add_arguments(self, parser):
        parser.add_argument("chatbot", metavar="CHATBOT", help="The chatbot's UUID")
        parser.add_argument("--reveal", action="store_true", help="Write real secret values (needs --output)")
        parser.add_argument("--output", metavar="FILE", help="A new file to write to (never overwritten)")
        parser.add_argument("--deployed", action="store_true",
                            help="The variables the current local deployment was deployed with")

    def handle(self, *args, chatbot, reveal, output, deployed=False, **options):
        bot = chatbot_from_arg(chatbot)
        env = deployed_env_or_error(bot) if deployed else deployment_env_or_error(bot)
        if reveal and not output:
            raise CommandError("--reveal writes secrets to a file only: add --output FILE (a new file).")
        lines = "".join(f"{k}={v}\n" for k, v in sorted((env if reveal else env_masked(env)).items()))
        if not output:
            self.stdout.write(lines, ending="")
            return
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CommandError(f"{output} exists: choose a new file (it is never overwritten).") from None
        except OSError as error:
            raise CommandError(f"Cannot create {output}: {error.strerror}.") from None
        with os.fdopen(fd, "w") as out:
            out.write(lines)
        if reveal:
            audit_record("deployment.env_revealed", chatbot=bot, variables=len(env))
        self.stdout.write(f"Wrote {len(env)} variables to {output} (mode 0600){' with secrets' if reveal else ''}.")
