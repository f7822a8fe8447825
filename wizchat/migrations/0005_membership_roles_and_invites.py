"""Roles inside a team: is_owner=True becomes the owner role, everyone else a member; memberships get a public UUID
for the team page's URLs; invite links."""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def roles_from_is_owner(apps, schema_editor):
    Membership = apps.get_model("wizchat", "Membership")
    Membership.objects.filter(is_owner=True).update(role="owner")
    Membership.objects.filter(is_owner=False).update(role="member")
    for membership in Membership.objects.filter(public_id__isnull=True):
        membership.public_id = uuid.uuid4()
        membership.save(update_fields=["public_id"])


def is_owner_from_roles(apps, schema_editor):
    Membership = apps.get_model("wizchat", "Membership")
    Membership.objects.update(is_owner=False)
    Membership.objects.filter(role="owner").update(is_owner=True)


class Migration(migrations.Migration):

    dependencies = [
        ("wizchat", "0004_upgrade_request"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="membership",
            name="role",
            field=models.CharField(choices=[("owner", "Owner"), ("admin", "Admin"), ("member", "Member")],
                                   default="member", max_length=10),
        ),
        migrations.AddField(
            model_name="membership",
            name="public_id",
            field=models.UUIDField(null=True, editable=False),
        ),
        migrations.RunPython(roles_from_is_owner, is_owner_from_roles),
        migrations.AlterField(
            model_name="membership",
            name="public_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True,
                                   help_text="Names the membership in the team page's URLs"),
        ),
        migrations.RemoveField(
            model_name="membership",
            name="is_owner",
        ),
        migrations.CreateModel(
            name="Invite",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("role", models.CharField(choices=[("owner", "Owner"), ("admin", "Admin"), ("member", "Member")],
                                          default="member", max_length=10)),
                ("token_hash", models.CharField(max_length=64, unique=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("expires", models.DateTimeField()),
                ("used", models.DateTimeField(blank=True, null=True)),
                ("revoked", models.DateTimeField(blank=True, null=True)),
                ("account", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="invites",
                                              to="wizchat.account")),
                ("created_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                                 related_name="+", to=settings.AUTH_USER_MODEL)),
                ("used_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                              related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={"ordering": ["-created"]},
        ),
    ]
