"""Write the protocol's JSON Schema, from which the webclient's TypeScript types are generated.

Usage: ``python -m telecircle.signalling.schema [OUTPUT]`` (default: stdout).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from telecircle.signalling import messages


def protocol_schema() -> dict[str, Any]:
    """One JSON Schema document with a definition for every protocol model."""
    models: list[type[BaseModel]] = sorted(
        {
            *messages.CLIENT_EVENTS.values(),
            *messages.SERVER_EVENTS.values(),
            *messages.ACK_DATA.values(),
            messages.ErrorAck,
        },
        key=lambda model: model.__name__,
    )
    _, schema = models_json_schema(
        [(model, "validation") for model in models], title="TelecircleProtocol"
    )
    schema["x-client-events"] = {name: m.__name__ for name, m in messages.CLIENT_EVENTS.items()}
    schema["x-server-events"] = {name: m.__name__ for name, m in messages.SERVER_EVENTS.items()}
    schema["x-ack-data"] = {name: m.__name__ for name, m in messages.ACK_DATA.items()}
    return schema


def render() -> str:
    return json.dumps(protocol_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if len(argv) > 1:
        Path(argv[1]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
