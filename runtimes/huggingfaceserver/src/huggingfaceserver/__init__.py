"""huggingfaceserver: transformers models (encoders and generators) on the core."""

from .offline import go_offline

go_offline()

from .model import HuggingFaceModel  # noqa: E402 (after the offline switches)
from .settings import HuggingFaceSettings  # noqa: E402

__all__ = ["HuggingFaceModel", "HuggingFaceSettings"]
