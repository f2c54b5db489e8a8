"""The shared command line: KServe's flags, environment fallbacks, unknown flags."""

from __future__ import annotations

import argparse
import logging
import os

import pytest
from modelserver.cli import build_parser, parse_args, str2bool


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable a flag could fall back to leaks in from the caller's environment."""

    def add_custom(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--my_option")

    for action in build_parser("x", add_custom)._actions:
        monkeypatch.delenv(action.dest.upper(), raising=False)
    monkeypatch.delenv("CUSTOM_VAR", raising=False)


def test_defaults() -> None:
    args = parse_args("x", [])
    assert args.model_name == "model"
    assert args.model_dir == "/mnt/models"
    assert args.model_version == "1"
    assert (args.http_port, args.grpc_port) == (8080, 8081)
    assert args.host == "0.0.0.0"
    assert args.enable_grpc is True
    assert args.workers == 1
    assert args.nthread == 0
    assert args.max_threads >= 4
    assert args.predict_executor == "auto"
    assert args.grpc_max_message_length == 100 * 1024 * 1024
    assert args.max_body_size == 100 * 1024 * 1024
    assert args.grace_period == 30.0
    assert args.log_level == "info"
    assert args.access_log is False
    assert args.enable_docs_url is False


def test_kserve_runtime_command_line() -> None:
    # As a ServingRuntime passes them ({{.Name}} already substituted), then the
    # InferenceService's own args appended.
    argv = [
        "--model_name=iris",
        "--model_dir=/mnt/models",
        "--http_port=8080",
        "--grpc_port=8081",
        "--workers=2",
        "--nthread=4",
        "--max_asyncio_workers=8",
        "--enable_latency_logging=True",
        "--configure_logging=False",
        "--log_config_file=/c.yaml",
        "--access_log_format=%(h)s",
        "--predictor_host=p:80",
        "--protocol=v2",
        "--framework=sklearn",
        "--predictor_protocol=v1",
        "--predictor_use_ssl=false",
        "--predictor_request_timeout_seconds=600",
        "--predictor_request_retries=0",
        "--enable_predictor_health_check=false",
        "--grpc_max_send_message_length=1000",
        "--grpc_max_receive_message_length=1000",
    ]
    args = parse_args("x", argv)
    assert args.model_name == "iris"
    assert args.model_dir == "/mnt/models"
    assert (args.http_port, args.grpc_port) == (8080, 8081)
    assert args.workers == 2
    assert args.nthread == 4
    assert args.max_asyncio_workers == "8"
    assert args.protocol == "v2"


def test_space_separated_and_dashed_spellings() -> None:
    args = parse_args(
        "x", ["--model-name", "a", "--model-dir", "/d", "--http-port", "1", "--grpc-port", "2"]
    )
    assert (args.model_name, args.model_dir, args.http_port, args.grpc_port) == ("a", "/d", 1, 2)


@pytest.mark.parametrize(
    ("var", "value", "dest", "expected"),
    [
        ("HTTP_PORT", "9000", "http_port", 9000),
        ("GRPC_PORT", "9001", "grpc_port", 9001),
        ("MODEL_NAME", "iris", "model_name", "iris"),
        ("MODEL_DIR", "/models", "model_dir", "/models"),
        ("MODEL_VERSION", "5", "model_version", "5"),
        ("WORKERS", "3", "workers", 3),
        ("NTHREAD", "2", "nthread", 2),
        ("MAX_THREADS", "7", "max_threads", 7),
        ("GRACE_PERIOD", "2.5", "grace_period", 2.5),
        ("ENABLE_GRPC", "false", "enable_grpc", False),
        ("ENABLE_GRPC", "0", "enable_grpc", False),
        ("ACCESS_LOG", "yes", "access_log", True),
        ("ENABLE_DOCS_URL", "TRUE", "enable_docs_url", True),
        ("LOG_LEVEL", "debug", "log_level", "debug"),
        ("PREDICT_EXECUTOR", "thread", "predict_executor", "thread"),
        ("MAX_BODY_SIZE", "1024", "max_body_size", 1024),
        ("HOST", "127.0.0.1", "host", "127.0.0.1"),
    ],
)
def test_environment_fallback(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, dest: str, expected: object
) -> None:
    monkeypatch.setenv(var, value)
    got = getattr(parse_args("x", []), dest)
    assert got == expected
    assert type(got) is type(expected)


def test_command_line_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "9000")
    monkeypatch.setenv("MODEL_NAME", "from-env")
    monkeypatch.setenv("ENABLE_GRPC", "false")
    args = parse_args("x", ["--http_port=9100", "--model_name", "from-cli", "--enable_grpc=true"])
    assert (args.http_port, args.model_name, args.enable_grpc) == (9100, "from-cli", True)
    # Flags not on the command line still come from the environment.
    monkeypatch.setenv("GRPC_PORT", "9200")
    assert parse_args("x", ["--http_port=1"]).grpc_port == 9200


