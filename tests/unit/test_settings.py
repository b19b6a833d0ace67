"""Configuration from the environment (SPEC section 2): defaults, validation, the secret key."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from chat_app.settings import DEFAULT_RATE_LIMITS, SECRET_FILE_NAME, Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_NAMES = sorted(
    str(info.validation_alias)
    for info in Settings.model_fields.values()
    if info.validation_alias is not None
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No configuration from the outer environment; cwd is a fresh folder."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def config_errors(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """Set `env`, build Settings and return the validation error text (which must occur)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    return str(caught.value)


def test_env_names_cover_the_spec() -> None:
    spec_names = {
        "CHAT_APP_DATA_DIR",
        "DATABASE_URL",
        "REDIS_URL",
        "CHAT_APP_S3_BUCKET",
        "CHAT_APP_S3_ENDPOINT_URL",
        "CHAT_APP_S3_REGION",
        "CHAT_APP_DEV_CONTROLS",
        "CHAT_APP_SESSION_IDLE_DAYS",
        "CHAT_APP_SESSION_MAX_DAYS",
        "CHAT_APP_MAX_UPLOAD_MB",
        "CHAT_APP_MAX_FILES_PER_SESSION",
        "CHAT_APP_ALLOWED_EXTENSIONS",
        "CHAT_APP_ORPHAN_GRACE_MINUTES",
        "CHAT_APP_SWEEP_INTERVAL_MINUTES",
        "CHAT_APP_SECRET_KEY",
        "CHAT_APP_ADMIN_TOKEN",
        "CHAT_APP_ASSISTANT",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "CHAT_APP_OPENAI_MODEL",
        "CHAT_APP_RATE_LIMITS",
    }
    assert spec_names <= set(ENV_NAMES)


def test_defaults_match_the_spec() -> None:
    settings = Settings()
    assert settings.data_dir == Path("data")
    assert settings.redis_url is None
    assert (settings.s3_bucket, settings.s3_endpoint_url) == (None, None)
    assert settings.s3_region == "us-east-1"
    assert settings.dev_controls is False
    assert (settings.session_idle_days, settings.session_max_days) == (14, 90)
    assert (settings.max_upload_mb, settings.max_files_per_session) == (25, 20)
    assert settings.allowed_extensions == "txt,md,csv,json,pdf,png,jpg,jpeg,gif,webp"
    assert (settings.orphan_grace_minutes, settings.sweep_interval_minutes) == (60, 15)
    assert (settings.admin_token, settings.assistant) == (None, "auto")
    assert settings.openai_model == "gpt-4o-mini"


def test_default_rate_limits_match_the_spec() -> None:
    assert Settings().rate_limits == {
        "create": "10/minute;100/day",
        "validate": "60/minute",
        "failed_validate": "20/minute",
        "reset": "5/minute",
        "messages": "30/minute",
        "upload": "20/minute",
        "read": "120/minute",
    }


def test_database_url_defaults_to_sqlite_in_default_data_dir(tmp_path: Path) -> None:
    assert Settings().database_url == f"sqlite:///{tmp_path.resolve()}/data/chat_app.db"


def test_database_url_is_derived_from_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CHAT_APP_DATA_DIR", str(tmp_path / "elsewhere"))
    expected = f"sqlite:///{(tmp_path / 'elsewhere').resolve()}/chat_app.db"
    assert Settings().database_url == expected


def test_database_url_from_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+psycopg://app@db.example/chat"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CHAT_APP_DATA_DIR", "/somewhere/else")
    assert Settings().database_url == url


def test_empty_variable_means_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_APP_SESSION_IDLE_DAYS", "")
    assert Settings().session_idle_days == 14


def test_dev_controls_flag_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_APP_DEV_CONTROLS", "1")
    assert Settings().dev_controls is True


def test_rate_limit_override_merges_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_APP_RATE_LIMITS", "create=3/minute;50/day, upload=5/minute")
    limits = Settings().rate_limits
    assert limits["create"] == "3/minute;50/day"
    assert limits["upload"] == "5/minute"
    untouched = {name for name in DEFAULT_RATE_LIMITS if name not in {"create", "upload"}}
    assert {name: limits[name] for name in untouched} == {
        name: DEFAULT_RATE_LIMITS[name] for name in untouched
    }


