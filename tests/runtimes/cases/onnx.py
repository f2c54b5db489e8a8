"""onnxserver on the iris Pipeline converted by skl2onnx (one FP32 input)."""

from runtime_case import RuntimeCase

CASE = RuntimeCase(
    module="onnxserver",
    framework="onnx",
    sample="iris-pipeline",
    suffix=".onnx",
    input_name="input",
    datatype="FP32",
    rows=[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
    bad_row=[5.1, 3.5, 1.4],
    flags=["--device=cpu"],
    width_error="expects shape",
)
