"""Team events: the audit trail of invites, joins, role changes and removals (wizchat.team)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('wizchat', '0006_membership_role_only_and_invites'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='TeamEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('actor_email', models.CharField(blank=True, max_length=254)),
                ('by_staff', models.BooleanField(default=False, help_text='Made by WizChat staff in the admin')),
                ('action', models.CharField(choices=[('invite_created', 'Invite link created'), ('invite_revoked', 'Invite link revoked'), ('joined', 'Joined with an invite link'), ('role_changed', 'Role changed'), ('removed', 'Removed from the team'), ('added', 'Added to the team (staff)')], max_length=20)),
                ('target_email', models.CharField(blank=True, max_length=254)),
                ('previous_role', models.CharField(blank=True, choices=[('owner', 'Owner'), ('admin', 'Admin'), ('member', 'Member')], max_length=10)),
                ('role', models.CharField(blank=True, choices=[('owner', 'Owner'), ('admin', 'Admin'), ('member', 'Member')], help_text="The role given: the new role, the invite's role or the role joined with", max_length=10)),
                ('created', models.DateTimeField(auto_now_add=True)),
                ('account', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='team_events', to='wizchat.account')),
                ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('invite', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='wizchat.invite')),
            ],
            options={
                'ordering': ['-created', '-id'],
                'indexes': [models.Index(fields=['account', '-created'], name='wizchat_teamevent_account')],
            },
        ),
    ]
