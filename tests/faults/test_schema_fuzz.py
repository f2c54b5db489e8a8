"""Schema fuzzing of the v2 REST API from its OpenAPI document, every runtime.

schemathesis generates requests for each operation of KServe's published
document (``rest_predict_v2.yaml``, see SOURCE.md), both ones that fit the
schema and ones that break it, for the served model ``m`` (version 1) and
for names it makes up. None may get a 5xx, and every error is answered as
``{"error": "..."}``. Examples are few and derandomized: the same run in CI
every time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from conftest import Serving
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

pytestmark = pytest.mark.e2e

SPEC = Path(__file__).resolve().parent / "rest_predict_v2.yaml"
#: Examples per operation; inference gets more, it is where the decoding is.
EXAMPLES = {"infer": 40}
DEFAULT_EXAMPLES = 10
SERVED = {"MODEL_NAME": "m", "MODEL_VERSION": "1"}


def _schema() -> Any:
    # The document writes path parameters as ${NAME}; the $ is no part of a URL.
    text = SPEC.read_text(encoding="utf-8").replace("${", "{")
    return schemathesis.openapi.from_dict(yaml.safe_load(text))


OPERATIONS = [result.ok() for result in _schema().get_all_operations()]


def _examples(operation: Any) -> int:
    return EXAMPLES.get(operation.path.rsplit("/", 1)[-1], DEFAULT_EXAMPLES)


def _cases(operation: Any) -> st.SearchStrategy[Any]:
    """Positive and negative cases, for the served model and for made-up names."""
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    strategies = [operation.as_strategy(mode) for mode in modes]
    if "{MODEL_NAME}" in operation.path:
        strategies += [operation.as_strategy(mode, path_parameters=SERVED) for mode in modes]
    return st.one_of(strategies)


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_no_5xx_and_every_error_is_json(serving: Serving, operation: Any) -> None:
    @settings(
        max_examples=_examples(operation),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_cases(operation))
    def check(api_case: Any) -> None:
        response = api_case.call(base_url=serving.url, timeout=30)
        where = f"{api_case.method} {api_case.formatted_path}: {response.status_code}"
        assert response.status_code < 500, f"{where} {response.text[:500]}"
        if response.status_code >= 400 and api_case.method != "HEAD":
            error = response.json().get("error")
            assert isinstance(error, str) and error, f"{where} {response.text[:500]}"

    check()
    serving.still_serves()
