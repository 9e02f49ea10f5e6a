"""`evchain serve`: run the review app with uvicorn, refusing to listen beyond this machine without an admin."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from agents.context import Settings
from review_app.accounts import AccountStore
from schemas.errors import InputError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_can_serve(out_dir: Path, host: str) -> None:
    """Raise InputError (one line, naming the option) when the app may not start as asked."""
    if not Path(out_dir).is_dir():
        raise InputError("evchain serve", "--out", f"{out_dir} is not a folder of reports")
    if not is_loopback(host) and not AccountStore(out_dir).has_admin():
        raise InputError(
            "evchain serve", "--host",
            f"{host} is not a loopback address and {out_dir} has no admin account; "
            f"add one first: evchain users add NAME --role admin --out {out_dir}",
        )


def serve(out_dir: Path, settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    from review_app.app import create_app

    check_can_serve(out_dir, host)
    uvicorn.run(create_app(out_dir, settings), host=host, port=port, log_level="info")
