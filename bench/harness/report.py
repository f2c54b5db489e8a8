"""Medians, ratios and the markdown report.

Per (load, server): the median over rounds of each metric, counting only runs
whose answer was checked correct and that saw no errors. Ratios pair the two
servers' runs of the same round (they ran back to back) and take the median
of those per-round ratios, which holds better than a ratio of medians when
the machine drifts.
"""

from __future__ import annotations

import statistics
from typing import Any

METRICS = (
    "rps",
    "p50_ms",
    "p99_ms",
    "server_cpu_us_per_req",
    "server_cpu_pct",
    "generator_cpu_pct",
    "server_cpus_busy_pct",
    "others_on_server_cpus_pct",
)
#: Median "others on server CPU %" above which the report warns about a noisy machine.
NOISY_PCT = 12.0
RATIO_METRICS = ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_req")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(scenario: dict[str, Any]) -> dict[str, Any]:
    """Add ``summary`` (per load and target) and ``ratios`` (per comparison and load)."""
    runs = scenario["runs"]
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for load in scenario["loads"]:
        for target in scenario["targets"]:
            mine = [r for r in runs if r["load"] == load and r["target"] == target]
            if not mine:
                continue
            good = [r for r in mine if r["ok"]]
            entry: dict[str, Any] = {m: _median([r[m] for r in good]) for m in METRICS}
            entry["runs"] = len(mine)
            entry["good_runs"] = len(good)
            entry["errors"] = sum(r["errors"] for r in mine)
            entry["failures"] = sorted({r["error"] for r in mine if r["error"]})
            entry["response_kind"] = next(
                (r["response_kind"] for r in mine if r["response_kind"]), ""
            )
            summary.setdefault(load, {})[target] = entry
    ratios: list[dict[str, Any]] = []
    for subject, baseline in scenario["comparisons"]:
        for load in scenario["loads"]:
            by_round = {}
            for r in runs:
                if r["load"] == load and r["ok"] and r["target"] in (subject, baseline):
                    by_round.setdefault(r["round"], {})[r["target"]] = r
            pairs = [v for v in by_round.values() if len(v) == 2]
            if not pairs:
                continue
            entry = {"subject": subject, "baseline": baseline, "load": load, "rounds": len(pairs)}
            for m in RATIO_METRICS:
                values = [p[subject][m] / p[baseline][m] for p in pairs if p[baseline][m]]
                entry[m] = _median(values)
            ratios.append(entry)
    scenario["summary"] = summary
    scenario["ratios"] = ratios
    scenario["cold_start_median"] = {
        label: {
            "ready_s": _median([c["ready_s"] for c in starts]),
            "first_answer_s": _median([c["first_answer_s"] for c in starts]),
            "samples": len(starts),
        }
        for label, starts in scenario["cold_starts"].items()
        if starts
    }
    return scenario


