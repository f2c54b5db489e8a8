"""Settings declared once: KServe's flags, environment fallbacks, unknown flags, help."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from typing import Literal

import pytest
from modelserver import Settings, setting
from modelserver.settings import str2bool


@dataclasses.dataclass
class RuntimeSettings(Settings):
    """A runtime's own flags, declared the way runtimes declare them."""

    my_option: int = setting(3, "an int option", minimum=0)
    renamed: str = setting("a", "read from another variable", env="CUSTOM_VAR")
    flag: bool = setting(False, "a switch")
    mode: Literal["fast", "slow"] = setting("fast", "a choice")
    no_env: str | None = setting(None, "no variable", env=False)


def parse_args(prog: str, argv: list[str] | None, cls: type[Settings] = Settings) -> Settings:
    return cls.parse(argv, prog)


def build_parser(prog: str) -> argparse.ArgumentParser:
    return Settings.parser(prog)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable a flag could fall back to leaks in from the caller's environment."""
    for field, _, _ in RuntimeSettings.fields():
        monkeypatch.delenv(field.name.upper(), raising=False)
    for var in ("CUSTOM_VAR", "NO_ENV", "PROTOCOL", "MAX_ASYNCIO_WORKERS"):
        monkeypatch.delenv(var, raising=False)


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
    # KServe's own flags are accepted and change nothing.
    assert not hasattr(args, "max_asyncio_workers")
    assert not hasattr(args, "protocol")


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
    assert not hasattr(args, "protocol")
    assert args == Settings()


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
        ["--max_body_size=0"],
        ["--grace_period=-1"],
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
    text = " ".join(build_parser("prog").format_help().split())
    assert "[env HTTP_PORT]" in text
    assert "[env MODEL_NAME]" in text
    assert "--max_asyncio_workers" not in text  # accepted, but not advertised


def test_runtime_settings_get_environment_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_OPTION", "7")
    monkeypatch.setenv("CUSTOM_VAR", "b")
    monkeypatch.setenv("FLAG", "1")
    monkeypatch.setenv("MODE", "slow")
    monkeypatch.setenv("NO_ENV", "ignored")
    args = parse_args("x", [], RuntimeSettings)
    assert isinstance(args, RuntimeSettings)
    assert (args.my_option, args.renamed, args.flag, args.mode) == (7, "b", True, "slow")
    assert args.no_env is None
    args = parse_args("x", ["--flag=false", "--my_option=9", "--no_env=x"], RuntimeSettings)
    assert (args.my_option, args.flag, args.no_env) == (9, False, "x")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--flag"], True),
        (["--flag", "--my_option=1"], True),
        (["--flag=true"], True),
        (["--flag=False"], False),
        (["--flag", "false"], False),
        (["--flag", "0", "--my_option", "1"], False),
        ([], False),
    ],
)
def test_booleans_are_switches_and_take_values(argv: list[str], expected: bool) -> None:
    assert parse_args("x", argv, RuntimeSettings).flag is expected  # type: ignore[attr-defined]


def test_kserve_boolean_spellings() -> None:
    assert parse_args("x", ["--enable_grpc=false"]).enable_grpc is False
    assert parse_args("x", ["--enable_grpc", "False"]).enable_grpc is False
    assert parse_args("x", ["--access_log"]).access_log is True


def test_help_shows_defaults_and_variables() -> None:
    text = " ".join(RuntimeSettings.parser("prog").format_help().split())
    assert "(default: 3) [env MY_OPTION]" in text
    assert "[env CUSTOM_VAR]" in text
    assert "[env NO_ENV]" not in text
    assert "(default: 8080) [env HTTP_PORT]" in text


def test_every_advertised_variable_works(monkeypatch: pytest.MonkeyPatch) -> None:
    """-h promises an env variable for each flag; each one really sets its flag."""
    text = " ".join(RuntimeSettings.parser("prog").format_help().split())
    for field, flag, _hint in RuntimeSettings.fields():
        var = flag.env if isinstance(flag.env, str) else field.name.upper()
        if not flag.env:
            assert f"[env {var}]" not in text
            continue
        assert f"[env {var}]" in text, field.name
        default = getattr(RuntimeSettings(), field.name)
        if isinstance(default, bool):
            raw, want = ("false", False) if default else ("true", True)
        elif isinstance(default, int):
            raw, want = str(default + 3), default + 3
        elif isinstance(default, float):
            raw, want = str(default + 1.5), default + 1.5
        elif field.name == "mode":
            raw, want = "slow", "slow"
        elif field.name == "predict_executor":
            raw, want = "thread", "thread"
        elif field.name in ("log_level",):
            raw, want = "debug", "debug"
        elif field.name == "log_format":
            raw, want = "json", "json"
        elif field.name == "logger_mode":
            raw, want = "request", "request"
        else:
            raw, want = "value-from-env", "value-from-env"
        monkeypatch.setenv(var, raw)
        assert getattr(parse_args("x", [], RuntimeSettings), field.name) == want, var
        monkeypatch.delenv(var)


def test_runtime_settings_of_every_runtime_parse_their_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from onnxserver.model import ONNXModel
    from sklearnserver.model import SKLearnModel

    monkeypatch.setenv("PREDICT_PROBA", "true")
    monkeypatch.setenv("DEVICE", "cpu")
    monkeypatch.setenv("INTER_OP_THREADS", "2")
    sk = SKLearnModel.settings_class.parse([], "sklearnserver")
    assert sk.predict_proba is True  # type: ignore[attr-defined]
    ox = ONNXModel.settings_class.parse([], "onnxserver")
    assert (ox.device, ox.inter_op_threads) == ("cpu", 2)  # type: ignore[attr-defined]


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
