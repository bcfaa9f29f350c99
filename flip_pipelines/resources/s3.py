"""S3 access as a Dagster resource: the pipeline's S3 client (``resources.s3_client``) behind resource fields.

The resource has ``dagster_aws``'s ``S3Resource`` fields but not its class: importing ``dagster_aws`` loads
Dagster's daemon and test utilities along with it, which cost every run worker about 0.5 s of CPU at start and
memory for the whole training (``benchmarks/bench_dispatch.py``). boto3 is imported when the first client is made.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from flip_pipelines import settings
from flip_pipelines.resources.s3_client import s3_client, user_agent

__all__ = ["FlipS3Resource", "s3_resource_from_env", "user_agent"]


class FlipS3Resource(dg.ConfigurableResource):
    """S3 clients that sign with SigV4, use path-style addressing on custom endpoints, keep enough pooled
    connections for parallel server-side copies and name themselves. Credentials left unset come from boto3's
    default chain (environment, profile, instance role) at run time."""

    region_name: str | None = Field(default=None, description="The S3 region.")
    endpoint_url: str | None = Field(default=None, description="A custom S3 endpoint (SeaweedFS, MinIO, ...).")
    max_attempts: int = Field(default=5, description="boto3's retry attempts per request, the first included.")
    profile_name: str | None = Field(default=None, description="An AWS profile to take credentials from.")
    use_ssl: bool = Field(default=True, description="Whether to use SSL.")
    verify: bool | None = Field(default=None, description="Whether to verify SSL certificates (default: yes).")
    aws_access_key_id: str | None = Field(default=None, description="Access key id; default: boto3's chain.")
    aws_secret_access_key: str | None = Field(default=None, description="Secret key; default: boto3's chain.")
    aws_session_token: str | None = Field(default=None, description="Session token; default: boto3's chain.")
    max_pool_connections: int = 32

    def get_client(self) -> Any:
        return s3_client(
            endpoint_url=self.endpoint_url, region_name=self.region_name, max_attempts=self.max_attempts,
            max_pool_connections=self.max_pool_connections, profile_name=self.profile_name, use_ssl=self.use_ssl,
            verify=self.verify, aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key, aws_session_token=self.aws_session_token,
        )


def s3_resource_from_env() -> FlipS3Resource:
    """Endpoint and region from ``FLIP_S3_ENDPOINT_URL``/``FLIP_S3_REGION``.

    No keys are set on the resource: boto3's default chain reads ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
    (or a profile, or an instance role) at run time, so credentials never appear in run config or the Launchpad.
    """
    return FlipS3Resource(endpoint_url=settings.s3_endpoint_url(), region_name=settings.s3_region())
