"""The bounded case-folder reader: the folder is a boundary, reads are bounded, errors name the file."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
from forked import in_child, open_copy

from schemas.errors import InputError
from toolkit.atomic import exchange
from toolkit.case_files import MAX_JSON_DEPTH, SIZE_CAPS, CaseFolder, excerpt, folder_fingerprint, json_depth



@pytest.fixture()
def open_tmp():
    """A scratch folder an unprivileged user can reach (pytest's tmp_path is private to root)."""
    path = open_copy()
    yield path
    shutil.rmtree(path)


def test_json_depth_counts_brackets_outside_strings():
    assert json_depth(b"{}") == 1
    assert json_depth(b'{"a": [1, {"b": [2]}]}') == 4
    assert json_depth(b'{"a": "[[[[[[", "b": "\\"[[["}') == 1
    assert json_depth(b"[" * 100_000 + b"]" * 100_000) == 100_000


def test_deep_json_is_refused_without_recursing(tmp_path):
    (tmp_path / "case.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(InputError, match=rf"^case.json: json: nested deeper than {MAX_JSON_DEPTH} levels$"):
        CaseFolder(tmp_path).read_json("case.json", "manifest")


def test_json_within_the_depth_cap_is_read(tmp_path):
    (tmp_path / "a.json").write_text('{"x": [[1]]}')
    assert CaseFolder(tmp_path).read_json("a.json") == {"x": [[1]]}


def test_symlink_out_of_the_case_is_refused_and_nothing_of_the_target_is_quoted(tmp_path):
    case = tmp_path / "case"
    (case / "genomics").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (case / "genomics" / "expression.tsv").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(InputError) as info:
        CaseFolder(case).read_text("genomics/expression.tsv", "tsv")
    assert str(info.value) == "genomics/expression.tsv: path: leads outside the case folder (symlink?); refused"


def test_dotdot_and_linked_folders_out_are_refused(tmp_path):
    case, other = tmp_path / "case", tmp_path / "other"
    (case / "imaging").mkdir(parents=True)
    (other / "T0").mkdir(parents=True)
    (case / "imaging" / "T0").symlink_to(other / "T0", target_is_directory=True)
    folder = CaseFolder(case)
    with pytest.raises(InputError, match="imaging/T0: path: leads outside"):
        folder.is_dir("imaging/T0")
    with pytest.raises(InputError, match="leads outside"):
        folder.file("../other/T0", "json")


def test_links_inside_the_case_are_followed(tmp_path):
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "alias.json").symlink_to("real.json")
    assert CaseFolder(tmp_path).read_json("alias.json") == {}


def test_a_case_folder_reached_through_a_link_is_still_its_own_boundary(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "case.json").write_text("{}")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    folder = CaseFolder(tmp_path / "link")
    assert folder.read_json("case.json") == {}
    assert folder.rel(tmp_path / "link" / "case.json") == "case.json"


def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "case.json")
    outcome = {}

    def read():
        try:
            CaseFolder(tmp_path).read_json("case.json", "manifest")
        except InputError as exc:
            outcome["error"] = str(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading a FIFO hung"
    assert outcome["error"] == "case.json: file: not a regular file (device, FIFO or socket); refused"


def test_device_is_refused_when_the_case_folder_holds_it(tmp_path):
    # /dev/zero itself, reached as a case folder's file (the case folder is /dev here): never read.
    with pytest.raises(InputError, match="^zero: file: not a regular file"):
        CaseFolder(Path("/dev")).read_bytes("zero", "manifest")


def test_file_over_its_cap_is_refused_before_reading(tmp_path):
    big = tmp_path / "case.json"
    with open(big, "wb") as handle:  # sparse: costs no disk
        handle.truncate(SIZE_CAPS["manifest"] + 1)
    with pytest.raises(InputError, match=r"^case.json: file: 1048577 bytes, more than the 1 MiB allowed"):
        CaseFolder(tmp_path).read_bytes("case.json", "manifest")


def test_decoding_errors_name_the_file_and_quote_nothing(tmp_path):
    (tmp_path / "meta.json").write_bytes(b'{"a": "\xff\xfe secret"}')
    with pytest.raises(InputError, match=r"^meta.json: json: not UTF-8 text \(byte 7\)$"):
        CaseFolder(tmp_path).read_json("meta.json")


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(InputError, match="^case.json: file: not found$"):
        CaseFolder(tmp_path).read_json("case.json", "manifest")
    assert not CaseFolder(tmp_path).exists("case.json")


def test_unreadable_file_and_folder_are_input_errors(open_tmp):
    (open_tmp / "genomics").mkdir()
    (open_tmp / "genomics" / "meta.json").write_text("{}")
    (open_tmp / "genomics" / "meta.json").chmod(0)
    (open_tmp / "pathology").mkdir()
    (open_tmp / "pathology").chmod(0)

    def attempt(fn, *args):
        try:
            fn(*args)
        except InputError as exc:
            return str(exc)
        return None

    folder = CaseFolder(open_tmp)
    assert in_child(attempt, folder.read_json, "genomics/meta.json", unprivileged=True) == "genomics/meta.json: file: cannot read: Permission denied"
    assert in_child(attempt, folder.list_dir, "pathology", unprivileged=True) == "pathology: folder: cannot list: Permission denied"


def test_excerpt_escapes_and_cuts():
    assert excerpt("abc") == "abc"
    assert excerpt("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert excerpt("x" * 100) == "x" * 37 + "..."


def test_fingerprint_follows_content_names_and_links_but_never_reads_through_links(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "a.tsv").write_text("gene\tvalue\n")
    first = folder_fingerprint(tmp_path)
    assert folder_fingerprint(tmp_path) == first
    (tmp_path / "g" / "a.tsv").write_text("gene\tvalue\nX\t1\n")
    second = folder_fingerprint(tmp_path)
    assert second != first
    (tmp_path / "g" / "a.tsv").rename(tmp_path / "g" / "b.tsv")
    assert folder_fingerprint(tmp_path) != second
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    assert len(folder_fingerprint(tmp_path)) == 64  # neither hangs nor reads forever


def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("old")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f").write_text("new")
    if not exchange(tmp_path / "b", tmp_path / "a"):
        pytest.skip("this file system cannot exchange two paths (renameat2); the two-rename fallback is used")
    assert (tmp_path / "a" / "f").read_text() == "new" and (tmp_path / "b" / "f").read_text() == "old"
    assert stat.S_ISDIR((tmp_path / "a").stat().st_mode)


def test_input_error_is_one_short_printable_line_whatever_a_library_says():
    err = InputError("x.h5", "attrs.encoder", "bad value " + "\x1b[2J" + "A" * 1000 + "\nsecond line")
    assert "\n" not in str(err) and "\x1b" not in str(err) and "\\x1b[2J" in str(err)
    assert len(err.message) == 400 and err.message.endswith("...")
