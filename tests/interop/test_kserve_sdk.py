"""KServe's SDK, unmodified, with the payloads of KServe's own tests, against our runtimes.

The SDK runs in its own environment (see conftest.py): ``InferenceRESTClient``
over v1 and v2, ``InferenceGRPCClient``, and KServe's pydantic
``InferenceResponse``. Expected answers come from the model in this process,
built the way KServe builds its input (pandas, for the table shapes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from pypmml import Model as PMML
from serverproc import ServerProcess, serving

pytestmark = pytest.mark.e2e

ROWS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]  # KServe's iris_input.json


@pytest.fixture(scope="module")
def estimator(sklearn_root: Path) -> Any:
    return joblib.load(sklearn_root / "iris" / "model.joblib")


def _v2(server: ServerProcess, model: str, **call: Any) -> dict[str, Any]:
    return {"op": "rest", "protocol": "v2", "url": server.http_url, "model": model, **call}


def _v1(server: ServerProcess, model: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"op": "rest", "protocol": "v1", "url": server.http_url, "model": model, "data": data}


def _iris_inputs(rows: list[list[float]]) -> list[dict[str, Any]]:
    flat = [v for row in rows for v in row]
    return [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP32", "data": flat}]


# -- 3. every answer has an id ----------------------------------------------------------------


def test_answers_parse_with_kserve_pydantic_response(sklearn_server, kserve_client) -> None:
    """KServe's InferenceResponse requires an id: a request without one gets a generated one,
    over REST and gRPC; a request's own id comes back."""
    body = {"inputs": _iris_inputs(ROWS)}
    no_id, own_id, rpc = kserve_client(
        {
            "calls": [
                {"op": "pydantic", "url": sklearn_server.http_url, "model": "iris", "data": body},
                {
                    "op": "pydantic",
                    "url": sklearn_server.http_url,
                    "model": "iris",
                    "data": {**body, "id": "mine"},
                },
                {
                    "op": "grpc",
                    "address": sklearn_server.grpc_address,
                    "model": "iris",
                    "inputs": _iris_inputs(ROWS),
                },
            ]
        }
    )
    assert no_id["id"] and no_id["outputs"] == ["predict"], no_id
    assert own_id["id"] == "mine", own_id
    assert rpc["id"], rpc


# -- 4. output-0 ----------------------------------------------------------------------------------


def test_kserve_sample_payload_asking_for_output_0(sklearn_server, kserve_client, estimator):
    """KServe's v2 samples ask for ``output-0``, its tree and sklearn servers' output name."""
    payload = {
        "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": ROWS}],
        "outputs": [{"name": "output-0"}],
    }
    (answer,) = kserve_client({"calls": [_v2(sklearn_server, "iris", data=payload)]})
    (out,) = answer["outputs"]
    assert out["name"] == "output-0", answer
    assert out["data"] == estimator.predict(np.asarray(ROWS)).tolist()


# -- 2. v1 strings reach a text pipeline as N strings ----------------------------------------


def test_v1_strings_reach_a_text_pipeline(sklearn_server, kserve_client, text_pipeline) -> None:
    """KServe's sklearn e2e test sends {"instances": ["text", ...]} to a TfidfVectorizer."""
    texts = [
        "sepallength long sepalwidth short petallength long petalwidth long",
        "sepallength short sepalwidth long petallength short petalwidth short",
    ]
    v1, v2 = kserve_client(
        {
            "calls": [
                _v1(sklearn_server, "text", {"instances": texts}),
                _v2(
                    sklearn_server,
                    "text",
                    inputs=[{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}],
                ),
            ]
        }
    )
    want = text_pipeline.predict(texts).tolist()
    assert v1 == {"predictions": want}
    assert v2["outputs"][0]["data"] == want


# -- 8. the gRPC client decodes raw answers --------------------------------------------------


def test_grpc_client_decodes_raw_answers(sklearn_server, kserve_client, estimator) -> None:
    (answer,) = kserve_client(
        {
            "calls": [
                {
                    "op": "grpc",
                    "address": sklearn_server.grpc_address,
                    "model": "iris",
                    "inputs": _iris_inputs(ROWS),
                }
            ]
        }
    )
    assert answer["outputs"][0]["data"] == estimator.predict(np.asarray(ROWS)).tolist()


