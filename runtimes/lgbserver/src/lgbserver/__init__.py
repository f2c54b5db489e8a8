"""lgbserver: LightGBM boosters on the modelserver core."""

from .model import LightGBMModel

__all__ = ["LightGBMModel"]
