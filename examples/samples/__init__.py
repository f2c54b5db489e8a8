"""Sample-model generators, one module per framework (see examples/sample_models.py)."""
