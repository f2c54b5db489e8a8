"""Finding model files in a model directory: one model, several, or an error that says why."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelserver.errors import ModelLoadError
from modelserver.model.discovery import discover_models, find_model_file, validate_model_name

EXT = (".joblib", ".pkl", ".pickle")


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


# -- find_model_file -------------------------------------------------------------------------


def test_single_file(tmp_path: Path) -> None:
    model = touch(tmp_path / "model.joblib")
    touch(tmp_path / "README.md")
    assert find_model_file(tmp_path, EXT) == model


def test_extension_match_ignores_case(tmp_path: Path) -> None:
    model = touch(tmp_path / "MODEL.PKL")
    assert find_model_file(str(tmp_path), EXT) == model


def test_directory_named_like_a_model_is_not_a_candidate(tmp_path: Path) -> None:
    (tmp_path / "looks.pkl").mkdir()
    model = touch(tmp_path / "real.pickle")
    assert find_model_file(tmp_path, EXT) == model


def test_no_candidate_lists_what_was_found(tmp_path: Path) -> None:
    touch(tmp_path / "notes.txt")
    touch(tmp_path / "weights.bin")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ModelLoadError) as exc:
        find_model_file(tmp_path, EXT)
    message = str(exc.value)
    assert "No model file" in message
    assert ".joblib" in message and ".pkl" in message
    assert str(tmp_path) in message
    assert "notes.txt" in message and "weights.bin" in message and "sub/" in message


def test_empty_directory_says_nothing_was_found(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="found: nothing"):
        find_model_file(tmp_path, EXT)


def test_two_candidates_are_named(tmp_path: Path) -> None:
    touch(tmp_path / "a.joblib")
    touch(tmp_path / "b.pkl")
    with pytest.raises(ModelLoadError) as exc:
        find_model_file(tmp_path, EXT)
    message = str(exc.value)
    assert "Several model files" in message
    assert "a.joblib" in message and "b.pkl" in message


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_model_directory_must_be_a_directory(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "nope"
    if kind == "file":
        touch(target)
    with pytest.raises(ModelLoadError, match="does not exist or is not a directory"):
        find_model_file(target, EXT)
    with pytest.raises(ModelLoadError, match="does not exist or is not a directory"):
        discover_models(target, "m", EXT)


# -- discover_models ---------------------------------------------------------------------------


def test_files_at_the_root_are_one_model_named_by_the_flag(tmp_path: Path) -> None:
    touch(tmp_path / "model.joblib")
    (tmp_path / "other").mkdir()
    touch(tmp_path / "other" / "x.pkl")  # ignored: the root itself is the model
    assert discover_models(tmp_path, "iris", EXT) == {"iris": tmp_path}


def test_sub_folders_are_one_model_each(tmp_path: Path) -> None:
    touch(tmp_path / "iris" / "model.joblib")
    touch(tmp_path / "wine" / "model.pkl")
    touch(tmp_path / "wine" / "extra.pkl")  # a second candidate is the loader's problem
    (tmp_path / "empty").mkdir()
    touch(tmp_path / "docs" / "README.md")
    touch(tmp_path / ".hidden" / "model.pkl")
    touch(tmp_path / "notes.txt")
    found = discover_models(tmp_path, "ignored", EXT)
    assert found == {"iris": tmp_path / "iris", "wine": tmp_path / "wine"}
    assert list(found) == ["iris", "wine"]


def test_nothing_anywhere_lists_the_root(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "notes.txt")
    touch(tmp_path / "weights.h5")
    with pytest.raises(ModelLoadError) as exc:
        discover_models(tmp_path, "m", EXT)
    message = str(exc.value)
    assert "or its sub-folders" in message
    assert "a/" in message and "weights.h5" in message


def test_no_extensions_means_the_root_is_the_model(tmp_path: Path) -> None:
    assert discover_models(tmp_path, "custom", ()) == {"custom": tmp_path}


def test_invalid_model_name_from_the_flag(tmp_path: Path) -> None:
    touch(tmp_path / "model.pkl")
    with pytest.raises(ModelLoadError, match="Invalid model name"):
        discover_models(tmp_path, "../etc", EXT)


@pytest.mark.parametrize("name", ["bad name", "-dash", "é"])
def test_invalid_sub_folder_name(tmp_path: Path, name: str) -> None:
    touch(tmp_path / "good" / "model.pkl")
    touch(tmp_path / name / "model.pkl")
    with pytest.raises(ModelLoadError, match="Invalid model name"):
        discover_models(tmp_path, "m", EXT)


# -- validate_model_name -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["iris", "a", "Model_1.v2-final", "0", "x" * 128, "a..b"])
def test_valid_names(name: str) -> None:
    assert validate_model_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "/",
        "a/b",
        "../x",
        "..\\x",
        "a\\b",
        ".hidden",
        "-x",
        "_x",
        "a b",
        "x" * 129,
        "a:b",
        "a?b",
        "a%2Fb",
        "a\x00",
        "\niris",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(ModelLoadError, match="Invalid model name"):
        validate_model_name(name)


@pytest.mark.parametrize("name", ["iris\n", "iris\r\n", "a\nb"])
def test_names_with_line_breaks_are_rejected(name: str) -> None:
    with pytest.raises(ModelLoadError):
        validate_model_name(name)


# -- whole file names and URIs ---------------------------------------------------------------

MLMODEL = ("MLmodel",)


def test_a_whole_file_name_is_matched_exactly(tmp_path: Path) -> None:
    model = touch(tmp_path / "MLmodel")
    touch(tmp_path / "model.mlmodel")  # Core ML's suffix: not MLflow's file
    touch(tmp_path / "copyMLmodel")
    assert find_model_file(tmp_path, MLMODEL) == model


def test_sub_folders_with_a_whole_file_name_are_models(tmp_path: Path) -> None:
    touch(tmp_path / "iris" / "MLmodel")
    touch(tmp_path / "wine" / "MLmodel")
    touch(tmp_path / "docs" / "mlmodel")
    found = discover_models(tmp_path, "ignored", MLMODEL)
    assert found == {"iris": tmp_path / "iris", "wine": tmp_path / "wine"}
    touch(tmp_path / "MLmodel")
    assert discover_models(tmp_path, "root", MLMODEL) == {"root": tmp_path}


@pytest.mark.parametrize(
    ("uri", "hint"),
    [
        ("models:/iris/1", "mlflow artifacts download"),
        ("runs:/0a1b/model", "mlflow artifacts download"),
        ("s3://bucket/iris", "storage initializer"),
        ("gs://bucket/iris", "storage initializer"),
    ],
)
def test_a_uri_is_refused_with_what_to_do(uri: str, hint: str) -> None:
    with pytest.raises(ModelLoadError) as exc:
        discover_models(uri, "m", MLMODEL)
    message = str(exc.value)
    assert repr(uri) in message and "is a URI, not a directory" in message
    assert "never downloads" in message and hint in message


def test_a_directory_whose_name_looks_like_a_uri_is_a_directory(tmp_path: Path) -> None:
    odd = tmp_path / "models:"
    touch(odd / "MLmodel")
    assert discover_models(odd, "m", MLMODEL) == {"m": odd}
