"""The machine and its processes as /proc shows them: CPU layout, CPU time and memory.

CPU time is read from ``/proc/<pid>/stat`` (utime+stime, plus cutime+cstime so
a child that exits mid-run is not lost) summed over the whole process tree,
because a server may do its work in children (``--workers``, MLServer's
inference pool). Deltas over a run divided by its requests give CPU seconds
per request, the number that still means something when the load generator,
not the server, limits throughput.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class CpuLayout:
    """Which CPUs the server and the load generator may use.

    Pinned (two or more CPUs): the server gets the first CPU, the generator
    the rest, so they never compete and the server's throughput is one
    core's worth. Shared: both run anywhere (one CPU, or a scaling scenario).
    """

    server: tuple[int, ...]
    generator: tuple[int, ...]
    pinned: bool

    @staticmethod
    def _prefix(cpus: tuple[int, ...]) -> list[str]:
        return ["taskset", "-c", ",".join(map(str, cpus))]

    def server_prefix(self) -> list[str]:
        return self._prefix(self.server) if self.pinned else []

    def generator_prefix(self) -> list[str]:
        return self._prefix(self.generator) if self.pinned else []

    def describe(self) -> str:
        if self.pinned:
            return (
                f"server pinned to CPU {_cpus(self.server)}, "
                f"load generator to CPU {_cpus(self.generator)}"
            )
        return f"server and load generator share CPUs {_cpus(self.server)}"


def _cpus(cpus: tuple[int, ...]) -> str:
    return ",".join(map(str, cpus))


def allowed_cpus() -> tuple[int, ...]:
    return tuple(sorted(os.sched_getaffinity(0)))


def cpu_layout(pin: bool) -> CpuLayout:
    cpus = allowed_cpus()
    if pin and len(cpus) >= 2 and shutil.which("taskset"):
        return CpuLayout(server=cpus[:1], generator=cpus[1:], pinned=True)
    return CpuLayout(server=cpus, generator=cpus, pinned=False)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, object]:
    """What the report's header says about where the numbers come from."""
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in (PROC / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "allowed_cpus": list(allowed_cpus()),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_state(repo: Path) -> dict[str, object]:
    """Which code of ours was measured: commit and how many files differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    changed = [line for line in git("status", "--porcelain").splitlines() if line]
    return {"commit": git("rev-parse", "--short=12", "HEAD"), "uncommitted_files": len(changed)}


# -- process trees --------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _parents() -> dict[int, int]:
    table: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                table[int(entry.name)] = int(fields[1])
    return table


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(root: int) -> float:
    """User+system CPU of the tree (reaped children included), in seconds."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat(pid)
        if fields is not None:
            # fields[11:15] are utime, stime, cutime, cstime (stat fields 14-17).
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / CLK_TCK


def rss_bytes(root: int) -> int:
    """VmRSS summed over the tree (pages shared by forked children count once per process)."""
    total = 0
    for pid in process_tree(root):
        try:
            for line in (PROC / str(pid) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def busy_seconds(cpus: tuple[int, ...]) -> float:
    """Non-idle time of the given CPUs from /proc/stat: shows noise from outside the server."""
    total = 0
    wanted = {f"cpu{c}" for c in cpus}
    for line in (PROC / "stat").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in wanted:
            values = [int(v) for v in parts[1:]]
            # user nice system idle iowait irq softirq steal ...; idle and iowait are not busy.
            total += sum(values[:8]) - values[3] - values[4]
    return total / CLK_TCK
