"""The fault suite: every runtime of tests/runtimes/cases meets the same hostile input and faults.

A runtime that adds its case file is in this suite too. Each runtime serves a
copy of its sample (the reload fault corrupts the copy) as ``m``, with short
body and header time limits (a lying Content-Length is answered in a second)
and the request logger on, sending to a sink that is slow throughout: every
test here also checks that a slow sink costs inference nothing. One server
per runtime serves every test of the suite (the fixtures are session-scoped
and parametrized, so pytest runs a runtime's tests together); the faults that
end a server (SIGTERM, SIGKILL of a worker) start their own.

The suite is bounded for CI: few, fixed examples (hypothesis derandomized, a
seeded mutation stream), so it is the same run every time.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from runtime_case import RuntimeCase, all_cases, one_per_runtime
from serverproc import ServerProcess
from sinks import Sink

#: One case per runtime: the faults are the server's, not a task's.
CASES = one_per_runtime(all_cases())


@dataclass(frozen=True)
class Serving:
    """A runtime's fault-suite server, and the answer it gave to the case's good rows."""

    case: RuntimeCase
    server: ServerProcess
    model_dir: Path
    answer: dict[str, Any]

    @property
    def url(self) -> str:
        return self.server.http_url

    def good_body(self) -> dict[str, Any]:
        rows = self.case.array()
        return {
            "inputs": [
                {
                    "name": self.case.input_name,
                    "shape": list(rows.shape),
                    "datatype": self.case.datatype,
                    "data": rows.reshape(-1).tolist(),
                }
            ]
        }

    def outputs(self) -> dict[str, Any]:
        reply = httpx.post(f"{self.url}/v2/models/m/infer", json=self.good_body(), timeout=30)
        assert reply.status_code == 200, reply.text
        return {o["name"]: o["data"] for o in reply.json()["outputs"]}

    def still_serves(self) -> None:
        """A good request is answered, and as it was before the suite began."""
        assert self.server.proc is not None and self.server.proc.poll() is None, (
            self.server.output()[-3000:]
        )
        got = self.outputs()
        assert got.keys() == self.answer.keys()
        for name, values in self.answer.items():
            if values and isinstance(values[0], float):
                np.testing.assert_allclose(got[name], values, rtol=1e-6, err_msg=name)
            else:
                assert got[name] == values, name


@pytest.fixture(scope="session")
def slow_sink() -> Iterator[Sink]:
    with Sink(delay_s=0.5) as sink:
        yield sink


@pytest.fixture(scope="session", params=CASES, ids=[c.id for c in CASES])
def case(request: pytest.FixtureRequest) -> RuntimeCase:
    return request.param


@pytest.fixture(scope="session")
def serving(
    case: RuntimeCase,
    framework_samples,
    tmp_path_factory: pytest.TempPathFactory,
    slow_sink: Sink,
) -> Iterator[Serving]:
    model_dir = tmp_path_factory.mktemp(f"faults-{case.id}") / "m"
    shutil.copytree(framework_samples(case.framework)[case.sample], model_dir)
    flags = [
        "--model_name=m",
        f"--model_dir={model_dir}",
        "--http_body_timeout=1",
        "--http_header_timeout=2",
        f"--logger_url={slow_sink.url}",
        "--logger_queue_size=4",
        *case.flags,
    ]
    with ServerProcess(case.module, flags, env=case.env) as server:
        first = Serving(case, server, model_dir, {})
        yield Serving(case, server, model_dir, first.outputs())