# -- 5. v1 rows as pandas records (KServe's lgbserver tests) ------------------------------------


@pytest.fixture(scope="module")
def lgb_dir(framework_samples) -> Path:
    return framework_samples("lightgbm")["iris"]


@pytest.fixture(scope="module")
def lgb_server(lgb_dir: Path) -> Iterator[ServerProcess]:
    yield from serving("lgbserver", "--model_name=iris", f"--model_dir={lgb_dir}")


def _as_kserve_frames(instances: list[Any], columns: list[str]) -> pd.DataFrame:
    """KServe's own construction: a DataFrame per instance, concatenated."""
    return pd.concat([pd.DataFrame(i, columns=columns) for i in instances], axis=0)


def test_lgb_records_shapes_of_kserve_tests(lgb_server, lgb_dir, kserve_client) -> None:
    booster = lgb.Booster(model_file=str(lgb_dir / "model.bst"))
    names = booster.feature_name()
    row = dict(zip(names, [5.1, 3.5, 1.4, 0.2], strict=True))
    by_label = {name: {0: value} for name, value in row.items()}  # {col: {0: v}}
    one_each = [{name: value} for name, value in row.items()]  # [{col: v}, ...]
    short = one_each[:3]  # a feature missing altogether
    cases = [by_label, one_each, short]
    calls = [
        _v1(lgb_server, "iris", {key: [case, case]})
        for case in cases
        for key in ("inputs", "instances")
    ]
    calls.append(_v1(lgb_server, "iris", {"instances": {k: {"0": v} for k, v in row.items()}}))
    answers = kserve_client({"calls": calls})
    for index, case in enumerate(cases):
        want = booster.predict(_as_kserve_frames([case, case], names))
        for answer in answers[2 * index : 2 * index + 2]:
            np.testing.assert_allclose(answer["predictions"], want, err_msg=str(case))
    np.testing.assert_allclose(
        answers[-1]["predictions"], booster.predict(_as_kserve_frames([by_label], names))
    )


def test_records_with_holes_are_400_for_a_model_without_missing_values(
    sklearn_server, kserve_client
) -> None:
    """sklearn's iris-pipeline takes no NaN: the column lacking in a row is named."""
    row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "size": "small"}
    full = {**row, "petal_width": 0.2}
    (answer,) = kserve_client(
        {"calls": [_v1(sklearn_server, "iris-pipeline", {"instances": [full, row]})]}
    )
    assert "400" in answer["error"] and "'petal_width' has no value in row 1" in answer["error"]


# -- 7. PMML outputs as KServe's pmmlserver names them ------------------------------------------


@pytest.fixture(scope="module")
def pmml_server(framework_samples) -> Iterator[ServerProcess]:
    model_dir = framework_samples("pmml")["iris-tree"]
    yield from serving("pmmlserver", "--model_name=model", f"--model_dir={model_dir}")


def test_pmml_answers_like_kserve_pmmlserver(pmml_server, framework_samples, kserve_client):
    """KServe's pmmlserver test: instances [[5.1, 3.5, 1.4, 0.2]] answered with the target
    and the declared outputs under their names; the values are pypmml's."""
    reference = PMML.fromFile(str(framework_samples("pmml")["iris-tree"] / "model.pmml"))
    try:
        row = dict(zip(reference.inputNames, [5.1, 3.5, 1.4, 0.2], strict=True))
        answer = reference.predict(row)
        scored = {name: answer[name] for name in reference.outputNames}  # declared order
        target = reference.setSupplementOutput(True).predict(row)["predicted_Species"]
    finally:
        PMML.close()
    v1, v2 = kserve_client(
        {
            "calls": [
                _v1(pmml_server, "model", {"instances": [[5.1, 3.5, 1.4, 0.2]]}),
                _v2(pmml_server, "model", inputs=_iris_inputs([[5.1, 3.5, 1.4, 0.2]])),
            ]
        }
    )
    assert v1 == {"predictions": [{"Species": target, **scored}]}
    assert [o["name"] for o in v2["outputs"]] == ["Species", *scored]
    assert v2["outputs"][0] == {
        "name": "Species",
        "datatype": "BYTES",
        "shape": [1],
        "parameters": {},
        "data": ["setosa"],
    }
