"""``python -m torchserver``: the PyTorch runtime's entry point."""

import sys

from modelserver import run

from .model import TorchModel


def main() -> None:
    sys.exit(run(TorchModel, prog="torchserver"))


if __name__ == "__main__":
    main()
