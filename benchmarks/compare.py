"""Ratios livehub/seed from a ``benchmarks/run.sh`` results directory, against the performance
issue's targets (fanout ≥ 2x the seed's deliveries/s at ≤ 0.5x its CPU per delivery, pairs ≥ 1x
its round trips/s, joinstorm ≤ 1.25x its CPU per join, idle ≤ 20 kB RSS per connection).

    python benchmarks/compare.py RESULTS_DIR > summary.md

Reads ``RESULTS_DIR/{seed,livehub}/*.json`` (wsbench ``--json`` lines; ``SCENARIO.json`` or
``SCENARIO.K.json`` for repetitions), takes the median over repetitions and prints one Markdown
table. Standard library only.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Run = dict[str, Any]


@dataclass(frozen=True)
class Metric:
    scenario: str
    label: str
    path: str
    #: "higher" or "lower" is better; the ratio is compared with ``target`` in that direction
    better: str = "higher"
    target: float | None = None
    digits: int = 1
    #: an absolute bound on livehub's own median (same direction), where the target is no ratio
    limit: float | None = None


METRICS = (
    Metric("fanout", "deliveries/s", "deliveries_per_s", "higher", 2.0, 0),
    Metric("fanout", "server CPU µs per delivery", "server_cpu_us_per_delivery", "lower", 0.5, 2),
    Metric("fanout", "latency p50 ms", "latency_ms.p50", "lower"),
    Metric("fanout", "latency p99 ms", "latency_ms.p99", "lower"),
    Metric("fanout", "server cores", "server.cpu_util", "lower", None, 2),
    Metric("fanout", "other cores on host", "host.other_cores", "lower", None, 2),
    Metric("pairs", "round trips/s", "round_trips_per_s", "higher", 1.0, 0),
    Metric("pairs", "server CPU µs per round trip", "server_cpu_us_per_round_trip", "lower"),
    Metric("pairs", "RTT p50 ms", "rtt_ms.p50", "lower", None, 2),
    Metric("pairs", "other cores on host", "host.other_cores", "lower", None, 2),
    Metric("joinstorm", "server CPU µs per join", "server_cpu_us_per_join", "lower", 1.25, 0),
    Metric("joinstorm", "joins/s", "joins_per_s", "higher", None, 0),
    Metric("joinstorm", "confirmed joins/s", "confirmed_joins_per_s", "higher", None, 0),
    Metric("joinstorm", "other cores on host", "host_join.other_cores", "lower", None, 2),
    Metric("idle", "RSS per connection kB", "rss_per_conn_kb", "lower", limit=20.0),
    Metric("idle", "server CPU µs per conn", "server_cpu_us_per_connection", "lower", digits=0),
    Metric("idle", "idle server cores", "server_hold.cpu_util", "lower", None, 3),
)

#: exact counts: (scenario, label, path, expected value or a callable of the run)
COUNTS: tuple[tuple[str, str, str, Callable[[Run], Any]], ...] = (
    ("fanout", "lost", "lost", lambda run: 0),
    ("pairs", "lost round trips", "lost", lambda run: 0),
    ("joinstorm", "viewerCount after join", "viewer_count_after_join", lambda run: _n(run)),
    ("joinstorm", "viewerCount after close", "viewer_count_after_close", lambda run: 0),
    ("idle", "established", "established", lambda run: _n(run)),
    ("idle", "dropped during hold", "dropped_during_hold", lambda run: 0),
    ("idle", "viewerCount held", "viewer_count_total", lambda run: _n(run)),
    ("idle", "viewerCount after close", "viewer_count_total_after_close", lambda run: 0),
)


def _n(run: Run) -> Any:
    params = run.get("params", {})
    return params.get("clients", params.get("connections"))


def get(run: Run, path: str) -> Any:
    value: Any = run
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def load(directory: Path) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {}
    for file in sorted(directory.glob("*.json")):
        lines = file.read_text().strip().splitlines()
        try:
            run = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            continue
        if isinstance(run, dict) and run.get("tool") == "wsbench":
            runs.setdefault(run["scenario"], []).append(run)
    return runs


def median(runs: list[Run], path: str) -> float | None:
    values = [v for v in (get(r, path) for r in runs) if isinstance(v, int | float)]
    return statistics.median(values) if values else None


def spread(runs: list[Run], path: str, digits: int) -> str:
    values = sorted(v for v in (get(r, path) for r in runs) if isinstance(v, int | float))
    if not values:
        return "n/a"
    text = fmt(statistics.median(values), digits)
    if len(values) > 1:
        text += f" ({fmt(values[0], digits)}-{fmt(values[-1], digits)})"
    return text


def fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def verdict(ratio: float, metric: Metric) -> str:
    if metric.target is None:
        return ""
    if metric.better == "higher":
        met = ratio >= metric.target
        goal = f"≥ {metric.target:g}x"
    else:
        met = ratio <= metric.target
        goal = f"≤ {metric.target:g}x"
    return f"{goal}: {'met' if met else 'MISSED'}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[1])
    seed, livehub = load(root / "seed"), load(root / "livehub")
    out = ["## livehub vs seed", ""]
    out.append("Median over repetitions, (min-max) when repeated; ratio = livehub / seed.")
    out.append("")
    out.append("| scenario | metric | seed | livehub | ratio | target |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    missed = False
    for metric in METRICS:
        s_runs, l_runs = seed.get(metric.scenario, []), livehub.get(metric.scenario, [])
        if not s_runs and not l_runs:
            continue
        s_med, l_med = median(s_runs, metric.path), median(l_runs, metric.path)
        ratio = f"{l_med / s_med:.2f}" if s_med and l_med is not None else "n/a"
        goal = verdict(l_med / s_med, metric) if s_med and l_med is not None else ""
        if metric.limit is not None and l_med is not None:
            met = l_med >= metric.limit if metric.better == "higher" else l_med <= metric.limit
            sign = "≥" if metric.better == "higher" else "≤"
            goal = f"livehub {sign} {metric.limit:g}: {'met' if met else 'MISSED'}"
            missed = missed or not met
        if metric.target is not None and not goal.endswith("met"):
            missed = True
            goal = goal or f"target {metric.target:g}x: no data"
        s_txt = spread(s_runs, metric.path, metric.digits)
        l_txt = spread(l_runs, metric.path, metric.digits)
        out.append(f"| {metric.scenario} | {metric.label} | {s_txt} | {l_txt} | {ratio} | {goal} |")
    out.append("")
    out.append("| scenario | count | expected | seed (per run) | livehub (per run) |")
    out.append("| --- | --- | --- | --- | --- |")
    for scenario, label, path, expected in COUNTS:
        s_runs, l_runs = seed.get(scenario, []), livehub.get(scenario, [])
        if not s_runs and not l_runs:
            continue
        wanted = {str(expected(r)) for r in s_runs + l_runs}
        l_values = [get(r, path) for r in l_runs]
        if any(str(v) != str(expected(r)) for v, r in zip(l_values, l_runs, strict=True)):
            missed = True
        s_txt = ", ".join(str(get(r, path)) for r in s_runs) or "n/a"
        l_txt = ", ".join(str(v) for v in l_values) or "n/a"
        out.append(f"| {scenario} | {label} | {'/'.join(sorted(wanted))} | {s_txt} | {l_txt} |")
    out.append("")
    out.append("Targets: " + ("all met." if not missed else "at least one MISSED (see above)."))
    floor = load(root / "floor")
    if floor:
        out += ["", *against_floor(seed, floor, livehub)]
    floor0, livehub0 = load(root / "floor0"), load(root / "livehub0")
    if floor0 or livehub0:
        out += ["", *without_heartbeat(seed, floor, floor0, livehub, livehub0)]
    print("\n".join(out))
    return 0


def against_floor(
    seed: dict[str, list[Run]], floor: dict[str, list[Run]], livehub: dict[str, list[Run]]
) -> list[str]:
    """The floor (``benchmarks/floor_server.py``: the relay on aiohttp's public API and nothing
    more) next to the seed and livehub: how far each is from the other."""
    out = ["## The floor (aiohttp, uvloop, orjson and nothing more)", ""]
    out.append("Medians, (min-max) when repeated.")
    out.append("")
    out.append("| scenario | metric | seed | floor | livehub | floor / seed | livehub / floor |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for metric in METRICS:
        f_runs = floor.get(metric.scenario, [])
        if not f_runs or metric.path.startswith("host"):
            continue
        s_runs, l_runs = seed.get(metric.scenario, []), livehub.get(metric.scenario, [])
        s_med, f_med = median(s_runs, metric.path), median(f_runs, metric.path)
        l_med = median(l_runs, metric.path)
        f_s = f"{f_med / s_med:.2f}" if s_med and f_med is not None else "n/a"
        l_f = f"{l_med / f_med:.2f}" if f_med and l_med is not None else "n/a"
        cells = (spread(r, metric.path, metric.digits) for r in (s_runs, f_runs, l_runs))
        out.append(f"| {metric.scenario} | {metric.label} | {' | '.join(cells)} | {f_s} | {l_f} |")
    return out


def without_heartbeat(
    seed: dict[str, list[Run]],
    floor: dict[str, list[Run]],
    floor0: dict[str, list[Run]],
    livehub: dict[str, list[Run]],
    livehub0: dict[str, list[Run]],
) -> list[str]:
    """Each server's CPU per unit against the seed's, with aiohttp's heartbeat (``floor``,
    ``livehub``) and without it (``floor0``, ``livehub0``): the seed pings nobody."""
    out = ["## With and without aiohttp's heartbeat", ""]
    out.append("Medians, (min-max) when repeated; ratio = the server's / the seed's.")
    out.append("")
    out.append("| scenario | metric | server | heartbeat | value | ratio to the seed |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    servers = (
        ("seed", "none", seed),
        ("floor", "30 s", floor),
        ("floor", "none", floor0),
        ("livehub", "30 s", livehub),
        ("livehub", "none", livehub0),
    )
    for metric in METRICS:
        if metric.path.startswith("host") or (metric.target is None and "CPU" not in metric.label):
            continue
        s_med = median(seed.get(metric.scenario, []), metric.path)
        for name, beat, runs in servers:
            got = runs.get(metric.scenario, [])
            if not got:
                continue
            value = median(got, metric.path)
            ratio = f"{value / s_med:.2f}" if s_med and value is not None else "n/a"
            text = spread(got, metric.path, metric.digits)
            out.append(
                f"| {metric.scenario} | {metric.label} | {name} | {beat} | {text} | {ratio} |"
            )
    return out


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
