"""Importing a framework without the optional integrations a server never uses.

XGBoost and LightGBM import scikit-learn (and with it SciPy's stack and
pandas) at their own import when it is installed, only to offer their
scikit-learn estimator classes. A runtime that serves a Booster never uses
them, yet pays about a second of start-up for them on a small machine
(``python -X importtime``). ``without_optional("sklearn")`` around the
framework's import makes the framework see scikit-learn as not installed;
afterwards ``import sklearn`` works as usual for anyone who needs it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def without_optional(*modules: str) -> Iterator[None]:
    """Within the block, importing any of ``modules`` raises ImportError.

    A module already imported stays visible (hiding it would gain nothing
    and could break its users).
    """
    hidden = [name for name in modules if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not found"
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
