"""The ``telecircle`` command line: serve, room create/list, db upgrade.

Options given on the command line take precedence over ``TELECIRCLE_*`` environment
variables, which take precedence over the optional settings file.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from aiohttp import web

from telecircle.config import ConfigError, Settings, load_settings, unknown_environment_settings
from telecircle.domain.ids import new_room_code
from telecircle.logs import configure_logging
from telecircle.storage import migrations, stores
from telecircle.storage.database import open_database


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telecircle", description=__doc__)
    parser.add_argument("--data-dir", help="data folder (TELECIRCLE_DATA_DIR)")
    parser.add_argument("--database-url", help="SQLAlchemy async URL (TELECIRCLE_DATABASE_URL)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="bind address (TELECIRCLE_HOST)")
    serve.add_argument("--port", type=int, help="port (TELECIRCLE_PORT)")
    serve.add_argument("--public-url", help="base URL for links (TELECIRCLE_PUBLIC_URL)")
    serve.add_argument("--log-level", default="INFO")

    room = commands.add_parser("room", help="manage rooms").add_subparsers(
        dest="room_command", required=True
    )
    create = room.add_parser("create", help="create a room and print its join URL")
    create.add_argument("name")
    create.add_argument("--limit", type=int, help="participant limit (default: configured)")
    create.add_argument("--public-url", help="base URL for the printed link")
    room.add_parser("list", help="list rooms and their join URLs")

    db = commands.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply migrations up to the newest")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {
        "data_dir": args.data_dir,
        "database_url": args.database_url,
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "public_url": getattr(args, "public_url", None),
    }
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    for name in unknown_environment_settings():
        print(f"warning: {name} is not a Telecircle setting; it is ignored.", file=sys.stderr)
    if args.command == "serve":
        configure_logging(args.log_level)
        return serve(settings)
    if args.command == "room" and args.room_command == "create":
        return asyncio.run(create_room(settings, args.name, args.limit))
    if args.command == "room":
        return asyncio.run(list_rooms(settings))
    return asyncio.run(upgrade(settings))


def serve(settings: Settings) -> int:
    from telecircle.web.app import create_app  # heavy imports (aiortc) only when serving

    app = create_app(settings)
    print(f"Telecircle listening on {settings.effective_public_url}", flush=True)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=None,
    )
    return 0


async def upgrade(settings: Settings) -> int:
    await migrations.upgrade(settings.effective_database_url)
    print("Database is up to date.")
    return 0


async def create_room(settings: Settings, name: str, limit: int | None) -> int:
    name = " ".join(name.split())
    if not name or len(name) > 120:
        print("Room names must be 1 to 120 characters.", file=sys.stderr)
        return 2
    limit = settings.default_room_limit if limit is None else limit
    if not 2 <= limit <= settings.room_limit_ceiling:
        print(
            f"--limit must be between 2 and the server's ceiling "
            f"({settings.room_limit_ceiling}, TELECIRCLE_ROOM_LIMIT_CEILING).",
            file=sys.stderr,
        )
        return 2
    await migrations.upgrade(settings.effective_database_url)
    db = await open_database(settings.effective_database_url)
    try:
        room = await stores.create_room(db, name, limit, new_room_code())
    finally:
        await db.close()
    print(f"Created room {room.name!r} (limit {room.participant_limit}). Join URL:")
    print(f"{settings.effective_public_url}/r/{room.code}")
    return 0


async def list_rooms(settings: Settings) -> int:
    await migrations.upgrade(settings.effective_database_url)
    db = await open_database(settings.effective_database_url)
    try:
        rooms = await stores.list_rooms(db)
    finally:
        await db.close()
    if not rooms:
        print('No rooms yet. Create one with: telecircle room create "Group name"')
    for room in rooms:
        print(
            f"{settings.effective_public_url}/r/{room.code}\t{room.participant_limit}\t{room.name}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
