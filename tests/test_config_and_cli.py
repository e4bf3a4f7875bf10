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
        # Deployment settings (issue 9): each refusal names the setting and the fix.
        ("TELECIRCLE_TRUSTED_PROXIES", "0.0.0.0/0", "would trust (nearly) everyone"),
        ("TELECIRCLE_TRUSTED_PROXIES", "::/0", "would trust (nearly) everyone"),
        ("TELECIRCLE_TRUSTED_PROXIES", "10.0.0.0/4", "would trust (nearly) everyone"),
        ("TELECIRCLE_TRUSTED_PROXIES", "proxy.local", "not an IP address or network"),
        ("TELECIRCLE_ICE_ANNOUNCED_ADDRESS", "not a host!", "TELECIRCLE_ICE_ANNOUNCED_ADDRESS"),
        ("TELECIRCLE_ICE_ANNOUNCED_ADDRESS", "0.0.0.0", "public IP address"),
        ("TELECIRCLE_ICE_ANNOUNCED_ADDRESS", "300.1.2.3", "TELECIRCLE_ICE_ANNOUNCED_ADDRESS"),
        ("TELECIRCLE_ICE_PORT_MIN", "40000", "must be given together"),
        ("TELECIRCLE_TURN_URLS", "http://turn.example.org", "is not a TURN URL"),
        ("TELECIRCLE_TLS_CERT_FILE", "/nonexistent/cert.pem", "must be given together"),
        ("TELECIRCLE_MAX_LIVE_SESSIONS", "0", "TELECIRCLE_MAX_LIVE_SESSIONS"),
        ("TELECIRCLE_TURN_CREDENTIAL_TTL", "60", "TELECIRCLE_TURN_CREDENTIAL_TTL"),
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


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        (
            {"TELECIRCLE_ICE_PORT_MIN": "40000", "TELECIRCLE_ICE_PORT_MAX": "40100"},
            "need 720: widen TELECIRCLE_ICE_PORT_MIN..MAX",
        ),
        (
            {"TELECIRCLE_ICE_PORT_MIN": "500", "TELECIRCLE_ICE_PORT_MAX": "2000"},
            "from 1024 up",
        ),
        (
            {"TELECIRCLE_ICE_PORT_MIN": "41000", "TELECIRCLE_ICE_PORT_MAX": "40000"},
            "lowest first",
        ),
        (
            {"TELECIRCLE_TURN_URLS": "turn:turn.example.org:3478", "TELECIRCLE_TURN_SECRET": "x"},
            "TELECIRCLE_TURN_SECRET must be at least 32 characters",
        ),
        ({"TELECIRCLE_TURN_URLS": "turn:turn.example.org:3478"}, "TELECIRCLE_TURN_SECRET"),
        (
            {
                "TELECIRCLE_TLS_CERT_FILE": "/nonexistent/cert.pem",
                "TELECIRCLE_TLS_KEY_FILE": "/nonexistent/key.pem",
            },
            "TELECIRCLE_TLS_CERT_FILE: /nonexistent/cert.pem does not exist",
        ),
    ],
)
def test_bad_deployment_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], fragment: str
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert fragment in str(refused.value)


def test_good_deployment_settings_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELECIRCLE_ICE_PORT_MIN", "40000")
    monkeypatch.setenv("TELECIRCLE_ICE_PORT_MAX", "40999")
    monkeypatch.setenv(
        "TELECIRCLE_TURN_URLS",
        "turn:turn.example.org:3478?transport=udp, turns:turn.example.org:443?transport=tcp",
    )
    monkeypatch.setenv("TELECIRCLE_TURN_SECRET", "s" * 32)
    monkeypatch.setenv("TELECIRCLE_TRUSTED_PROXIES", "10.0.0.5,192.168.0.0/24")
    monkeypatch.setenv("TELECIRCLE_ICE_ANNOUNCED_ADDRESS", "media.example.org")
    settings = load_settings()
    assert settings.turn_urls == (
        "turn:turn.example.org:3478?transport=udp",
        "turns:turn.example.org:443?transport=tcp",
    )
    assert [str(n) for n in settings.proxy_networks()] == ["10.0.0.5/32", "192.168.0.0/24"]
    assert "s" * 32 not in repr(settings)  # the secret stays out of reprs (and logs)
