"""torchserver: PyTorch models (TorchScript, torch.export, AOTInductor, eager) on the core."""

from .model import TorchModel
from .settings import TorchSettings

__all__ = ["TorchModel", "TorchSettings"]
