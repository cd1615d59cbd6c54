"""Cluster objects parsed for capacity, range-query chunking, and a whole report (JSON, Markdown, HTML) built
from a synthetic region: the pure path `capacity.collect` and `capacity.report` run after their reads."""

from __future__ import annotations

import math

import pytest

from pitstop.activities.capacity import chunks, usage_queries
from pitstop.capacity import cluster
from pitstop.capacity.collection import region_capacity
from pitstop.capacity.forecast import ForecastSettings
from pitstop.capacity.policy import CapacityPolicy
from pitstop.capacity.render import html
from pitstop.capacity.report import capacity_report
from pitstop.capacity.strategies import Status, Strategy
from pitstop.capacity.usage import UsageAccumulator, WorkloadKey
from pitstop.steps.capacity import CollectArgs

GIB = 2**30


def deployment(ns: str, name: str, replicas: int, cpu: str, memory: str, team: str | None = None) -> dict:
    labels = {"pitstop.dev/team": team} if team else {}
    return {"metadata": {"namespace": ns, "name": name, "labels": labels}, "spec": {"replicas": replicas, "template": {
        "spec": {"containers": [{"name": name, "resources": {"requests": {"cpu": cpu, "memory": memory},
                                                              "limits": {"memory": memory}}}]}}}}


def node(name: str, itype: str, cpu: str, memory: str, price: str | None) -> dict:
    labels = {"node.kubernetes.io/instance-type": itype, **({"pitstop.dev/hourly-price-usd": price} if price else {})}
    return {"metadata": {"name": name, "labels": labels}, "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}}


def test_quantities_hpas_pods_and_prices() -> None:
    assert cluster.quantity("500m") == 0.5 and cluster.quantity("512Mi") == 512 * 2**20 and cluster.quantity("1G") == 1e9
    with pytest.raises(ValueError, match="not a Kubernetes quantity: '12Q'"):
        cluster.quantity("12Q")
    hpas = [{"metadata": {"namespace": "a", "name": "h1"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}}},
            {"metadata": {"namespace": "a", "name": "h2"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"},
             "metrics": [{"type": "Resource", "resource": {"name": "memory"}}]}}]
    found = cluster.workloads([deployment("a", "web", 2, "250m", "256Mi"), deployment("a", "api", 1, "1", "1Gi", "ota"),
                               deployment("kube-system", "dns", 1, "1", "1Gi")], hpas, exclude_namespaces=["kube-system"])
    assert [(w.name, w.team, w.hpa and (w.hpa.cpu, w.hpa.memory)) for w in found] == [
        ("web", "a", (True, False)), ("api", "ota", (False, True))]
    assert found[0].containers[0].requests.cpu_cores == 0.25 and found[0].containers[0].limits.cpu_cores is None
    assert cluster.workload_of_pod("web-7d9f8c6b5-x2x9z", {"web", "api"}) == "web"
    assert cluster.workload_of_pod("web-canary-7d9f8c6b5-x2x9z", {"web"}) is None
    nodes = cluster.nodes([node("n1", "m", "4", "16Gi", "0.2"), node("n2", "r", "4", "32Gi", None)], prices={"r": 0.25})
    assert [(n.instance_type, n.hourly_price_usd) for n in nodes] == [("m", 0.2), ("r", 0.25)]
    (q,) = cluster.quotas([{"metadata": {"namespace": "a", "name": "q"}, "spec": {"hard": {"requests.cpu": "24", "requests.memory": "48Gi"}}}])
    assert (q.requests_cpu_cores, q.requests_memory_bytes) == (24, 48 * GIB)


def test_range_queries_are_per_namespace_and_chunked() -> None:
    args = CollectArgs(region="eu-central", step_seconds=300)
    cpu, memory = usage_queries(args, "team-ota")
    assert cpu == ('sum by (pod, container) (rate(container_cpu_usage_seconds_total{region="eu-central",namespace="team-ota",'
                   'container!="",container!="POD"}[600s]))')
    assert memory.startswith("max by (pod, container) (container_memory_working_set_bytes{region=")
    ranges = chunks(0, 14 * 86400, 300, 1440)
    assert len(ranges) == math.ceil((14 * 288 + 1) / 1440) and ranges[0] == (0, 1439 * 300)
    assert all(b[0] - a[1] == 300 for a, b in zip(ranges, ranges[1:])) and ranges[-1][1] == 14 * 86400


