"""Score media with a trained run: cached features -> masked batch -> model -> one row per clip.

A clip that lacks a modality the model was trained with is scored with that modality masked (present 0)
and flagged; it is refused when it lacks every trained modality or one the model cannot do without
(a model may declare `required_modalities`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from extractors.base import MediaItem
from extractors.config import SentiFlowConfig
from extractors.keys import FeatureLookup
from extractors.outcomes import FAILED as EXTRACTION_FAILED
from extractors.runner import ExtractionRunner
from models.base import SentimentModel
from models.data import DataConfig, pack_tokens, read_sample_features, read_token_features
from models.metrics import DECISION_PROBABILITY, SCORE_RANGE
from models.run_dir import load_run
from models.tasks import TaskConfig, run_task
from pipeline.cache import FeatureCache
from pipeline.files import write_table
from pipeline.media import MediaError, probe
from pipeline.modalities import MODALITIES
from pipeline.system import resolve_device

SCORED, REFUSED, FAILED = "scored", "refused", "failed"


@dataclass
class ScoreRow:
    """One clip's result."""

    path: str
    id: str
    media_hash: str = ""
    score: float = float("nan")
    polarity: str = ""
    status: str = FAILED
    present_text: int = 0
    present_audio: int = 0
    present_visual: int = 0
    masked: str = ""          # trained modalities that were absent and masked out
    reason: str = ""
    model: str = ""
    task: str = "regression"
    predicted: str = ""       # binary: 1/0; classification: the class id; multilabel: the classes present
    probabilities: str = ""   # binary: P(positive); classification/multilabel: "name=p;..." per class
    extra: dict[str, Any] = field(default_factory=dict)


