"""A user's own model class served by the core: see README.md in this folder.

A package so the tests and ``examples/sample_models.py`` (``examples/`` on
the path) can import ``custom_model.train_iris``; ``iris_custom.py`` also
works as a top-level module with this folder itself on ``PYTHONPATH``.
"""
