"""Where our server spends its CPU under load: py-spy samples, summarized.

py-spy (bench/.envs/tools) attaches to a fresh ``ours`` process while a load
runs and records raw collapsed stacks; the summary ranks functions by self
time (innermost Python frame, which includes C code it calls, such as orjson
or numpy) and by inclusive time, and groups self time by component
(uvicorn, modelserver/rest, grpc, sklearn...). A leaf in ``Runner.run`` is
the event loop's own C code (uvloop: polling, transports, callbacks), which
Python-level sampling cannot split further; ``--profile-native`` can, at the
price of slowing the server a lot while sampling. The raw stacks are kept
next to the results for flamegraph tools.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .bench import Context, say
from .loads import GeneratorError, Load, run_h2load, run_wrk
from .server import Server, ServerError
from .system import CpuLayout
from .targets import GRPC, Target

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
OURS = ("modelserver", "sklearnserver")
EVENT_LOOP = "event loop C code (uvloop I/O, grpc.aio Cython)"
THREAD_C = "threads in C code (grpc poller)"
#: Frames on every stack (entry point, CLI) that would top the inclusive list and say nothing.
ENTRY = ("sklearnserver/__main__.py", "modelserver/server/cli.py", "modelserver/__main__.py")
TOP = 20
#: Bottom frames of a whole stack: the main thread's, a Python thread's, a spawned process's.
ROOTS = {"_run_module_as_main", "Thread._bootstrap", "<module>", "spawn_main", "_main"}


def frame_key(frame: str) -> tuple[str, str]:
    """('func (file)', component) for a py-spy frame 'func (file:line)'."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, "other"
    func, file = match.group("func"), match.group("file")
    if file.startswith("<frozen"):
        component = "stdlib"
    elif file == "<string>":
        component = "generated code (dataclass __init__)"
    elif "/" not in file and not file.endswith(".py"):
        component = f"native {file}"
    else:
        parts = file.removesuffix(".py").split("/")
        component = "/".join(parts[:2]) if parts[0] in OURS and len(parts) > 2 else parts[0]
    if func == "Runner.run" and file == "asyncio/runners.py":
        component = EVENT_LOOP
    elif func == "Thread.run" and file == "threading.py":
        component = THREAD_C
    return f"{func} ({file})", component


def parse(raw: str) -> list[tuple[list[str], int]]:
    """Collapsed stacks, without the ``process PID:"cmd"`` root --subprocesses adds."""
    stacks = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[0].startswith("process "):
            frames = frames[1:]
        if frames:
            stacks.append((frames, int(count)))
    return stacks


def complete(frames: list[str]) -> bool:
    """Whether a stack reaches a thread's root (a non-blocking read can tear it midway)."""
    return any(frame.split(" (", 1)[0] in ROOTS for frame in frames)


def summarize(stacks: list[tuple[list[str], int]]) -> dict[str, Any]:
    sampled = sum(count for _, count in stacks)
    stacks = [(frames, count) for frames, count in stacks if complete(frames)]
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    components: Counter[str] = Counter()
    for frames, count in stacks:
        keys = [frame_key(f) for f in frames]
        leaf, component = keys[-1]
        own[leaf] += count
        components[component] += count
        for key in {k for k, _ in keys}:
            inclusive[key] += count

    def pct(counter: Counter[str], keep: Any = None) -> list[list[Any]]:
        items = [(k, v) for k, v in counter.most_common() if keep is None or keep(k)]
        return [[k, round(100 * v / total, 1)] for k, v in items[:TOP]]

    return {
        "samples": total,
        "torn_dropped_pct": round(100 * (sampled - total) / sampled, 1) if sampled else 0.0,
        "sampled": sampled,
        "self": pct(own),
        "components_self": pct(components),
        "ours_inclusive": pct(
            inclusive,
            lambda k: any(f"({p}/" in k for p in OURS) and not any(f"({e})" in k for e in ENTRY),
        ),
        "inclusive": pct(inclusive, lambda k: "runpy" not in k and "__main__" not in k),
    }


