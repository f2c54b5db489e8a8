"""pmmlserver: PMML models on the modelserver core."""

from .model import PMMLModel

__all__ = ["PMMLModel"]
