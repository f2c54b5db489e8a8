"""``python -m huggingfaceserver``: the Hugging Face runtime's entry point.

``--model_id`` (or ``MODEL_ID``), as KServe's runtime takes it, replaces
``--model_dir``: it is resolved to a local directory here, before the core
looks for the model, and a Hub id with no local copy ends the start with the
reason (exit status 2).
"""

import argparse
import logging
import os
import sys

from modelserver import ModelLoadError, run

from .model import HuggingFaceModel
from .offline import resolve


def _with_model_dir(argv: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--model_id", default=os.environ.get("MODEL_ID"))
    parser.add_argument("--model_revision", default=os.environ.get("MODEL_REVISION"))
    known, _ = parser.parse_known_args(argv)
    if not known.model_id:
        return argv
    # The last --model_dir wins (Settings), so the resolved one goes last.
    return [*argv, f"--model_dir={resolve(known.model_id, known.model_revision)}"]


def main() -> None:
    try:
        argv = _with_model_dir(sys.argv[1:])
    except ModelLoadError as exc:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("modelserver").error("cannot start: %s", exc)
        sys.exit(2)
    sys.exit(run(HuggingFaceModel, prog="huggingfaceserver", argv=argv))


if __name__ == "__main__":
    main()
