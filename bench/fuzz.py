"""Fuzz benchmark: the CI fuzzers' strategies (tests/fuzz) at many cases, counted instead of stopping at the
first failure.

Families (the cases are split evenly between them):
- webhook, pure: `decode_body` + `AlertmanagerWebhook` + `notifications_from` over arbitrary bytes, arbitrary
  JSON and mutations of valid v4 payloads;
- webhook, HTTP: the real receiver process (`python -m pitstop.workers.webhook` on loopback, Temporal unreachable, so
  alerts are journaled): hostile bodies, hostile credentials, hostile framing (and other headers);
- runbooks: mutations of every shipped runbook, validated as `pitstop runbooks validate` does.
Prints per family and in total: cases, ok, refused, 5xx, tracebacks, hangs (> 5 s), misattributed runbook
problems, the slowest case, elapsed time and load average; then how long an alias bomb takes to be refused.
Exits 1 when any case was a 5xx, a traceback, a hang or misattributed.

    .venv/bin/python -m bench.fuzz [--cases 10000] [--seed 1] [--only webhook|runbooks]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz.harness import GOOD, HANG_SECONDS, Outcome, WebhookProcess, webhook_process
from tests.fuzz.runbook_mutations import SHIPPED, alias_bomb, mutated_runbooks, validated_outcome
from tests.fuzz.webhook_inputs import (
    authorized_post, bodies, decoded_outcome, encoded, hostile_auth_requests, hostile_framing_requests, http_outcome,
    json_values, mutated_payloads,
)

KINDS = ("ok", "refused", "5xx", "traceback", "hang", "misattributed")


@dataclass
class Tally:
    name: str
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0
    elapsed: float = 0.0

    @property
    def cases(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        counts = " ".join(f"{kind} {self.counts[kind]:>5}" for kind in KINDS)
        return (f"  {self.name:<34} cases {self.cases:>6}  {counts}  slowest {self.slowest * 1000:7.1f} ms  "
                f"elapsed {self.elapsed:6.1f} s")


def run_family(name: str, strategy: st.SearchStrategy[Any], judge: Callable[[Any], Outcome], *, cases: int,
               at_seed: int) -> Tally:
    """`cases` examples of `strategy` (hypothesis may stop earlier when it has tried everything it can)."""
    tally = Tally(name)

    @seed(at_seed)
    @settings(max_examples=cases, database=None, deadline=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate])
    @given(strategy)
    def one(value: Any) -> None:
        started = time.monotonic()
        outcome = judge(value)
        tally.slowest = max(tally.slowest, time.monotonic() - started)
        tally.counts[outcome.kind] += 1
        if outcome.kind not in GOOD and len(tally.failures) < 5:
            tally.failures.append(f"{outcome.kind}: {outcome.detail[-1500:]}\n    input: {value!r:.600}")

    started = time.monotonic()
    one()
    tally.elapsed = time.monotonic() - started
    print(tally.line(), flush=True)
    return tally


def webhook_families(server: WebhookProcess, token: str, share: int, at_seed: int) -> list[Tally]:
    pure = [
        run_family("webhook pure: bytes", st.binary(max_size=4_000), decoded_outcome, cases=share, at_seed=at_seed),
        run_family("webhook pure: JSON", json_values(nan=True).flatmap(encoded), decoded_outcome, cases=share,
                   at_seed=at_seed),
        run_family("webhook pure: mutated payloads", mutated_payloads().flatmap(encoded), decoded_outcome,
                   cases=share, at_seed=at_seed),
    ]
    http = []
    for name, strategy, judge in (
        ("webhook HTTP: bodies", bodies, lambda body: http_outcome(server, authorized_post(token, body))),
        ("webhook HTTP: credentials", hostile_auth_requests(token), lambda request: http_outcome(server, request)),
        ("webhook HTTP: framing", hostile_framing_requests(token), lambda request: http_outcome(server, request)),
    ):
        logged_before = server.tracebacks()
        tally = run_family(name, strategy, judge, cases=share, at_seed=at_seed)
        logged = server.tracebacks() - logged_before
        if logged:
            tally.counts["traceback"] += logged
            tally.failures.append(f"the receiver logged {logged} traceback(s): {server.log()[-3000:]}")
            print(f"    + {logged} traceback(s) in the receiver's log", flush=True)
        http.append(tally)
    if not server.healthy():
        http[-1].counts["traceback"] += 1
        http[-1].failures.append("the receiver stopped answering /healthz")
    return pure + http


def runbook_family(root: Path, cases: int, at_seed: int) -> Tally:
    return run_family(f"runbooks: mutations of {len(SHIPPED)} files", mutated_runbooks(),
                      lambda case: validated_outcome(root, case[0], case[1]), cases=cases, at_seed=at_seed)


def alias_bomb_seconds(root: Path) -> tuple[float, Outcome]:
    content = (SHIPPED[0].read_text() + alias_bomb()).encode()
    started = time.monotonic()
    outcome = validated_outcome(root, SHIPPED[0].name, content)
    return time.monotonic() - started, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="cases in all, split evenly between the families")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="hypothesis seed (default: the time)")
    parser.add_argument("--only", choices=["webhook", "runbooks"], help="run one side only")
    args = parser.parse_args()
    families = {"webhook": 6, "runbooks": 1}
    if args.only:
        families = {args.only: families[args.only]}
    share = max(1, args.cases // sum(families.values()))
    load_before = os.getloadavg()
    print(f"pitstop fuzz bench ({datetime.now(timezone.utc):%Y-%m-%d %H:%M}Z, {os.cpu_count()} cores, "
          f"load average {load_before[0]:.1f}), {args.cases} cases, seed {args.seed}, hang bound {HANG_SECONDS:.0f} s",
          flush=True)
    started = time.monotonic()
    tallies: list[Tally] = []
    with tempfile.TemporaryDirectory(prefix="pitstop-fuzz-runbooks-") as scratch:
        root = Path(scratch)
        if "webhook" in families:
            token = "fuzz-" + secrets.token_hex(8)
            with webhook_process(token=token) as server:
                tallies += webhook_families(server, token, share, args.seed)
        if "runbooks" in families:
            tallies.append(runbook_family(root, share, args.seed))
        bomb_seconds, bomb = alias_bomb_seconds(root)
    total = Tally("total", counts=sum((t.counts for t in tallies), Counter()),
                  slowest=max(t.slowest for t in tallies), elapsed=time.monotonic() - started)
    print(total.line())
    load_after = os.getloadavg()
    print(f"  load average {load_before[0]:.2f} before, {load_after[0]:.2f} / {load_after[1]:.2f} / "
          f"{load_after[2]:.2f} after (1/5/15 min)")
    print(f"  alias bomb in a shipped runbook: {bomb.kind} in {bomb_seconds * 1000:.1f} ms ({bomb.detail[:100]})")
    bad = sum(total.counts[kind] for kind in KINDS if kind not in GOOD)
    print(f"  5xx {total.counts['5xx']}, tracebacks {total.counts['traceback']}, hangs {total.counts['hang']}, "
          f"misattributed {total.counts['misattributed']}")
    for tally in tallies:
        for failure in tally.failures:
            print(f"\n[{tally.name}] {failure}")
    sys.stdout.flush()
    os._exit(1 if bad or bomb.kind != "refused" or bomb_seconds >= 1.0 else 0)


if __name__ == "__main__":
    main()
