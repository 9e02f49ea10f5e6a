"""Accounts of the review app: argon2 hashes, roles, server-side sessions, `evchain users add`, `evchain serve` refusals."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import main
from review_app import accounts as accounts_module
from review_app.accounts import ACCOUNTS_DB, AccountError, AccountStore, User
from review_app.server import is_loopback

REPO = Path(__file__).resolve().parents[1]


def test_passwords_are_stored_as_argon2id_hashes_only(tmp_path):
    store = AccountStore(tmp_path)
    store.add_user("dr.lee", "clinician", "correct horse battery")
    (stored,) = sqlite3.connect(tmp_path / ACCOUNTS_DB).execute("SELECT password_hash FROM users").fetchone()
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert store.authenticate("dr.lee", "correct horse battery") == User("dr.lee", "clinician")
    assert store.authenticate("dr.lee", "wrong password") is None
    assert store.authenticate("nobody", "correct horse battery") is None


@pytest.mark.parametrize(
    ("name", "role", "password", "field"),
    [("", "viewer", "long enough", "name"), ("a b", "viewer", "long enough", "name"),
     ("ok", "superuser", "long enough", "role"), ("ok", "viewer", "short", "password")],
)
def test_bad_account_requests_name_the_field(tmp_path, name, role, password, field):
    with pytest.raises(AccountError, match=f"^{field}: "):
        AccountStore(tmp_path).add_user(name, role, password)


def test_a_name_is_taken_once(tmp_path):
    store = AccountStore(tmp_path)
    store.add_user("vera", "viewer", "long enough")
    with pytest.raises(AccountError, match="already exists"):
        store.add_user("vera", "admin", "long enough")


def test_roles_grant_their_permissions_only():
    assert User("v", "viewer").can("read") and not User("v", "viewer").can("review")
    assert User("c", "clinician").can("review") and not User("c", "clinician").can("accounts")
    assert User("a", "admin").can("accounts") and not User("a", "admin").can("review")


def test_sessions_are_server_side_expire_and_end(tmp_path, monkeypatch):
    store = AccountStore(tmp_path)
    user = store.add_user("dr.lee", "clinician", "correct horse battery")
    token, session = store.start_session(user)
    assert store.session(token) == session
    (stored,) = sqlite3.connect(tmp_path / ACCOUNTS_DB).execute("SELECT token_sha256 FROM sessions").fetchone()
    assert token not in stored  # a copied database holds no usable cookie
    assert store.session("forged") is None
    later = dt.datetime.now(dt.timezone.utc) + accounts_module.SESSION_LIFETIME + dt.timedelta(minutes=1)
    monkeypatch.setattr(accounts_module, "_now", lambda: later)
    assert store.session(token) is None
    monkeypatch.undo()
    token2, _ = store.start_session(user)
    store.end_session(token2)
    assert store.session(token2) is None


def test_the_cookie_secret_is_made_once_per_output_folder(tmp_path):
    assert AccountStore(tmp_path).secret_key() == AccountStore(tmp_path).secret_key()
    assert len(AccountStore(tmp_path).secret_key()) >= 40


def test_users_add_reads_the_password_from_stdin(tmp_path):
    run = [sys.executable, "-m", "agents.cli", "users", "add", "dr.lee", "--role", "clinician", "--out", str(tmp_path)]
    done = subprocess.run(run, input="correct horse battery\n", capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert AccountStore(tmp_path).authenticate("dr.lee", "correct horse battery") == User("dr.lee", "clinician")
    again = subprocess.run(run, input="correct horse battery\n", capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 2
    assert again.stderr.strip() == "evchain: error: evchain users add: name: user 'dr.lee' already exists"


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                  ("0.0.0.0", False), ("10.1.2.3", False), ("example.org", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_serve_refuses_a_public_address_without_an_admin(tmp_path, capsys):
    assert main(["serve", "--out", str(tmp_path), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evchain: error: evchain serve: --host: 0.0.0.0 is not a loopback address")
    assert "\n" not in err
    AccountStore(tmp_path).add_user("root", "clinician", "long enough")
    assert main(["serve", "--out", str(tmp_path), "--host", "0.0.0.0"]) == 2  # a clinician is not an admin


def test_serve_refuses_a_missing_output_folder(tmp_path, capsys):
    assert main(["serve", "--out", str(tmp_path / "absent")]) == 2
    assert "--out" in capsys.readouterr().err
