"""mlflowserver: MLflow models on the modelserver core."""

from .model import MLflowModel

__all__ = ["MLflowModel"]
