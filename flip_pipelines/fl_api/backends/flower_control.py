"""Flower's Control API (the client ``flwr run/ls/stop/log`` use), wrapped in small typed calls.

``flwr.supercore.control.ControlHttpClient`` speaks protobuf over HTTP to the SuperLink's single port. It is
semi-internal, which is why flwr is pinned to 1.41.x.
"""

import hashlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from flwr.cli.build import build_fab_from_files
from flwr.common.serde import fab_to_proto, run_from_proto, user_config_to_proto
from flwr.proto.control_pb2 import (  # pylint: disable=no-name-in-module
    ListNodesRequest,
    ListRunsRequest,
    StartRunRequest,
    StopRunRequest,
    StreamLogsRequest,
)
from flwr.supercore.control import ControlHttpClient
from flwr.supercore.fab import Fab


@dataclass(frozen=True)
class FlowerRun:
    run_id: int
    status: str  # "running", "finished:completed", ...
    details: str


@dataclass(frozen=True)
class FlowerNode:
    node_id: int
    status: str  # online, offline, registered, unregistered


class RunNotFoundError(Exception):
    pass


class FlowerControl:
    def __init__(self, address: str) -> None:
        self.address = address
        self._client = ControlHttpClient.from_server_address(
            server_address=address, insecure=True, root_certificates=None, interceptors=[]
        )

    def health(self, timeout: float = 1.0) -> bool:
        try:
            return httpx.get(f"http://{self.address}/health", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def build_fab(files: Mapping[str, bytes | Path]) -> bytes:
        fab, _ = build_fab_from_files(dict(files))
        return fab

    def start_run(self, fab: bytes, run_config: dict[str, object]) -> int:
        response = self._client.StartRun(
            StartRunRequest(
                fab=fab_to_proto(Fab(hashlib.sha256(fab).hexdigest(), fab, {})),
                override_config=user_config_to_proto(run_config),
                federation="",
            )
        )
        if not response.HasField("run_id"):
            raise RuntimeError(f"the SuperLink did not start the run: {response}")
        return int(response.run_id)

    def list_runs(self, run_id: int | None = None) -> list[FlowerRun]:
        request = ListRunsRequest(run_id=run_id) if run_id is not None else ListRunsRequest()
        try:
            response = self._client.ListRuns(request)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                raise RunNotFoundError(str(run_id)) from None
            raise
        runs = []
        for proto in response.run_dict.values():
            run = run_from_proto(proto)
            status = run.status
            text = f"{status.status}:{status.sub_status}" if status.sub_status else status.status
            runs.append(FlowerRun(run_id=int(run.run_id), status=text, details=str(status.details or "")))
        return runs

    def stop_run(self, run_id: int) -> bool:
        return bool(self._client.StopRun(StopRunRequest(run_id=run_id)).success)

    def list_nodes(self) -> list[FlowerNode]:
        response = self._client.ListNodes(ListNodesRequest())
        return [FlowerNode(node_id=int(n.node_id), status=str(n.status)) for n in response.nodes_info]

    def logs(self, run_id: int, *, wait_seconds: float = 2.0) -> str:
        """The ServerApp log so far: the stream ends when the run has finished, else after ``wait_seconds``."""
        chunks: list[str] = []

        def read() -> None:
            try:
                for item in self._client.StreamLogs(StreamLogsRequest(run_id=run_id, after_timestamp=0.0)):
                    chunks.append(item.log_output)
            except Exception:  # the stream is cut when we stop waiting; what arrived is what we return
                pass

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=wait_seconds)
        time.sleep(0)  # let a finished reader's last append land
        return "".join(chunks)