@pytest.mark.parametrize("value", ["download=5/minute", "Create=5/minute", "=5/minute"])
def test_rate_limit_override_rejects_unknown_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    errors = config_errors(monkeypatch, CHAT_APP_RATE_LIMITS=value)
    assert "CHAT_APP_RATE_LIMITS" in errors


@pytest.mark.parametrize(
    "value", ["create=abc", "create=", "create", "create=5/fortnight", "upload=5/minute;"]
)
def test_rate_limit_override_rejects_bad_limit(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    errors = config_errors(monkeypatch, CHAT_APP_RATE_LIMITS=value)
    assert "CHAT_APP_RATE_LIMITS" in errors


def test_idle_longer_than_max_age_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    errors = config_errors(
        monkeypatch, CHAT_APP_SESSION_IDLE_DAYS="30", CHAT_APP_SESSION_MAX_DAYS="10"
    )
    assert "CHAT_APP_SESSION_IDLE_DAYS" in errors
    assert "CHAT_APP_SESSION_MAX_DAYS" in errors


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_bad_idle_days_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    errors = config_errors(monkeypatch, CHAT_APP_SESSION_IDLE_DAYS=value)
    assert "CHAT_APP_SESSION_IDLE_DAYS" in errors


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "chat_app.db"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("CHAT_APP_ASSISTANT", "gpt"),
        ("CHAT_APP_MAX_FILES_PER_SESSION", "0"),
    ],
)
def test_bad_value_is_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    assert name in config_errors(monkeypatch, **{name: value})


def test_secret_key_is_generated_once_and_stable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CHAT_APP_DATA_DIR", str(tmp_path / "data"))
    first = Settings().secret_key
    second = Settings().secret_key
    assert first == second
    assert len(first) == 64
    assert (tmp_path / "data" / SECRET_FILE_NAME).read_bytes().strip() == first


def test_secret_key_file_is_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHAT_APP_DATA_DIR", str(tmp_path / "data"))
    Settings().secret_key  # noqa: B018  (the property creates the file)
    mode = stat.S_IMODE((tmp_path / "data" / SECRET_FILE_NAME).stat().st_mode)
    assert mode == 0o600


def test_secret_keys_of_different_data_dirs_differ(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CHAT_APP_DATA_DIR", str(tmp_path / "one"))
    one = Settings().secret_key
    monkeypatch.setenv("CHAT_APP_DATA_DIR", str(tmp_path / "two"))
    assert Settings().secret_key != one


def read_secret_concurrently(settings: Settings, workers: int) -> list[bytes]:
    """`settings.secret_key` read by `workers` threads released at the same instant."""
    barrier = threading.Barrier(workers)
    keys: list[bytes] = []

    def start_worker() -> None:
        barrier.wait()
        keys.append(settings.secret_key)

    threads = [threading.Thread(target=start_worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return keys


def test_concurrent_workers_agree_on_one_secret_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Workers starting together must never read a half-written (empty) key file."""
    for attempt in range(20):
        monkeypatch.setenv("CHAT_APP_DATA_DIR", str(tmp_path / f"data-{attempt}"))
        keys = read_secret_concurrently(Settings(), workers=8)
        assert len(set(keys)) == 1
        assert len(keys[0]) == 64


def test_secret_key_from_environment_wins_and_writes_no_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CHAT_APP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CHAT_APP_SECRET_KEY", "from-the-environment")
    assert Settings().secret_key == b"from-the-environment"
    assert not (tmp_path / "data" / SECRET_FILE_NAME).exists()


def _start_up(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run start-up settings loading in a fresh interpreter with `env` added."""
    clean = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    clean["CHAT_APP_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from chat_app.settings import get_settings_or_exit; get_settings_or_exit()",
        ],
        cwd=PROJECT_ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bad_value_fails_start_up_with_one_clear_line(tmp_path: Path) -> None:
    result = _start_up(tmp_path, CHAT_APP_SESSION_IDLE_DAYS="abc")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "CHAT_APP_SESSION_IDLE_DAYS" in lines[0]
    assert "Traceback" not in result.stderr


def test_several_bad_values_still_fail_with_one_line(tmp_path: Path) -> None:
    result = _start_up(
        tmp_path, CHAT_APP_SESSION_IDLE_DAYS="abc", CHAT_APP_RATE_LIMITS="create=often"
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "CHAT_APP_SESSION_IDLE_DAYS" in line
    assert "CHAT_APP_RATE_LIMITS" in line


def test_good_configuration_starts_up_silently(tmp_path: Path) -> None:
    result = _start_up(tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
