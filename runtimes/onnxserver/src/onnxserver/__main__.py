"""``python -m onnxserver``: the ONNX runtime's entry point."""

import sys

from modelserver import run

from .model import ONNXModel


def main() -> None:
    sys.exit(run(ONNXModel, prog="onnxserver"))


if __name__ == "__main__":
    main()
