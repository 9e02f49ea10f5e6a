"""The one reader for files of a case folder: the folder is a boundary.

Every path is resolved and must stay inside the case folder (a symlink that
leads out is refused), only regular files are read (a FIFO would hang, a device
never ends), each kind of file has a size cap, JSON has a nesting cap, and
every OS or decoding problem becomes an InputError naming the file. Error text
never quotes file content beyond `excerpt`.

Libraries that open files themselves (nibabel, h5py, tiffslide) get a path
from `CaseFolder.file`, which has passed the same checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

from schemas.errors import InputError

MiB = 1024**2
GiB = 1024**3
# Per kind of file: far above anything real, far below what would exhaust memory or disk reads.
SIZE_CAPS = {
    "manifest": 1 * MiB,
    "json": 1 * MiB,
    "tsv": 256 * MiB,
    "nifti": 4 * GiB,
    "hdf5": 16 * GiB,
    "slide": 64 * GiB,
}
# Real manifests and findings nest three levels; Python's parser recurses per level.
MAX_JSON_DEPTH = 32
EXCERPT_CHARS = 40
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")


def excerpt(text: object, limit: int = EXCERPT_CHARS) -> str:
    """Input content for an error message: control characters escaped, cut to `limit` characters."""
    escaped = repr(str(text))[1:-1]
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def json_depth(data: bytes) -> int:
    """Deepest bracket nesting of a JSON text, counted without parsing (strings skipped)."""
    depth = deepest = 0
    for byte in _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if byte in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSERS:
            depth -= 1
    return deepest


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


class CaseFolder:
    """Checked access to the files of one case folder; paths are given relative to it (POSIX style)."""

    def __init__(self, root: Path):
        self.given = Path(os.path.abspath(root))  # as the caller spelled it (may be a link to the real folder)
        self.root = Path(os.path.realpath(root))

    def rel(self, path: Path) -> str:
        """`path` (absolute, or relative to the current directory) as the case-relative name errors use."""
        path = Path(os.path.abspath(path))
        for base in (self.given, self.root):
            try:
                return path.relative_to(base).as_posix()
            except ValueError:
                continue
        return path.name

    def resolve(self, rel: str) -> Path:
        """The real path of `rel`; InputError if it, or a symlink on the way, leads outside the folder."""
        real = Path(os.path.realpath(self.root / rel))
        if real != self.root and self.root not in real.parents:
            raise InputError(rel, "path", "leads outside the case folder (symlink?); refused")
        return real

    def exists(self, rel: str) -> bool:
        """True when there is any entry named `rel` (a broken or outside link included: reading it reports why)."""
        try:
            os.lstat(self.root / rel)
        except FileNotFoundError:
            return False
        except NotADirectoryError:
            return False
        except OSError as exc:
            raise InputError(rel, "path", f"cannot check: {_reason(exc)}") from None
        return True

    def is_dir(self, rel: str) -> bool:
        """True for a folder inside the case folder; an entry that leads outside raises InputError."""
        if not self.exists(rel):
            return False
        try:
            return stat.S_ISDIR(os.stat(self.resolve(rel)).st_mode)
        except OSError as exc:
            raise InputError(rel, "folder", f"cannot check: {_reason(exc)}") from None

    def list_dir(self, rel: str = ".") -> list[str]:
        """Sorted entry names of a folder inside the case folder (hidden ones included)."""
        real = self.resolve(rel)
        try:
            return sorted(os.listdir(real))
        except OSError as exc:
            raise InputError(rel, "folder", f"cannot list: {_reason(exc)}") from None

    def file(self, rel: str, kind: str) -> Path:
        """Real path of a readable regular file within the size cap of `kind`, for libraries that open by path."""
        real = self.resolve(rel)
        fd = self._open(real, rel)
        try:
            self._check(fd, rel, kind)
        finally:
            os.close(fd)
        return real

    def read_bytes(self, rel: str, kind: str) -> bytes:
        """The whole file, read through one descriptor so the checks and the read see the same file."""
        real = self.resolve(rel)
        fd = self._open(real, rel)
        try:
            cap = self._check(fd, rel, kind)
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read(cap + 1)
        except OSError as exc:
            raise InputError(rel, "file", f"cannot read: {_reason(exc)}") from None
        finally:
            os.close(fd)
        if len(data) > cap:  # grew while being read
            raise InputError(rel, "file", f"larger than the {cap // MiB} MiB allowed for a {kind} file")
        return data

    def read_text(self, rel: str, kind: str, encoding: str = "utf-8") -> str:
        try:
            return self.read_bytes(rel, kind).decode(encoding)
        except UnicodeDecodeError as exc:
            raise InputError(rel, "text", f"not {encoding} text (byte {exc.start})") from None

    def read_json(self, rel: str, kind: str = "json") -> object:
        data = self.read_bytes(rel, kind)
        if json_depth(data) > MAX_JSON_DEPTH:
            raise InputError(rel, "json", f"nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            return json.loads(data.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise InputError(rel, "json", f"not UTF-8 text (byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise InputError(rel, "json", f"invalid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})") from None
        except RecursionError:
            raise InputError(rel, "json", "nested too deeply") from None

    @staticmethod
    def _open(real: Path, rel: str) -> int:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        try:
            return os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise InputError(rel, "file", "not found") from None
        except OSError as exc:
            raise InputError(rel, "file", f"cannot read: {_reason(exc)}") from None

    @staticmethod
    def _check(fd: int, rel: str, kind: str) -> int:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(rel, "file", "not a regular file (device, FIFO or socket); refused")
        cap = SIZE_CAPS[kind]
        if info.st_size > cap:
            raise InputError(rel, "file", f"{info.st_size} bytes, more than the {cap // MiB} MiB allowed for a {kind} file")
        return cap


def checked_file(path: Path, case_dir: Path | None, kind: str) -> tuple[Path, str]:
    """(real path, case-relative name) of a file a library will open; without a case folder, its own folder bounds it."""
    path = Path(path)
    folder = CaseFolder(case_dir if case_dir is not None else path.parent)
    rel = folder.rel(path)
    return folder.file(rel, kind), rel


def folder_fingerprint(root: Path) -> str:
    """SHA-256 over the names and contents of everything in a folder (hidden files too), in sorted order.

    Links are hashed by their target text, never followed; an entry that cannot be
    read is hashed by its error, so the fingerprint itself never fails.
    """
    digest = hashlib.sha256()
    _fingerprint_into(digest, Path(root), "")
    return digest.hexdigest()


def _fingerprint_into(digest, folder: Path, prefix: str) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        digest.update(f"unlistable\0{prefix}\0{exc.errno}\n".encode())
        return
    for entry in entries:
        name = prefix + entry.name
        if entry.is_symlink():
            digest.update(f"link\0{name}\0{os.readlink(entry.path)}\n".encode(errors="surrogateescape"))
        elif entry.is_dir(follow_symlinks=False):
            digest.update(f"dir\0{name}\n".encode(errors="surrogateescape"))
            _fingerprint_into(digest, Path(entry.path), name + "/")
        elif entry.is_file(follow_symlinks=False):
            digest.update(f"file\0{name}\0{_file_digest(entry.path)}\n".encode(errors="surrogateescape"))
        else:
            digest.update(f"special\0{name}\n".encode(errors="surrogateescape"))


def _file_digest(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return f"unreadable {exc.errno}"
    try:
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        return f"unreadable {exc.errno}"
    finally:
        os.close(fd)