def polarity(score: float) -> str:
    """'positive' (> 0), 'negative' (< 0) or 'neutral' (exactly 0), the non0 convention of Acc-2."""
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def apply_prediction(row: ScoreRow, task: TaskConfig, output: torch.Tensor) -> None:
    """Fill a row's score/polarity/predicted/probabilities from the model's final output for one clip.

    regression: score = sentiment clipped to [-3, 3]; binary: score = P(positive); classification: score =
    class id (on the sentiment scale -k..k with the score mapping); multilabel: score = the largest probability.
    """
    row.task, row.status = task.kind, SCORED
    values = output.reshape(-1).tolist()
    if task.kind == "regression":
        row.score = min(max(values[0], SCORE_RANGE[0]), SCORE_RANGE[1])
        row.polarity = polarity(row.score)
    elif task.kind == "binary":
        row.score = values[0]
        row.predicted = str(int(values[0] > DECISION_PROBABILITY))
        row.polarity = "positive" if values[0] > DECISION_PROBABILITY else "negative"
        row.probabilities = f"{values[0]:.4f}"
    elif task.kind == "classification":
        cls = int(values[0])
        row.predicted = str(cls)
        row.score = float(cls - (task.n_classes - 1) // 2 if task.class_mapping == "score" else cls)
        row.polarity = polarity(row.score) if task.class_mapping == "score" else ""
    else:
        row.score = max(values)
        row.predicted = ",".join(n for n, p in zip(task.label_columns, values) if p > DECISION_PROBABILITY)
        row.probabilities = ";".join(f"{n}={p:.4f}" for n, p in zip(task.label_columns, values))


def _shape(record: dict[str, Any], m: str) -> tuple[int, int]:
    spec = record["spec"]
    return int(spec["seq_lens"][m]), int(spec["dims"][m])


def assemble(feats: dict[str, tuple[torch.Tensor, torch.Tensor]], record: dict[str, Any]
             ) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """A batch of one from a clip's features, the masked modalities, and a refusal/shape reason ('' if fine)."""
    trained = list(record["data"]["modalities"])
    prefix = "aligned_" if record["data"].get("aligned") else ""
    batch: dict[str, torch.Tensor] = {}
    present = torch.zeros(1, len(MODALITIES))
    masked = []
    for m in trained:
        t, d = _shape(record, m)
        if m in feats:
            x, mask = feats[m]
            if tuple(x.shape) != (t, d):
                return {}, [], (f"{m} features have shape {tuple(x.shape)} but the model was trained on {(t, d)}; "
                                "extract with the run's feature config")
            batch[prefix + m], batch[f"{prefix}{m}_mask"] = x.unsqueeze(0), mask.unsqueeze(0)
            present[0, MODALITIES.index(m)] = 1.0
        else:
            batch[prefix + m], batch[f"{prefix}{m}_mask"] = torch.zeros(1, t, d), torch.zeros(1, t)
            masked.append(m)
    if prefix:
        batch["aligned_mask"] = torch.stack([batch[f"aligned_{m}_mask"] for m in trained]).amax(0)
    batch["present"] = present
    return batch, masked, ""


def score_cached(model: SentimentModel, record: dict[str, Any], lookup: FeatureLookup,
                 items: list[tuple[str, str, MediaItem]], device: torch.device, batch_size: int = 64
                 ) -> list[ScoreRow]:
    """Score (path, id, MediaItem as extraction saw it) items from the cache; one ScoreRow each, in order."""
    data = DataConfig.from_dict(record["data"])
    task = run_task(record)
    required = set(getattr(model, "required_modalities", ()))
    rows: list[ScoreRow] = []
    ready: list[tuple[int, dict[str, torch.Tensor]]] = []
    for path, rid, item in items:
        row = ScoreRow(path=path, id=rid, media_hash=item.media_hash, model=record.get("model_id", record["model"]))
        rows.append(row)
        try:
            feats, absent = read_sample_features(lookup, item.media_hash, data, item)
        except Exception as exc:  # noqa: BLE001 - one bad item never stops the batch
            row.reason = f"cannot read features: {exc}"
            continue
        for m in MODALITIES:
            setattr(row, f"present_{m}", int(m in feats))
        batch, masked, problem = assemble(feats, record)
        if data.token_inputs and not problem:
            batch.update({k: v for k, v in pack_tokens([read_token_features(lookup, item.media_hash, data, item)]
                                                       ).items()})
        if problem:
            row.status, row.reason = REFUSED, problem
            continue
        lacking = sorted(required - set(feats))
        if lacking or not feats:
            row.status = REFUSED
            row.reason = ("model cannot score without " + ", ".join(lacking) if lacking else
                          "none of the model's modalities is available") + ": " + "; ".join(
                f"{m}: {why}" for m, why in absent.items())
            continue
        row.masked = ",".join(masked)
        if masked:
            row.reason = "masked " + "; ".join(f"{m}: {absent.get(m, 'absent')}" for m in masked)
        ready.append((len(rows) - 1, batch))
    model.eval()
    with torch.no_grad():
        for b in range(0, len(ready), batch_size):
            chunk = ready[b: b + batch_size]
            batch = {k: torch.cat([c[1][k] for c in chunk]).to(device) for k in chunk[0][1]}
            pred = model.predict(batch).float().cpu().reshape(len(chunk), -1)
            for (i, _), p in zip(chunk, pred):
                if not torch.isfinite(p).all():
                    # never a score: NaN/inf out of a model means broken features or weights for this clip
                    rows[i].status = FAILED
                    rows[i].reason = (f"the model's output is not a finite number ({p.tolist()}); the clip's "
                                      "features or the model are damaged: run `sentiflow cache verify`")
                    continue
                apply_prediction(rows[i], task, p)
    return rows


def score_media(paths: Sequence[str | Path], run_dir: str | Path, cache_dir: str | Path,
                out_file: str | Path | None = None, device: str = "auto", progress: bool = False) -> pd.DataFrame:
    """Extract what is missing with the run's feature config, then score every clip: one row per clip."""
    dev = resolve_device(device)
    model, record = load_run(run_dir, dev)
    config = SentiFlowConfig.from_dict(record["features"])
    data = DataConfig.from_dict(record["data"])
    cache = FeatureCache(cache_dir)
    runner = ExtractionRunner(config, cache, device=dev, only=data.extractors())
    # no extras: the transcript extractor finds label files and subtitles next to the media itself
    summary = runner.run([str(p) for p in paths], progress=progress)
    lookup = FeatureLookup(config, cache)
    rows: list[ScoreRow] = []
    todo: list[tuple[str, str, MediaItem]] = []
    ids = clip_ids([item.path for item in summary.items])
    for item, rid in zip(summary.items, ids):
        if item.status == EXTRACTION_FAILED or not item.media_hash:
            rows.append(ScoreRow(path=item.path, id=rid, media_hash=item.media_hash,
                                 reason=item.reason or item.notes(), model=record["model_id"]))
        else:
            try:
                media = MediaItem(path=item.path, media_hash=item.media_hash,
                                  info=probe(item.path, scan_packets=False), extras={})
            except MediaError as exc:
                rows.append(ScoreRow(path=item.path, id=rid, media_hash=item.media_hash,
                                     reason=str(exc), model=record["model_id"]))
                continue
            todo.append((item.path, rid, media))
    rows.extend(score_cached(model, record, lookup, todo, dev))
    order = {str(p): i for i, p in enumerate(summary.items)}
    rows.sort(key=lambda r: order.get(r.path, len(order)))
    frame = pd.DataFrame([{k: v for k, v in vars(r).items() if k != "extra"} for r in rows])
    if out_file:
        write_table(frame, out_file)
    return frame


def clip_id(path: str | Path) -> str:
    """`<folder>_<stem>`, the MMSA id form (`video_id_clip_id`) of a media path."""
    p = Path(path)
    return f"{p.parent.name}_{p.stem}" if p.parent.name else p.stem


def clip_ids(paths: Sequence[str | Path]) -> list[str]:
    """One distinct id per path: `clip_id`, the file name with its extension where two clips share it
    (`v_01.mp4`, `v_01.wav`), and a `~n` suffix where even that repeats (same folder name, different parents)."""
    ids = [clip_id(p) for p in paths]
    shared = {i for i in ids if ids.count(i) > 1}
    ids = [f"{Path(p).parent.name}_{Path(p).name}".lstrip("_") if i in shared else i for i, p in zip(ids, paths)]
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        out.append(i if seen[i] == 1 else f"{i}~{seen[i]}")
    return out
