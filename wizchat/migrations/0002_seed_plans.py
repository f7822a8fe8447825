from django.db import migrations

from wizchat.plans import PLANS


def seed(apps, schema_editor):
    Plan = apps.get_model("wizchat", "Plan")
    for position, (slug, name, byoi, chatbots, documents, messages) in enumerate(PLANS):
        Plan.objects.update_or_create(
            slug=slug,
            defaults=dict(
                name=name,
                byoi_allowed=byoi,
                max_chatbots=chatbots,
                max_documents=documents,
                max_messages_per_month=messages,
                position=position,
            ),
        )


class Migration(migrations.Migration):
    dependencies = [("wizchat", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
