"""No model hub, ever: the offline switches, and ``--model_id`` resolved to a local directory.

The switches are set before transformers or huggingface_hub is imported, so
neither ever opens a connection (nor sends telemetry). ``--model_id`` is a
local directory, or a Hub id whose files are already in the local Hugging
Face cache (``HF_HOME``, ``HF_HUB_CACHE``); an id without a local copy is a
startup error that says how to provide one, never a download.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from modelserver import ModelLoadError

SWITCHES = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
}
#: What a Hub repository id looks like: ``name`` or ``owner/name``.
HUB_ID = re.compile(r"^[\w.\-]+(/[\w.\-]+)?$")


def go_offline() -> None:
    """Set the offline switches (whatever the environment said)."""
    os.environ.update(SWITCHES)


def resolve(model_id: str, revision: str | None = None) -> Path:
    """The local directory of ``model_id``: itself, or its copy in the Hugging Face cache."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or model_id.startswith(".") or not HUB_ID.match(model_id):
        raise ModelLoadError(f"--model_id {model_id}: no such directory")
    go_offline()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(model_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        where = (
            os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        )
        raise ModelLoadError(
            f"--model_id {model_id}{f' (revision {revision})' if revision else ''} has no local "
            f"copy in the Hugging Face cache ({where}), and this server never downloads "
            "(no model hub is reachable): save the model with save_pretrained and pass its "
            f"directory as --model_dir, or fill the cache where a hub is reachable ({exc})"
        ) from None
