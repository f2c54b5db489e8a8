"""mlflowserver on MLflow's sklearn flavor: iris LogisticRegression saved with skops.

Its signature names four double columns, so metadata lists four inputs; one
[N, 4] tensor (any other name, here ``input-0``) gives them in signature
order. The model file is always ``MLmodel``. The other flavors, params and
MLflow's own scoring protocol are in test_mlflow.py.
"""

from runtime_case import RuntimeCase

CASE = RuntimeCase(
    module="mlflowserver",
    framework="mlflow",
    sample="iris",
    suffix="MLmodel",
    input_name="input-0",
    input_names=("sepal_length", "sepal_width", "petal_length", "petal_width"),
    datatype="FP64",
    rows=[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
    bad_row=[5.1, 3.5, 1.4],
    width_error="rows of 4 columns",
    fixed_name=True,
)
