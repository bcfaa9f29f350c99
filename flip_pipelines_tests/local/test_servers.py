"""The local server harness itself: real servers come up, answer, refuse what they should, and stop by PID."""

import time
import uuid

import httpx
import sqlalchemy as sa

from flip_pipelines.local.processes import pid_alive, wait_until
from flip_pipelines.local.s3 import LocalS3


def test_postgres_fixture_is_a_real_server(postgres_server_url: str) -> None:
    engine = sa.create_engine(postgres_server_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SHOW server_version")).scalar_one().split(".")[0].isdigit()
    finally:
        engine.dispose()


def test_s3_fixture_stores_objects_and_checks_presigned_urls(s3_server: LocalS3, s3_bucket: str) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="model/config.json", Body=b'{"a": 1}')
    url = client.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "model/config.json"})
    assert httpx.get(url).content == b'{"a": 1}'
    assert httpx.get(f"{s3_server.endpoint_url}/{s3_bucket}/model/config.json").status_code == 403
    assert "X-Amz-Signature=" in url
    signature = url.split("X-Amz-Signature=")[1][:64]
    flipped = ("1" if signature[0] != "1" else "2") + signature[1:]
    assert httpx.get(url.replace(signature, flipped)).status_code == 403
    short_lived = client.generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": "model/config.json"}, ExpiresIn=1
    )
    wait_until(lambda: httpx.get(short_lived).status_code == 403, timeout=10, what="the URL to expire")


def test_s3_server_stops_by_pid(tmp_path) -> None:
    server = LocalS3(workdir=tmp_path / f"s3-{uuid.uuid4().hex[:6]}")
    server.start()
    pid = server.pid
    assert pid is not None and pid_alive(pid)
    started = time.monotonic()
    server.stop()
    assert not pid_alive(pid) and time.monotonic() - started < 15
    wait_until(lambda: not _answers(server.endpoint_url), timeout=5, what="the port to close")


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=0.5)
    except httpx.TransportError:
        return False
    return True
