"""Queue upkeep that FLIP runs on a timer: free stale nets, refresh queue positions."""

import dagster as dg

from flip_pipelines.db import lifecycle
from flip_pipelines.resources.database import QueueDatabase


@dg.op(description="Free BUSY nets whose job finished or vanished, then log changed queue positions.")
def recover_stale_nets(context: dg.OpExecutionContext, queue_db: QueueDatabase) -> int:
    with queue_db.session() as session:
        recovered = lifecycle.recover_stale_busy_nets(session)
        for net in recovered:
            context.log.warning(f"net {net.net_name} was BUSY with no live job ({net.stale_fl_job_id}): freed")
        written = lifecycle.log_queue_positions(session)
    context.log.info(f"{len(recovered)} stale net(s) freed; {written} queue position change(s) logged")
    context.add_output_metadata({"nets_freed": len(recovered), "queue_positions_logged": written})
    return len(recovered)
