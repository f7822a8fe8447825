from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from wizchat.accounts import account_signup
from wizchat.models import Plan

DEMO_EMAIL = "demo@wizchat.local"
DEMO_PASSWORD = "wizchat-demo"  # noqa: S105 - the documented local demo login


class Command(BaseCommand):
    help = "Create the demo account (Pro plan) with a sample chatbot if it does not exist yet."

    def handle(self, *args, **options):
        if not Plan.objects.exists():
            self.stderr.write("No plans: run `manage.py migrate` first.")
            return
        User = get_user_model()
        user = User.objects.filter(username=DEMO_EMAIL).first()
        if user is None:
            user = account_signup(email=DEMO_EMAIL, password=DEMO_PASSWORD, team_name="Demo team", plan_slug="pro")
            self.stdout.write(f"Created demo account {DEMO_EMAIL}")
        else:
            self.stdout.write(f"Demo account {DEMO_EMAIL} already exists")
        from chatbots.demo import demo_seed_chatbot

        demo_seed_chatbot(user.membership.account, self.stdout)
