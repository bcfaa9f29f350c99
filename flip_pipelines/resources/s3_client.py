"""The pipeline's S3 client, without Dagster: what ``FlipS3Resource`` hands to ops, and what CLI commands (which
must start quickly, so never import Dagster) use directly.

SigV4 always: boto3 left to itself picks the signature version, which for presigned URLs against a custom
endpoint is SigV2; AWS rejects those in most regions, and their expiry is not checked the same way. SeaweedFS,
MinIO and AWS all accept SigV4. boto3 is imported on the first call (a third of a second), not with this module.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flip_pipelines import settings


def user_agent() -> str:
    """``flip-pipelines/<version>``: names the hub in S3 access logs and CloudTrail.

    A fixed User-Agent also spares botocore rebuilding its own one on every request, about a fifth of the
    client's CPU per server-side copy (profiled; bundling issues thousands of copies).
    """
    try:
        return f"flip-pipelines/{version('flip-pipelines')}"
    except PackageNotFoundError:
        return "flip-pipelines"


_LOADER: Any = None


def _shared_loader() -> Any:
    """One botocore data loader per process, shared by every client's session. A session parses S3's service
    model and the endpoint tables into a loader of its own: 15 MB and 0.1 s of CPU per client, which a run worker
    never gives back (measured; its ops make a client each). Sessions stay separate, so each client still resolves
    its credentials when it is made."""
    global _LOADER
    if _LOADER is None:
        import botocore.loaders

        _LOADER = botocore.loaders.create_loader()
    return _LOADER


def s3_client(*, endpoint_url: str | None, region_name: str | None, max_attempts: int = 5,
              max_pool_connections: int = 32, profile_name: str | None = None, use_ssl: bool = True,
              verify: bool | None = None, aws_access_key_id: str | None = None,
              aws_secret_access_key: str | None = None, aws_session_token: str | None = None) -> Any:
    """A boto3 S3 client that signs with SigV4, uses path-style addressing on custom endpoints, keeps
    ``max_pool_connections`` pooled connections (parallel server-side copies) and names itself (``user_agent``).
    Credentials left unset come from boto3's default chain (environment, profile, instance role)."""
    import boto3
    import botocore.session
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        retries={"max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=max_pool_connections,
        user_agent=user_agent(),
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    session = botocore.session.get_session()
    session.register_component("data_loader", _shared_loader())
    return boto3.session.Session(botocore_session=session, profile_name=profile_name).client(
        "s3", region_name=region_name, use_ssl=use_ssl, verify=verify, endpoint_url=endpoint_url,
        aws_access_key_id=aws_access_key_id, aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token, config=config,
    )


def preload() -> None:
    """Import boto3 and fill the shared loader with S3's service model and endpoint tables, by making a client
    that never connects (explicit dummy credentials: nothing is looked up). The run-worker template calls this,
    so each forked run worker starts with it instead of spending ~0.3 s on it in its first S3 op."""
    s3_client(endpoint_url="http://127.0.0.1:9", region_name="us-east-1", aws_access_key_id="preload",
              aws_secret_access_key="preload")


def s3_client_from_env() -> Any:
    """The client for ``FLIP_S3_ENDPOINT_URL``/``FLIP_S3_REGION`` with boto3's default credential chain."""
    return s3_client(endpoint_url=settings.s3_endpoint_url(), region_name=settings.s3_region())
