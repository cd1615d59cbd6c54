"""The CLI's cache of the discovered dependency graph: one JSON file per region in the state dir.

`<state_dir>/graph-<region>.json` (`graph-all.json` for every region summed) holds the discovery, when it was
read and from which Prometheus. It is used while younger than the caller's max age and read with the same
Prometheus URL, window and `min_rps`; anything else (or `--refresh`) asks Prometheus again. An empty discovery
is never cached. Written atomically (temp file + rename), so a concurrent reader sees the old or the new file.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ValidationError

from pitstop.steps.graph import DiscoverArgs, GraphDiscovery


class CachedGraph(BaseModel):
    fetched_at: datetime
    prometheus_url: str
    discovery: GraphDiscovery

    def answers(self, *, args: DiscoverArgs, prometheus_url: str) -> bool:
        graph = self.discovery.graph
        return (self.prometheus_url, graph.region, graph.window, graph.min_rps) == (
            prometheus_url, args.region, args.window, args.min_rps)

    def age(self, now: datetime) -> timedelta:
        return now - self.fetched_at


def cache_path(state_dir: Path, region: str) -> Path:
    return state_dir / f"graph-{region or 'all'}.json"


def load_fresh(path: Path, *, args: DiscoverArgs, prometheus_url: str, now: datetime,
               max_age: timedelta) -> CachedGraph | None:
    """The cached graph if it answers this question and is younger than `max_age`; a broken file is a miss."""
    try:
        cached = CachedGraph.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None
    if not cached.answers(args=args, prometheus_url=prometheus_url) or not timedelta(0) <= cached.age(now) <= max_age:
        return None
    return cached


def store(path: Path, cached: CachedGraph) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(cached.model_dump_json(indent=1))
    os.replace(temporary, path)
