"""KServe's ``output-N`` names: the N-th default output, unless a real output has the name."""

from __future__ import annotations

import pytest
from modelserver import Outputs
from modelserver.errors import InvalidInput


def table() -> Outputs:
    outputs = Outputs()
    outputs.add("label", "INT64")
    outputs.add("proba", "FP64", [-1, 3], default=False)
    outputs.add("score", "FP64")
    return outputs


def test_output_n_is_the_nth_default() -> None:
    outputs = table()
    assert outputs.select(["output-0"], "m") == ["label"]
    assert outputs.select(["output-1", "proba", "output-0"], "m") == ["score", "proba", "label"]
    assert outputs.select(None, "m") == ["label", "score"]


@pytest.mark.parametrize("name", ["output-2", "output-00", "output--1", "output-x"])
def test_other_output_names_are_unknown(name: str) -> None:
    with pytest.raises(InvalidInput, match=f"no output named '{name}'.*output-N"):
        table().select([name], "m")


def test_a_real_output_of_that_name_wins() -> None:
    outputs = table()
    outputs.add("output-0", "FP32", default=False)
    assert outputs.select(["output-0"], "m") == ["output-0"]
