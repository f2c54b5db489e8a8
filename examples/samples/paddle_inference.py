"""Paddle sample models, written with ``paddle.jit.save`` in both inference layouts.

    OUT/paddle/iris-mlp/             model.json + model.pdiparams (Paddle 3's PIR program)
        an MLP trained on iris: input "x" FP32 [-1, 4] -> softmax probabilities [-1, 3]
    OUT/paddle/iris-mlp-legacy/      model.pdmodel + model.pdiparams (+ model.pdiparams.info)
        the same trained weights in the legacy ProgramDesc layout
    OUT/paddle/two-io/               model.json + model.pdiparams
        inputs "a" [-1, 4] and "b" [-1, 2]; outputs a + proj(b) [-1, 4] and a[:, :2] * b [-1, 2]
    OUT/paddle/two-io-legacy/        the same, legacy layout

Paddle 3 writes PIR unless ``FLAGS_enable_pir_api=0`` is set before paddle is
imported (switching inside a process breaks many operators), so the legacy
files are written by this file run as a script in a child process, from the
weights trained here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Collection
from pathlib import Path

import numpy as np

with warnings.catch_warnings():
    # Paddle warns on import that ccache (for building custom C++ ops) is missing.
    warnings.filterwarnings("ignore", message="No ccache found")
    import paddle
    from paddle.static import InputSpec

SEED = 0
EPOCHS = 300


class IrisMLP(paddle.nn.Layer):
    """4 features -> 16 ReLU -> 3 class probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = paddle.nn.Linear(4, 16)
        self.out = paddle.nn.Linear(16, 3)

    def logits(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.out(paddle.nn.functional.relu(self.hidden(x)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.nn.functional.softmax(self.logits(x))


class TwoInTwoOut(paddle.nn.Layer):
    """Two named inputs, two outputs of different widths: every one must reach the client."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = paddle.nn.Linear(2, 4)

    def forward(self, a: paddle.Tensor, b: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        return a + self.proj(b), a[:, :2] * b


#: sample name (PIR layout) -> (layer class, input specs)
SPECS = {
    "iris-mlp": (IrisMLP, [InputSpec([None, 4], "float32", "x")]),
    "two-io": (
        TwoInTwoOut,
        [InputSpec([None, 4], "float32", "a"), InputSpec([None, 2], "float32", "b")],
    ),
}
LEGACY = "-legacy"
NAMES = (*SPECS, *(f"{name}{LEGACY}" for name in SPECS))


def train_iris_mlp() -> IrisMLP:
    """Full-batch Adam on iris with a fixed seed: the same weights every run."""
    from sklearn.datasets import load_iris

    paddle.seed(SEED)
    X, y = load_iris(return_X_y=True)
    features = paddle.to_tensor(X.astype(np.float32))
    labels = paddle.to_tensor(y.astype(np.int64))
    model = IrisMLP()
    optimizer = paddle.optimizer.Adam(learning_rate=0.02, parameters=model.parameters())
    for _ in range(EPOCHS):
        loss = paddle.nn.functional.cross_entropy(model.logits(features), labels)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
    return model


def two_in_two_out() -> TwoInTwoOut:
    paddle.seed(SEED)
    return TwoInTwoOut()


def save(layer: paddle.nn.Layer, name: str, directory: Path) -> Path:
    """``paddle.jit.save`` to ``directory/model.*`` in the layout this process writes."""
    layer.eval()
    directory.mkdir(parents=True, exist_ok=True)
    paddle.jit.save(layer, str(directory / "model"), input_spec=SPECS[name][1])
    return directory


def _write_legacy(layers: dict[str, paddle.nn.Layer], root: Path) -> dict[str, Path]:
    """Write each layer's weights in the legacy layout, from a child without PIR."""
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.npz"
        arrays = {
            f"{name}:{key}": value.numpy()
            for name, layer in layers.items()
            for key, value in layer.state_dict().items()
        }
        np.savez(weights, **arrays)
        env = {**os.environ, "FLAGS_enable_pir_api": "0", "GLOG_minloglevel": "2"}
        done = subprocess.run(
            [sys.executable, __file__, str(weights), str(root)],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"writing the legacy Paddle samples failed:\n{done.stderr}")
    return {f"{name}{LEGACY}": root / f"{name}{LEGACY}" for name in layers}


def write(out: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Write the Paddle samples (or ``only`` those) under ``out/paddle``.

    Returns name -> model directory.
    """
    from samples import chosen

    root = out / "paddle"
    wanted = chosen(NAMES, only)
    makers = {"iris-mlp": train_iris_mlp, "two-io": two_in_two_out}
    needed = {name.removesuffix(LEGACY) for name in wanted}
    layers = {name: make() for name, make in makers.items() if name in needed}
    samples = {
        name: save(layer, name, root / name) for name, layer in layers.items() if name in wanted
    }
    legacy = {name: layer for name, layer in layers.items() if f"{name}{LEGACY}" in wanted}
    if legacy:
        samples.update(_write_legacy(legacy, root))
    return samples


def _legacy_main(weights: Path, root: Path) -> None:
    """In the child (PIR off): rebuild each layer from its weights and save it."""
    arrays = np.load(weights)
    written = {key.split(":", 1)[0] for key in arrays.files}
    for name, (cls, _specs) in SPECS.items():
        if name not in written:
            continue
        layer = cls()
        prefix = f"{name}:"
        layer.set_state_dict(
            {k.removeprefix(prefix): arrays[k] for k in arrays.files if k.startswith(prefix)}
        )
        save(layer, name, root / f"{name}{LEGACY}")


if __name__ == "__main__":
    _legacy_main(Path(sys.argv[1]), Path(sys.argv[2]))
