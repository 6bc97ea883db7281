"""Point the maintenance schedule at the task's new dotted path (jobs.engine.maintenance).

django-q2 stores the path in its Schedule row; the old module stays importable for
one release, so tasks already queued under it still run.
"""

from django.db import migrations

OLD = "jobs.maintenance.run_periodic"
NEW = "jobs.engine.maintenance.run_periodic"


def forward(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(func=OLD).update(func=NEW)


def backward(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(func=NEW).update(func=OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0003_failedjob"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(forward, backward)]
