"""Summarize a ``benchmarks/cluster.sh`` output directory as Markdown.

    python benchmarks/cluster_compare.py benchmarks/results/cluster-<stamp>

One table per scenario: a row per metric, a column per target (seed, embedded, cluster1,
cluster2), each cell the median over the repetitions with (min-max). "server" is the sum over
the target's livehub nodes (wsbench --pid); Redis, PostgreSQL (with its backends) and each node
come from wsbench-multi's --aux-pid, measured in the same window. Exits 1 when a run lost
messages or miscounted viewers, or when wsbench failed.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Run = dict[str, Any]
Metric = tuple[str, Callable[[Run], float | None]]

TARGET_ORDER = ["seed", "embedded", "cluster1", "cluster2"]


def dig(run: Run, *path: str) -> Any:
    value: Any = run
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def per_unit(window: str, proc: str, count: str) -> Callable[[Run], float | None]:
    """CPU µs of an aux process group per unit (delivery, round trip, join)."""

    def get(run: Run) -> float | None:
        cpu, n = dig(run, window, "aux_cpu_s", proc), dig(run, count)
        return cpu * 1e6 / n if cpu is not None and n else None

    return get


def cores(window: str, proc: str) -> Callable[[Run], float | None]:
    def get(run: Run) -> float | None:
        cpu, wall = dig(run, window, "aux_cpu_s", proc), dig(run, window, "wall_s")
        return cpu / wall if cpu is not None and wall else None

    return get


def path(*keys: str) -> Callable[[Run], float | None]:
    return lambda run: dig(run, *keys)


def total(server: str, window: str, count: str) -> Callable[[Run], float | None]:
    """CPU µs per unit of the nodes, Redis and PostgreSQL together (what a unit costs the
    whole deployment; embedded mode has neither engine)."""

    def get(run: Run) -> float | None:
        nodes, n = dig(run, server), dig(run, count)
        if nodes is None or not n:
            return None
        engines = sum(dig(run, window, "aux_cpu_s", proc) or 0.0 for proc in ("redis", "postgres"))
        return float(nodes) + engines * 1e6 / n

    return get


#: the performance issue's cluster targets: cluster2 / embedded, total CPU per unit
TARGETS: list[tuple[str, str, float]] = [
    ("joinstorm", "total CPU µs per join (nodes + Redis + PostgreSQL)", 1.5),
    ("pairs", "total CPU µs per round trip (nodes + Redis + PostgreSQL)", 1.5),
]


def joined(run: Run) -> Run:
    """joinstorm's counts live at the top level; its join window is `server_join`."""
    return {**run, "joined": run.get("connected")}


METRICS: dict[str, list[Metric]] = {
    "fanout": [
        ("deliveries/s", path("deliveries_per_s")),
        ("server CPU µs per delivery (nodes summed)", path("server_cpu_us_per_delivery")),
        ("Redis CPU µs per delivery", per_unit("server", "redis", "received")),
        ("PostgreSQL CPU µs per delivery", per_unit("server", "postgres", "received")),
        ("server cores (nodes summed)", path("server", "cpu_util")),
        ("node 1 cores", cores("server", "node1")),
        ("node 2 cores", cores("server", "node2")),
        ("Redis cores", cores("server", "redis")),
        ("load generator cores", path("client", "cpu_util")),
        ("latency p50 ms (all receipts)", path("latency_ms", "p50")),
        ("latency p99 ms (all receipts)", path("latency_ms", "p99")),
        ("latency p50 ms, receiver on the sender's node", path("latency_same_node_ms", "p50")),
        ("latency p99 ms, receiver on the sender's node", path("latency_same_node_ms", "p99")),
        ("latency p50 ms, receiver on the other node", path("latency_cross_node_ms", "p50")),
        ("latency p99 ms, receiver on the other node", path("latency_cross_node_ms", "p99")),
        ("fan-out complete p99 ms", path("fanout_complete_ms", "p99")),
        ("lost", path("lost")),
    ],
    "pairs": [
        ("round trips/s", path("round_trips_per_s")),
        ("server CPU µs per round trip (nodes summed)", path("server_cpu_us_per_round_trip")),
        (
            "total CPU µs per round trip (nodes + Redis + PostgreSQL)",
            total("server_cpu_us_per_round_trip", "server", "round_trips"),
        ),
        ("Redis CPU µs per round trip", per_unit("server", "redis", "round_trips")),
        ("PostgreSQL CPU µs per round trip", per_unit("server", "postgres", "round_trips")),
        ("server cores (nodes summed)", path("server", "cpu_util")),
        ("node 1 cores", cores("server", "node1")),
        ("node 2 cores", cores("server", "node2")),
        ("Redis cores", cores("server", "redis")),
        ("load generator cores", path("client", "cpu_util")),
        ("RTT p50 ms", path("rtt_ms", "p50")),
        ("RTT p99 ms", path("rtt_ms", "p99")),
        ("lost", path("lost")),
        # --to: clients that knew their peer's id when the measured round trips began (every
        # relay addressed with `to`: 2 x pairs); absent without --to (relays to the room)
        ("clients relaying with `to`", path("to_known")),
    ],
    "joinstorm": [
        ("joins/s (connected + join sent)", path("joins_per_s")),
        ("confirmed joins/s (viewerCount = N over REST)", path("confirmed_joins_per_s")),
        ("server CPU µs per join (nodes summed)", path("server_cpu_us_per_join")),
        (
            "total CPU µs per join (nodes + Redis + PostgreSQL)",
            total("server_cpu_us_per_join", "server_join", "joined"),
        ),
        ("Redis CPU µs per join", per_unit("server_join", "redis", "joined")),
        ("PostgreSQL CPU µs per join", per_unit("server_join", "postgres", "joined")),
        ("server cores (nodes summed)", path("server_join", "cpu_util")),
        ("node 1 cores", cores("server_join", "node1")),
        ("node 2 cores", cores("server_join", "node2")),
        ("Redis cores", cores("server_join", "redis")),
        ("load generator cores", path("client_join", "cpu_util")),
        ("viewerCount after join", path("viewer_count_after_join")),
        ("viewerCount after close", path("viewer_count_after_close")),
    ],
}


