"""Webhooks and e-mail notices (jobs/notices): a real receiver on 127.0.0.1 (allowed
through CONVEYOR_WEB_ALLOWED_NETWORKS) gets signed deliveries of the jobs that end,
a 500 is retried, repeated failures switch the webhook off; the secret is shown once;
another user can neither see nor use your webhooks; e-mail goes through Django's mail.
Jobs run in-process (`run_to_end`); deliveries are sent by calling the sender."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from jobs.models import Job, Notification, Webhook, WebhookDelivery
from jobs.notices import delivery as sending
from jobs.notices import services
from tests.fakes.receiver import WebhookReceiver
from tests.jobs.factories import run_to_end, submit_demo

pytestmark = pytest.mark.django_db(transaction=True)
Delivery = WebhookDelivery.Status


@pytest.fixture
def receiver(settings) -> Iterator[WebhookReceiver]:
    settings.CONVEYOR_WEB_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with WebhookReceiver() as fake:
        yield fake


def hook_for(user, receiver, events=("job.succeeded", "job.failed")) -> tuple[Webhook, str]:
    return services.webhook_create(user, receiver.url, list(events))


def send_now() -> int:
    """What the sender does once deliveries are due (retries made due at once)."""
    WebhookDelivery.objects.filter(status=Delivery.PENDING).update(next_attempt_at=timezone.now())
    return sending.send_due()


def test_a_finished_job_is_delivered_signed_with_its_api_json(user, receiver):
    hook, secret = hook_for(user, receiver)
    job = run_to_end(submit_demo(user, n=3))
    pending = WebhookDelivery.objects.get()
    assert (pending.event, pending.job_id, pending.status) == ("job.succeeded", job.pk, "pending")
    assert send_now() == 1
    [request] = receiver.received
    assert WebhookReceiver.verify(request, secret)
    assert not WebhookReceiver.verify(request, "whsec_wrong")
    assert request.headers["Conveyor-Event"] == "job.succeeded"
    body = request.json
    assert body["event"] == "job.succeeded" and body["sent_at"]
    assert body["job"]["id"] == job.pk and body["job"]["status"] == "succeeded"
    assert body["job"]["params"] == {"n": 3}, "the job's API JSON, detail included"
    sent = WebhookDelivery.objects.get()
    assert (sent.status, sent.attempts, sent.response_code, sent.error) == ("sent", 1, 200, "")


@pytest.mark.cluster
def test_a_cluster_delivers_from_its_upkeep_and_retries_after_a_500(cluster_factory, user):
    """The one real-cluster test: no test code sends; a worker's upkeep starts the sender."""
    from tests.support.processes import wait_for

    with WebhookReceiver() as receiver:
        receiver.statuses = [500]
        with override_settings(CONVEYOR_WEB_ALLOWED_NETWORKS=["127.0.0.1/32"]):
            _, secret = hook_for(user, receiver)
        cluster_factory(
            workers=1,
            CONVEYOR_WEB_ALLOWED_NETWORKS="127.0.0.1/32",
            CONVEYOR_WEBHOOK_RETRY_BASE_SECONDS="0.2",
        )
        job = submit_demo(user, n=2)
        wait_for(lambda: len(receiver.received) >= 2, timeout=60, what="a delivery and its retry")
        first, second = receiver.received[:2]
        assert first.body == second.body and second.json["job"]["id"] == job.pk
        assert all(WebhookReceiver.verify(request, secret) for request in (first, second))
        wait_for(
            lambda: WebhookDelivery.objects.filter(status=Delivery.SENT).exists(),
            timeout=30,
            what="the delivery marked sent",
        )
        sent = WebhookDelivery.objects.get()
        assert (sent.attempts, sent.response_code, sent.event) == (2, 200, "job.succeeded")


def test_only_subscribed_events_and_the_operators_global_hooks_are_delivered(
    user, other_user, staff_user, receiver
):
    hook_for(user, receiver, events=["job.failed"])
    everyone, _ = services.webhook_create(
        staff_user, receiver.url, ["job.succeeded"], for_everyone=True
    )
    run_to_end(submit_demo(user, n=1))  # succeeded: alice did not ask, the operator did
    run_to_end(submit_demo(other_user, n=1, fail_at=0))  # failed: bob has no webhook
    assert send_now() == 1
    events = sorted((r.json["event"], r.json["job"]["owner"]) for r in receiver.received)
    assert events == [("job.succeeded", user.username)]
    assert WebhookDelivery.objects.filter(webhook=everyone).count() == 1


