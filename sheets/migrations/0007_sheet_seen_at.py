"""Sheets remember when their owner last opened them (`seen_at`), so the sheets list can
mark those with results that came in since. Sheets that exist already count as seen now:
an upgrade does not mark every sheet with an old job as new."""

from django.db import migrations, models
from django.utils import timezone


def seen_now(apps, schema_editor):
    apps.get_model("sheets", "Sheet").objects.update(seen_at=timezone.now())


class Migration(migrations.Migration):
    dependencies = [
        ("sheets", "0006_import_params_upload_name"),
    ]

    operations = [
        migrations.AddField(
            model_name="sheet",
            name="seen_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When its owner last opened its page (or its results): later "
                "results are marked new on the sheets list. Never opened: since its import.",
                null=True,
            ),
        ),
        migrations.RunPython(seen_now, migrations.RunPython.noop),
    ]
