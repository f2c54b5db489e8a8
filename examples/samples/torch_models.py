"""PyTorch samples for torchserver: two small networks, each in every format it loads.

    OUT/torch/iris-torchscript/model.pt       IrisMLP (4 -> 16 -> 3, standardising inside)
                                              traced: input "features" FP32 [-1, 4]; outputs
                                              "logits", "probabilities" FP32 [-1, 3] (a dict)
    OUT/torch/iris-export/model.pt2           the same, torch.export with a dynamic batch
    OUT/torch/iris-aoti/model.pt2             that program through aoti_compile_and_package
                                              (a bare package: no dtypes or shapes recorded)
    OUT/torch/iris-state-dict/model.safetensors  its weights (with --model_class
                                              samples.torch_models:IrisMLP)
    OUT/torch/digits-torchscript/model.pt     DigitsCNN (conv, pool, linear) on scikit-learn's
                                              8x8 digits, scripted: input "images" [N, 1, 8, 8];
                                              outputs "output-0" (logits) and "output-1"
                                              (probabilities), a tuple
    OUT/torch/digits-export/model.pt2         the same, torch.export with a dynamic batch
    OUT/torch/digits-aoti/model.pt2           compiled with AOTInductor and packaged with its
                                              exported program (names, dtypes, shapes recorded)
    OUT/torch/digits-state-dict/model.pt      torch.save(state_dict) (with --model_class
                                              samples.torch_models:DigitsCNN)
    OUT/torch/typed-export/model.pt2          Typed: FP16, bfloat16, BOOL, INT8 and INT64 inputs,
                                              six outputs as a list (output-0 ... output-5)
    OUT/torch/typed-torchscript/model.pt      the same, traced

Fixed seeds, CPU only. The AOTInductor packages are compiled here (a C++
compiler is needed to build them, not to serve them: the package holds the
compiled library) and take most of the time, some 15 to 40 s each; without a
compiler (``$CXX``, else ``g++``) they are left out, with a note on stderr.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import chosen

#: What this generator imports, pinned (test dependencies, not the runtime's).
NEEDS = ("torch==2.13.0", "safetensors==0.8.0", "scikit-learn==1.9.1")

SEED = 0


class IrisMLP(nn.Module):
    """Standardises inside the network, so clients send raw measurements."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(4))
        self.register_buffer("std", torch.ones(4))
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net((features - self.mean) / self.std)
        return {"logits": logits, "probabilities": torch.softmax(logits, dim=1)}


class DigitsCNN(nn.Module):
    """8x8 grey images (0-16, scikit-learn's digits) -> ten classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.out = nn.Linear(8 * 4 * 4, 10)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.out(torch.flatten(self.conv(images / 16.0), 1))
        return logits, torch.softmax(logits, dim=1)


class Typed(nn.Module):
    """One input of each kind torch needs care with; a list of outputs of other dtypes."""

    def forward(
        self,
        half: torch.Tensor,
        brain: torch.Tensor,
        flags: torch.Tensor,
        small: torch.Tensor,
        count: torch.Tensor,
    ) -> list[torch.Tensor]:
        return [
            half * 2,
            brain * 2,
            ~flags,
            small.to(torch.int16) * 200,
            count + 1,
            half.float().sum(1) + brain.float().sum(1),
        ]


def _fit(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, epochs: int) -> None:
    """Full-batch Adam on cross-entropy of the logits (the first output)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(epochs):
        optimizer.zero_grad()
        answer = model(inputs)
        logits = answer["logits"] if isinstance(answer, dict) else answer[0]
        nn.functional.cross_entropy(logits, labels).backward()
        optimizer.step()
    model.eval()


def train_iris_mlp() -> tuple[IrisMLP, torch.Tensor]:
    """The trained MLP and two example rows (onnx_models exports the same network)."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    features = torch.tensor(X, dtype=torch.float32)
    torch.manual_seed(SEED)
    model = IrisMLP()
    model.mean.copy_(features.mean(0))
    model.std.copy_(features.std(0))
    _fit(model, features, torch.tensor(y), 150)
    return model, features[:2]


def train_digits_cnn() -> tuple[DigitsCNN, torch.Tensor]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    images = torch.tensor(X.reshape(-1, 1, 8, 8), dtype=torch.float32)
    torch.manual_seed(SEED)
    model = DigitsCNN()
    _fit(model, images, torch.tensor(y), 60)
    return model, images[:2]


def typed_example() -> tuple[torch.Tensor, ...]:
    return (
        torch.tensor([[0.5, -1.25], [1000.0, 0.000123]], dtype=torch.float16),
        torch.tensor([[1.5, -2.0], [3.25, 1e-3]], dtype=torch.bfloat16),
        torch.tensor([[True, False, True], [False, False, True]]),
        torch.tensor([[-128, 5], [127, 0]], dtype=torch.int8),
        torch.tensor([7, -3], dtype=torch.int64),
    )


def export(model: nn.Module, example: tuple[torch.Tensor, ...]) -> Any:
    """``torch.export`` with the first dimension of every input dynamic (the batch)."""
    import inspect

    batch = torch.export.Dim("batch", min=1)
    names = list(inspect.signature(model.forward).parameters)
    shapes = {name: {0: batch} for name in names}
    return torch.export.export(model, example, dynamic_shapes=shapes)


def _quietly(build: Any, *args: Any, **kwargs: Any) -> Any:
    """Compile without inductor's progress warnings on stderr."""
    quiet = logging.getLogger("torch._inductor")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build(*args, **kwargs)
    finally:
        quiet.setLevel(level)


