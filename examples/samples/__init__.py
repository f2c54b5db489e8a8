"""Sample-model generators, one module per framework (see examples/sample_models.py).

Each module lists its samples in ``NAMES`` and writes them with ``write(out,
only=None)``: every one, or only the names in ``only``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def chosen(names: Sequence[str], only: Collection[str] | None) -> list[str]:
    """The samples of ``names`` to write: all, or those in ``only`` (ValueError for others)."""
    if only is None:
        return list(names)
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise ValueError(f"no sample {', '.join(unknown)}; there are {', '.join(names)}")
    return [name for name in names if name in only]
