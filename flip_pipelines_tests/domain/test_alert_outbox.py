"""The alerts owed for failed trainings: what a webhook's answer means, when an alert is due again, what is kept
and how it is written into the sensor's cursor."""

import pytest

from flip_pipelines.domain.alert_outbox import (
    AlertOutbox,
    Delivery,
    OwedAlert,
    RetrySchedule,
    decode_outbox,
    encode_outbox,
)
from flip_pipelines.domain.alert_outbox import (
    delivery_for_status as delivery,
)

SCHEDULE = RetrySchedule(first_seconds=10, longest_seconds=900)


@pytest.mark.parametrize(("status", "expected"), [
    (200, Delivery.DELIVERED), (204, Delivery.DELIVERED),
    (400, Delivery.REFUSED), (403, Delivery.REFUSED), (404, Delivery.REFUSED), (410, Delivery.REFUSED),
    (301, Delivery.REFUSED),
    (408, Delivery.UNAVAILABLE), (425, Delivery.UNAVAILABLE), (429, Delivery.UNAVAILABLE),
    (500, Delivery.UNAVAILABLE), (502, Delivery.UNAVAILABLE), (503, Delivery.UNAVAILABLE),
])
def test_a_4xx_refuses_for_good_while_5xx_and_come_back_later_answers_are_retried(status: int,
                                                                                   expected: Delivery) -> None:
    assert delivery(status) == expected


def test_the_wait_doubles_from_the_first_up_to_the_longest() -> None:
    assert [SCHEDULE.wait_after(n) for n in range(1, 10)] == [10, 20, 40, 80, 160, 320, 640, 900, 900]
    assert SCHEDULE.wait_after(10_000) == 900, "no overflow however long the outage"


def test_newly_failed_runs_are_due_at_once_and_taken_in_once() -> None:
    outbox, dropped = AlertOutbox(after_event=4).take_in(["a", "b", "a"], after_event=9, now=100.0)
    assert dropped == ()
    assert outbox == AlertOutbox(9, (OwedAlert("a", 0, 100.0), OwedAlert("b", 0, 100.0)))
    again, _ = outbox.take_in(["b", "c"], after_event=7, now=200.0)
    assert [a.run_id for a in again.owed] == ["a", "b", "c"] and again.after_event == 9
    assert again.due(150.0) == ["a", "b"] and again.due(200.0) == ["a", "b", "c"]


def test_beyond_the_bound_the_oldest_alerts_are_dropped_and_named() -> None:
    outbox, _ = AlertOutbox(0).take_in(["a", "b", "c"], 3, now=0.0, max_owed=4)
    outbox, dropped = outbox.take_in(["d", "e", "f"], 6, now=1.0, max_owed=4)
    assert dropped == ("a", "b")
    assert [a.run_id for a in outbox.owed] == ["c", "d", "e", "f"]


def test_a_delivered_or_refused_alert_leaves_and_an_unavailable_webhook_puts_it_off() -> None:
    outbox, _ = AlertOutbox(0).take_in(["a", "b", "c"], 3, now=0.0)
    outbox = outbox.settle("a", Delivery.DELIVERED, 1.0, SCHEDULE).settle("b", Delivery.REFUSED, 1.0, SCHEDULE)
    assert [a.run_id for a in outbox.owed] == ["c"]
    outbox = outbox.settle("c", Delivery.UNAVAILABLE, 1.0, SCHEDULE)
    outbox = outbox.settle("c", Delivery.UNAVAILABLE, 11.0, SCHEDULE)
    assert outbox.owed == (OwedAlert("c", 2, 31.0),)
    assert outbox.due(30.9) == [] and outbox.due(31.0) == ["c"]


def test_while_the_webhook_is_down_one_alert_tests_it_and_the_rest_wait_for_it() -> None:
    """An outage of an hour with three alerts owed, ticks every 5 s: one request per wait, not one per alert;
    the first attempt after the webhook is back (at most the longest wait later) sends all three."""
    outbox, _ = AlertOutbox(0).take_in(["a", "b", "c"], 3, now=0.0)
    requests: list[tuple[float, str]] = []
    for now in range(0, 3600 + 900 + 5, 5):
        due = outbox.due(now)
        for position, run_id in enumerate(due):
            requests.append((now, run_id))
            if now < 3600:
                outbox = outbox.settle(run_id, Delivery.UNAVAILABLE, now, SCHEDULE)
                outbox = outbox.postpone(due[position + 1:], outbox.next_attempt_at(run_id) or now)
                break
            outbox = outbox.settle(run_id, Delivery.DELIVERED, now, SCHEDULE)
    down = [t for t, _ in requests if t < 3600]
    assert down == [0, 10, 30, 70, 150, 310, 630, 1270, 2170, 3070]
    assert {r for t, r in requests if t < 3600} == {"a"}, "the others' attempts are not spent"
    assert [(t, r) for t, r in requests if t >= 3600] == [(3970, "a"), (3970, "b"), (3970, "c")]
    assert outbox.owed == ()


def test_postponing_never_brings_an_attempt_forward() -> None:
    outbox = AlertOutbox(0, (OwedAlert("a", 0, 50.0), OwedAlert("b", 3, 500.0)))
    outbox = outbox.postpone(["a", "b"], until=100.0)
    assert outbox.owed == (OwedAlert("a", 0, 100.0), OwedAlert("b", 3, 500.0))


def test_the_cursor_round_trips_and_starts_over_when_unreadable() -> None:
    outbox = AlertOutbox(42, (OwedAlert("run-1", 2, 1_700_000_000.125), OwedAlert("run-2", 0, 1_700_000_010.0)))
    assert decode_outbox(encode_outbox(outbox)) == outbox
    assert decode_outbox(None) is None and decode_outbox("") is None
    for unreadable in ("not json", "[]", '{"v": 2, "after_event": 1, "owed": []}', '{"v": 1, "owed": [["x"]]}'):
        assert decode_outbox(unreadable) is None, unreadable


def test_the_run_failure_sensors_cursor_is_taken_up_where_it_stopped() -> None:
    """The alert sensor was Dagster's run-failure sensor; its cursor, kept in the instance under the same sensor
    name, holds the last failure event it read."""
    earlier = ('{"__class__": "RunStatusSensorCursor", "record_id": 12, '
               '"record_timestamp": "2026-01-01T00:00:00", "update_timestamp": null}')
    assert decode_outbox(earlier) == AlertOutbox(after_event=12)
