"""The core's CLI serving a user's own Model class: examples/custom_model/iris_custom.py.

The server process imports the class by name, so it needs ``examples/`` on
its ``PYTHONPATH`` (pytest puts it only on the test process's ``sys.path``).
"""

from pathlib import Path

from runtime_case import RuntimeCase

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

CASE = RuntimeCase(
    module="modelserver",
    framework="custom",
    sample="iris",
    suffix=".json",
    input_name="features",
    datatype="FP64",
    rows=[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
    bad_row=[5.1, 3.5, 1.4],
    flags=["--model_class=custom_model.iris_custom:IrisModel"],
    env={"PYTHONPATH": str(EXAMPLES)},
)
