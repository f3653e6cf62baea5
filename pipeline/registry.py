"""A lazy name -> class table: names are known without importing anything; a class is imported when asked for.

Each table maps a public name (`sentiflow train --model NAME`, `extraction.extractors: [NAME]`) to
"module:ClassName". Looking a name up imports only that module, so `sentiflow --help` or `cache ls` never
pays for torch-heavy model code. The class must carry the same `name` attribute as its table entry.
"""

from __future__ import annotations

import importlib
from typing import Generic, Iterator, Mapping, TypeVar

from pipeline.config import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A fixed table of named classes of one kind (extractors, models), imported on first use."""

    def __init__(self, kind: str, table: Mapping[str, str]) -> None:
        for name, target in table.items():
            if target.count(":") != 1:
                raise ValueError(f"{kind} {name!r}: table entry {target!r} must read 'module:ClassName'")
        self.kind = kind
        self._table = dict(table)
        self._loaded: dict[str, type[T]] = {}

    def names(self) -> list[str]:
        """Every registered name, sorted (nothing is imported)."""
        return sorted(self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> type[T]:
        """The class registered as `name` (its module imported now), or a ConfigError listing the known names."""
        if name not in self._table:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        if name not in self._loaded:
            module, attr = self._table[name].split(":")
            cls = getattr(importlib.import_module(module), attr)
            if getattr(cls, "name", None) != name:
                raise TypeError(f"{self.kind} table entry {name!r} -> {module}:{attr} has name "
                                f"{getattr(cls, 'name', None)!r}")
            self._loaded[name] = cls
        return self._loaded[name]

    def load_all(self) -> dict[str, type[T]]:
        """Every class by name (imports every module of the table)."""
        return {name: self.get(name) for name in self.names()}
