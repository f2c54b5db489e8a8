"""tfserver: TensorFlow SavedModels on the modelserver core."""

from .model import TFModel

__all__ = ["TFModel"]
