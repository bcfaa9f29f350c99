"""The FL-API client as a Dagster resource. The token is an ``EnvVar``: the Launchpad shows its name only."""

import dagster as dg
from pydantic import Field

from flip_pipelines import settings
from flip_pipelines.fl_api.client import FLApiClient


class FLApiResource(dg.ConfigurableResource):
    """Talks to each net's FL API; the endpoint comes from the net's row in ``fl_nets``."""

    token: str | None = Field(default=None, description="Bearer token of the nets' FL APIs (set FLIP_FL_API_TOKEN); "
                                                         "sent only to nets whose FLIP_NET_OPTIONS keep bearer_token")
    timeout_seconds: float = 30.0
    upload_timeout_seconds: float = 900.0

    def client(self, endpoint: str, *, net: str, timeout: float | None = None) -> FLApiClient:
        """A client of net ``net``'s FL API at ``endpoint``, with the token only when the net takes one
        (``settings.net_options``); ``timeout`` overrides the per-call timeout (sensors keep theirs short).

        Raises:
            InvalidInputError: FLIP_NET_OPTIONS is malformed.
        """
        token = self.token if settings.net_options(net).bearer_token else None
        return FLApiClient(endpoint, token, timeout=timeout or self.timeout_seconds,
                           upload_timeout=self.upload_timeout_seconds)