# -- markdown ----------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def scenario_markdown(sc: dict[str, Any]) -> list[str]:
    out = [f"## {sc['title']}", ""]
    out.append(
        f"{sc['layout']}; {sc['rounds']} round(s) x {sc['duration_s']} s per load and server "
        f"(after {sc['warmup_s']} s warm-up), servers interleaved; medians over rounds."
    )
    out.append("")
    for label, t in sc["targets"].items():
        out.append(f"- **{label}**: {t['description']}")
    out.append("")
    rows = []
    for load, per_target in sc["summary"].items():
        title = sc["loads"][load]["title"]
        for target, s in per_target.items():
            note = "" if s["good_runs"] == s["runs"] else f" ({s['good_runs']}/{s['runs']} ok)"
            kind = (
                " (JSON answer)"
                if sc["loads"][load]["feature"] == "v2-binary" and s["response_kind"] == "json"
                else ""
            )
            rows.append(
                [
                    title,
                    target + kind,
                    _num(s["rps"]) + note,
                    _num(s["p50_ms"], 2),
                    _num(s["p99_ms"], 2),
                    str(s["errors"]),
                    _num(s["server_cpu_us_per_req"]),
                    _num(s["server_cpu_pct"]),
                    _num(s["generator_cpu_pct"]),
                    _num(s["others_on_server_cpus_pct"]) if sc.get("pinned", True) else "-",
                ]
            )
    out += _table(
        [
            "load",
            "server",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "server CPU µs/req",
            "server CPU %",
            "generator CPU %",
            "others on server CPU %",
        ],
        rows,
    )
    noise = [
        s["others_on_server_cpus_pct"]
        for per_target in sc["summary"].values()
        for s in per_target.values()
        if sc.get("pinned", True) and s["others_on_server_cpus_pct"] is not None
    ]
    if noise and statistics.median(noise) > NOISY_PCT:
        out += [
            "",
            f"**Noisy machine**: a median {statistics.median(noise):.0f} % of the server's CPU "
            "went to other processes during the runs (the kernel's own network work is about 1 "
            "%), so req/s and latencies are depressed and spread; *server CPU µs/req* and the "
            "ratios are the numbers to read.",
        ]
    if sc["ratios"]:
        out += [
            "",
            "Ratios (median of per-round ratios; req/s > 1 and p99, CPU/req < 1 favour the first):",
            "",
        ]
        rows = [
            [
                sc["loads"][r["load"]]["title"],
                f"{r['subject']} ÷ {r['baseline']}",
                _ratio(r["rps"]),
                _ratio(r["p50_ms"]),
                _ratio(r["p99_ms"]),
                _ratio(r["server_cpu_us_per_req"]),
            ]
            for r in sorted(sc["ratios"], key=lambda r: (r["subject"], r["baseline"]))
        ]
        out += _table(["load", "ratio", "req/s", "p50", "p99", "CPU/req"], rows)
    out += [
        "",
        "Cold start (exec → /v2/health/ready 200 → first correct answer, median) and memory:",
        "",
    ]
    rows = []
    for label in sc["targets"]:
        cold = sc["cold_start_median"].get(label)
        if cold is None:
            rows.append([label, "failed", "-", "-", "-"])
            continue
        rows.append(
            [
                f"{label} (n={cold['samples']})",
                _num(cold["ready_s"], 2),
                _num(cold["first_answer_s"], 2),
                _num(sc["idle_rss_mib"].get(label)),
                _num(sc["final_rss_mib"].get(label)),
            ]
        )
    out += _table(
        ["server", "ready s", "first answer s", "idle RSS MiB", "RSS after loads MiB"], rows
    )
    if sc["grpc_checks"]:
        out += ["", "gRPC frame check (grpcio client, same bytes as h2load sends):", ""]
        for label, check in sc["grpc_checks"].items():
            out.append(
                f"- {label}: {check['detail']}; "
                f"response frame {check['response_frame_bytes']} bytes"
            )
    notes = []
    reasons: dict[tuple[str, str], list[str]] = {}
    for s in sc["skipped"]:
        reasons.setdefault((s["target"], s["reason"]), []).append(s["load"])
    for (target, reason), loads in reasons.items():
        notes.append(f"- not measured: **{target}** x {', '.join(loads)}: {reason}")
    for label, error in sc["failed_to_start"].items():
        notes.append(f"- **{label}** did not start: {error}")
    for label, count in sc["restarts"].items():
        notes.append(f"- **{label}** exited during the run and was restarted {count}x")
    for load, per_target in sc["summary"].items():
        for target, s in per_target.items():
            for failure in s["failures"]:
                notes.append(f"- {target} x {load}: {failure}")
    if notes:
        out += ["", *notes]
    return out


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    g = results["ours_git"]
    out = [
        f"# Serving benchmark {results['timestamp']}",
        "",
        f"- machine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs (allowed: "
        f"{','.join(map(str, m['allowed_cpus']))}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}",
        f"- command: `{results['command']}`",
        f"- ours: git {g['commit']}"
        + (f" + {g['uncommitted_files']} uncommitted file(s)" if g["uncommitted_files"] else ""),
        f"- wall time: {results['wall_s'] / 60:.1f} min; raw numbers: `{results['json_path']}`",
        "",
    ]
    for sc in results["scenarios"]:
        out += scenario_markdown(sc)
        out.append("")
    if results.get("profiles"):
        from .profiling import profile_markdown

        out += profile_markdown(results["profiles"])
    return "\n".join(out)
