"""The ``telecircle`` command line: serve, db upgrade, audit verify, keys rotate|verify,
notes purge, backup, restore, doctor.

Options given on the command line take precedence over ``TELECIRCLE_*`` environment
variables, which take precedence over the optional settings file.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from telecircle.config import ConfigError, Settings, load_settings, unknown_environment_settings
from telecircle.logs import configure_logging
from telecircle.storage import migrations


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

    db = commands.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply migrations up to the newest")

    audit = commands.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_command", required=True
    )
    audit.add_parser("verify", help="check the audit log's hash chain and signed head")

    keys = commands.add_parser("keys", help="the notes' key-encryption keys").add_subparsers(
        dest="keys_command", required=True
    )
    keys.add_parser(
        "rotate", help="make a new key version and re-wrap every data key (safe to repeat)"
    )
    keys.add_parser("verify", help="check that every live data key unwraps")

    notes = commands.add_parser("notes", help="session notes").add_subparsers(
        dest="notes_command", required=True
    )
    notes.add_parser("purge", help="destroy the notes of sessions past their retention")

    backup = commands.add_parser(
        "backup", help="write a consistent database snapshot, and the keys to another place"
    )
    backup.add_argument("--to", required=True, type=Path, help="folder for the database snapshot")
    backup.add_argument(
        "--keys-to",
        required=True,
        type=Path,
        help="folder for the key-encryption and server keys (keep it apart from --to)",
    )
    restore = commands.add_parser(
        "restore", help="bring back a snapshot and its keys into an empty data folder"
    )
    restore.add_argument("--from", dest="source", required=True, type=Path)
    restore.add_argument("--keys-from", required=True, type=Path)

    commands.add_parser("doctor", help="check this deployment and say what is wrong")
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
    if args.command == "audit":
        return asyncio.run(verify_audit_log(settings))
    if args.command == "keys":
        from telecircle import key_commands

        command = key_commands.rotate if args.keys_command == "rotate" else key_commands.verify
        return asyncio.run(command(settings))
    if args.command == "notes":
        from telecircle import key_commands

        return asyncio.run(key_commands.purge(settings))
    if args.command == "backup":
        from telecircle import backup_commands

        return asyncio.run(backup_commands.backup(settings, args.to, args.keys_to))
    if args.command == "restore":
        from telecircle import backup_commands

        return asyncio.run(backup_commands.restore(settings, args.source, args.keys_from))
    if args.command == "doctor":
        from telecircle import doctor

        return asyncio.run(doctor.run(settings))
    return asyncio.run(upgrade(settings))


def serve(settings: Settings) -> int:
    from telecircle.errors import TelecircleError
    from telecircle.web.app import create_app  # heavy imports (aiortc) only when serving
    from telecircle.web.tls import server_ssl_context

    try:
        ssl_context = server_ssl_context(settings)
    except TelecircleError as exc:
        print(f"Telecircle did not start: {exc.message}", file=sys.stderr)
        return 2
    app = create_app(settings)
    app.on_startup.append(print_setup_link)
    print(f"Telecircle listening on {settings.effective_public_url}", flush=True)
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            print=None,
            shutdown_timeout=settings.shutdown_timeout,
            access_log=None,
            ssl_context=ssl_context,
        )
    except TelecircleError as exc:
        # Refusals at start-up (a missing key, an unsafe key file) are for the
        # administrator: say what and how to fix it, without a traceback.
        print(f"Telecircle did not start: {exc.message}", file=sys.stderr)
        return 2
    return 0


async def print_setup_link(app: web.Application) -> None:
    """First run: no administrator yet, so print a one-time link to create one (on the
    console, never in the logs). Each start prints a fresh link and voids older ones."""
    from telecircle.web.keys import ACCOUNTS, SETTINGS

    token = await app[ACCOUNTS].create_setup_link()
    if token is None:
        return
    settings = app[SETTINGS]
    minutes = int(settings.setup_link_ttl // 60)
    print(
        "No administrator exists yet. Open this one-time link within "
        f"{minutes} minutes to create one:\n"
        f"  {settings.effective_public_url}/setup/{token}",
        flush=True,
    )


async def verify_audit_log(settings: Settings) -> int:
    """Check the audit log's chain and its authenticated head: 0 intact, 1 tampered,
    2 when the key file is missing or unsafe (it is never created here)."""
    from telecircle.crypto.server_key import AUDIT_HEAD, ServerKeyError, load_server_key
    from telecircle.services.audit import AuditLog
    from telecircle.services.clock import SystemClock
    from telecircle.storage import audit_store
    from telecircle.storage.database import open_database

    try:
        key = load_server_key(settings.effective_server_key_file).derive(AUDIT_HEAD)
    except ServerKeyError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    await migrations.upgrade(settings.effective_database_url)
    db = await open_database(settings.effective_database_url)
    try:
        problems = await AuditLog(db, key, SystemClock()).verify()
        head = await audit_store.read_head(db)
    finally:
        await db.close()
    if problems:
        print("Audit log verification FAILED:")
        for problem in problems:
            print(f"  {problem.problem}")
        return 1
    count = 0 if head is None else head.seq
    print(f"Audit log intact: {count} entries, head at seq {count}.")
    return 0


async def upgrade(settings: Settings) -> int:
    await migrations.upgrade(settings.effective_database_url)
    print("Database is up to date.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
