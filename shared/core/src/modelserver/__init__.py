"""modelserver: the shared serving core of the per-framework runtimes.

A runtime subclasses :class:`modelserver.model.Model` and calls
:func:`modelserver.cli.run`; everything else (protocols, server, lifecycle)
lives here.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
