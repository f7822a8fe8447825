import uuid

from django.conf import settings
from django.db import models


class Plan(models.Model):
    """A subscription plan. Seeded by a data migration; staff edit limits in the admin."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=50)
    byoi_allowed = models.BooleanField(default=False)
    max_chatbots = models.PositiveIntegerField()
    max_documents = models.PositiveIntegerField(help_text="Documents per chatbot")
    max_messages_per_month = models.PositiveIntegerField()
    max_api_keys = models.PositiveIntegerField(default=2, help_text="Public API keys per chatbot")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return self.name


class Account(models.Model):
    """A team. Every object a customer can reach belongs to exactly one account."""

    name = models.CharField(max_length=100)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="accounts")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    """A member's role in their team (wizchat.roles says what each may do)."""

    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


class Membership(models.Model):
    """A user in a team: one team per user (a login belongs to one team)."""

    Role = Role

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False,
                                 help_text="Names the membership in the team page's URLs")
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} in {self.account}"

    @property
    def can_manage(self) -> bool:
        """Owners and admins change BYOI settings, deployments, API keys, the plan and the team."""
        return self.role in (Role.OWNER, Role.ADMIN)


class Invite(models.Model):
    """An invite link to join a team with a role. Only the token's SHA-256 is stored: the link is shown once to
    whoever created it. Single use; expires after INVITE_DAYS (wizchat.team)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="invites")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField()
    used = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"Invite to {self.account} as {self.get_role_display()}"


class TeamEvent(models.Model):
    """A change to a team, for its audit trail: who started it, who invited whom, changed whose role, removed whom, who joined by
    which invite, who revoked an invite (wizchat.team writes one per change, in the change's transaction). People
    are named by the e-mail they had then; an invite by its row, never its token or the token's hash. Shown to the
    team's owners and admins on the Team page and to staff, read-only, in the admin."""

    class Action(models.TextChoices):
        INVITE_CREATED = "invite_created", "Invite link created"
        INVITE_REVOKED = "invite_revoked", "Invite link revoked"
        JOINED = "joined", "Joined with an invite link"
        ROLE_CHANGED = "role_changed", "Role changed"
        REMOVED = "removed", "Removed from the team"
        ADDED = "added", "Added to the team (staff)"
        CREATED = "created", "Started the team"

    account = models.ForeignKey(Account, null=True, on_delete=models.SET_NULL, related_name="team_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    actor_email = models.CharField(max_length=254, blank=True)
    by_staff = models.BooleanField(default=False, help_text="Made by WizChat staff in the admin")
    action = models.CharField(max_length=20, choices=Action.choices)
    target_email = models.CharField(max_length=254, blank=True)
    previous_role = models.CharField(max_length=10, choices=Role.choices, blank=True)
    role = models.CharField(max_length=10, choices=Role.choices, blank=True,
                            help_text="The role given: the new role, the invite's role or the role joined with")
    invite = models.ForeignKey(Invite, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["account", "-created"], name="wizchat_teamevent_account")]

    def __str__(self) -> str:
        return f"{self.actor_email or 'WizChat'}: {self.get_action_display()} {self.target_email}".strip()


class UpgradeRequest(models.Model):
    """A team asking for another plan. There is no payment provider: staff see the requests in the admin and
    move the account to the plan there (the admin's "Apply" action)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DONE = "done", "Done"
        DECLINED = "declined", "Declined"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="upgrade_requests")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    current_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+",
                                     help_text="The account's plan when it asked")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="upgrade_requests",
                             help_text="The plan asked for")
    message = models.TextField(blank=True, max_length=2000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created = models.DateTimeField(auto_now_add=True)
    handled = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.account} → {self.plan}"
