"""Streamed generation through huggingfaceserver: time to first token and tokens per second.

huggingfaceserver serves the tiny GPT-2 sample (examples/samples/
huggingface.py, ``--nthread=1``, pinned to CPU 0 when there are two) and
each client streams OpenAI completions (``stream: true``, Server-Sent
Events) of exactly ``--tokens`` tokens (``min_tokens`` = ``max_tokens``, so
random weights cannot end a stream early) from CPU 1, at 1 and at 8
concurrent streams. Per stream: the time from sending the request to the
first text (TTFT) and the tokens per second after it; per level, the
aggregate tokens per second over the whole wall time. Medians over the
streams of ``--rounds`` rounds.

    .venv/bin/python bench/generation.py [--tokens 128] [--rounds 3] [--concurrency 1 8]

KServe's huggingfaceserver is not measured: it is not published as a
package (kserve 0.21.0 on PyPI has no ``huggingface`` extra; the runtime is
only in KServe's repository and its image), see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tests"))

import sample_models  # noqa: E402  (the repo's sample builder; examples/ is not a package)
from serverproc import ServerProcess  # noqa: E402  (the same launcher the tests use)

PROMPT = "Beautiful is better than ugly. Explicit is better than"


def stream_once(url: str, tokens: int, seed: int) -> dict[str, float]:
    """One streamed completion: seconds to the first text, tokens per second after it."""
    body = {
        "model": "gpt",
        "prompt": PROMPT,
        "max_tokens": tokens,
        "min_tokens": tokens,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = last = 0.0
    written = 0
    with httpx.stream("POST", url, json=body, timeout=300) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            now = time.perf_counter()
            if event["choices"] and event["choices"][0]["text"] and not first:
                first = now
            if event.get("usage"):
                written = event["usage"]["completion_tokens"]
            last = now
    if written != tokens:
        raise RuntimeError(f"asked for {tokens} tokens, got {written}")
    return {"ttft_s": first - started, "tokens_per_s": (written - 1) / (last - first)}


def level(url: str, tokens: int, streams: int, round_: int) -> tuple[list[dict], float]:
    """``streams`` concurrent streams: each one's numbers, and the aggregate tokens per second."""
    results: list[dict] = [{}] * streams
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            results[i] = stream_once(url, tokens, seed=round_ * 100 + i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return results, streams * tokens / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens per stream")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    two_cores = (os.cpu_count() or 1) > 1
    if two_cores:
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory(prefix="generation-bench-") as scratch:
        model_dir = sample_models.write("huggingface", Path(scratch), ["gpt2-chat"])["gpt2-chat"]
        server = ServerProcess(
            "huggingfaceserver",
            ["--model_name=gpt", f"--model_dir={model_dir}", "--nthread=1", "--device=cpu"],
        )
        server.start(timeout=120)
        if two_cores:
            subprocess.run(["taskset", "-apc", "0", str(server.proc.pid)], capture_output=True)
        url = f"{server.http_url}/v1/completions"
        try:
            stream_once(url, 16, seed=0)  # warm up
            rows = []
            for streams in args.concurrency:
                per_stream: list[dict] = []
                aggregate: list[float] = []
                for round_ in range(args.rounds):
                    results, total = level(url, args.tokens, streams, round_)
                    per_stream += results
                    aggregate.append(total)
                ttft = sorted(r["ttft_s"] for r in per_stream)
                rows.append(
                    {
                        "streams": streams,
                        "ttft_p50_ms": statistics.median(ttft) * 1e3,
                        "ttft_max_ms": ttft[-1] * 1e3,
                        "stream_tokens_per_s": statistics.median(
                            r["tokens_per_s"] for r in per_stream
                        ),
                        "aggregate_tokens_per_s": statistics.median(aggregate),
                    }
                )
        finally:
            server.stop()
    print(
        f"tiny GPT-2 (huggingface/gpt2-chat), {args.tokens} tokens per stream, {args.rounds} rounds"
    )
    print("| streams | TTFT p50 ms | TTFT max ms | tokens/s per stream | tokens/s all streams |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['streams']} | {r['ttft_p50_ms']:.1f} | {r['ttft_max_ms']:.1f} | "
            f"{r['stream_tokens_per_s']:.0f} | {r['aggregate_tokens_per_s']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
