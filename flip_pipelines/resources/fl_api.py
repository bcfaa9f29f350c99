"""The FL-API client as a Dagster resource. The token is an ``EnvVar``: the Launchpad shows its name only."""

import dagster as dg
from pydantic import Field

from flip_pipelines.fl_api.client import FLApiClient


class FLApiResource(dg.ConfigurableResource):
    """Talks to each net's FL API; the endpoint comes from the net's row in ``fl_nets``."""

    token: str = Field(description="Bearer token of the nets' FL APIs (set FLIP_FL_API_TOKEN)")
    timeout_seconds: float = 30.0
    upload_timeout_seconds: float = 900.0

    def client(self, endpoint: str, timeout: float | None = None) -> FLApiClient:
        """A client of the FL API at ``endpoint``; ``timeout`` overrides the per-call timeout (sensors keep theirs
        short)."""
        return FLApiClient(endpoint, self.token, timeout=timeout or self.timeout_seconds,
                           upload_timeout=self.upload_timeout_seconds)
