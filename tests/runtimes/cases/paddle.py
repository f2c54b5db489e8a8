"""paddleserver on the iris MLP in Paddle 3's PIR layout (model.json + model.pdiparams)."""

from runtime_case import RuntimeCase

CASE = RuntimeCase(
    module="paddleserver",
    framework="paddle",
    sample="iris-mlp",
    suffix=".json",
    input_name="x",
    datatype="FP32",
    rows=[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
    bad_row=[5.1, 3.5, 1.4],
    width_error="expects shape",
)
