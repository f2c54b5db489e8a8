"""sklearnserver on the iris LogisticRegression."""

from runtime_case import RuntimeCase

CASE = RuntimeCase(
    module="sklearnserver",
    framework="sklearn",
    sample="iris",
    suffix=".joblib",
    input_name="input-0",
    datatype="FP64",
    rows=[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
    bad_row=[5.1, 3.5, 1.4],
)
