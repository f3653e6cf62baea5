"""Typed configuration: dataclasses with defaults from the papers, loadable from YAML."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.errors import SentiFlowError

T = TypeVar("T", bound="ConfigBase")


class ConfigError(SentiFlowError, ValueError):
    """A configuration file or dict does not match the expected schema."""


@dataclasses.dataclass
class ConfigBase:
    """Mixin for config dataclasses: to_dict/from_dict, YAML I/O and a stable hash."""

    def to_dict(self) -> dict[str, Any]:
        """Return a plain, JSON-serialisable dict (nested configs become dicts)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            out[f.name] = _to_plain(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
        """Build from a dict, rejecting unknown keys with the key's dotted path."""
        data = dict(data or {})
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - set(known))
        if unknown:
            prefix = f"{where}." if where else ""
            raise ConfigError(
                f"unknown config key(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
                f"known keys: {', '.join(sorted(known))}"
            )
        kwargs = {}
        for name, value in data.items():
            kwargs[name] = _from_plain(hints[name], value, f"{where}.{name}" if where else name)
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls: type[T], path: str | Path) -> T:
        """Load from a YAML file; a missing file or bad key names itself."""
        return cls.from_dict(read_yaml_mapping(path, "config file"))

    def to_yaml(self, path: str | Path) -> None:
        """Write this config as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")

    def fingerprint(self) -> str:
        """Stable short hash of the config's values (used in cache keys)."""
        return stable_hash(self.to_dict())


def read_yaml_mapping(path: str | Path, what: str = "config file", sections: str = "") -> dict[str, Any]:
    """The mapping a YAML file holds ({} when empty); ConfigError naming the file when it is missing or holds
    something else (`sections`: which ones it should have, for the message)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping" + (f" with sections {sections}" if sections else
                                                                  " at top level"))
    return data


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash a JSON-serialisable object independently of key order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def _to_plain(value: Any) -> Any:
    if isinstance(value, ConfigBase):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _from_plain(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _from_plain(non_none[0], value, where)
        return value
    if isinstance(hint, type) and issubclass(hint, ConfigBase):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        return hint.from_dict(value, where)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        inner = args[0] if args else Any
        items = [_from_plain(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict and isinstance(value, dict):
        inner = args[1] if len(args) == 2 else Any
        return {k: _from_plain(inner, v, f"{where}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    if hint is Path and isinstance(value, str):
        return Path(value)
    return value
