"""Frameworks imported without the integrations a server never uses (cold start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from modelserver import without_optional


def test_a_hidden_module_cannot_be_imported_in_the_block_and_can_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "optional_extra.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with without_optional("optional_extra"), pytest.raises(ImportError):
        import optional_extra
    assert "optional_extra" not in sys.modules
    import optional_extra

    assert optional_extra.VALUE == 42
    monkeypatch.delitem(sys.modules, "optional_extra")


def test_a_module_already_imported_stays_visible() -> None:
    import json

    with without_optional("json"):
        import json as again
    assert again is json and sys.modules["json"] is json


@pytest.mark.parametrize("runtime", ["xgbserver", "lgbserver"])
def test_booster_runtimes_start_without_scikit_learn(runtime: str) -> None:
    """xgboost and lightgbm would import scikit-learn (about a second) for classes never used."""
    code = f"import sys, {runtime}.__main__; print('sklearn' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False", out.stderr