def profile_load(
    ctx: Context,
    target: Target,
    load: Load,
    layout: CpuLayout,
    seconds: int,
    native: bool,
    out_dir: Path,
) -> dict[str, Any]:
    """Start ``target`` fresh, put ``load`` on it and sample it with py-spy for ``seconds``."""
    server = Server(target, ctx.paths, layout, ctx.log_dir)
    raw = out_dir / f"profile-{load.name}.collapsed"
    try:
        server.start(ctx.expected["rows1"])
        _drive(ctx, server, load, layout, 1)
        # --gil: only the thread holding the GIL, i.e. Python at work. Without it py-spy
        # counts idle threads (pool workers waiting for work, grpc's poller) as busy, and
        # --nonblocking tears deep stacks (sklearn's) so often that it skews the picture.
        mode = ["--gil", *(["--native"] if native else [])]
        argv = [
            *layout.generator_prefix(), str(ctx.paths.venv_bin("tools", "py-spy")), "record",
            "--pid", str(server.pid), "--rate", "200", "--duration", str(seconds),
            "--format", "raw", "--output", str(raw), "--subprocesses", *mode,
        ]  # fmt: skip
        spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.3)
        result = _drive(ctx, server, load, layout, seconds + 1)
        output, _ = spy.communicate(timeout=seconds + 60)
        if spy.returncode != 0 or not raw.exists():
            raise GeneratorError(f"py-spy failed: {output.strip()[-500:]}")
    finally:
        server.stop()
    summary = summarize(parse(raw.read_text()))
    # Share of wall time some thread held the GIL (py-spy samples at 200 Hz).
    summary["gil_held_pct"] = round(100 * summary["sampled"] / (200 * seconds), 1)
    summary.update(
        load=load.name,
        title=load.title,
        native=native,
        collapsed=str(raw),
        rps_while_sampling=round(result.rps),
        command=argv,
    )
    say(f"   profiled {load.name}: {summary['samples']} samples at {result.rps:.0f} req/s")
    return summary


def _drive(ctx: Context, server: Server, load: Load, layout: CpuLayout, seconds: int) -> Any:
    payload = ctx.paths.payloads / load.payload
    if load.feature == GRPC:
        return run_h2load(load, server.ports.grpc, seconds, layout, payload, ctx.scratch)
    headers = load.headers(ctx.expected["binary_header_length"])
    return run_wrk(
        load,
        server.ports.http,
        seconds,
        layout,
        payload,
        headers,
        ctx.paths.wrk_script,
        ctx.scratch,
    )


def run_profiles(
    ctx: Context,
    target: Target,
    loads: list[Load],
    layout: CpuLayout,
    seconds: int,
    native: bool,
    out_dir: Path,
) -> list[dict[str, Any]]:
    say(f"\n== profile of {target.label} with py-spy ({layout.describe()})")
    profiles = []
    for load in loads:
        try:
            profiles.append(profile_load(ctx, target, load, layout, seconds, native, out_dir))
        except (ServerError, GeneratorError, OSError, subprocess.TimeoutExpired) as exc:
            say(f"   !! profile of {load.name} failed: {exc}")
    return profiles


def profile_markdown(profiles: list[dict[str, Any]]) -> list[str]:
    out = [
        "## Where our server's CPU goes (py-spy)",
        "",
        "Samples of the thread holding the GIL (`py-spy record --gil`, 200 Hz) while the load "
        "runs: Python at work. Time in C with the GIL released (grpc's core, syscalls) is not "
        "in these tables; *GIL held* says how much of the wall time they cover. Self time is "
        "the innermost Python frame plus the C code it calls (orjson, numpy); a leaf in "
        "`Runner.run` is the event loop's own C/Cython code (uvloop, grpc.aio).",
        "",
    ]
    for p in profiles:
        out += [
            f"### {p['title']}: {p['samples']} samples at {p['rps_while_sampling']} req/s "
            f"(GIL held {p['gil_held_pct']}% of the time)"
            + (" (native frames)" if p["native"] else ""),
            "",
            "Self time by component: "
            + ", ".join(f"{name} {share}%" for name, share in p["components_self"][:10]),
            "",
            "| self % | function (innermost Python frame) | | inclusive % "
            "| modelserver/sklearnserver function |",
            "|---:|---|---|---:|---|",
        ]
        mine, theirs = p["self"][:15], p["ours_inclusive"][:15]
        for i in range(max(len(mine), len(theirs))):
            a = mine[i] if i < len(mine) else ["", ""]
            b = theirs[i] if i < len(theirs) else ["", ""]
            out.append(f"| {a[1]} | `{a[0]}` | | {b[1]} | `{b[0]}` |".replace("``", ""))
        out += ["", f"raw stacks: `{p['collapsed']}`", ""]
    return out
