"""Import jobs name their kept upload (`upload`: a file name in DATA_DIR/uploads) instead
of storing the server's path (`path`), which job pages, the API and the admin showed."""

from pathlib import PurePath

from django.db import migrations


def path_to_name(apps, schema_editor):
    Job = apps.get_model("jobs", "Job")
    for job in Job.objects.filter(kind="sheets.import").iterator():
        params = dict(job.params or {})
        if "path" not in params:
            continue
        params["upload"] = PurePath(str(params.pop("path") or "")).name
        Job.objects.filter(pk=job.pk).update(params=params)


class Migration(migrations.Migration):
    dependencies = [
        ("sheets", "0005_rowresult_usage"),
        ("jobs", "0013_fewer_job_indexes"),
    ]

    operations = [migrations.RunPython(path_to_name, migrations.RunPython.noop)]