def test_a_failed_run_of_a_schedule_is_a_schedule_failed_event(user, receiver):
    from jobs.schedules.services import schedule_create, schedule_run_now

    hook_for(user, receiver, events=["schedule.failed"])
    schedule = schedule_create(
        owner=user, kind="demo.count", params={"n": 1, "fail_at": 0}, every=3600, name="Hourly"
    )
    job = schedule_run_now(schedule=schedule)
    run_to_end(job)
    run_to_end(submit_demo(user, n=1, fail_at=0))  # failed, but no schedule's run
    assert send_now() == 1
    [request] = receiver.received
    body = request.json
    assert body["event"] == "schedule.failed" and body["job"]["id"] == job.pk
    assert body["schedule"]["id"] == schedule.pk and body["schedule"]["name"] == "Hourly"


def test_a_500_is_retried_with_backoff_and_the_same_body(user, receiver):
    hook, secret = hook_for(user, receiver)
    receiver.statuses = [500]
    run_to_end(submit_demo(user, n=1, fail_at=0))
    assert sending.send_due() == 1
    waiting = WebhookDelivery.objects.get()
    assert (waiting.status, waiting.attempts, waiting.response_code) == ("pending", 1, 500)
    assert waiting.error == "answered HTTP 500"
    assert waiting.next_attempt_at > timezone.now() + timedelta(seconds=5), "backoff"
    assert sending.send_due() == 0, "not due before its backoff"
    assert send_now() == 1
    first, second = receiver.received
    assert first.body == second.body and first.json["event"] == "job.failed"
    assert WebhookReceiver.verify(second, secret)
    done = WebhookDelivery.objects.get()
    assert (done.status, done.attempts, done.response_code) == ("sent", 2, 200)
    assert Webhook.objects.get().failures == 0


def test_repeated_failures_switch_the_webhook_off_and_tell_its_owner(user, receiver, settings):
    settings.CONVEYOR_WEBHOOK_ATTEMPTS = 2
    settings.CONVEYOR_WEBHOOK_DISABLE_AFTER = 2
    hook, _ = hook_for(user, receiver)
    receiver.statuses = [500] * 10
    for _ in range(2):
        run_to_end(submit_demo(user, n=1))
        send_now()
        send_now()
    assert len(receiver.received) == 4, "two deliveries, two attempts each"
    assert list(WebhookDelivery.objects.values_list("status", flat=True)) == ["failed"] * 2
    hook.refresh_from_db()
    assert not hook.active and hook.failures == 2
    assert "Disabled after 2 failed deliveries" in hook.disabled_reason
    note = Notification.objects.get(user=user, job=None)
    assert note.level == "error" and receiver.url in note.message
    run_to_end(submit_demo(user, n=1))
    assert WebhookDelivery.objects.count() == 2, "a disabled webhook gets no new deliveries"


def test_the_outbound_guard_refuses_loopback_unless_the_operator_allows_it(user, settings):
    settings.CONVEYOR_WEB_ALLOWED_NETWORKS = []
    with WebhookReceiver() as fake, pytest.raises(services.WebhookInvalid) as refused:
        services.webhook_create(user, fake.url, ["job.failed"])
    assert "loopback" in refused.value.errors["url"]


def test_email_notices_go_through_django_mail(user):
    user.email = "alice@example.com"
    user.save()
    services.email_notices_set(user, ["job.failed"])
    job = run_to_end(submit_demo(user, n=1, fail_at=0, label="Nightly count"))
    run_to_end(submit_demo(user, n=1))  # succeeded: not asked for
    assert send_now() == 1
    [message] = mail.outbox
    assert message.to == ["alice@example.com"]
    assert message.subject == "[Conveyor] Nightly count failed"
    assert "unit 0 is broken" in message.body and f"/jobs/{job.pk}/" in message.body


