"""``python -m pmmlserver``: the PMML runtime's entry point."""

import sys

from modelserver import run

from .model import PMMLModel


def main() -> None:
    sys.exit(run(PMMLModel, prog="pmmlserver"))


if __name__ == "__main__":
    main()
