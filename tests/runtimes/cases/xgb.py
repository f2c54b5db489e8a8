"""xgbserver on the iris booster saved as JSON (multi:softprob, 4 features)."""

from runtime_case import RuntimeCase

CASE = RuntimeCase(
    module="xgbserver",
    framework="xgboost",
    sample="iris-json",
    suffix=".json",
    input_name="input-0",
    datatype="FP32",
    rows=[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
    bad_row=[5.1, 3.5, 1.4],
    width_error="features",
)
