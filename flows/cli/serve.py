"""`voicebatch serve`: one long-lived process that registers `render-manifest/served` and
`nightly-catalog/served` (deployments with no work pool, beside the work-pool ones of prefect.yaml) and
runs their flow runs itself, in this process, so engines stay warm.

Prefect's own `serve()` starts every flow run in a fresh (spawned) process, which would load the model
again for each run; here the flow runs execute in-process through Prefect's flow engine, one at a time.
"""
from __future__ import annotations

import argparse
import logging
import time

log = logging.getLogger(__name__)


def add_command(sub) -> None:
    serve = sub.add_parser("serve", help="serve the flows with schedules, keeping engines warm between runs")
    serve.add_argument("--cron", default="0 2 * * *", help="schedule of nightly-catalog (default: 02:00 daily)")
    serve.add_argument("--manifests-dir", default="manifests", help="folder nightly-catalog renders")
    serve.add_argument("--poll", type=float, default=5.0, help="seconds between looks for due runs (default 5)")
    serve.add_argument("--max-runs", type=int, default=None, help="exit after this many runs (for drills)")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.server_check import require_api

    require_api()
    deployments = register(args.cron, args.manifests_dir)
    names = ", ".join(f"{flow.name}/{name}" for flow, name, _ in deployments.values())
    print(f"serving {names}; trigger with: prefect deployment run 'render-manifest/served' "
          "-p manifest=manifests/demo-dialogue.yaml", flush=True)
    served = 0
    while args.max_runs is None or served < args.max_runs:
        ran = run_due(deployments)
        served += ran
        if not ran:
            time.sleep(args.poll)
    return 0


def register(cron: str, manifests_dir: str) -> dict:
    """Create or update both deployments; deployment id -> (flow, deployment name, id)."""
    from flows.catalog import render_catalog
    from flows.render import render_manifest

    specs = [
        (render_manifest, render_manifest.to_deployment("served", description="Render one manifest.")),
        (render_catalog, render_catalog.to_deployment("served", cron=cron,
                                                      parameters={"manifests_dir": manifests_dir},
                                                      description="Render every manifest, incrementally.")),
    ]
    return {str(d_id): (flow, deployment.name, d_id) for flow, deployment in specs for d_id in [deployment.apply()]}


def run_due(deployments: dict) -> int:
    """Run every flow run of our deployments that is scheduled and due, oldest first; how many ran."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState,
                                                FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.flow_engine import run_flow
    from prefect.states import Pending

    with get_client(sync_client=True) as client:
        due = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[d for _, _, d in deployments.values()])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=10)
        from prefect.types._datetime import now

        due = [r for r in due if r.expected_start_time is None or r.expected_start_time <= now("UTC")]
        ran = 0
        for flow_run in due:
            if not client.set_flow_run_state(flow_run.id, Pending()).status.value == "ACCEPT":
                continue  # another server took it
            flow, name, _ = deployments[str(flow_run.deployment_id)]
            log.info("running %s/%s: flow run %s", flow.name, name, flow_run.name)
            run_flow(flow, flow_run=client.read_flow_run(flow_run.id), parameters=flow_run.parameters,
                     return_type="state")
            ran += 1
        return ran
