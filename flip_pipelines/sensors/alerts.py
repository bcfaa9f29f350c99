"""Tell people when a training fails: a run-failure sensor posts to a chat webhook (``FLIP_ALERT_WEBHOOK_URL``;
nothing is sent while it is unset)."""

import dagster as dg
import httpx

from flip_pipelines import settings
from flip_pipelines.domain.alerts import failure_alert
from flip_pipelines.jobs.training import resume_training, train_model
from flip_pipelines.sensors.recovery import run_failure_reason

WEBHOOK_TIMEOUT_SECONDS = 10.0


@dg.run_failure_sensor(
    monitored_jobs=[train_model, resume_training],
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts a failed training (model, net, reason, link to the run) to FLIP_ALERT_WEBHOOK_URL "
                "(Slack-compatible JSON); does nothing while it is unset.",
)
def training_failure_alert_sensor(context: dg.RunFailureSensorContext) -> None:
    url = settings.alert_webhook_url()
    run = context.dagster_run
    if not url:
        context.log.debug(f"run {run.run_id} failed; no FLIP_ALERT_WEBHOOK_URL, no alert sent")
        return
    ui = settings.dagster_ui_url()
    message = failure_alert(
        job_name=run.job_name, run_id=run.run_id, reason=run_failure_reason(context.instance, run.run_id),
        model=run.tags.get("flip/model"), net=run.tags.get("flip/net"),
        run_url=f"{ui.rstrip('/')}/runs/{run.run_id}" if ui else None,
    )
    try:
        response = httpx.post(url, json=message, timeout=WEBHOOK_TIMEOUT_SECONDS)
    except httpx.TransportError as exc:  # the tick fails and the same run is alerted again next tick
        raise dg.Failure(f"alert webhook unreachable: {type(exc).__name__}") from None
    if response.status_code >= 500:
        raise dg.Failure(f"alert webhook answered HTTP {response.status_code}; will try again")
    if response.status_code >= 400:
        context.log.error(f"alert webhook refused the alert for run {run.run_id}: HTTP {response.status_code}")
        return
    context.log.info(f"alert sent for run {run.run_id}")
