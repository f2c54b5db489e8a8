"""``python -m xgbserver``: the XGBoost runtime's entry point."""

import sys

from modelserver import run

from .model import XGBoostModel


def main() -> None:
    sys.exit(run(XGBoostModel, prog="xgbserver"))


if __name__ == "__main__":
    main()