def synthetic_region() -> tuple[list, UsageAccumulator]:
    end = 1_800_000_000.0 // 3600 * 3600
    start = end - 14 * 86400
    acc = UsageAccumulator(start_unix=start, end_unix=end, step_seconds=300)
    infos = cluster.workloads([deployment("team-a", "big", 3, "2", "4Gi", "a"), deployment("team-b", "small", 2, "500m", "1Gi", "b"),
                               deployment("team-b", "new", 1, "100m", "128Mi", "b")], [])
    for name, ns, pods, cpu in (("big", "team-a", 3, 0.4), ("small", "team-b", 2, 0.2)):
        for p in range(pods):
            pod = f"{name}-abcdef1234-p{p}x"
            times = [start + i * 300 for i in range(14 * 288)]
            key = WorkloadKey(namespace=ns, workload=name)
            acc.add_cpu_series(key, pod=pod, container=name,
                               points=[(t, cpu * (1 + 0.5 * math.sin(2 * math.pi * t / 86400))) for t in times])
            acc.add_memory_series(key, pod=pod, container=name, points=[(t, 600 * 2**20) for t in times])
    return infos, acc


def test_a_whole_report_from_a_synthetic_region() -> None:
    infos, acc = synthetic_region()
    nodes = cluster.nodes([node(f"n{i}", "m6i.xlarge", "4", "16Gi", "0.192") for i in range(3)])
    quotas = cluster.quotas([{"metadata": {"namespace": "team-a", "name": "q"}, "spec": {"hard": {"requests.cpu": "4"}}}])
    capacity = region_capacity(region="r1", usage=acc, workloads=infos, nodes=nodes, quotas=quotas,
                               policy=CapacityPolicy(), strategy=Strategy.SIMPLE, forecast=ForecastSettings())
    by_name = {w.workload: w for w in capacity.workloads}
    assert by_name["new"].containers[0].cpu_status is Status.NO_DATA
    big = by_name["big"].containers[0]
    assert big.cpu_request is not None and 0.55 < big.cpu_request <= 0.6 and big.memory_request == pytest.approx(690 * 2**20)
    report = capacity_report([capacity])
    (region,) = report.regions
    assert region.current.nodes == 3 and region.recommended.best is not None
    assert region.recommended.best.nodes <= region.today.best.nodes  # type: ignore[union-attr]
    assert region.recommended.best.lower_bound <= region.recommended.best.nodes
    assert sum(a.hourly_usd for a in region.by_requests.by_team) == pytest.approx(3 * 0.192, abs=1e-4)
    assert region.savings.requests_monthly_usd > 0 and set(region.mape_percent) == {
        "team-a/cpu", "team-a/memory", "team-b/cpu", "team-b/memory"}
    assert [f.subject for f in report.flags] == ["team-a"]  # 6 cores requested > quota 4
    assert report.counts.recommended == 2 and report.counts.no_data == 1
    assert report.markdown.startswith("# Capacity report (simple)") and "| team-a/big | a | 3 | big |" in report.markdown
    page = html(report, [capacity])
    assert page.count("<svg") == 2 + 2 + 2 * 2  # no plot for the workload without usage and "<script" not in page and "class=\"band\"" in page


def test_range_answers_keep_labels_and_drop_nan_points() -> None:
    from pitstop.activities.metrics import _matrix_series

    data = {"resultType": "matrix", "result": [
        {"metric": {"pod": "a-1-x", "container": "a"}, "values": [[1, "0.5"], [2, "NaN"], [3, "bad"], [4, "1e-3"]]},
        {"metric": {"pod": "b-1-x"}, "values": []}]}
    (a, b) = _matrix_series(data)
    assert a.labels == {"pod": "a-1-x", "container": "a"} and a.points == [(1.0, 0.5), (4.0, 0.001)]
    assert b.points == [] and _matrix_series({"resultType": "vector", "result": []}) == []


def test_a_cluster_too_small_for_its_requests_is_flagged() -> None:
    infos, acc = synthetic_region()  # 7.1 cores requested
    one_node = cluster.nodes([node("n0", "m6i.xlarge", "4", "16Gi", "0.192")])
    capacity = region_capacity(region="r1", usage=acc, workloads=infos, nodes=one_node, quotas=[],
                               policy=CapacityPolicy(), strategy=Strategy.SIMPLE, forecast=ForecastSettings())
    (flag,) = capacity_report([capacity]).flags
    assert (flag.kind, flag.subject) == ("nodes", "r1") and flag.detail.startswith("projected cpu requests 7.1")
    assert flag.detail.endswith("> allocatable 4.0 on 1 nodes")
