"""Delete duplicate "conveyor maintenance" schedules, keeping the oldest.

Workers used to create the schedule with get_or_create on django-q2's non-unique
Schedule.name, so clusters starting at once could create it twice (each copy runs
maintenance every minute). ensure_schedule now creates it under a lock; this removes
copies an earlier race left behind.
"""

from django.db import migrations

SCHEDULE_NAME = "conveyor maintenance"


def delete_duplicate_schedules(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    schedules = Schedule.objects.filter(name=SCHEDULE_NAME).order_by("pk")
    oldest = schedules.values_list("pk", flat=True).first()
    if oldest is not None:
        schedules.exclude(pk=oldest).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0004_maintenance_task_path"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.RunPython(delete_duplicate_schedules, migrations.RunPython.noop),
    ]
