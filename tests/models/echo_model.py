"""A custom model for protocol tests: returns every input as an output of the same name.

Served by the real core through ``python -m modelserver --model_class
echo_model:EchoModel``; with it, every OIP datatype and shape can travel
through each protocol and back, which no tabular framework model accepts.
"""

from __future__ import annotations

from typing import Any

from modelserver import InferRequest, Model, Outputs


class EchoModel(Model):
    platform = "echo"

    def load(self) -> None:
        if self.model_dir is not None and (self.model_dir / "fail-to-load").exists():
            raise RuntimeError("asked to fail by the fail-to-load marker file")
        # One output per input, named as the request names its inputs.
        self.outputs = Outputs(dynamic=True)

    def preprocess(self, request: InferRequest) -> dict[str, Any]:
        return {t.name: t.data for t in request.inputs}

    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return inputs

    def inputs_metadata(self) -> list[dict[str, Any]]:
        # It takes any inputs, so it declares none: a request is bounded by
        # --max_inputs, not by a declaration (a declared input is a promise).
        return []