def test_repeated_flag_last_wins() -> None:
    args = parse_args(
        "x",
        ["--model_name=a", "--http_port=1", "--model_name", "b", "--http-port=2", "--model-name=c"],
    )
    assert (args.model_name, args.http_port) == ("c", 2)


def test_unknown_flags_are_ignored_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modelserver"):
        args = parse_args(
            "x",
            ["--no_such_flag=1", "--model_name=iris", "--another", "value", "-z", "--http_port=7"],
        )
    assert (args.model_name, args.http_port) == ("iris", 7)
    assert not hasattr(args, "no_such_flag")
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "ignoring unknown arguments" in warned
    assert "--no_such_flag=1" in warned
    assert "--another" in warned


def test_no_abbreviations() -> None:
    # "--model" must not silently mean --model_name (or --model_dir).
    args = parse_args("x", ["--model=x"])
    assert args.model_name == "model"
    assert args.model_dir == "/mnt/models"


def test_compatibility_flags_do_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROTOCOL", "v1")
    monkeypatch.setenv("MAX_ASYNCIO_WORKERS", "3")
    args = parse_args("x", [])
    assert args.protocol is None
    assert args.max_asyncio_workers is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--workers=0"],
        ["--workers", "-1"],
        ["--http_port=http"],
        ["--enable_grpc=maybe"],
        ["--log_level=verbose"],
        ["--predict_executor=gpu"],
        ["--grace_period=soon"],
    ],
)
def test_bad_values_exit_with_usage_error(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args("x", argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(("var", "value"), [("WORKERS", "0"), ("HTTP_PORT", "eighty")])
def test_bad_environment_values_exit(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SystemExit) as exc:
        parse_args("x", [])
    assert exc.value.code == 2


def test_help_names_the_environment_variables() -> None:
    text = build_parser("prog").format_help()
    assert "[env HTTP_PORT]" in text
    assert "[env MODEL_NAME]" in text
    assert "--max_asyncio_workers" not in text  # accepted, but not advertised


def test_runtime_arguments_get_environment_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--my_option", default=3, help="h")
        parser.add_argument("--renamed", default="a", env="CUSTOM_VAR")
        parser.add_argument("--flag", action="store_true")

    monkeypatch.setenv("MY_OPTION", "7")
    monkeypatch.setenv("CUSTOM_VAR", "b")
    monkeypatch.setenv("FLAG", "1")  # a flag without a value ignores its variable
    args = parse_args("x", [], add)
    assert args.my_option == 7  # an int default makes the variable an int
    assert args.renamed == "b"
    assert args.flag is False
    assert parse_args("x", ["--flag", "--my_option=9"], add).my_option == 9


def test_parse_args_reads_sys_argv_when_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["prog", "--model_name=from-argv"])
    assert parse_args("x", None).model_name == "from-argv"


@pytest.mark.parametrize("value", ["1", "true", "True", "YES", "on", "y", "t", " true "])
def test_str2bool_true(value: str) -> None:
    assert str2bool(value) is True


@pytest.mark.parametrize("value", ["0", "false", "FALSE", "no", "off", "n", "f", "", "  "])
def test_str2bool_false(value: str) -> None:
    assert str2bool(value) is False


@pytest.mark.parametrize("value", [True, False])
def test_str2bool_passes_bools_through(value: bool) -> None:
    assert str2bool(value) is value


@pytest.mark.parametrize("value", ["2", "maybe", "truthy", "yes please", "nope"])
def test_str2bool_rejects(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected a boolean"):
        str2bool(value)


def test_module_does_not_touch_the_environment() -> None:
    before = dict(os.environ)
    parse_args("x", ["--model_name=a"])
    assert dict(os.environ) == before


@pytest.mark.parametrize(("var", "value"), [("LOG_LEVEL", "verbose"), ("PREDICT_EXECUTOR", "gpu")])
def test_environment_values_are_checked_against_choices(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SystemExit):
        parse_args("x", [])
