"""``python -m mlflowserver``: the MLflow runtime's entry point."""

import sys

from modelserver import run

from .model import MLflowModel


def main() -> None:
    sys.exit(run(MLflowModel, prog="mlflowserver"))


if __name__ == "__main__":
    main()
