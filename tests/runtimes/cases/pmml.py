"""pmmlserver on sklearn2pmml's iris classifier: four active fields.

pmmlserver's metadata lists one input per active field of the PMML; a single
[N, 4] tensor (any name, here ``input-0``) holds them in mining-schema order.
The string-field tree and the one-field regression are in test_pmml.py.
"""

from runtime_case import RuntimeCase

CASE = RuntimeCase(
    module="pmmlserver",
    framework="pmml",
    sample="iris",
    suffix=".pmml",
    input_name="input-0",
    input_names=("sepal_length", "sepal_width", "petal_length", "petal_width"),
    datatype="FP64",
    rows=[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
    bad_row=[5.1, 3.5, 1.4],
    width_error="features",
)