def test_a_batch_with_a_failed_job_runs_its_on_complete_job_with_the_outcome(user, receiver):
    from jobs.engine.services import Submission, batch_submit
    from jobs.notices.callbacks import submit_batch_callbacks

    hook_for(user, receiver, events=["batch.finished"])
    batch, jobs = batch_submit(
        owner=user,
        label="Two counts",
        submissions=[
            Submission(kind="demo.count", params={"n": 1}, owner=user),
            Submission(kind="demo.count", params={"n": 1, "fail_at": 0}, owner=user),
        ],
        on_complete=Submission(kind="demo.count", params={"n": 2}, owner=user, label="Report"),
    )
    run_to_end(jobs[0])
    assert submit_batch_callbacks() == 0, "the batch has not ended"
    run_to_end(jobs[1])
    assert submit_batch_callbacks() == 1
    assert submit_batch_callbacks() == 0, "once"
    report = Job.objects.get(label="Report")
    assert report.owner == user and report.batch_id is None
    assert report.params["batch_outcome"]["id"] == batch.pk
    assert report.params["batch_outcome"]["counts"] == {"failed": 1, "succeeded": 1}
    assert run_to_end(report).status == Job.Status.SUCCEEDED
    assert send_now() == 1
    [request] = receiver.received
    assert request.json["event"] == "batch.finished"
    assert request.json["batch"]["id"] == batch.pk and request.json["batch"]["finished"]


def test_after_any_runs_after_a_failed_upstream(user):
    from jobs.engine.services import job_submit

    upstream = submit_demo(user, n=1, fail_at=0)
    cleanup, _ = job_submit(kind="demo.count", params={"n": 1}, owner=user, after_any=[upstream.pk])
    strict, _ = job_submit(kind="demo.count", params={"n": 1}, owner=user, after=[upstream.pk])
    assert Job.objects.get(pk=cleanup.pk).upstream_pending == 1
    assert run_to_end(upstream).status == Job.Status.FAILED
    assert Job.objects.get(pk=strict.pk).status == Job.Status.CANCELLED
    cleanup = Job.objects.get(pk=cleanup.pk)
    assert cleanup.upstream_pending == 0
    assert run_to_end(cleanup).status == Job.Status.SUCCEEDED


# -- the API ---------------------------------------------------------------------------


def test_the_api_shows_the_secret_once_and_lists_without_it(user, receiver):
    from tests.jobs.api.conftest import client_for

    alice = client_for(user)
    created = alice.post(
        "/api/webhooks/",
        {"url": receiver.url, "events": ["job.succeeded", "batch.finished"]},
        content_type="application/json",
    )
    assert created.status_code == 201
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and body["events"] == ["job.succeeded", "batch.finished"]
    assert secret not in Webhook.objects.get().secret, "stored sealed"
    listed = alice.get("/api/webhooks/").json()["results"]
    assert [hook["id"] for hook in listed] == [body["id"]]
    assert (
        "secret" not in listed[0] and secret not in alice.get(created["Location"]).content.decode()
    )
    tested = alice.post(f"/api/webhooks/{body['id']}/test/").json()
    assert (tested["event"], tested["status"], tested["response_code"]) == (
        "webhook.test",
        "sent",
        200,
    )
    [request] = receiver.received
    assert WebhookReceiver.verify(request, secret) and request.json["event"] == "webhook.test"
    log = alice.get(f"/api/webhooks/{body['id']}/deliveries/").json()["results"]
    assert [(d["event"], d["status"]) for d in log] == [("webhook.test", "sent")]
    assert alice.delete(f"/api/webhooks/{body['id']}/").status_code == 204
    assert alice.get("/api/webhooks/").json()["results"] == []


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"url": "ftp://example.com/x", "events": ["job.failed"]}, "url", "http"),
        ({"url": "https://example.invalid/x", "events": ["job.failed"]}, "url", "unknown host"),
        ({"url": "http://127.0.0.1:9/x", "events": ["job.failed"]}, "url", "loopback"),
        # The events are the model's enum (#27: the document lists them), so its words:
        # "item 0 must be one of 'job.succeeded', ...", not "unknown event job.exploded".
        ({"url": "https://example.com/x", "events": ["job.exploded"]}, "events", "must be one of"),
        ({"url": "https://example.com/x", "events": "job.failed"}, "events", "must be a list"),
        ({"url": "https://example.com/x", "events": []}, "events", "list of events"),
    ],
)
def test_the_api_refuses_bad_webhooks_with_field_errors(user, settings, body, field, words):
    from tests.jobs.api.conftest import client_for

    settings.CONVEYOR_WEB_ALLOWED_NETWORKS = []
    answer = client_for(user).post("/api/webhooks/", body, content_type="application/json")
    assert answer.status_code == 400
    assert words in answer.json()["fields"][field]
    assert not Webhook.objects.exists()


