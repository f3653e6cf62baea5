"""Training recipes as data: one YAML file per model (`models/recipes/<model>.yaml`), one entry per recipe.

A recipe holds training options in the sections `sentiflow train --options` takes (model, train, data, task)
plus `source` (where in the paper the numbers come from). `sentiflow train --model vae_amdt --recipe paper:mosi`
trains with them; options given besides the recipe override it key by key. A recipe may also be the path of a
YAML file holding such sections. A model registered as a variant of another (e.g. seq2seq_hier of seq2seq)
trains with the other's recipes when its file holds only `same_as: <model>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.config import ConfigError

RECIPES_DIR = Path(__file__).resolve().parent
SECTIONS = ("model", "train", "data", "task")


SAME_AS = "same_as"


def _recipes_of(model: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = RECIPES_DIR / f"{model}.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must map recipe names to option sections")
    if SAME_AS in data:
        other = data[SAME_AS]
        if len(data) != 1 or not isinstance(other, str) or other in seen + (model,):
            raise ConfigError(f"{path}: '{SAME_AS}: <model>' must be the file's only entry and name another "
                              "model's recipes (without a loop)")
        return _recipes_of(other, seen + (model,))
    return data


def recipe_names(model: str) -> list[str]:
    """The recipes that ship for `model` (e.g. paper:mosi, paper:mosei)."""
    return sorted(_recipes_of(model))


def load_recipe(model: str, recipe: str) -> dict[str, Any]:
    """The option sections of recipe `recipe` of `model` (a shipped name, or a YAML file's path), and its source."""
    shipped = _recipes_of(model)
    if recipe in shipped:
        data, where = shipped[recipe], f"{model}.yaml: {recipe}"
    elif Path(recipe).suffix in (".yaml", ".yml") and Path(recipe).is_file():
        data, where = yaml.safe_load(Path(recipe).read_text(encoding="utf-8")) or {}, recipe
    else:
        known = ", ".join(recipe_names(model)) or "none ship for it"
        raise ConfigError(f"unknown recipe {recipe!r} for model {model}; known: {known} (or a YAML file's path)")
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {where} must be a mapping of sections {', '.join(SECTIONS)}")
    unknown = sorted(set(data) - set(SECTIONS) - {"source"})
    if unknown:
        raise ConfigError(f"recipe {where}: unknown section(s) {', '.join(unknown)}; sections: {', '.join(SECTIONS)}")
    return data


def apply_recipe(model: str, recipe: str | None, options: dict[str, Any] | None) -> dict[str, Any]:
    """Training options: the recipe's sections with `options` laid over them key by key (options win)."""
    options = dict(options or {})
    if not recipe:
        return options
    merged = {k: v for k, v in load_recipe(model, recipe).items() if k != "source"}
    for section, values in options.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = _merge(merged[section], values)
        else:
            merged[section] = values
    return merged


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
