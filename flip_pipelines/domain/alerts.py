"""The message a failed training posts to a chat webhook: Slack's incoming-webhook JSON (``text`` for
notifications, ``blocks`` for the layout), which Mattermost and Rocket.Chat accept too. No secret: the reason is
redacted, and nothing but names, ids and the UI link goes in."""

from typing import Any

from flip_pipelines.domain.redact import redact_text


def failure_alert(*, job_name: str, run_id: str, reason: str, model: str | None, net: str | None,
                  run_url: str | None) -> dict[str, Any]:
    what = f"Training of {model}" if model else f"Run {run_id[:8]} of {job_name}"
    where = f" on {net}" if net else ""
    first_line = redact_text(reason.strip().splitlines()[0] if reason.strip() else "no reason given")
    text = f":rotating_light: {what}{where} failed: {first_line}"
    fields = [f"*Job*\n{job_name}", f"*Run*\n{run_id}"]
    fields += [f"*Model*\n{model}"] if model else []
    fields += [f"*Net*\n{net}"] if net else []
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if run_url:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open the run"}, "url": run_url}]})
    return {"text": text, "blocks": blocks}
