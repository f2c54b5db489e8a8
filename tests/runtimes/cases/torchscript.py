"""torchserver on the iris MLP traced to TorchScript (KServe's ``pytorch`` format).

A traced module keeps its example inputs, so its input is declared FP32
[-1, 4] and its outputs (a dict) ``logits`` and ``probabilities``. Every other
format and sample is in test_torch.py.
"""

from runtime_case import RuntimeCase

CASE = RuntimeCase(
    module="torchserver",
    framework="torch",
    sample="iris-torchscript",
    suffix=".pt",
    input_name="features",
    datatype="FP32",
    rows=[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
    bad_row=[5.1, 3.5, 1.4],
    flags=["--device=cpu"],
    width_error="expects shape",
)
