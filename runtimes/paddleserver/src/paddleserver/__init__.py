"""paddleserver: Paddle inference models on the modelserver core."""

from .model import PaddleModel

__all__ = ["PaddleModel"]
