"""``--device auto|cuda|cpu``: the flag every GPU-capable runtime shares, and its rule."""

from __future__ import annotations

import pytest
from modelserver import DeviceSettings, ModelLoadError, choose_device

NO_GPU = "this framework build has no CUDA"


def test_cpu_is_the_cpu_even_where_cuda_works() -> None:
    assert choose_device("cpu", None, "model.x") == "cpu"
    assert choose_device("cpu", NO_GPU, "model.x") == "cpu"


def test_auto_takes_cuda_where_it_works_and_the_cpu_elsewhere() -> None:
    assert choose_device("auto", None, "model.x") == "cuda"
    assert choose_device("auto", NO_GPU, "model.x") == "cpu"


def test_cuda_without_cuda_is_a_load_error_naming_file_and_reason() -> None:
    assert choose_device("cuda", None, "model.x") == "cuda"
    with pytest.raises(ModelLoadError) as info:
        choose_device("cuda", NO_GPU, "model.x")
    assert str(info.value) == f"Cannot serve model.x with --device cuda: {NO_GPU}"


def test_the_flag_and_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVICE", raising=False)
    assert DeviceSettings.parse([]).device == "auto"
    assert DeviceSettings.parse(["--device=cpu"]).device == "cpu"
    monkeypatch.setenv("DEVICE", "cuda")
    assert DeviceSettings.parse([]).device == "cuda"
    assert DeviceSettings.parse(["--device", "cpu"]).device == "cpu"
    with pytest.raises(SystemExit) as info:
        DeviceSettings.parse(["--device=gpu"])
    assert info.value.code == 2
