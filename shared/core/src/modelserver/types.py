"""The in-memory request and response every codec maps to and from.

Plain slotted dataclasses holding numpy arrays: the transports and the model
never see JSON or protobuf, and the tensor data is never copied into Python
objects on the way through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Tensor parameter set by a decoder that filled holes of a table (rows lacking
#: a column) with NaN: how many there are. A model that does not score missing
#: values refuses such a column by name.
MISSING_VALUES = "missing_values"


@dataclass(slots=True)
class Tensor:
    """A named tensor: its OIP datatype, its shape and its data in numpy.

    ``data`` always has ``shape`` as its shape; BYTES tensors hold an object
    array of ``bytes``.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for by name, with its per-output parameters."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """One inference request, whichever protocol carried it."""

    model_name: str
    inputs: list[Tensor]
    id: str | None = None
    model_version: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None


@dataclass(slots=True)
class InferResponse:
    """One inference response: the outputs in the order they were asked for."""

    model_name: str
    outputs: list[Tensor]
    id: str | None = None
    model_version: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