def test_a_user_has_at_most_the_ceiling_of_webhooks(user, receiver, settings):
    from tests.jobs.api.conftest import client_for

    settings.CONVEYOR_WEBHOOK_MAX_PER_USER = 2
    alice = client_for(user)
    body = {"url": receiver.url, "events": ["job.failed"]}
    codes = [
        alice.post("/api/webhooks/", body, content_type="application/json").status_code
        for _ in range(3)
    ]
    assert codes == [201, 201, 400]
    refused = alice.post("/api/webhooks/", body, content_type="application/json").json()
    assert "at most 2 webhooks" in refused["fields"]["url"]


def test_another_user_can_neither_see_nor_use_your_webhooks(user, other_user, receiver):
    from tests.jobs.api.conftest import client_for

    hook, _ = hook_for(user, receiver)
    run_to_end(submit_demo(user, n=1))
    send_now()
    bob = client_for(other_user)
    assert bob.get("/api/webhooks/").json()["results"] == []
    for answer in (
        bob.get(f"/api/webhooks/{hook.pk}/"),
        bob.delete(f"/api/webhooks/{hook.pk}/"),
        bob.post(f"/api/webhooks/{hook.pk}/test/"),
        bob.get(f"/api/webhooks/{hook.pk}/deliveries/"),
        bob.get(f"/jobs/webhooks/{hook.pk}/"),
        bob.post(f"/jobs/webhooks/{hook.pk}/delete/"),
    ):
        assert answer.status_code == 404
    assert Webhook.objects.filter(pk=hook.pk).exists()
    assert len(receiver.received) == 1, "bob's test reached nobody"
    page = client_for(other_user).get("/jobs/webhooks/").content.decode()
    assert receiver.url not in page


