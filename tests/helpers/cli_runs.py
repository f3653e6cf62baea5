"""Training a zoo model on the sample cache through the `sentiflow train` command, as a user would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def train_on_sample_cache(sample_cache: tuple[Path, Path, Path], out: Path, model: str, recipe: str,
                          options: dict[str, Any]) -> dict[str, Any]:
    """Run `sentiflow train --model M --recipe R --options <options>` into `out` on CPU; its run.json record."""
    from flows.cli import main

    cache, media_root, labels = sample_cache
    out.mkdir(parents=True, exist_ok=True)
    opts = out / "options.yaml"
    opts.write_text(yaml.safe_dump(options), encoding="utf-8")
    run = out / "run"
    rc = main(["train", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--model", model, "--recipe", recipe, "--options", str(opts), "--out", str(run), "--device", "cpu"])
    assert rc == 0, f"sentiflow train --model {model} --recipe {recipe} exited with {rc}"
    return json.loads((run / "run.json").read_text(encoding="utf-8"))