def load(out: Path) -> dict[str, dict[str, list[Run]]]:
    """scenario -> target -> runs"""
    runs: dict[str, dict[str, list[Run]]] = {}
    for target_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        for file in sorted(target_dir.glob("*.json")):
            scenario = file.name.split(".")[0]
            try:
                run = json.loads(file.read_text().strip().splitlines()[-1])
            except (ValueError, IndexError):
                run = {"ok": False, "error": f"no JSON in {file.name}"}
            run["_file"] = f"{target_dir.name}/{file.name}"
            if scenario == "joinstorm":
                run = joined(run)
            runs.setdefault(scenario, {}).setdefault(target_dir.name, []).append(run)
    return runs


def fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1000:
        return str(int(value))
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(values: list[float]) -> str:
    if not values:
        return ""
    mid = statistics.median(values)
    if len(values) == 1:
        return fmt(mid)
    return f"{fmt(mid)} ({fmt(min(values))}-{fmt(max(values))})"


def main(out: Path) -> int:
    runs = load(out)
    problems: list[str] = []
    print(f"# Cluster benchmarks: {out.name}\n")
    print("Median over the repetitions, (min-max). server = the target's livehub nodes summed")
    print("(wsbench --pid); Redis, PostgreSQL and each node from --aux-pid, same window.\n")
    for scenario, metrics in METRICS.items():
        by_target = runs.get(scenario)
        if not by_target:
            continue
        targets = [t for t in TARGET_ORDER if t in by_target] + sorted(
            t for t in by_target if t not in TARGET_ORDER
        )
        counts = ", ".join(f"{t} {len(by_target[t])}" for t in targets)
        print(f"## {scenario} (runs: {counts})\n")
        print("| metric | " + " | ".join(targets) + " |")
        print("| --- |" + " --- |" * len(targets))
        for label, get in metrics:
            cells = []
            for target in targets:
                values = [v for v in (get(r) for r in by_target[target]) if v is not None]
                cells.append(cell([float(v) for v in values]))
            if any(cells):
                print(f"| {label} | " + " | ".join(cells) + " |")
        print()
        for target in targets:
            for run in by_target[target]:
                if not run.get("ok"):
                    errors = run.get("errors") or run.get("error")
                    problems.append(f"{run['_file']}: not ok ({errors})")
                if scenario == "joinstorm" and not (
                    run.get("viewer_count_ok") and run.get("viewer_count_zero_ok")
                ):
                    problems.append(f"{run['_file']}: viewerCount wrong")
                if scenario in ("fanout", "pairs") and run.get("lost"):
                    problems.append(f"{run['_file']}: lost {run['lost']}")
                if run.get("generator_saturated"):
                    print(f"- {run['_file']}: load generator saturated (≥ 0.9 cores)")
        print()
    rows = []
    for scenario, label, limit in TARGETS:
        get = dict(METRICS[scenario])[label]
        medians = {}
        for target in ("embedded", "cluster2"):
            values = [get(r) for r in runs.get(scenario, {}).get(target, [])]
            numbers = [float(v) for v in values if v is not None]
            if numbers:
                medians[target] = statistics.median(numbers)
        if len(medians) == 2 and medians["embedded"]:
            ratio = medians["cluster2"] / medians["embedded"]
            verdict = "met" if ratio <= limit else "MISSED"
            rows.append(
                f"| {scenario} | {label} | {fmt(medians['embedded'])} | "
                f"{fmt(medians['cluster2'])} | {ratio:.2f} | ≤ {limit}x: {verdict} |"
            )
    if rows:
        print("## Cluster of two against embedded (medians)\n")
        print("| scenario | metric | embedded | cluster2 | ratio | target |")
        print("| --- | --- | --- | --- | --- | --- |")
        print("\n".join(rows))
        print()
    if problems:
        print("## Problems\n")
        for problem in problems:
            print(f"- {problem}")
        return 1
    print("Every run: ok, nothing lost, viewerCount exact.")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(Path(sys.argv[1])))
