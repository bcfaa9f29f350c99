"""Weighted FedAvg that also records each client's reported metrics per round.

Clients put their metrics in the DXO meta under ``flip_metrics``; they are appended to
``<run dir>/metrics/round_metrics.jsonl`` (one JSON object per client result), part of the job result.
"""

import json
import os
import time

from nvflare.apis.dxo import from_shareable
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.aggregators.intime_accumulate_model_aggregator import InTimeAccumulateWeightedAggregator
from nvflare.app_common.app_constant import AppConstants


class FlipMetricsAggregator(InTimeAccumulateWeightedAggregator):
    def accept(self, shareable: Shareable, fl_ctx: FLContext) -> bool:
        try:
            dxo = from_shareable(shareable)
            metrics = dxo.get_meta_prop("flip_metrics")
        except Exception:  # a malformed result is the parent's to reject; metrics are best effort
            metrics = None
        if metrics:
            run_dir = fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id())
            folder = os.path.join(run_dir, "metrics")
            os.makedirs(folder, exist_ok=True)
            record = {
                "round": fl_ctx.get_prop(AppConstants.CURRENT_ROUND),
                "client": shareable.get_peer_prop(key="__identity_name__", default=None),
                "time": time.time(),
                "metrics": metrics,
            }
            with open(os.path.join(folder, "round_metrics.jsonl"), "a") as handle:
                handle.write(json.dumps(record) + "\n")
        return super().accept(shareable, fl_ctx)
