"""``python3 bench/run.py``: set up, run the scenarios, write and print the report.

The harness itself needs only the Python standard library (it runs on the
system ``python3``); everything that needs numpy, grpcio or a server's
packages runs as a subprocess in the matching venv.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from . import envs, report, system, targets
from .bench import Context, Scenario, ScenarioRunner, say
from .loads import DEFAULT_LOADS, LOADS, LOADS_BY_NAME, Load
from .paths import Paths

REPO = Path(__file__).resolve().parents[2]


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Compare our sklearn server with KServe, MLServer and a bare route "
        "(see bench/README.md).",
    )
    add = p.add_argument
    add("--rounds", type=int, default=3, help="rounds of interleaved runs (default 3)")
    add("--duration", type=int, default=5, help="seconds measured per run (default 5)")
    add("--warmup", type=int, default=1, help="seconds of discarded load before each run")
    add("--cold-starts", type=int, default=3, help="cold starts per server (median reported)")
    add("--quick", action="store_true", help="1 round x 2 s, 1 cold start: a smoke run (~2 min)")
    add(
        "--servers",
        type=_csv,
        default=targets.DEFAULT_SERVERS,
        help=f"comma list from {', '.join(targets.CATALOGUE)} (default: "
        f"{','.join(targets.DEFAULT_SERVERS)})",
    )
    add(
        "--loads",
        type=_csv,
        default=DEFAULT_LOADS,
        help=f"comma list from {', '.join(LOADS_BY_NAME)} (default: all but grpc-1row-1x32)",
    )
    add(
        "--ours-args", default="", help="extra arguments for our server, e.g. '--max_batch_size 32'"
    )
    add(
        "--ours-variant",
        action="append",
        default=[],
        metavar="LABEL=ARGS",
        help="another 'ours' target with its own extra arguments (repeatable), e.g. "
        "--ours-variant 'ours-batch=--max_batch_size 32 --max_batch_delay_ms 1'",
    )
    add(
        "--scenarios",
        type=_csv,
        default=["main"],
        help="main (all servers, pinned), workers (ours --workers 1 vs N, CPUs shared) and/or "
        "mlflow (one MLflow model: our mlflowserver vs MLServer's MLflow runtime, pinned)",
    )
    add("--workers", type=int, default=2, help="worker processes for the workers scenario")
    add(
        "--framework",
        type=_csv,
        default=[],
        help=f"per-framework comparison(s) instead of the main scenario, from "
        f"{', '.join(targets.FRAMEWORK_RUNTIMES)}: ours, KServe's runtime, MLServer's (where "
        "installable) and the bare route on the framework's iris sample",
    )
    add("--no-pin", action="store_true", help="do not pin server and load generator to CPUs")
    add("--profile", action="store_true", help="also sample our server under load with py-spy")
    add("--profile-only", action="store_true", help="only the py-spy profile")
    add(
        "--profile-loads",
        type=_csv,
        default=["v2-1row-c32", "v2-1000row-json-c32", "grpc-1row-c32"],
    )
    add("--profile-seconds", type=int, default=10)
    add("--profile-native", action="store_true", help="py-spy --native (slows the server a lot)")
    add("--skip-setup", action="store_true", help="assume bench/.envs is already built")
    add("--list", action="store_true", help="list servers and loads, then exit")
    return p


def _variant(spec: str) -> targets.Target:
    label, sep, args = spec.partition("=")
    if not sep or not label:
        raise SystemExit(f"--ours-variant wants LABEL=ARGS, got {spec!r}")
    return targets.ours(label, args)


def main_scenario(args: argparse.Namespace, loads: list[Load]) -> Scenario:
    chosen: list[targets.Target] = []
    for name in args.servers:
        if name not in targets.CATALOGUE:
            raise SystemExit(f"unknown server {name!r}; choose from {', '.join(targets.CATALOGUE)}")
        target = targets.CATALOGUE[name]()
        if name == "ours":
            target = targets.ours("ours", args.ours_args)
        chosen.append(target)
    chosen += [_variant(spec) for spec in args.ours_variant]
    subjects = [t.label for t in chosen if t.family == "ours"]
    baselines = [t.label for t in chosen if t.family != "ours"]
    comparisons = [(s, b) for s in subjects for b in baselines]
    if "ours" in subjects:
        comparisons += [(s, "ours") for s in subjects if s != "ours"]
    title = "Each server on one core, load generator on the other(s)"
    return _scenario(args, "main", title, chosen, loads, comparisons)


def _scenario(
    args: argparse.Namespace,
    name: str,
    title: str,
    chosen: list[targets.Target],
    loads: list[Load],
    comparisons: list[tuple[str, str]],
    pin: bool = True,
) -> Scenario:
    """A scenario with the rounds, durations and cold starts the flags ask for."""
    return Scenario(
        name=name,
        title=title,
        targets=chosen,
        loads=loads,
        layout=system.cpu_layout(pin=pin and not args.no_pin),
        rounds=args.rounds,
        duration_s=args.duration,
        warmup_s=args.warmup,
        cold_starts=args.cold_starts,
        comparisons=comparisons,
    )


def workers_scenario(args: argparse.Namespace, loads: list[Load]) -> Scenario:
    n = args.workers
    one = targets.ours("ours-w1", args.ours_args, workers=1)
    many = targets.ours(f"ours-w{n}", args.ours_args, workers=n)
    concurrent = [load for load in loads if load.concurrency > 1]
    title = f"Our server, --workers 1 vs {n}, server and load generator sharing all CPUs"
    comparisons = [(many.label, one.label)]
    return _scenario(args, "workers", title, [one, many], concurrent, comparisons, pin=False)


#: The loads of the MLflow comparison: v2 REST JSON (what both serve), 1 and 1,000 rows.
MLFLOW_LOADS = ("v2-1row-c1", "v2-1row-c32", "v2-1000row-json-c32")


def mlflow_scenario(args: argparse.Namespace, loads: list[Load]) -> Scenario:
    chosen = [targets.CATALOGUE[name]() for name in targets.MLFLOW_SERVERS]
    title = "One MLflow model (named columns): our mlflowserver vs MLServer's MLflow runtime"
    mlflow_loads = [load for load in loads if load.name in MLFLOW_LOADS]
    comparisons = [(chosen[0].label, chosen[1].label)]
    return _scenario(args, "mlflow", title, chosen, mlflow_loads, comparisons)


def framework_scenario(args: argparse.Namespace, framework: str, loads: list[Load]) -> Scenario:
    if framework not in targets.FRAMEWORK_RUNTIMES:
        known = ", ".join(targets.FRAMEWORK_RUNTIMES)
        raise SystemExit(f"unknown framework {framework!r}; choose from {known}")
    chosen = targets.framework_targets(framework, args.ours_args)
    ours = chosen[0].label
    comparisons = [(ours, t.label) for t in chosen[1:]]
    title = f"{framework}: each server on one core, load generator on the other(s)"
    missing = targets.MLSERVER_MISSING.get(framework)
    if missing:
        title += f" (no MLServer: {missing})"
    return _scenario(args, f"framework-{framework}", title, chosen, loads, comparisons)


def _loads(names: list[str]) -> list[Load]:
    unknown = [n for n in names if n not in LOADS_BY_NAME]
    if unknown:
        raise SystemExit(f"unknown load(s) {unknown}; choose from {', '.join(LOADS_BY_NAME)}")
    return [load for load in LOADS if load.name in names]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for name, make in targets.CATALOGUE.items():
            print(f"server {name:<18} {make().description}")
        for load in LOADS:
            print(f"load   {load.name:<22} {load.title}")
        return 0
    if args.quick:
        args.rounds, args.duration, args.warmup, args.cold_starts = 1, 2, 1, 1
    started = time.monotonic()
    paths = Paths(REPO)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = paths.results / f"{stamp}-files"
    for directory in (out_dir, paths.envs / "scratch", paths.runs):
        directory.mkdir(parents=True, exist_ok=True)
    loads = _loads(args.loads)
    scenarios: list[Scenario] = []
    if args.framework and not args.profile_only:
        scenarios += [framework_scenario(args, fw, loads) for fw in args.framework]
    elif not args.profile_only:
        if "main" in args.scenarios:
            scenarios.append(main_scenario(args, loads))
        if "workers" in args.scenarios:
            scenarios.append(workers_scenario(args, loads))
        if "mlflow" in args.scenarios:
            scenarios.append(mlflow_scenario(args, loads))
    profiling = args.profile or args.profile_only
    venvs = sorted({t.venv for s in scenarios for t in s.targets if t.venv})
    if profiling:
        venvs.append("tools")
    if args.skip_setup:
        expected = json.loads((paths.payloads / "expected.json").read_text())
    else:
        try:
            expected = envs.setup(paths, venvs, args.framework)
        except envs.SetupError as exc:
            say(f"setup failed: {exc}")
            return 2
    ctx = Context(paths, expected, out_dir, paths.envs / "scratch")
    command = shlex.join(["python3", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    results: dict[str, Any] = {
        "timestamp": stamp,
        "command": command,
        "machine": system.machine(),
        "ours_git": system.git_state(REPO),
        "config": vars(args),
        "scenarios": [],
    }
    for scenario in scenarios:
        results["scenarios"].append(report.summarize(ScenarioRunner(scenario, ctx).run()))
    if profiling:
        from .profiling import run_profiles

        layout = system.cpu_layout(pin=not args.no_pin)
        target = targets.ours("ours", args.ours_args)
        results["profiles"] = run_profiles(
            ctx,
            target,
            _loads(args.profile_loads),
            layout,
            args.profile_seconds,
            args.profile_native,
            out_dir,
        )
    results["wall_s"] = time.monotonic() - started
    json_path = paths.results / f"{stamp}.json"
    results["json_path"] = str(json_path.relative_to(REPO))
    json_path.write_text(json.dumps(results, indent=1, default=str))
    text = report.markdown(results)
    (paths.results / f"{stamp}.md").write_text(text + "\n")
    print("\n" + text, flush=True)
    return 0
