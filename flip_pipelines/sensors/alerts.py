"""Tell people when a training fails: a sensor posts each failed ``train_model`` / ``resume_training`` run to a
chat webhook (``FLIP_ALERT_WEBHOOK_URL``; nothing is sent while it is unset).

It reads Dagster's run-failure events after the position its cursor holds, and the cursor also keeps the alerts
the webhook has not taken yet (``domain.alert_outbox``): a run that fails while the webhook is down is posted when
it is back, once. (Dagster's run-failure sensor moves past a run whose evaluation failed, so it cannot retry.)
"""

import time

import dagster as dg
import httpx

from flip_pipelines import settings
from flip_pipelines.domain.alert_outbox import (
    MAX_OWED,
    AlertOutbox,
    Delivery,
    RetrySchedule,
    decode_outbox,
    delivery_for_status,
    encode_outbox,
)
from flip_pipelines.domain.alerts import failure_alert
from flip_pipelines.jobs.training import resume_training, train_model
from flip_pipelines.sensors.recovery import run_failure_reason

ALERTED_JOBS = frozenset({train_model.name, resume_training.name})
WEBHOOK_TIMEOUT_SECONDS = 10.0
SEND_BUDGET_SECONDS = 20.0  # no post starts later in a tick: with the timeout, a tick ends well inside 60 s
EVENTS_PER_TICK = 200
NOTES_SHOWN = 5  # in the tick's reason; the log has them all


def newest_failure_event(instance: dg.DagsterInstance) -> int:
    """The storage id of the newest run-failure event; -1 when no run ever failed."""
    records = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_FAILURE, limit=1).records
    return records[0].storage_id if records else -1


def failed_training_runs(instance: dg.DagsterInstance, after_event: int) -> tuple[list[str], int]:
    """The failed training runs whose failure came after event ``after_event`` (oldest first, at most
    ``EVENTS_PER_TICK`` events read), and the storage id of the last event read."""
    records = instance.fetch_run_status_changes(
        dg.RunStatusChangeRecordsFilter(event_type=dg.DagsterEventType.RUN_FAILURE, after_storage_id=after_event),
        limit=EVENTS_PER_TICK, ascending=True).records
    if not records:
        return [], after_event
    run_ids = [r.event_log_entry.run_id for r in records]
    jobs = {r.dagster_run.run_id: r.dagster_run.job_name
            for r in instance.get_run_records(dg.RunsFilter(run_ids=list(set(run_ids))))}
    return [r for r in run_ids if jobs.get(r) in ALERTED_JOBS], records[-1].storage_id


def post_alert(instance: dg.DagsterInstance, url: str, run: dg.DagsterRun) -> tuple[Delivery, str]:
    """Post one run's alert; what became of it, and why in a few words (no URL: it may hold the webhook's
    secret)."""
    ui = settings.dagster_ui_url()
    message = failure_alert(
        job_name=run.job_name, run_id=run.run_id, reason=run_failure_reason(instance, run.run_id),
        model=run.tags.get("flip/model"), net=run.tags.get("flip/net"),
        run_url=f"{ui.rstrip('/')}/runs/{run.run_id}" if ui else None,
    )
    try:
        response = httpx.post(url, json=message, timeout=WEBHOOK_TIMEOUT_SECONDS)
    except httpx.TransportError as exc:
        return Delivery.UNAVAILABLE, f"unreachable ({type(exc).__name__})"
    return delivery_for_status(response.status_code), f"HTTP {response.status_code}"


def send_owed_alerts(context: dg.SensorEvaluationContext, outbox: AlertOutbox, url: str, *, now: float,
                     schedule: RetrySchedule) -> tuple[AlertOutbox, list[str]]:
    """Take in the runs that failed since the last tick and send every alert due, until the webhook is found
    unavailable or the tick's sending budget is spent; the outbox to keep, and what happened."""
    log = context.log
    run_ids, after_event = failed_training_runs(context.instance, outbox.after_event)
    outbox, dropped = outbox.take_in(run_ids, after_event, now)
    notes = [f"alert for run {r} dropped: more than {MAX_OWED} alerts owed" for r in dropped]
    for note in notes:
        log.error(note)
    started = time.monotonic()
    due = outbox.due(now)
    for position, run_id in enumerate(due):
        if time.monotonic() - started > SEND_BUDGET_SECONDS:
            notes.append(f"{len(due) - position} alert(s) left for the next tick")
            break
        run = context.instance.get_run_by_id(run_id)
        if run is None:
            outbox = outbox.without(run_id)
            notes.append(f"alert for run {run_id} dropped: the run was deleted")
            log.warning(notes[-1])
            continue
        delivery, detail = post_alert(context.instance, url, run)
        outbox = outbox.settle(run_id, delivery, now, schedule)
        if delivery == Delivery.DELIVERED:
            notes.append(f"alert for run {run_id} sent")
            log.info(notes[-1])
        elif delivery == Delivery.REFUSED:
            notes.append(f"alert for run {run_id} refused by the webhook ({detail}): dropped")
            log.error(notes[-1])
        else:
            retry_at = outbox.next_attempt_at(run_id) or now
            outbox = outbox.postpone(due[position + 1:], retry_at)
            notes.append(f"alert webhook {detail}: {len(outbox.owed)} alert(s) owed, next attempt in "
                         f"{retry_at - now:.1f} s")
            log.warning(notes[-1])
            break
    return outbox, notes


@dg.sensor(
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts each failed training run (model, net, reason, link to the run) to FLIP_ALERT_WEBHOOK_URL "
                "(Slack-compatible JSON), once; alerts the webhook did not take are kept in the cursor and tried "
                "again with backoff. Does nothing while FLIP_ALERT_WEBHOOK_URL is unset.",
)
def training_failure_alert_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    outbox = decode_outbox(context.cursor)
    if outbox is None:
        if context.cursor:
            context.log.warning("alert cursor unreadable: alerting from the newest run failure on")
        outbox = AlertOutbox(after_event=newest_failure_event(context.instance))
        return dg.SensorResult(cursor=encode_outbox(outbox),
                               skip_reason="alerts start from the newest run failure")
    url = settings.alert_webhook_url()
    if not url:
        for owed in outbox.owed:
            context.log.warning(f"alert for run {owed.run_id} dropped: FLIP_ALERT_WEBHOOK_URL is unset")
        return dg.SensorResult(cursor=encode_outbox(AlertOutbox(newest_failure_event(context.instance))),
                               skip_reason="FLIP_ALERT_WEBHOOK_URL is unset: no alerts")
    outbox, notes = send_owed_alerts(context, outbox, url, now=time.time(), schedule=settings.alert_retry_schedule())
    shown = notes if len(notes) <= NOTES_SHOWN else [*notes[:NOTES_SHOWN], f"{len(notes) - NOTES_SHOWN} more"]
    return dg.SensorResult(cursor=encode_outbox(outbox), skip_reason="; ".join(shown) or "no failed training")
