from django.db import migrations, models
from django.db.models import F


def shown_when_made(apps, schema_editor):
    """Notifications from before: shown (toasted or not, nobody knows), so the first page
    after this migration does not list every unread one as news."""
    apps.get_model("jobs", "Notification").objects.update(shown_at=F("created_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0016_job_worked_units"),
    ]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="shown_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(shown_when_made, migrations.RunPython.noop, elidable=True),
    ]