#: The C++ compiler torch's inductor runs (its own default when CXX is unset).
CXX = os.environ.get("CXX", "g++")


def compiler() -> str | None:
    """The compiler AOTInductor needs to build a package, if this machine has it."""
    return shutil.which(CXX)


def aoti_package(program: Any, path: Path) -> None:
    """A bare package, as ``aoti_compile_and_package`` writes it."""
    _quietly(torch._inductor.aoti_compile_and_package, program, package_path=str(path))


def aoti_package_with_program(program: Any, path: Path) -> None:
    """A package that also holds the exported program, so its signature is recorded."""
    from torch.export.pt2_archive._package import package_pt2

    files = _quietly(
        torch._inductor.aot_compile,
        program.module(),
        program.example_inputs[0],
        options={"aot_inductor.package": True},
    )
    package_pt2(str(path), exported_programs=program, aoti_files=files)


def write(out: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Write the PyTorch samples under ``out/torch``; name -> model directory (``only`` those).

    The samples share their training, so all are written; ``only`` picks what is returned.
    """
    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript in favour of torch.export; models
        # written with it are still everywhere, so its samples stay.
        warnings.simplefilter("ignore", DeprecationWarning)
        written = _write(out)
    return {name: written[name] for name in chosen(list(written), only)}


def _write(out: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    root = out / "torch"
    kinds = ["torchscript", "export", "aoti", "state-dict"]
    if not compiler():
        kinds.remove("aoti")
        print(f"no C++ compiler ({CXX}): the AOTInductor samples are not built", file=sys.stderr)
    names = [f"{net}-{kind}" for net in ("iris", "digits") for kind in kinds]
    dirs = {name: root / name for name in [*names, "typed-export", "typed-torchscript"]}
    for directory in dirs.values():
        directory.mkdir(parents=True, exist_ok=True)

    iris, rows = train_iris_mlp()
    torch.jit.save(torch.jit.trace(iris, rows, strict=False), dirs["iris-torchscript"] / "model.pt")
    program = export(iris, (rows,))
    torch.export.save(program, dirs["iris-export"] / "model.pt2")
    if "iris-aoti" in dirs:
        aoti_package(program, dirs["iris-aoti"] / "model.pt2")
    weights = dirs["iris-state-dict"] / "model.safetensors"
    save_file(iris.state_dict(), weights)
    weights.chmod(0o644)  # safetensors writes 0600; an image's user 1000 must read a mount

    digits, images = train_digits_cnn()
    torch.jit.save(torch.jit.script(digits), dirs["digits-torchscript"] / "model.pt")
    program = export(digits, (images,))
    torch.export.save(program, dirs["digits-export"] / "model.pt2")
    if "digits-aoti" in dirs:
        aoti_package_with_program(program, dirs["digits-aoti"] / "model.pt2")
    torch.save(digits.state_dict(), dirs["digits-state-dict"] / "model.pt")

    typed, example = Typed().eval(), typed_example()
    torch.export.save(export(typed, example), dirs["typed-export"] / "model.pt2")
    torch.jit.save(
        torch.jit.trace(typed, example, strict=False), dirs["typed-torchscript"] / "model.pt"
    )
    return dirs


def load_with_torch(name: str, directory: Path) -> Any:
    """Sample ``name`` loaded with torch's own API, no server: the tests' reference answers
    and the benchmark's in-process baseline. Call it as ``model(*tensors)``."""
    (path,) = directory.iterdir()
    kind = name.split("-", 1)[1]
    if kind == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13: see write()
            return torch.jit.load(str(path))
    if kind == "export":
        return torch.export.load(str(path)).module()
    if kind == "aoti":
        return torch._inductor.aoti_load_package(str(path))
    module = {"iris": IrisMLP, "digits": DigitsCNN}[name.split("-")[0]]()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        module.load_state_dict(load_file(str(path)))
    else:
        module.load_state_dict(torch.load(str(path), weights_only=True))
    return module.eval()
