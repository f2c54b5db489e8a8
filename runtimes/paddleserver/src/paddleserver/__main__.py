"""``python -m paddleserver``: the Paddle runtime's entry point."""

import sys

from modelserver import run

from .model import PaddleModel


def main() -> None:
    sys.exit(run(PaddleModel, prog="paddleserver"))


if __name__ == "__main__":
    main()
