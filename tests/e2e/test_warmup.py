"""Warm-up through the real server: before ready, from warmup.json or metadata, uncounted.

sklearnserver serves the iris sample; a ``warmup.json`` beside it replaces
the metadata's requests, an invalid one stops the start with its name,
``--warmup false`` (or ``WARMUP=false``) turns it off, and a repository
reload warms the new instance up again. What the model answers afterwards
is unchanged, and no statistics or metrics count the warm-up.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from serverproc import ServerProcess, metric, run_to_exit

pytestmark = pytest.mark.e2e

ROW = [5.1, 3.5, 1.4, 0.2]
WARMUP = [
    {
        "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": ROW * 2}],
        "outputs": [{"name": "predict_proba"}, {"name": "contributions"}],
    }
]


@pytest.fixture
def model_dir(iris_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "iris"
    shutil.copytree(iris_dir, target)
    return target


def _warmed_lines(server: ServerProcess) -> list[str]:
    return [line for line in server.output().splitlines() if "warmed up" in line]


def test_warmup_json_runs_before_ready_and_is_not_counted(model_dir: Path) -> None:
    (model_dir / "warmup.json").write_text(json.dumps(WARMUP))
    with ServerProcess("sklearnserver", ["--model_name=iris", f"--model_dir={model_dir}"]) as srv:
        (line,) = _warmed_lines(srv)
        assert "1 of 1 requests from warmup.json" in line, line
        stats = httpx.get(f"{srv.http_url}/v2/models/iris/stats").json()["model_stats"][0]
        assert stats["inference_count"] == stats["execution_count"] == 0
        assert metric(srv, "modelserver_predict_duration_seconds_count", "iris") == 0
        reply = httpx.post(f"{srv.http_url}/v1/models/iris:predict", json={"instances": [ROW]})
        assert reply.json() == {"predictions": [0]}
        assert metric(srv, "modelserver_predict_duration_seconds_count", "iris") == 1


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_warmup_false_turns_it_off(model_dir: Path, how: str) -> None:
    args = ["--model_name=iris", f"--model_dir={model_dir}"]
    env = {"WARMUP": "false"} if how == "environment" else {}
    if how == "flag":
        args.append("--warmup=false")
    with ServerProcess("sklearnserver", args, env=env) as server:
        assert _warmed_lines(server) == []
        assert "warm-up" not in server.output()


def test_an_invalid_warmup_json_stops_the_start_naming_it(model_dir: Path) -> None:
    bad = [{"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": ROW[:3]}]}]
    (model_dir / "warmup.json").write_text(json.dumps(bad))
    done = run_to_exit("sklearnserver", ["--model_name=iris", f"--model_dir={model_dir}"])
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output, output
    line = next(line for line in output.splitlines() if "cannot start" in line)
    assert "warmup.json" in line and "4 features" in line, line


def test_a_repository_reload_warms_the_new_instance_up(model_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "repository"
    root.mkdir()
    shutil.move(model_dir, root / "iris")
    (root / "iris" / "warmup.json").write_text(json.dumps(WARMUP))
    with ServerProcess("sklearnserver", ["--model_name=unused", f"--model_dir={root}"]) as srv:
        assert len(_warmed_lines(srv)) == 1
        reply = httpx.post(f"{srv.http_url}/v2/repository/models/iris/load", timeout=60)
        assert reply.status_code == 200, reply.text
        assert len(_warmed_lines(srv)) == 2
        stats = httpx.get(f"{srv.http_url}/v2/models/iris/stats").json()["model_stats"][0]
        assert stats["inference_count"] == 0
