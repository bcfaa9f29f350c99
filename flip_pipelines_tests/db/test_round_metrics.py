"""Metrics a training's FL API reports, stored as ``fl_metrics`` rows (SQLite, PostgreSQL, a FLIP-built hub)."""

from sqlmodel import Session, select

from flip_pipelines.db import lifecycle, model_partitions, pushes, registry
from flip_pipelines.db.models import FLMetrics
from flip_pipelines_tests.factories import build_world, claim_next, queue_model


def test_polling_again_records_each_value_once_and_leaves_out_unknown_clients(session: Session) -> None:
    world = build_world(session, nets=1)
    model_id, job_id = queue_model(session, world, "chest-xray")
    claim_next(session)
    since = lifecycle.get_job(session, job_id).started
    first = [pushes.RoundValue("site-1", 1, "val_loss", 0.7), pushes.RoundValue("site-2", 1, "val_loss", 0.8),
             pushes.RoundValue("site-9", 1, "val_loss", 0.1)]
    recorded, unattributed = pushes.record_round_metrics(session, model_id, since, first)
    assert [(v.fl_client_name, v.global_round) for v in recorded] == [("site-1", 1), ("site-2", 1)]
    assert unattributed == ["site-9"]
    later = [*first, pushes.RoundValue("site-1", 2, "val_loss", 0.5)]
    recorded, _ = pushes.record_round_metrics(session, model_id, since, later)
    assert [(v.fl_client_name, v.global_round) for v in recorded] == [("site-1", 2)]
    rows = session.exec(select(FLMetrics).where(FLMetrics.model_id == model_id)).all()
    assert sorted((r.fl_client_name, r.global_round, r.x_value, r.x_label) for r in rows) == [
        ("site-1", 1, 1.0, "Global Round"), ("site-1", 2, 2.0, "Global Round"), ("site-2", 1, 1.0, "Global Round")]
    assert {r.trust for r in rows} == set(world.trust_ids)
    assert [p.global_round for p in pushes.model_metrics(session, model_id, since=since)] == [1, 1, 2]


def test_models_are_partitions_by_readable_name(session: Session) -> None:
    world = build_world(session, nets=1)
    first, _ = queue_model(session, world, "chest-xray")
    second = registry.add_model(session, "chest-xray", "proj").id
    keys = model_partitions.partition_keys_of_models(session)
    assert keys == {first: "chest-xray", second: f"chest-xray ({str(second)[:8]})"}
    assert model_partitions.model_of_partition(session, keys[second]) == second
    assert model_partitions.partition_key_of_model(session, first) == "chest-xray"


def test_two_recorders_at_once_store_each_value_once(engine) -> None:  # type: ignore[no-untyped-def]
    """Two runs following one training (a resumed run beside a late original) record the same poll at the same
    instant: recorders of one model are serialised at the database, so the second sees what the first stored."""
    from flip_pipelines.db.engine import new_session
    from flip_pipelines_tests.db.test_pushes import _at_once

    with new_session(engine) as session:
        world = build_world(session, nets=1)
        model_id, job_id = queue_model(session, world, "raced")
        claim_next(session)
        since = lifecycle.get_job(session, job_id).started
    for round_number in range(1, 6):
        values = [pushes.RoundValue(f"site-{c}", round_number, label, 0.1 * c)
                  for c in (1, 2) for label in ("train_loss", "val_loss", "val_accuracy")]
        recorded = _at_once(engine, *[lambda own, v=values: pushes.record_round_metrics(own, model_id, since, v)] * 2)
        assert sorted(len(r) for r, _ in recorded) == [0, 6]  # type: ignore[misc]
    with new_session(engine) as session:
        rows = session.exec(select(FLMetrics.fl_client_name, FLMetrics.global_round, FLMetrics.label)
                            .where(FLMetrics.model_id == model_id)).all()
    assert len(rows) == len(set(rows)) == 30
