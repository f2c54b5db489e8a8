"""``python -m sklearnserver``: the scikit-learn runtime's entry point."""

import sys

from modelserver import run

from .model import SKLearnModel


def main() -> None:
    sys.exit(run(SKLearnModel, prog="sklearnserver"))


if __name__ == "__main__":
    main()
