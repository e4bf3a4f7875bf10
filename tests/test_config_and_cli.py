"""Settings validation and the command line, as an administrator would meet them."""

from __future__ import annotations

from pathlib import Path

import pytest

from telecircle.cli import main
from telecircle.config import ConfigError, load_settings
from telecircle.media.settings import MediaSettings


def test_defaults_are_sensible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert (settings.host, settings.port, settings.default_room_limit) == ("127.0.0.1", 8080, 10)
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.effective_public_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("TELECIRCLE_PORT", "eighty", "TELECIRCLE_PORT"),
        ("TELECIRCLE_PORT", "70000", "TELECIRCLE_PORT"),
        ("TELECIRCLE_ICE_HOST_ADDRESSES", "not-an-ip", "not an IP address"),
        ("TELECIRCLE_DEFAULT_ROOM_LIMIT", "20", "room_limit_ceiling"),
        ("TELECIRCLE_MAX_MESSAGE_BYTES", "60000", "TELECIRCLE_MAX_MESSAGE_BYTES"),
        ("TELECIRCLE_HOST", "not a host!", "TELECIRCLE_HOST"),
        ("TELECIRCLE_DATABASE_URL", "mysql://root@localhost/x", "postgresql+asyncpg"),
        ("TELECIRCLE_RECONNECT_GRACE", "-1", "TELECIRCLE_RECONNECT_GRACE"),
        ("TELECIRCLE_ICE_CONNECT_TIMEOUT", "1", "TELECIRCLE_ICE_CONNECT_TIMEOUT"),
        ("TELECIRCLE_ICE_CONNECT_TIMEOUT", "3600", "TELECIRCLE_ICE_CONNECT_TIMEOUT"),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert fragment.lower() in str(refused.value).lower()


def test_settings_file_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "telecircle.toml"
    config.write_text('port = 9000\nhost = "127.0.0.2"\nice_host_addresses = ["127.0.0.1"]\n')
    monkeypatch.setenv("TELECIRCLE_CONFIG_FILE", str(config))
    monkeypatch.setenv("TELECIRCLE_PORT", "9100")
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.2", 9100)
    assert load_settings(port=9200).port == 9200  # the command line wins over both


def test_unreadable_settings_file_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELECIRCLE_CONFIG_FILE", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="TELECIRCLE_CONFIG_FILE"):
        load_settings()
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1")
    monkeypatch.setenv("TELECIRCLE_CONFIG_FILE", str(broken))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()


def test_bad_configuration_stops_the_command_with_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELECIRCLE_PORT", "x")
    assert main(["serve"]) == 2
    assert "TELECIRCLE_PORT" in capsys.readouterr().err


def test_unknown_settings_are_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELECIRCLE_PROT", "8081")
    assert main(["--data-dir", str(tmp_path), "db", "upgrade"]) == 0
    assert "TELECIRCLE_PROT is not a Telecircle setting" in capsys.readouterr().err


def test_ice_addresses_accept_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELECIRCLE_ICE_HOST_ADDRESSES", "127.0.0.1, 10.0.0.5")
    assert load_settings().ice_host_addresses == ("127.0.0.1", "10.0.0.5")


def test_media_connect_timeout_reaches_the_media_plane(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELECIRCLE_ICE_CONNECT_TIMEOUT", "45")
    assert MediaSettings.from_settings(load_settings()).connect_timeout == 45.0
