"""A registry of interchangeable parts chosen by name, behind every `@register_x` / `create_x(name)` pair."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> item, kept in registration order; `kind` ("fusion model", "embedder") names it in errors.

    `missing` is the exception type an unknown name raises, so each registry keeps the
    type its callers already catch (KeyError for lookups, ValueError for bad arguments).
    """

    def __init__(self, kind: str, *, missing: type[Exception] = KeyError) -> None:
        self.kind = kind
        self._missing = missing
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register `item` under `name`; a name registers once."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`: returns the decorated object unchanged."""

        def decorator(item: T) -> T:
            return self.add(name, item)

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise self._missing(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}") from None

    __getitem__ = get

    def names(self) -> list[str]:
        """Registered names, sorted (iterate the registry for registration order)."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        """(name, item) pairs in registration order."""
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
