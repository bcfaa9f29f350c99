"""The alerts owed for failed trainings, kept in the alert sensor's own cursor so that a webhook outage loses none.

The cursor says where the sensor stopped reading Dagster's run-failure events (their storage id, which only grows)
and which alerts are still owed: run id, failed attempts so far, when the next attempt is due. An alert leaves it
when the webhook takes it, when the webhook refuses it for good (a 4xx other than 408/425/429: the same message
would be refused again), when its run is gone, or when more than ``MAX_OWED`` are owed (the oldest go first).
Failed attempts back off exponentially, up to a longest wait. While the webhook is unavailable, one alert tests
it and the others wait for that one's next attempt: a long outage costs one request per wait, not one per alert,
and the first attempt the webhook takes is followed, in the same tick, by every other alert owed.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

CURSOR_VERSION = 1
MAX_OWED = 100
RETRYABLE_REFUSALS = frozenset({408, 425, 429})  # timeout, too early, rate limited: the webhook asks to come back
_MAX_DOUBLINGS = 30  # keeps 2**n a float long after any wait has reached its cap


class Delivery(StrEnum):
    DELIVERED = "delivered"
    REFUSED = "refused"  # for good: dropped
    UNAVAILABLE = "unavailable"  # unreachable, 5xx, or asked to come back later: tried again


def delivery_for_status(status: int) -> Delivery:
    """What a webhook's HTTP answer means for the alert: taken (2xx), refused for good (3xx, 4xx), or to be sent
    again (5xx, and 408/425/429, which ask the sender to come back)."""
    if 200 <= status < 300:
        return Delivery.DELIVERED
    if status >= 500 or status in RETRYABLE_REFUSALS:
        return Delivery.UNAVAILABLE
    return Delivery.REFUSED


@dataclass(frozen=True)
class RetrySchedule:
    first_seconds: float
    longest_seconds: float

    def wait_after(self, failed_attempts: int) -> float:
        """The wait after the n-th failed attempt: first, 2×first, 4×first ... at most ``longest_seconds``."""
        doublings = min(max(failed_attempts - 1, 0), _MAX_DOUBLINGS)
        return min(self.first_seconds * 2**doublings, self.longest_seconds)


@dataclass(frozen=True)
class OwedAlert:
    run_id: str
    failed_attempts: int
    next_attempt_at: float  # epoch seconds


@dataclass(frozen=True)
class AlertOutbox:
    after_event: int  # storage id of the last run-failure event read; -1 when there was none
    owed: tuple[OwedAlert, ...] = ()  # oldest first

    def due(self, now: float) -> list[str]:
        """The runs whose alert may be sent now, earliest due first (oldest first among equals)."""
        ready = sorted((a for a in self.owed if a.next_attempt_at <= now), key=lambda a: a.next_attempt_at)
        return [a.run_id for a in ready]

    def take_in(self, run_ids: Sequence[str], after_event: int, now: float,
                max_owed: int = MAX_OWED) -> tuple["AlertOutbox", tuple[str, ...]]:
        """Owe an alert, due at once, for each newly failed run, read up to event ``after_event``; beyond
        ``max_owed`` the oldest alerts are dropped and returned."""
        known = {a.run_id for a in self.owed}
        owed = self.owed + tuple(OwedAlert(r, 0, now) for r in dict.fromkeys(run_ids) if r not in known)
        dropped = owed[:len(owed) - max_owed] if len(owed) > max_owed else ()
        return (AlertOutbox(max(self.after_event, after_event), owed[len(dropped):]),
                tuple(a.run_id for a in dropped))

    def settle(self, run_id: str, delivery: Delivery, now: float, schedule: RetrySchedule) -> "AlertOutbox":
        """The outbox after one attempt: delivered or refused alerts leave it; an unavailable webhook puts the
        alert off by its next wait."""
        if delivery != Delivery.UNAVAILABLE:
            return self.without(run_id)
        return self._map(run_id, lambda a: replace(
            a, failed_attempts=a.failed_attempts + 1,
            next_attempt_at=now + schedule.wait_after(a.failed_attempts + 1)))

    def postpone(self, run_ids: Sequence[str], until: float) -> "AlertOutbox":
        """Put off alerts not tried this tick (the webhook is down) until ``until``, their attempts uncounted."""
        wanted = set(run_ids)
        return AlertOutbox(self.after_event, tuple(
            replace(a, next_attempt_at=max(a.next_attempt_at, until)) if a.run_id in wanted else a
            for a in self.owed))

    def next_attempt_at(self, run_id: str) -> float | None:
        return next((a.next_attempt_at for a in self.owed if a.run_id == run_id), None)

    def without(self, run_id: str) -> "AlertOutbox":
        return AlertOutbox(self.after_event, tuple(a for a in self.owed if a.run_id != run_id))

    def _map(self, run_id: str, change: Callable[[OwedAlert], OwedAlert]) -> "AlertOutbox":
        return AlertOutbox(self.after_event, tuple(change(a) if a.run_id == run_id else a for a in self.owed))


def encode_outbox(outbox: AlertOutbox) -> str:
    return json.dumps({"v": CURSOR_VERSION, "after_event": outbox.after_event,
                       "owed": [[a.run_id, a.failed_attempts, round(a.next_attempt_at, 3)] for a in outbox.owed]},
                      separators=(",", ":"))


def decode_outbox(cursor: str | None) -> AlertOutbox | None:
    """The outbox a cursor holds; None when there is none to read (the sensor then starts from the newest
    failure). The cursor of the sensor's earlier form, Dagster's run-failure sensor, gives its position."""
    if not cursor:
        return None
    try:
        data = json.loads(cursor)
        if data.get("__class__") == "RunStatusSensorCursor":
            return AlertOutbox(after_event=int(data["record_id"]))
        if data.get("v") != CURSOR_VERSION:
            return None
        return AlertOutbox(after_event=int(data["after_event"]), owed=tuple(
            OwedAlert(str(run_id), int(attempts), float(at)) for run_id, attempts, at in data["owed"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
