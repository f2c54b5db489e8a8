"""sklearnserver: scikit-learn models on the modelserver core."""

from .model import SKLearnModel

__all__ = ["SKLearnModel"]
