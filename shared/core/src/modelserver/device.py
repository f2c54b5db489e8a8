"""``--device auto|cuda|cpu``: one flag and one rule for every runtime that can use a GPU.

The rule: ``cpu`` is the CPU; ``cuda`` is CUDA or a startup error, never a
quiet fallback (a pod that asked for a GPU and serves from the CPU is slow in
a way nobody notices until it is under load); ``auto`` is CUDA where the
framework can use it here, else the CPU. What "can use it" means is the
framework's to say (a provider list, ``torch.cuda.is_available()``), so a
runtime asks its framework and hands the answer to :func:`choose_device`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import ModelLoadError
from .settings import Settings, setting

Device = Literal["auto", "cuda", "cpu"]


@dataclass
class DeviceSettings(Settings):
    """The shared flags and ``--device``: the base of a GPU-capable runtime's settings."""

    device: Literal["auto", "cuda", "cpu"] = setting(
        "auto",
        "where the model runs: cuda (fail at startup if CUDA cannot be used), cpu, "
        "or auto (CUDA where usable, else the CPU)",
    )


def choose_device(requested: str, cuda_problem: str | None, subject: str) -> Literal["cuda", "cpu"]:
    """``"cuda"`` or ``"cpu"`` for ``--device requested``.

    ``cuda_problem`` is None when the framework can run ``subject`` (a model
    file's name) on CUDA here, else why it cannot; with ``--device cuda``
    that reason ends the startup error.
    """
    if requested == "cpu":
        return "cpu"
    if cuda_problem is None:
        return "cuda"
    if requested == "cuda":
        raise ModelLoadError(f"Cannot serve {subject} with --device cuda: {cuda_problem}")
    return "cpu"
