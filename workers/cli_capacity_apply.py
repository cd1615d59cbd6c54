"""`pitstop capacity apply SERVICE`: one service's recommendation — shown (default), written as kustomize
patches (`--patches DIR`), or applied through the closed loop (`--apply`, workflow `RightsizingLoop`).

Dry run by default, like `terraform plan`: without `--apply` nothing in a cluster changes; the command prints the
recommendation with its evidence, the lines that would change on the Deployment (read from the cluster now), and
whether the service's team opted in (`closed_loop.enabled` in the capacity policy file). `--apply` starts the
loop (canary with the new resources through the delivery engine, watched, then rolled out or reverted) through
the pitstop API (the policy must allow `start` of runbook `RightsizingLoop` on the service) and refuses for a team
that has not opted in. `--patches DIR` writes the GitOps alternative and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from pitstop.capacity.closed_loop import LoopInput, LoopOutcome, LoopPlan, LoopPlanInput, recommended_resources
from pitstop.capacity.kustomize import DeploymentPatch, kustomize_files
from pitstop.capacity.policy import CapacityPolicy
from pitstop.capacity.workloads import WorkloadRecommendation
from pitstop.config import Settings
from pitstop.delivery.spec import ContainerResources

from .errors import EXIT_FAILED, EXIT_USAGE, CliError


def recommendation_for(workloads: list[WorkloadRecommendation], service: str, namespace: str | None) -> WorkloadRecommendation:
    found = [w for w in workloads if w.workload == service and (namespace is None or w.namespace == namespace)]
    if not found:
        raise CliError(f"no Deployment {service!r}" + (f" in namespace {namespace!r}" if namespace else ""),
                       exit_code=EXIT_USAGE)
    if len(found) > 1:
        raise CliError(f"Deployment {service!r} exists in {', '.join(w.namespace for w in found)}: pass --namespace",
                       exit_code=EXIT_USAGE)
    return found[0]


def evidence_lines(rec: WorkloadRecommendation) -> list[str]:
    lines = []
    for c in rec.containers:
        e = c.evidence
        p95 = e.cpu_percentiles.get("p95")
        cpu = f"CPU p95 {p95 * 1000:.0f}m" if p95 is not None else "no CPU percentile"
        lines.append(f"  {c.container}: {c.strategy.value}, {e.history_hours:g} h, {e.pods} pods, {e.cpu_points} CPU points,"
                     f" {cpu}, max working set {e.memory_max_bytes / 2**20:.0f}Mi, {e.oom_kills} OOM kill(s)"
                     + (f" [{c.cpu_status.value}/{c.memory_status.value}: {c.info}]" if c.info else ""))
    return lines


def wanted_resources(rec: WorkloadRecommendation) -> dict[str, ContainerResources]:
    found = {c.container: recommended_resources(c) for c in rec.containers}
    return {name: res for name, res in found.items() if res is not None}


def write_patches(rec: WorkloadRecommendation, wanted: dict[str, ContainerResources], out: Path,
                  resources: list[str]) -> list[Path]:
    comment = "\n".join(["pitstop capacity apply: recommended resources, evidence:", *evidence_lines(rec)])
    files = kustomize_files([DeploymentPatch(namespace=rec.namespace, name=rec.workload, containers=wanted,
                                             comment=comment)], resources=resources)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    return [out / name for name in files]


def read_plan(settings: Settings, region: str, rec: WorkloadRecommendation,
              wanted: dict[str, ContainerResources]) -> LoopPlan:
    from pitstop.activities.capacity_loop import loop_plan
    from pitstop.activities.kube_api import KubeJson

    from .clients import build_kube_client, region_clusters

    api_client = build_kube_client(region, region_clusters(settings)[region])
    try:
        return loop_plan(KubeJson(api_client), LoopPlanInput(namespace=rec.namespace, deployment=rec.workload,
                                                             region=region, resources=wanted))
    except ValueError as exc:
        raise CliError(f"deployment {rec.namespace}/{rec.workload}: {exc}", exit_code=EXIT_USAGE) from None
    finally:
        api_client.close()


def start_loop(settings: Settings, request: LoopInput, *, wait: bool,
               token_file: Path | None = None) -> tuple[str, str, LoopOutcome | None]:
    """Start the loop through the pitstop API (policy: `start` of runbook `RightsizingLoop` on the service);
    (workflow id, the verified identity it was started as, its outcome when `wait`)."""
    from .api_client import call_api
    from .temporal_connection import connect

    answer = call_api(settings, token_file, "POST", ["rightsizing"], request.model_dump(mode="json"))
    workflow_id = str(answer["workflow_id"])

    async def go() -> LoopOutcome:
        client = await connect(settings)  # reading the outcome needs no API
        return await client.get_workflow_handle(workflow_id, result_type=LoopOutcome).result()

    return workflow_id, str(answer.get("started_by")), asyncio.run(go()) if wait else None


def apply_command(settings: Settings, policy: CapacityPolicy, rec: WorkloadRecommendation, *, region: str,
                  apply: bool, wait: bool, patches: Path | None, kustomize_resources: list[str],
                  as_json: bool, token_file: Path | None = None) -> None:
    wanted = wanted_resources(rec)
    loop = policy.loop_settings(rec.team)
    print(f"{region} {rec.namespace}/{rec.workload} (team {rec.team}, closed loop "
          f"{'opted in' if loop.enabled else 'not opted in'}):")
    for line in evidence_lines(rec):
        print(line)
    if not wanted:
        print("no recommendation to apply")
        return
    if patches is not None:
        for path in write_patches(rec, wanted, patches, kustomize_resources):
            print(f"wrote {path}")
        return
    plan = read_plan(settings, region, rec, wanted)
    for line in plan.changes or ["the Deployment already has these resources"]:
        print(f"  would change {line}" if plan.changes else f"  {line}")
    if as_json:
        print(json.dumps({"plan": plan.model_dump(mode="json"),
                          "resources": {k: v.as_json() for k, v in wanted.items()}}, indent=2))
    if not apply:
        print("dry run: nothing changed (--apply starts the closed loop, --patches DIR writes kustomize patches)")
        return
    if not loop.enabled:
        raise CliError(f"team {rec.team!r} has not opted in to the closed loop: set teams.{rec.team}.closed_loop."
                       "enabled: true in the capacity policy file (--policy)", exit_code=EXIT_USAGE)
    request = LoopInput(service=rec.workload, namespace=rec.namespace, region=region, team=rec.team, resources=wanted,
                        settings=loop, evidence="; ".join(line.strip() for line in evidence_lines(rec)))
    workflow_id, started_by, outcome = start_loop(settings, request, wait=wait, token_file=token_file)
    print(f"started {workflow_id} as {started_by} (pitstop release status {workflow_id}/release)")
    if outcome is not None:
        print(outcome.summary)
        sys.stdout.flush()
        os._exit(0 if outcome.result in ("rolled_out", "unchanged") else EXIT_FAILED)


def collect_one(settings: Settings, region: str, namespace: str | None, template: dict[str, Any]) -> list[WorkloadRecommendation]:
    from .cli_capacity import collect_all

    if namespace:
        template = {**template, "namespaces": [namespace]}
    (result,) = collect_all(settings, [region], template)
    return list(result.workloads)
