"""toolkit: the shared name registry and atomic writes."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from toolkit.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from toolkit.registry import Registry


def _widgets() -> Registry[int]:
    reg: Registry[int] = Registry("widget")
    reg.add("zeta", 1)
    reg.add("alpha", 2)
    reg.add("mid", 3)
    return reg


def test_registry_keeps_registration_order_and_sorts_names():
    reg = _widgets()
    assert list(reg) == ["zeta", "alpha", "mid"]
    assert reg.items() == [("zeta", 1), ("alpha", 2), ("mid", 3)]
    assert reg.names() == ["alpha", "mid", "zeta"]
    assert len(reg) == 3 and "alpha" in reg and "beta" not in reg
    assert reg.get("alpha") == 2 and reg["mid"] == 3


def test_register_decorator_returns_the_object_and_refuses_a_second_registration():
    reg: Registry[object] = Registry("gadget")

    @reg.register("f")
    def f() -> int:
        return 7

    assert f() == 7 and reg.get("f") is f
    with pytest.raises(ValueError, match="gadget 'f' is already registered"):
        reg.register("f")(lambda: 8)
    assert reg.get("f") is f


@pytest.mark.parametrize("missing", [KeyError, ValueError])
def test_unknown_name_raises_the_chosen_type_listing_sorted_names(missing):
    reg = Registry[int]("widget", missing=missing)
    reg.add("b", 1)
    reg.add("a", 2)
    with pytest.raises(missing, match=r"unknown widget 'c'; registered: a, b") as info:
        reg.get("c")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_unknown_name_defaults_to_key_error():
    with pytest.raises(KeyError, match="unknown widget 'x'; registered: ") as info:
        Registry[int]("widget")["x"]
    assert info.value.args == ("unknown widget 'x'; registered: ",)


def test_atomic_write_creates_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "héllo\nworld\n")
    assert target.read_bytes() == "héllo\nworld\n".encode()
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_atomic_path_keeps_the_old_file_and_leaves_no_temp_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half written"):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            tmp.write_bytes(b"new but incomplete")
            raise RuntimeError("half written")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_path_lets_a_library_write_by_path(tmp_path):
    target = tmp_path / "table.npy"
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.arange(3))
    assert np.load(target).tolist() == [0, 1, 2]
