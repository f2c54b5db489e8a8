"""``python -m lgbserver``: the LightGBM runtime's entry point."""

import sys

from modelserver import run

from .model import LightGBMModel


def main() -> None:
    sys.exit(run(LightGBMModel, prog="lgbserver"))


if __name__ == "__main__":
    main()
