"""Persistence: SQLAlchemy 2 async over SQLite (default) or PostgreSQL.

``database`` opens the engine with the durability settings, ``migrations`` runs the
packaged Alembic migrations, ``stores`` reads and writes rooms, sessions, timelines and
attendance as plain records, ``tables`` holds the models the migrations implement.
"""
