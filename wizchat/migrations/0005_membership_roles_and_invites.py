"""Roles inside a team, first step: is_owner=True becomes the owner role, everyone else a member; memberships get a
public UUID for the team page's URLs. (0006 then removes is_owner: PostgreSQL refuses to alter a table whose rows
were updated in the same transaction, so the data step has a migration of its own.)"""

import uuid

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
    ]
