"""The sample environment file, ``deploy/telecircle.env.sample``, made from the settings.

Every field of :class:`telecircle.config.Settings` appears with its description and
default; the values a deployment behind nginx needs (deploy/README.md) are set, the rest
are commented out and keep their defaults. Regenerate the committed file after adding or
changing a setting (tests/test_deploy_files.py fails while it is stale)::

    .venv/bin/python -m telecircle.env_sample deploy/telecircle.env.sample
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic.fields import FieldInfo

from telecircle.config import Settings
from telecircle.deployment_config import DeploymentSettings

PREFIX = "TELECIRCLE_"
WIDTH = 88
# The source checkout, as defaults that point into it are shown (the committed file
# must not depend on where it was generated).
SOURCE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A value deploy/README.md's setup uses: set (``active``) or shown commented out."""

    value: str
    active: bool = True
    why: str = ""


# Telecircle on 127.0.0.1:8080 behind nginx on the same machine, coturn beside it.
DEPLOYMENT: dict[str, Suggestion] = {
    "host": Suggestion("127.0.0.1", why="only nginx, on this machine, connects."),
    "port": Suggestion("8080", why="nginx's upstream (deploy/nginx/telecircle.conf)."),
    "public_url": Suggestion("https://telecircle.example.org", why="your name."),
    "data_dir": Suggestion("/var/lib/telecircle", why="systemd's StateDirectory."),
    "secure_cookies": Suggestion("true", why="Browsers reach the server over HTTPS."),
    "trusted_proxies": Suggestion("127.0.0.1", why="nginx."),
    "ice_host_addresses": Suggestion(
        "192.0.2.10", why="this server's own address (ip -brief address); not 127.0.0.1."
    ),
    "ice_announced_address": Suggestion(
        "198.51.100.20", active=False, why="only behind 1:1 NAT (a cloud VM's public address)."
    ),
    "ice_port_min": Suggestion("50000", why="open UDP 50000-50999 in the firewall."),
    "ice_port_max": Suggestion("50999"),
    "webclient_dist": Suggestion(
        "/opt/telecircle/webclient/dist", active=False, why="built by scripts/setup."
    ),
    "turn_urls": Suggestion(
        "turn:turn.example.org:3478?transport=udp,turns:turn.example.org:443?transport=tcp",
        active=False,
        why="with coturn (deploy/coturn/).",
    ),
    "turn_secret": Suggestion(
        "output-of-openssl-rand-hex-32",
        active=False,
        why="coturn's static-auth-secret: make it with openssl rand -hex 32.",
    ),
}

HEADER = """\
# Telecircle's settings, for the systemd unit (deploy/systemd/telecircle.service reads
# /etc/telecircle/telecircle.env: install this file there, owner root, group telecircle,
# mode 0640, since it holds secrets).
#
# Every setting is listed with what it does and its default. A line starting with "#"
# is a comment: a setting left commented out keeps its default. The settings that are
# set are those deploy/README.md uses (Telecircle on 127.0.0.1:8080 behind nginx):
# replace the example names and addresses with yours.
#
# Generated from telecircle.config.Settings by
#   .venv/bin/python -m telecircle.env_sample deploy/telecircle.env.sample
# Do not edit the committed sample by hand; edit your copy.
"""

SECTIONS = (
    (
        DeploymentSettings,
        "Real networks: HTTPS, the media plane's address and ports, TURN, proxies",
    ),
    (Settings, "The server: storage, limits, signalling, media, access, sessions, notes"),
)


def render() -> str:
    """The whole sample file."""
    parts = [HEADER]
    deployment_fields = set(DeploymentSettings.model_fields)
    for owner, title in SECTIONS:
        names = [
            name
            for name in Settings.model_fields
            if (name in deployment_fields) == (owner is DeploymentSettings)
        ]
        parts.append(f"\n# ==== {title} ====\n")
        for name in names:
            parts.append(_entry(name, Settings.model_fields[name]))
    return "".join(parts)


def _entry(name: str, field: FieldInfo) -> str:
    lines = ["", *_comment(field.description or "")]
    default = format_value(field.default)
    lines.append(f"# Default: {default or '(empty)'}")
    suggestion = DEPLOYMENT.get(name)
    variable = PREFIX + name.upper()
    if suggestion is None:
        lines.append(f"#{variable}={default}")
    else:
        if suggestion.why:
            lines += _comment(f"In deploy/README.md's setup: {suggestion.why}")
        lines.append(f"{'' if suggestion.active else '#'}{variable}={suggestion.value}")
    return "\n".join(lines) + "\n"


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, WIDTH - 2)]


def format_value(value: object) -> str:
    """A default as the environment spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, tuple | list):
        return ",".join(format_value(item) for item in value)
    if isinstance(value, Path):
        if str(value) in ("", "."):
            return ""
        if value.is_absolute() and value.is_relative_to(SOURCE_ROOT):
            return f"(the source checkout's) {value.relative_to(SOURCE_ROOT)}"
        return str(value)
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the sample to the path given, or to standard output."""
    args = list(sys.argv[1:] if argv is None else argv)
    text = render()
    if args:
        Path(args[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
