"""``python -m tfserver``: the TensorFlow runtime's entry point."""

import sys

from modelserver import run

from .model import TFModel


def main() -> None:
    sys.exit(run(TFModel, prog="tfserver"))


if __name__ == "__main__":
    main()
