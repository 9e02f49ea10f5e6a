"""Where a paused review lives: a LangGraph checkpointer per output folder (SQLite) or one PostgreSQL database.

Only the types the graph state holds may be rebuilt from a checkpoint (the msgpack allow-list);
anything else comes back as plain data, so a tampered checkpoint cannot name a class to build.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args, get_type_hints

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from agents.context import Settings
from agents.state import CaseState
from schemas.errors import InputError

SQLITE_FILE = ".review.sqlite"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def _classes_in(annotation: Any) -> Iterator[type]:
    if isinstance(annotation, type):
        yield annotation
    for arg in get_args(annotation):
        yield from _classes_in(arg)


# Every class the state holds at its top level or in its lists and dicts (nested models travel as their
# dump), read from CaseState's annotations so that a new state key cannot be left off the allow-list.
STATE_TYPES = tuple(dict.fromkeys(
    cls for hint in get_type_hints(CaseState).values() for cls in _classes_in(hint) if cls.__module__ != "builtins"
))


def serializer() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=[(t.__module__, t.__name__) for t in STATE_TYPES])


def thread_id(case_id: str, input_fingerprint: str) -> str:
    """One thread per case and input files: changed inputs start a new review."""
    return f"{case_id}@{input_fingerprint[:16]}"


@contextmanager
def open_checkpointer(out_dir: Path, settings: Settings) -> Iterator[BaseCheckpointSaver]:
    """The review checkpointer for OUT: Settings.review_db's PostgreSQL, else OUT/.review.sqlite."""
    url = settings.review_db
    if url is not None and not url.startswith(POSTGRES_SCHEMES):
        raise InputError("--review-db", "review_db", f"not a postgresql:// URL: {url!r}")
    if url is not None:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row

        with Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
            saver = PostgresSaver(conn, serde=serializer())
            saver.setup()
            yield saver
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    # Several worker processes share the file; SQLite's own locking serialises their writes.
    conn = sqlite3.connect(out_dir / SQLITE_FILE, check_same_thread=False, timeout=60)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        saver = SqliteSaver(conn, serde=serializer())
        saver.setup()
        yield saver
    finally:
        conn.close()
