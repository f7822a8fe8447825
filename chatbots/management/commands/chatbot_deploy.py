"""Deploy a chatbot: locally (supervised by `make run`) or on Kubernetes."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chatbots import deploy_kubernetes
from chatbots.deployments import DeployRefused, deployment_create, kubernetes_manifests

from ._chatbot_arg import chatbot_from_arg, deployment_env_or_error


class Command(BaseCommand):
    help = ("Deploy (or redeploy) a chatbot as a standalone runtime fed by its CUSTOM_* and WIZCHAT_* variables. "
            "local: a process on this machine, started by `make run`'s supervisor within seconds. kubernetes: "
            "Secret + ConfigMap + Deployment + Service applied with server-side apply (KUBECONFIG or in-cluster); "
            "--dry-run prints the manifests with secrets masked and applies nothing.")

    def add_arguments(self, parser):
        parser.add_argument("chatbot", metavar="CHATBOT", help="The chatbot's UUID")
        parser.add_argument("--target", choices=["local", "kubernetes"], default="local")
        parser.add_argument("--dry-run", action="store_true", help="Show what would be deployed; change nothing")

    def handle(self, *args, chatbot, target, dry_run, **options):
        bot = chatbot_from_arg(chatbot)
        env = deployment_env_or_error(bot)
        if dry_run:
            if target == "kubernetes":
                manifests = kubernetes_manifests(bot, env)
                problems = deploy_kubernetes.manifests_validate(manifests)
                self.stdout.write(deploy_kubernetes.manifests_yaml(deploy_kubernetes.manifests_masked(manifests)))
                if problems:
                    raise CommandError("The manifests do not validate:\n" + "\n".join(problems))
            else:
                self.stdout.write(f"Would run {bot.name} ({bot.id}) on this machine with {len(env)} variables; "
                                  "see `manage.py chatbot_env` for them.")
            return
        try:
            deployment = deployment_create(bot, target)
        except DeployRefused as refused:
            raise CommandError(str(refused)) from None
        deployment.refresh_from_db()
        where = deployment.url or settings.DEPLOY_KUBERNETES_NAMESPACE
        line = f"{bot.name}: {deployment.get_status_display().lower()} on {deployment.get_target_display()} ({where})"
        if deployment.reason:
            line += f" — {deployment.reason}"
        if deployment.status == deployment.Status.FAILED:
            raise CommandError(line)
        self.stdout.write(line)
        if target == "local":
            self.stdout.write("The runtime starts as soon as `make run` (its supervisor) sees the deployment.")
