"""One scenario: start every target, time cold starts, then interleave the loads in rounds.

All targets of a scenario run side by side (idle ones cost nothing
measurable: the harness records each run's busy time on the server CPU next
to the server's own CPU, so interference would show). Within a round each
load visits every target that supports it, and the order of targets rotates
from round to round, so slow drifts of a shared machine (thermal, neighbours)
spread over all targets instead of biasing one; the report takes medians
over rounds and ratios per round.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import checks, system
from .loads import GeneratorError, GeneratorResult, Load, run_h2load, run_wrk
from .paths import Paths
from .server import Server, ServerError
from .system import CpuLayout
from .targets import GRPC, V2_JSON, Target


@dataclass
class Scenario:
    name: str
    title: str
    targets: list[Target]
    loads: list[Load]
    layout: CpuLayout
    rounds: int
    duration_s: int
    warmup_s: int
    cold_starts: int
    #: (subject, baseline) label pairs the report shows ratios for.
    comparisons: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Context:
    paths: Paths
    expected: dict[str, Any]
    log_dir: Path
    scratch: Path


@dataclass
class RunRecord:
    scenario: str
    round: int
    load: str
    target: str
    ok: bool
    error: str = ""
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    requests: int = 0
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    server_cpu_us_per_req: float = 0.0
    server_cpu_pct: float = 0.0
    server_cpus_busy_pct: float = 0.0
    others_on_server_cpus_pct: float = 0.0
    generator_cpu_pct: float = 0.0
    server_rss_mib: float = 0.0
    response_kind: str = ""
    wall_s: float = 0.0
    generator_argv: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


def say(message: str) -> None:
    print(message, flush=True)


def rotate(items: list[Any], shift: int) -> list[Any]:
    if not items:
        return items
    shift %= len(items)
    return items[shift:] + items[:shift]


class ScenarioRunner:
    def __init__(self, scenario: Scenario, ctx: Context):
        self.sc = scenario
        self.ctx = ctx
        self.servers: dict[str, Server] = {}
        self.failed: dict[str, str] = {}
        self.cold: dict[str, list[dict[str, float]]] = {t.label: [] for t in scenario.targets}
        self.grpc_checks: dict[str, checks.GrpcCheck] = {}
        self.idle_rss_mib: dict[str, float] = {}
        self.final_rss_mib: dict[str, float] = {}
        self.commands: dict[str, list[str]] = {}
        self.restarts: dict[str, int] = {}
        self.runs: list[RunRecord] = []

    # -- phases ---------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        sc = self.sc
        say(f"\n== scenario {sc.name}: {sc.title} ({sc.layout.describe()})")
        try:
            self.cold_starts()
            self.verify_grpc()
            self.warm_and_measure_rss()
            for rnd in range(sc.rounds):
                for load in sc.loads:
                    able = [t for t in sc.targets if t.supports(load.feature)]
                    for target in rotate(able, rnd):
                        if target.label in self.servers:
                            self.runs.append(self.measure(target, load, rnd))
        finally:
            for label, server in self.servers.items():
                if server.alive():
                    self.final_rss_mib[label] = system.rss_bytes(server.pid) / 2**20
                server.stop()
        return self.result()

    def cold_starts(self) -> None:
        sc = self.sc
        for i in range(sc.cold_starts):
            for target in rotate(sc.targets, i):
                if target.label in self.failed:
                    continue
                server = Server(target, self.ctx.paths, sc.layout, self.ctx.log_dir)
                self.commands[target.label] = server.argv
                try:
                    cold = server.start(self.ctx.expected[f"{target.payloads}rows1"])
                except ServerError as exc:
                    server.stop()
                    self.failed[target.label] = str(exc)
                    say(f"   !! {target.label}: {exc}")
                    continue
                self.cold[target.label].append(asdict(cold))
                say(
                    f"   cold start {i + 1}/{sc.cold_starts} {target.label:<18} "
                    f"ready {cold.ready_s:6.2f}s  first answer {cold.first_answer_s:6.2f}s"
                )
                if i == sc.cold_starts - 1:
                    self.servers[target.label] = server
                else:
                    server.stop()

    def verify_grpc(self) -> None:
        if not any(load.feature == GRPC for load in self.sc.loads):
            return
        for label, server in self.servers.items():
            if server.target.supports(GRPC):
                self.grpc_checks[label] = self._grpc_check(server)
                say(f"   gRPC check {label:<18} {self.grpc_checks[label].detail}")

    def _grpc_check(self, server: Server) -> checks.GrpcCheck:
        paths, prefix = self.ctx.paths, server.target.payloads
        return checks.check_grpc(
            paths.ours_python,
            paths.tools / "grpc_check.py",
            server.ports.grpc,
            paths.payloads / f"{prefix}grpc-1.frame",
            self.ctx.expected[f"{prefix}rows1"],
        )

    def warm_and_measure_rss(self) -> None:
        """Idle RSS after a short warm-up of 1-row v2 JSON traffic (every target speaks it)."""
        warm = Load("warm-up", "warm-up", V2_JSON, "v2-1.json", 1, 32)
        for label, server in self.servers.items():
            try:
                self._generate(server, warm, max(1, self.sc.warmup_s))
            except GeneratorError as exc:
                say(f"   !! warm-up of {label} failed: {exc}")
            time.sleep(0.5)
            self.idle_rss_mib[label] = system.rss_bytes(server.pid) / 2**20

    # -- one measured run -------------------------------------------------------------

    def _generate(self, server: Server, load: Load, seconds: int) -> GeneratorResult:
        paths, layout = self.ctx.paths, self.sc.layout
        body = paths.payloads / f"{server.target.payloads}{load.payload}"
        if load.feature == GRPC:
            frame_bytes = self.grpc_checks.get(server.target.label)
            return run_h2load(
                load,
                server.ports.grpc,
                seconds,
                layout,
                body,
                self.ctx.scratch,
                frame_bytes.response_frame_bytes if frame_bytes else 0,
            )
        headers = load.headers(self.ctx.expected["binary_header_length"])
        return run_wrk(
            load,
            server.ports.http,
            seconds,
            layout,
            body,
            headers,
            paths.wrk_script,
            self.ctx.scratch,
        )

    def _restart(self, target: Target) -> Server:
        old = self.servers[target.label]
        old.stop()
        self.restarts[target.label] = self.restarts.get(target.label, 0) + 1
        server = Server(target, self.ctx.paths, self.sc.layout, self.ctx.log_dir)
        self.servers[target.label] = server
        server.start(self.ctx.expected[f"{target.payloads}rows1"])
        if target.label in self.grpc_checks:
            self.grpc_checks[target.label] = self._grpc_check(server)
        return server

    def _check(self, server: Server, load: Load) -> checks.Check:
        if load.feature == GRPC:
            found = self.grpc_checks.get(server.target.label)
            return found or checks.Check(False, "gRPC was not verified")
        paths, prefix = self.ctx.paths, server.target.payloads
        return checks.check_rest(
            server.url(load.path()),
            (paths.payloads / f"{prefix}{load.payload}").read_bytes(),
            load.headers(self.ctx.expected["binary_header_length"]),
            self.ctx.expected[f"{prefix}{load.expected_key}"],
        )

    def measure(self, target: Target, load: Load, rnd: int) -> RunRecord:
        started = time.monotonic()
        record = RunRecord(self.sc.name, rnd + 1, load.name, target.label, ok=False)
        server = self.servers[target.label]
        try:
            if not server.alive():
                say(f"   !! {target.label} had exited; restarting it")
                server = self._restart(target)
            check = self._check(server, load)
            record.response_kind = check.response_kind
            if not check.ok:
                record.error = f"wrong answer before the run: {check.detail}"
            else:
                self._generate(server, load, self.sc.warmup_s)
                result = self._measured(server, load, record)
                record.ok = result.errors == 0 and not result.detail.get("grpc_errors_suspected")
                if not record.ok:
                    record.error = f"{result.errors} errors during the run"
        except (ServerError, GeneratorError, OSError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.wall_s = time.monotonic() - started
        self._report_progress(record)
        return record

    def _measured(self, server: Server, load: Load, record: RunRecord) -> GeneratorResult:
        cpus = self.sc.layout.server
        cpu0, busy0, wall0 = (
            system.cpu_seconds(server.pid),
            system.busy_seconds(cpus),
            time.monotonic(),
        )
        result = self._generate(server, load, self.sc.duration_s)
        cpu1, busy1, wall1 = (
            system.cpu_seconds(server.pid),
            system.busy_seconds(cpus),
            time.monotonic(),
        )
        wall = wall1 - wall0
        record.rps = result.rps
        record.p50_ms, record.p99_ms = result.p50_ms, result.p99_ms
        record.errors, record.requests, record.seconds = (
            result.errors,
            result.requests,
            result.seconds,
        )
        record.server_cpu_s = cpu1 - cpu0
        if result.requests:
            record.server_cpu_us_per_req = record.server_cpu_s / result.requests * 1e6
        record.server_cpu_pct = 100 * record.server_cpu_s / wall
        record.server_cpus_busy_pct = 100 * (busy1 - busy0) / wall / len(cpus)
        if self.sc.layout.pinned:
            # Busy time on the server's CPU that the server did not use: the kernel's
            # network work for this traffic (some %) plus anything else running there.
            record.others_on_server_cpus_pct = max(
                0.0, record.server_cpus_busy_pct - record.server_cpu_pct / len(cpus)
            )
        record.generator_cpu_pct = 100 * result.generator_cpu_s / result.seconds
        record.server_rss_mib = system.rss_bytes(server.pid) / 2**20
        record.generator_argv = result.argv
        record.detail = result.detail
        return result

    def _report_progress(self, r: RunRecord) -> None:
        head = f"   [round {r.round}/{self.sc.rounds}] {r.load:<20} {r.target:<18}"
        if not r.requests:
            say(f"{head} FAILED: {r.error}")
            return
        say(
            f"{head} {r.rps:8.0f} req/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  "
            f"err {r.errors:<4d} srv {r.server_cpu_us_per_req:6.0f} us/req "
            f"{r.server_cpu_pct:4.0f}%  "
            f"gen {r.generator_cpu_pct:4.0f}%  others {r.others_on_server_cpus_pct:3.0f}%  "
            f"({r.wall_s:.1f}s)" + (f"  !! {r.error}" if r.error else "")
        )

    def result(self) -> dict[str, Any]:
        sc = self.sc
        skipped = [
            {"target": t.label, "load": load.name, "reason": t.unsupported[load.feature]}
            for load in sc.loads
            for t in sc.targets
            if not t.supports(load.feature)
        ]
        return {
            "name": sc.name,
            "title": sc.title,
            "layout": sc.layout.describe(),
            "pinned": sc.layout.pinned,
            "rounds": sc.rounds,
            "duration_s": sc.duration_s,
            "warmup_s": sc.warmup_s,
            "targets": {
                t.label: {
                    "family": t.family,
                    "description": t.description,
                    "command": self.commands.get(t.label, []),
                }
                for t in sc.targets
            },
            "loads": {load.name: asdict(load) | {"title": load.title} for load in sc.loads},
            "comparisons": sc.comparisons,
            "failed_to_start": self.failed,
            "restarts": self.restarts,
            "cold_starts": self.cold,
            "idle_rss_mib": self.idle_rss_mib,
            "final_rss_mib": self.final_rss_mib,
            "grpc_checks": {k: asdict(v) for k, v in self.grpc_checks.items()},
            "skipped": skipped,
            "runs": [asdict(r) for r in self.runs],
        }
