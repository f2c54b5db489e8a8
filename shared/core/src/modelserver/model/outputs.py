"""The outputs a model offers, declared once: one table from which everything derives.

Each entry says what an output is called, its datatype and shape (for
metadata), how it is computed and whether a request that names no outputs
gets it. Request output selection, model metadata, the ``default_outputs``
metadata parameter and v1 answers are all read from this table, so they
cannot disagree.

An output is computed one of two ways:

* by its own function of the model's input (``compute=``), when outputs
  are separate calls (scikit-learn's ``predict`` and ``predict_proba``);
* jointly (no ``compute``): one ``postprocess(predict(inputs))`` per predict
  call gives every such output, as a mapping by name (or, for a model with a
  single joint output, the array itself).

A table made with ``dynamic=True`` has no fixed names: the model's predict
returns a mapping whose names depend on the request (one output per input,
say), every one of them is the default, and a request may select any of
them.

KServe's scikit-learn, XGBoost and LightGBM servers call their one output
``output-0``, and requests written for them ask for it by that name. So a
request may name ``output-N`` for the N-th default output (unless the model
has an output of that very name), and is answered under the name it used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput

#: An output's own computation: the model's input -> array-like.
Compute = Callable[[Any], Any]

_ALIAS = re.compile(r"output-(0|[1-9][0-9]{0,3})")


def alias_index(name: str) -> int | None:
    """N for KServe's default output name ``output-N``; None for any other name."""
    found = _ALIAS.fullmatch(name)
    return int(found.group(1)) if found is not None else None


@dataclass(frozen=True, slots=True)
class Output:
    """One output of the table."""

    name: str
    #: Open Inference Protocol datatype; "" when the model does not say (not in metadata).
    datatype: str
    #: Shape with -1 for a dynamic dimension (the first is the batch).
    shape: tuple[int, ...]
    #: Its own function of the input; None: taken from the joint predict pass.
    compute: Compute | None = None
    #: Returned to a request that names no outputs.
    default: bool = True

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class Outputs:
    """The output table of one model, in declaration order."""

    __slots__ = ("_by_name", "dynamic")

    def __init__(self, dynamic: bool = False) -> None:
        self._by_name: dict[str, Output] = {}
        self.dynamic = dynamic

    def add(
        self,
        name: str,
        datatype: str = "",
        shape: Sequence[int] = (-1,),
        compute: Compute | None = None,
        *,
        default: bool = True,
    ) -> Output:
        """Declare an output (a second declaration of a name replaces the first)."""
        output = Output(name, datatype, tuple(int(d) for d in shape), compute, default)
        self._by_name[name] = output
        return output

    def set_defaults(self, names: Sequence[str]) -> None:
        """Make exactly ``names`` the default outputs (e.g. probabilities on request)."""
        unknown = [n for n in names if n not in self._by_name]
        if unknown:
            raise ValueError(f"no output named {', '.join(unknown)}")
        for name, output in self._by_name.items():
            self._by_name[name] = Output(
                output.name, output.datatype, output.shape, output.compute, name in names
            )

    def clear(self) -> None:
        self._by_name.clear()

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Output:
        return self._by_name[name]

    def get(self, name: str) -> Output | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[Output]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    @property
    def joint(self) -> list[str]:
        """Outputs computed together by the joint predict pass."""
        return [o.name for o in self._by_name.values() if o.compute is None]

    def defaults(self) -> list[str]:
        return [o.name for o in self._by_name.values() if o.default]

    def metadata(self) -> list[dict[str, Any]]:
        """Model metadata's ``outputs``: every output whose datatype is declared."""
        return [o.metadata() for o in self._by_name.values() if o.datatype]

    def resolve(self, name: str) -> str | None:
        """The output a requested name means: itself, or the default ``output-N`` names."""
        if name in self._by_name:
            return name
        index = alias_index(name)
        if index is None:
            return None
        defaults = self.defaults()
        return defaults[index] if index < len(defaults) else None

    def select(self, requested: Sequence[str] | None, model: str) -> list[str]:
        """The outputs a request gets, one per name it asked for, else the defaults.

        400 naming the unknown ones (and what is available) when it asked for
        an output this model does not have.
        """
        if not requested:
            return self.defaults()
        if len(set(requested)) != len(requested):
            twice = sorted({n for n in requested if list(requested).count(n) > 1})
            raise InvalidInput(
                f"Output {', '.join(repr(n) for n in twice)} requested more than once"
            )
        if self.dynamic:
            return list(requested)
        names: list[str] = []
        unknown: list[str] = []
        for name in requested:
            found = self.resolve(name)
            if found is None:
                unknown.append(name)
            else:
                names.append(found)
        if unknown:
            raise InvalidInput(
                f"Model '{model}' has no output named {', '.join(repr(n) for n in unknown)}; "
                f"available: {', '.join(self._by_name)} (or output-N, the N-th default)"
            )
        return names
