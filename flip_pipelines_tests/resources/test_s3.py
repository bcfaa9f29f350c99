"""The pipeline's S3 client (FlipS3Resource) against a real S3 server (SeaweedFS)."""

from importlib.metadata import version
from typing import Any

import httpx

from flip_pipelines.local.s3 import LocalS3


def test_client_signs_with_sigv4_and_names_itself(s3_server: LocalS3, s3_bucket: str) -> None:
    client = s3_server.resource().get_client()
    sent: list[str] = []

    def record_user_agent(request: Any, **_: Any) -> None:
        value = request.headers["User-Agent"]  # bytes once the request is prepared
        sent.append(value.decode() if isinstance(value, bytes) else value)

    client.meta.events.register("before-send.s3.PutObject", record_user_agent)
    client.put_object(Bucket=s3_bucket, Key="named/object", Body=b"payload")

    assert len(sent) == 1 and sent[0].startswith(f"flip-pipelines/{version('flip-pipelines')}"), sent
    url = client.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "named/object"},
                                        ExpiresIn=60)
    assert "X-Amz-Signature=" in url and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
    assert httpx.get(url).content == b"payload"
