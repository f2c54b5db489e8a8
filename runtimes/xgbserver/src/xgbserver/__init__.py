"""xgbserver: XGBoost boosters on the modelserver core."""

from .model import XGBoostModel

__all__ = ["XGBoostModel"]
