"""ONNX samples for onnxserver, each written by the tool people really export with.

    OUT/onnx/iris-pipeline/model.onnx  StandardScaler + LogisticRegression on iris via
                                       skl2onnx (no ZipMap): input "input" FP32 [-1, 4];
                                       outputs "label" INT64 [-1], "probabilities" FP32 [-1, 3]
    OUT/onnx/iris-mlp/model.onnx       the PyTorch MLP of torch_models.py (torchserver's iris
                                       samples), torch.onnx.export with a dynamic batch axis:
                                       input "features" FP32 [-1, 4]; outputs "logits",
                                       "probabilities" FP32 [-1, 3]
    OUT/onnx/typed/model.onnx          a graph built with onnx.helper whose inputs are BOOL,
                                       FP16, BYTES, INT8 and INT64 tensors and whose outputs
                                       cover every protocol datatype (Not, Add, Cast, Identity)

Fixed seeds, CPU only, a few seconds in all. The exporters are needed to
build the samples, not to serve them: they are the workspace's extras
(``samples-onnx``: onnx, skl2onnx; ``samples-torch``: torch, for iris-mlp
only), not onnxserver's dependencies.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

from . import chosen

OPSET = 17
NAMES = ("iris-pipeline", "iris-mlp", "typed")
#: The typed graph's INT8 input is cast to each of these: output "small_as_<key>" of that
#: ONNX element type, so every numeric datatype appears in its metadata and answers.
CASTS = {
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "fp64": "DOUBLE",
}


def iris_pipeline_onnx(zipmap: bool = False) -> Any:
    """The iris Pipeline as an ONNX ModelProto; ``zipmap=True`` keeps skl2onnx's map output."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    pipeline = Pipeline(
        [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))]
    ).fit(X, y)
    return to_onnx(
        pipeline,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={LogisticRegression: {"zipmap": zipmap}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )


def write_iris_mlp(path: Path) -> None:
    """Export torchserver's iris MLP (the same network, the same weights) with a dynamic batch."""
    import torch

    from .torch_models import train_iris_mlp

    model, example = train_iris_mlp()
    batch = {0: "batch"}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export's,
        # which needs onnxscript and takes seconds; this one is enough for an MLP.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["features"],
            output_names=["logits", "probabilities"],
            dynamic_axes={"features": batch, "logits": batch, "probabilities": batch},
            opset_version=OPSET,
            dynamo=False,
        )


def typed_graph() -> Any:
    """A graph over BOOL, FP16, BYTES, INT8 and INT64 inputs with every datatype as output."""
    from onnx import TensorProto, helper

    def info(name: str, elem: int, dims: list[Any]) -> Any:
        return helper.make_tensor_value_info(name, elem, dims)

    inputs = [
        info("flags", TensorProto.BOOL, ["batch", 3]),
        info("half", TensorProto.FLOAT16, [None, 2]),
        info("text", TensorProto.STRING, [None]),
        info("small", TensorProto.INT8, ["batch", 2]),
        info("count", TensorProto.INT64, ["n"]),
    ]
    one = helper.make_tensor("one", TensorProto.INT64, [], [1])
    nodes = [
        helper.make_node("Not", ["flags"], ["not_flags"]),
        helper.make_node("Add", ["half", "half"], ["half_doubled"]),
        helper.make_node("Cast", ["half"], ["half_as_fp32"], to=TensorProto.FLOAT),
        helper.make_node("Identity", ["text"], ["text_out"]),
        helper.make_node("Identity", ["small"], ["small_int8"]),
        helper.make_node("Add", ["count", "one"], ["count_plus_one"]),
    ]
    outputs = [
        info("not_flags", TensorProto.BOOL, ["batch", 3]),
        info("half_doubled", TensorProto.FLOAT16, [None, 2]),
        info("half_as_fp32", TensorProto.FLOAT, [None, 2]),
        info("text_out", TensorProto.STRING, [None]),
        info("small_int8", TensorProto.INT8, ["batch", 2]),
        info("count_plus_one", TensorProto.INT64, ["n"]),
    ]
    for suffix, target in CASTS.items():
        elem = getattr(TensorProto, target)
        name = f"small_as_{suffix}"
        nodes.append(helper.make_node("Cast", ["small"], [name], to=elem))
        outputs.append(info(name, elem, ["batch", 2]))
    graph = helper.make_graph(nodes, "typed", inputs, outputs, initializer=[one])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnx.helper"
    )
    model.ir_version = 8  # the IR of opset 17
    return model


def write_typed(path: Path) -> None:
    """The typed graph, checked by onnx's checker."""
    import onnx

    typed = typed_graph()
    onnx.checker.check_model(typed)
    onnx.save_model(typed, path)


def write(out: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Write the ONNX samples (or ``only`` those) under ``out/onnx/``.

    Returns name -> model directory. ``iris-mlp`` alone needs torch.
    """
    import onnx

    writers = {
        "iris-pipeline": lambda path: onnx.save_model(iris_pipeline_onnx(), path),
        "iris-mlp": write_iris_mlp,
        "typed": write_typed,
    }
    dirs = {name: out / "onnx" / name for name in chosen(NAMES, only)}
    for name, directory in dirs.items():
        directory.mkdir(parents=True, exist_ok=True)
        writers[name](directory / "model.onnx")
    return dirs
