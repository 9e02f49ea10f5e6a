"""Run a function in a forked child: unprivileged (so that permission problems are real as root), or with another umask."""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from pathlib import Path

NOBODY = 65534


def in_child(fn, *args, unprivileged: bool = False, umask: int | None = None):
    """fn(*args) in a forked child; its result, or its exception re-raised here."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read)
        try:
            if umask is not None:
                os.umask(umask)
            if unprivileged and os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            payload = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed back to the parent
            payload = ("raised", exc)
        with os.fdopen(write, "wb") as pipe:
            pickle.dump(payload, pipe)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        kind, value = pickle.load(pipe)
    os.waitpid(pid, 0)
    if kind == "raised":
        raise value
    return value


def open_copy(source: Path | None = None) -> Path:
    """A scratch folder (a copy of `source` if given) that an unprivileged user can read; the caller removes it."""
    root = Path(tempfile.mkdtemp(prefix="runs_open_"))
    if source is not None:
        shutil.copytree(source, root / source.name)
    for folder, _, _ in os.walk(root):
        os.chmod(folder, 0o755)
    return root
