"""Accounts, roles and server-side sessions of the review app, in one SQLite file in the output folder.

Passwords are hashed with argon2id (argon2-cffi's defaults, which follow RFC 9106); a session is a
random token whose SHA-256 is stored with its user, expiry and CSRF token, so a copied database
holds no usable cookie. The cookie carries the token signed with the app's secret (itsdangerous).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

Role = Literal["viewer", "clinician", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
# What each role may do: clinicians review, admins manage accounts, everyone reads.
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "clinician": frozenset({"read", "review"}),
    "admin": frozenset({"read", "accounts"}),
}
ACCOUNTS_DB = "review_accounts.sqlite"
SESSION_LIFETIME = dt.timedelta(hours=8)
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
MIN_PASSWORD = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf TEXT NOT NULL, expires TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class AccountError(ValueError):
    """A bad account request (name, role or password), naming the field."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AccountStore:
    """Users and sessions of one output folder (`<out>/review_accounts.sqlite`)."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / ACCOUNTS_DB
        self._hasher = PasswordHasher()
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            with db:
                yield db
        finally:
            db.close()

    def secret_key(self) -> str:
        """The cookie-signing secret, made once per output folder so sessions survive a restart."""
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO secrets VALUES ('cookie', ?)", (secrets.token_urlsafe(32),))
            return db.execute("SELECT value FROM secrets WHERE name = 'cookie'").fetchone()[0]

    def add_user(self, name: str, role: str, password: str) -> User:
        if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
            raise AccountError(f"name: {name!r} must be 1-64 of letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise AccountError(f"role: {role!r} is not one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"password: must be at least {MIN_PASSWORD} characters")
        with self._db() as db:
            try:
                db.execute("INSERT INTO users VALUES (?, ?, ?, ?)",
                           (name, role, self._hasher.hash(password), _now().isoformat()))
            except sqlite3.IntegrityError:
                raise AccountError(f"name: user {name!r} already exists") from None
        return User(name, role)

    def users(self) -> list[User]:
        with self._db() as db:
            return [User(n, r) for n, r in db.execute("SELECT name, role FROM users ORDER BY name")]

    def has_admin(self) -> bool:
        with self._db() as db:
            return db.execute("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1").fetchone() is not None

    def authenticate(self, name: str, password: str) -> User | None:
        with self._db() as db:
            row = db.execute("SELECT role, password_hash FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            # Hash anyway so an unknown name takes as long as a wrong password.
            self._hasher.hash(password)
            return None
        role, stored = row
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if self._hasher.check_needs_rehash(stored):
            with self._db() as db:
                db.execute("UPDATE users SET password_hash = ? WHERE name = ?", (self._hasher.hash(password), name))
        return User(name, role)

    def start_session(self, user: User) -> tuple[str, Session]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (_now().isoformat(),))
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                       (_digest(token), user.name, csrf, (_now() + SESSION_LIFETIME).isoformat()))
        return token, Session(user, csrf)

    def session(self, token: str) -> Session | None:
        with self._db() as db:
            row = db.execute(
                "SELECT u.name, u.role, s.csrf FROM sessions s JOIN users u ON u.name = s.user "
                "WHERE s.token_sha256 = ? AND s.expires > ?",
                (_digest(token), _now().isoformat()),
            ).fetchone()
        return None if row is None else Session(User(row[0], row[1]), row[2])

    def end_session(self, token: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_digest(token),))
