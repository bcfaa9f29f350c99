import uuid
from datetime import datetime, timedelta

from flip_pipelines.domain.partitions import NamedModel, model_partition_keys

T0 = datetime(2026, 1, 1)


def _model(name: str, minutes: int) -> NamedModel:
    return NamedModel(uuid.uuid4(), name, T0 + timedelta(minutes=minutes))


def test_the_oldest_namesake_keeps_the_plain_name_and_later_ones_get_their_id() -> None:
    first, second, other = _model("chest-xray", 5), _model("chest-xray", 9), _model("brain-mri", 1)
    keys = model_partition_keys([second, other, first])
    assert keys == {first.id: "chest-xray", second.id: f"chest-xray ({str(second.id)[:8]})", other.id: "brain-mri"}
    assert model_partition_keys([first, second, other]) == keys, "the order rows come in changes no key"


def test_keys_hold_nothing_dagster_refuses_and_a_blank_name_falls_back_to_the_id() -> None:
    odd, blank = _model("a...b\tc\n", 1), _model("  ", 2)
    keys = model_partition_keys([odd, blank])
    assert keys[odd.id] == "a…b c" and keys[blank.id] == str(blank.id)