def test_the_api_submits_a_batch_with_on_complete_and_a_job_with_after_any(user, settings):
    from tests.jobs.api.conftest import client_for

    settings.CONVEYOR_SUBMITTABLE_KINDS = ["demo.count"]
    alice = client_for(user)
    answer = alice.post(
        "/api/batches/",
        {
            "jobs": [{"kind": "demo.count", "params": {"n": 1, "fail_at": 0}}],
            "on_complete": {"kind": "demo.count", "params": {"n": 1}, "label": "After all"},
        },
        content_type="application/json",
    )
    assert answer.status_code == 201, answer.content
    [member] = answer.json()["jobs"]
    bad = alice.post(
        "/api/batches/",
        {"jobs": [{"kind": "demo.count"}], "on_complete": {"kind": "nope"}},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "on_complete.kind" in bad.json()["fields"]
    waiting = alice.post(
        "/api/jobs/",
        {"kind": "demo.count", "params": {"n": 1}, "after_any": [member["id"]]},
        content_type="application/json",
    )
    assert waiting.status_code == 201, waiting.content
    run_to_end(Job.objects.get(pk=member["id"]))
    from jobs.notices.callbacks import submit_batch_callbacks

    batch_url = f"/api/batches/{answer.json()['id']}/"
    assert alice.get(batch_url).json()["on_complete"] == {
        "kind": "demo.count", "job": None, "error": ""
    }  # fmt: skip
    assert submit_batch_callbacks() == 1
    after_all = Job.objects.get(label="After all")
    assert after_all.params["batch_outcome"]["counts"] == {"failed": 1}
    assert alice.get(batch_url).json()["on_complete"]["job"] == after_all.pk
    assert run_to_end(Job.objects.get(pk=waiting.json()["id"])).status == Job.Status.SUCCEEDED


# -- the settings page -----------------------------------------------------------------


def test_test_deliveries_are_capped_a_minute_per_user_on_api_page_and_cli(
    user, other_user, receiver, settings
):
    """Each "Send test" is a request the server makes to an address the user chose."""
    from tests.jobs.api.conftest import client_for
    from tests.jobs.cli.test_verbs import conveyor

    settings.CONVEYOR_WEBHOOK_TESTS_PER_MINUTE = 2
    hook, _ = hook_for(user, receiver)
    alice = client_for(user)
    answers = [alice.post(f"/api/webhooks/{hook.pk}/test/") for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    refused = answers[2]
    assert refused.json()["error"].startswith("At most 2 test deliveries a minute: try again")
    assert 1 <= int(refused["Retry-After"]) <= 60
    page = alice.post(f"/jobs/webhooks/{hook.pk}/test/", follow=True).content.decode()
    assert "At most 2 test deliveries a minute" in page
    cli = conveyor("webhook", "test", str(hook.pk), "--user", user.username)
    assert cli.code == 2 and "At most 2 test deliveries a minute" in cli.err
    assert len(receiver.received) == 2, "nothing sent beyond the cap"
    bobs, _ = hook_for(other_user, receiver)
    assert client_for(other_user).post(f"/api/webhooks/{bobs.pk}/test/").status_code == 200


def test_the_settings_page_adds_shows_the_secret_once_and_sets_email(user, receiver):
    from tests.jobs.api.conftest import client_for

    user.email = "alice@example.com"
    user.save()
    alice = client_for(user)
    page = alice.get("/jobs/webhooks/")
    assert page.status_code == 200 and "No webhooks yet" in page.content.decode()
    added = alice.post("/jobs/webhooks/", {"url": receiver.url, "events": ["job.failed"]})
    assert added.status_code == 200
    secret = added.context["secret"]
    assert secret in added.content.decode()
    again = alice.get("/jobs/webhooks/").content.decode()
    assert receiver.url in again and secret not in again
    refused = alice.post("/jobs/webhooks/", {"url": "ftp://x", "events": ["job.failed"]})
    assert refused.status_code == 400 and "http" in refused.content.decode()
    saved = alice.post("/jobs/webhooks/email/", {"events": ["batch.finished"]})
    assert saved.status_code == 302
    assert services.email_notices_of(user) == ["batch.finished"]


# -- the CLI ---------------------------------------------------------------------------


def test_the_cli_adds_lists_tests_and_deletes_webhooks(user, other_user, receiver):
    import json

    from tests.jobs.cli.test_verbs import conveyor

    added = conveyor(
        "webhook", "add", receiver.url, "--events", "job.succeeded,job.failed", "--json",
        "--user", user.username,
    )  # fmt: skip
    assert added.code == 0, added
    body = json.loads(added.out)
    assert body["secret"].startswith("whsec_") and body["events"] == ["job.succeeded", "job.failed"]
    listed = conveyor("webhook", "list", "--user", user.username).out
    assert receiver.url in listed and body["secret"] not in listed
    tested = conveyor("webhook", "test", str(body["id"]), "--user", user.username)
    assert tested.code == 0 and tested.out.strip() == "Delivered (HTTP 200)."
    assert WebhookReceiver.verify(receiver.received[0], body["secret"])
    bad = conveyor("webhook", "add", receiver.url, "--events", "job.done", "--user", user.username)
    assert bad.code == 2 and "unknown event job.done" in bad.err
    for verb in ("test", "delete", "deliveries"):
        other = conveyor("webhook", verb, str(body["id"]), "--user", other_user.username)
        assert other.code == 2 and f"No webhook {body['id']} of yours" in other.err
    receiver.statuses = [503]
    failed = conveyor("webhook", "test", str(body["id"]), "--user", user.username)
    assert failed.code == 1 and "answered HTTP 503" in failed.err
    log = json.loads(
        conveyor("webhook", "deliveries", str(body["id"]), "--json", "--user", user.username).out
    )
    assert [(d["status"], d["response_code"]) for d in log] == [("failed", 503), ("sent", 200)]
    deleted = conveyor("webhook", "delete", str(body["id"]), "--user", user.username)
    assert deleted.code == 0 and not Webhook.objects.exists()


def test_the_cli_batch_submit_takes_on_complete(staff_user, tmp_path, settings):
    from tests.jobs.cli.test_verbs import PEOPLE, conveyor
    from tests.sheets.make_files import write_csv

    settings.CONVEYOR_SUBMITTABLE_KINDS = ["demo.count"]
    first = write_csv(tmp_path / "a.csv", PEOPLE)
    second = write_csv(tmp_path / "b.csv", PEOPLE)
    user = ["--user", staff_user.username, "--processor", "clean"]
    bad = conveyor("submit", str(first), str(second), *user, "--on-complete", "nope:{}")
    assert bad.code == 2 and "--on-complete: kind 'nope' cannot be submitted" in bad.err
    single = conveyor("submit", str(first), *user, "--on-complete", "demo.count")
    assert single.code == 2 and "several PATHs" in single.err
    done = conveyor(
        "submit", str(first), str(second), *user, "--on-complete", 'demo.count:{"n": 1}'
    )
    assert done.code == 0, done
    batch_id = int(done.out.splitlines()[0].split()[1])
    for job in Job.objects.filter(batch_id=batch_id):
        run_to_end(job)
    from jobs.notices.callbacks import submit_batch_callbacks

    assert submit_batch_callbacks() == 1
    after = Job.objects.get(kind="demo.count")
    assert after.params["batch_outcome"]["counts"] == {"succeeded": 2}
    assert after.params["n"] == 1 and after.owner == staff_user


def test_the_admin_lists_webhooks_and_deliveries_without_secrets(user, staff_user, receiver):
    from django.test import Client

    hook, secret = hook_for(user, receiver)
    Webhook.objects.filter(pk=hook.pk).update(active=False, disabled_reason="broken")
    admin = Client()
    admin.force_login(staff_user)
    listed = admin.get("/admin/jobs/webhook/")
    assert listed.status_code == 200 and receiver.url in listed.content.decode()
    shown = admin.get(f"/admin/jobs/webhook/{hook.pk}/change/").content.decode()
    assert receiver.url in shown and secret not in shown and hook.secret not in shown
    enabled = admin.post(
        "/admin/jobs/webhook/",
        {"action": "enable_selected", "_selected_action": [hook.pk]},
    )
    assert enabled.status_code == 302
    assert Webhook.objects.get(pk=hook.pk).active
    assert admin.get("/admin/jobs/webhookdelivery/").status_code == 200
    assert admin.get("/admin/jobs/webhook/?secret__startswith=enc").status_code == 400


def test_the_upkeep_prunes_old_deliveries_and_keeps_pending_ones(user, receiver, settings):
    settings.CONVEYOR_WEBHOOK_KEEP_DAYS = 14
    hook, _ = hook_for(user, receiver)
    old = timezone.now() - timedelta(days=15)
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(webhook=hook, event="job.failed", status=status, created_at=old)
            for status in ("sent", "failed", "pending")
        ]
        + [WebhookDelivery(webhook=hook, event="job.failed", status="sent")]
    )
    assert sending.prune() == 2
    left = sorted(WebhookDelivery.objects.values_list("status", flat=True))
    assert left == ["pending", "sent"]


def test_a_batch_sends_one_email_not_one_per_job(user):
    from jobs.engine.services import Submission, batch_submit

    user.email = "alice@example.com"
    user.save()
    services.email_notices_set(user, ["job.succeeded", "job.failed", "batch.finished"])
    batch, jobs = batch_submit(
        owner=user,
        label="Pair",
        submissions=[
            Submission(kind="demo.count", params={"n": 1}, owner=user),
            Submission(kind="demo.count", params={"n": 1, "fail_at": 0}, owner=user),
        ],
    )
    for job in jobs:
        run_to_end(job)
    assert send_now() == 1
    [message] = mail.outbox
    assert message.subject == "[Conveyor] Pair finished"
    assert "1 failed, 1 succeeded" in message.body and f"/jobs/batches/{batch.pk}/" in message.body
