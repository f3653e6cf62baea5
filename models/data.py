"""Packed training data: one tensor per modality per split, built from the feature cache and label rows.

Each split is a dict of equal-length tensors ("text" (N, T, D), "text_mask" (N, T), ..., "present" (N, 3),
"label" (N,), "index" (N,)) saved as one safetensors file (memory-mappable) with the row ids in its
metadata. Small datasets (MOSI) go to the GPU whole, so an epoch is index tensors and a few kernels.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from extractors.base import MediaItem
from extractors.config import SentiFlowConfig
from extractors.keys import FeatureLookup, media_item_for_row
from extractors.registry import EXTRACTORS
from extractors.text.translation import BOTH_WAYS
from models.tasks import LABEL_COLUMN, TaskConfig, label_values, task_from, task_targets
from pipeline.cache import CacheEntry, CacheError, FeatureCache
from pipeline.config import ConfigBase, ConfigError, read_yaml_mapping
from pipeline.labels import KNOWN_COLUMNS, LabelRow, LabelTable
from pipeline.media import MediaError
from pipeline.modalities import MODALITIES

log = logging.getLogger(__name__)

@dataclass
class ModalitySource(ConfigBase):
    """Where one modality's model input comes from: an extractor's cached tensor and its mask."""

    extractor: str = ""
    tensor: str = "fixed"
    mask: str = "mask"


def _default_sources() -> dict[str, ModalitySource]:
    return {"text": ModalitySource("text"), "audio": ModalitySource("logmel"), "visual": ModalitySource("fer")}


def _default_aligned_sources() -> dict[str, ModalitySource]:
    return {"text": ModalitySource("aligned", "text", "mask_text"),
            "audio": ModalitySource("aligned", "audio_acoustic", "mask_audio_acoustic"),
            "visual": ModalitySource("aligned", "visual_fer", "mask_visual_fer")}


TRANSLATION_KEY = "text_translation"     # batch key of the translated transcript (word-aligned: aligned_ prefix)


@dataclass
class DataConfig(ConfigBase):
    """Which modalities feed the model, from which extractors, and how a validation split is made."""

    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    sources: dict[str, ModalitySource] = field(default_factory=_default_sources)
    aligned: bool = False             # word-aligned inputs (batch keys aligned_*), set for models with aligned=True
    aligned_sources: dict[str, ModalitySource] = field(default_factory=_default_aligned_sources)
    valid_fraction: float = 0.2       # share of train rows held out when the labels have no valid split
    split_seed: int = 0
    gpu_memory_fraction: float = 0.5  # put a split on the GPU whole when it needs less than this share
    token_inputs: bool = False        # also pack the text encoder's token ids (models that fine-tune it)
    translations: bool = False        # also pack the translated transcripts (set for models that train on them)
    translation_source: ModalitySource = field(default_factory=lambda: ModalitySource("translated_text"))
    aligned_translation_source: ModalitySource = field(
        default_factory=lambda: ModalitySource("translated_text", "words", "words_mask"))

    def __post_init__(self) -> None:
        for m, src in _default_sources().items():   # a partial `sources` mapping keeps the other defaults
            self.sources.setdefault(m, src)
        for m, src in _default_aligned_sources().items():
            self.aligned_sources.setdefault(m, src)

    def source(self, modality: str) -> ModalitySource:
        """Where `modality` comes from in the current (unaligned or word-aligned) mode."""
        return (self.aligned_sources if self.aligned else self.sources)[modality]

    def translation(self) -> ModalitySource:
        """Where the translated transcript comes from in the current mode (token level, or word level)."""
        return self.aligned_translation_source if self.aligned else self.translation_source

    def extractors(self) -> list[str]:
        """The extractors whose cached output feeds the configured modalities (in this mode), sorted; translations
        are for training only, so scoring never extracts them."""
        return sorted({self.source(m).extractor for m in self.modalities})

    @property
    def prefix(self) -> str:
        """Batch key prefix of the modality tensors: '' or 'aligned_'."""
        return "aligned_" if self.aligned else ""

    def validate(self) -> None:
        """Raise ConfigError for unknown modalities or modalities without a source."""
        for m in self.modalities:
            if m not in MODALITIES:
                raise ConfigError(f"data.modalities: unknown modality {m!r}; use {', '.join(MODALITIES)}")
            if not self.source(m).extractor:
                raise ConfigError(f"data.{'aligned_' if self.aligned else ''}sources.{m}.extractor is not set")
        if not self.modalities:
            raise ConfigError("data.modalities is empty: name at least one of text, audio, visual")


@dataclass
class PackedSplit:
    """One split's tensors (equal first dimension) and the row ids they belong to."""

    tensors: dict[str, torch.Tensor]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return next(iter(self.tensors.values())).device

    def to(self, device: torch.device | str) -> "PackedSplit":
        """A copy on `device`."""
        return PackedSplit({k: v.to(device) for k, v in self.tensors.items()}, list(self.ids))

    def nbytes(self) -> int:
        """Total tensor bytes."""
        return sum(v.numel() * v.element_size() for v in self.tensors.values())

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rows at `index` as a model batch (moved to the index's device)."""
        idx = index.to(self.device)
        return {k: v.index_select(0, idx).to(index.device, non_blocking=True) for k, v in self.tensors.items()}

    def save(self, path: str | Path, info: dict[str, Any] | None = None) -> None:
        """Write as one safetensors file with ids (and `info`) in its metadata."""
        meta = {"ids": json.dumps(self.ids), "info": json.dumps(info or {})}
        save_file({k: v.detach().cpu().contiguous() for k, v in self.tensors.items()}, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "PackedSplit":
        """Read a split written by `save` (memory-mapped by safetensors)."""
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            ids = json.loads(fh.metadata()["ids"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        return cls(tensors, ids)


@dataclass
class PackedDataset:
    """Splits plus what the model needs to know: modalities, feature dims and sequence lengths."""

    splits: dict[str, PackedSplit]
    modalities: list[str]
    dims: dict[str, int]
    seq_lens: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)   # rows that could not be used, with why
    flags: dict[str, list[str]] = field(default_factory=dict)     # row id -> modalities masked out

    def save(self, folder: str | Path) -> None:
        """One safetensors file per split plus dataset.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, split in self.splits.items():
            split.save(folder / f"{name}.safetensors")
        (folder / "dataset.json").write_text(json.dumps(
            {"modalities": self.modalities, "dims": self.dims, "seq_lens": self.seq_lens,
             "splits": {k: len(v) for k, v in self.splits.items()}, "skipped": self.skipped, "flags": self.flags},
            indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> "PackedDataset":
        """Read a dataset written by `save`."""
        folder = Path(folder)
        info = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
        splits = {k: PackedSplit.load(folder / f"{k}.safetensors", device) for k in info["splits"]}
        return cls(splits, info["modalities"], info["dims"], info["seq_lens"], info["skipped"], info["flags"])


@dataclass
class _Sample:
    id: str
    label: float | list[float]          # the task's raw value(s): one, or one per label column
    mode: str
    features: dict[str, tuple[torch.Tensor, torch.Tensor]]   # modality -> (x (T, D), mask (T,))
    masked: list[str]
    tokens: dict[str, torch.Tensor] = field(default_factory=dict)   # TOKEN_TENSORS keys -> (T_l,)
    translation: tuple[torch.Tensor, torch.Tensor] | None = None   # the translated transcript's (x, mask)


# batch key -> tensor of the "text" extractor's entry; filler for rows without text
TOKEN_TENSORS = {"text_ids": ("token_ids", 0), "text_attention_mask": ("attention_mask", 0),
                 "text_word_index": ("word_index", -1)}


def read_token_features(lookup: FeatureLookup, media_hash: str, data: DataConfig, item: MediaItem | None = None
                        ) -> dict[str, torch.Tensor]:
    """Token ids, attention mask and token->word index of the cached text encoding ({} when absent)."""
    entry = lookup.entry(data.sources["text"].extractor, media_hash, item)
    if entry is None or entry.status != "ok":
        return {}
    try:
        tensors = entry.load()
    except CacheError:
        return {}
    if not all(src in tensors for src, _ in TOKEN_TENSORS.values()):
        return {}
    return {key: tensors[src].long().reshape(-1) for key, (src, _) in TOKEN_TENSORS.items()}


def read_sample_features(lookup: FeatureLookup, media_hash: str, data: DataConfig, item: MediaItem | None = None
                         ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, str]]:
    """The configured modalities' (x, mask) of one cached item, and why each absent modality is absent.

    `item` is the MediaItem extraction saw (its extras, e.g. a label transcript, are part of some keys).
    """
    feats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    absent: dict[str, str] = {}
    for m in data.modalities:
        got = read_source(lookup, data.source(m), media_hash, item, f"data.sources.{m}")
        if isinstance(got, str):
            absent[m] = got
        else:
            feats[m] = got
    return feats, absent


def read_source(lookup: FeatureLookup, src: ModalitySource, media_hash: str, item: MediaItem | None, where: str
                ) -> tuple[torch.Tensor, torch.Tensor] | str:
    """One model input of a cached item: (x (T, D), mask (T,)) from `src`, or why the item has none. `where`
    names the setting in errors (e.g. data.sources.text)."""
    entry = lookup.entry(src.extractor, media_hash, item)
    why = absent_reason(lookup, src.extractor, entry)
    if why is not None:
        return why
    try:
        tensors = entry.load()
    except CacheError as exc:
        return str(exc)
    if src.tensor not in tensors:
        lacking = entry.meta.get("sources", {}).get(src.tensor)   # a part the entry records as missing (aligned)
        if isinstance(lacking, str) and lacking != "ok":
            return f"'{src.extractor}' {src.tensor}: {lacking}"
        raise ConfigError(f"{where}.tensor: extractor '{src.extractor}' has no tensor "
                          f"{src.tensor!r}; it has {', '.join(sorted(tensors))}")
    x = tensors[src.tensor].float()
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ConfigError(f"{where}: tensor {src.tensor!r} of '{src.extractor}' has shape "
                          f"{tuple(x.shape)}; a model input must be (T, D) or (D,)")
    mask = tensors.get(src.mask)
    mask = mask.float().reshape(-1) if mask is not None and mask.numel() == x.shape[0] else torch.ones(x.shape[0])
    return x, mask


def read_data_config(options_path: str | Path | None) -> DataConfig:
    """The `data:` section of a training options YAML (the defaults without one)."""
    opts = read_yaml_mapping(options_path, "options file", "model:, train:, data:") if options_path else {}
    return DataConfig.from_dict(opts.get("data") or {}, where="data")


def absent_reason(lookup: FeatureLookup, extractor: str, entry: CacheEntry | None) -> str | None:
    """Why `extractor`'s entry gives a row no features (never extracted or imported, missing in the source), or None."""
    if entry is None:
        how = "imported" if lookup.extractor(extractor).keyed_by == "segment" else "extracted"
        return f"no cached '{extractor}' features (not {how})"
    if entry.status != "ok":
        return f"'{extractor}': {entry.meta.get('reason', 'missing in the source')}"
    return None


def modality_coverage(config: SentiFlowConfig, cache: FeatureCache, rows: Iterable[LabelRow], data: DataConfig
                      ) -> list[tuple[str, dict[str, str]]]:
    """Per label row: each configured modality's state, "ok" or why it is absent (entries looked up, not loaded),
    whatever filled the cache (extraction or import)."""
    data.validate()
    lookup = FeatureLookup(config, cache)
    out: list[tuple[str, dict[str, str]]] = []
    for row in rows:
        try:
            item = media_item_for_row(row)
        except (OSError, MediaError) as exc:
            out.append((row.id, {m: f"media unreadable: {exc}" for m in data.modalities}))
            continue
        out.append((row.id, {m: absent_reason(lookup, data.source(m).extractor,
                                              lookup.entry(data.source(m).extractor, item.media_hash, item)) or "ok"
                             for m in data.modalities}))
    return out


def usable_modalities(data: DataConfig, require: bool = False) -> list[str]:
    """The configured modalities whose extractor is registered (all of them, or an error, when `require`)."""
    known = EXTRACTORS
    out = []
    for m in data.modalities:
        name = data.source(m).extractor
        if name in known:
            out.append(m)
        elif require:
            raise ConfigError(f"data.sources.{m}.extractor: unknown extractor {name!r}; known: "
                              f"{', '.join(known.names())}")
        else:
            log.warning("modality %s skipped: extractor %r is not available in this build", m, name)
    return out


def build_dataset(config: SentiFlowConfig, cache: FeatureCache, labels: LabelTable | Iterable[LabelRow],
                  data: DataConfig, progress: bool = False, require_modalities: bool = False,
                  fixed_shapes: dict[str, tuple[int, int]] | None = None,
                  task: TaskConfig | dict[str, Any] | None = None, translations_for: str = "") -> PackedDataset:
    """Pack the cached features of every labelled row; rows without any feature are skipped with a reason.

    "label" holds the targets of `task` (default regression): scores or 0/1 (N,), class ids (N,) long, or an
    (N, C) 0/1 matrix for a multi-label task; a row lacking a value of the task's label columns is skipped.

    A modality missing for a row is zero-filled with present 0; a configured modality missing for every
    row is dropped (or an error when `require_modalities`). `fixed_shapes` (modality -> (T, D), e.g. a
    trained model's inputs) keeps those modalities even when absent everywhere and rejects other shapes.
    With `data.translations`, the translated transcripts are packed too (`text_translation` and its mask, zero
    for a row without one); when no row has one, a ConfigError names `translations_for` (the settings that
    need them) and both ways to supply them.
    """
    data.validate()
    data = DataConfig.from_dict({**data.to_dict(), "modalities": usable_modalities(data, require_modalities)})
    if not data.modalities:
        raise ConfigError("none of the configured modalities has an extractor in this build")
    lookup = FeatureLookup(config, cache)
    samples: list[_Sample] = []
    skipped: list[dict[str, str]] = []
    no_translation: dict[str, str] = {}
    rows = list(labels)
    task = task_from(task)
    check_label_columns(task, rows, getattr(labels, "columns", None), getattr(labels, "source", ""))
    iterator: Iterable[LabelRow] = rows
    if progress:
        from tqdm import tqdm
        iterator = tqdm(rows, desc="dataset", unit="row")
    for row in iterator:
        try:
            try:
                value = label_values(task, row.label, getattr(row, "targets", {}))
            except KeyError as exc:
                raise ValueError(f"row {row.id}: label column {exc.args[0]!r} is empty or not a number") from None
            item = media_item_for_row(row)
        except (ValueError, OSError, MediaError) as exc:
            skipped.append({"id": row.id, "reason": str(exc)})
            continue
        feats, absent = read_sample_features(lookup, item.media_hash, data, item)
        if not feats:
            why = "no usable features: " + "; ".join(f"{m}: {why}" for m, why in absent.items())
            if item.info.container == "none":   # neither media nor transcript: only imported features could serve
                why = f"row {row.id}: has neither a media file nor a transcript, and {why}"
            skipped.append({"id": row.id, "reason": why})
            continue
        tokens = read_token_features(lookup, item.media_hash, data, item) if data.token_inputs else {}
        translation = None
        if data.translations:
            translation = read_source(lookup, data.translation(), item.media_hash, item, "data.translation_source")
            if isinstance(translation, str):
                no_translation.setdefault(row.id, translation)
                translation = None
        samples.append(_Sample(row.id, value, row.mode, feats, sorted(absent), tokens, translation))
    if not samples:
        detail = "; ".join(f"{s['id']}: {s['reason']}" for s in skipped[:3])
        raise ConfigError(f"no labelled row has cached features (run `sentiflow extract` first); e.g. {detail}")
    translation_shape = None
    if data.translations:
        translation_shape = next((tuple(s.translation[0].shape) for s in samples if s.translation is not None), None)
        if translation_shape is None:
            raise ConfigError(missing_translations(translations_for or "the model's settings", data, no_translation))
        for s in samples:
            if s.translation is not None and tuple(s.translation[0].shape) != translation_shape:
                s.translation = None
    shapes: dict[str, tuple[int, int]] = {m: tuple(v) for m, v in (fixed_shapes or {}).items()
                                          if m in data.modalities}
    for s in samples:
        for m, (x, _) in s.features.items():
            shapes.setdefault(m, tuple(x.shape))
    modalities = [m for m in data.modalities if m in shapes]
    lost = [m for m in data.modalities if m not in shapes]
    if lost and require_modalities:
        raise ConfigError(f"modalities {', '.join(lost)} have no cached features for any row; extract them "
                          f"(extractors: {', '.join(data.source(m).extractor for m in lost)}) or drop them "
                          "from --modalities")
    for m in lost:
        log.warning("modality %s dropped: no row has cached '%s' features", m, data.source(m).extractor)
    keep: list[_Sample] = []
    for s in samples:
        bad = [m for m, (x, _) in s.features.items() if tuple(x.shape) != shapes[m]]
        if bad:
            skipped.append({"id": s.id, "reason": "feature shape differs from the rest: " + ", ".join(
                f"{m} {tuple(s.features[m][0].shape)} vs {shapes[m]}" for m in bad)})
            continue
        keep.append(s)
    splits = _split_samples(keep, data)
    packed = {name: _pack(group, modalities, shapes, data.prefix, task, translation_shape)
              for name, group in splits.items()}
    flags = {s.id: [m for m in s.masked if m in modalities] for s in keep if any(m in modalities for m in s.masked)}
    return PackedDataset(packed, modalities, {m: shapes[m][1] for m in modalities},
                         {m: shapes[m][0] for m in modalities}, skipped, flags)


def _split_samples(samples: list[_Sample], data: DataConfig) -> dict[str, list[_Sample]]:
    groups: dict[str, list[_Sample]] = {}
    for s in samples:
        groups.setdefault(s.mode, []).append(s)
    if "train" in groups and "valid" not in groups and len(groups["train"]) >= 2 and data.valid_fraction > 0:
        train = groups["train"]
        g = torch.Generator().manual_seed(data.split_seed)
        perm = torch.randperm(len(train), generator=g).tolist()
        n_valid = max(1, int(round(len(train) * data.valid_fraction)))
        groups["valid"] = [train[i] for i in sorted(perm[:n_valid])]
        groups["train"] = [train[i] for i in sorted(perm[n_valid:])]
    return groups


def check_label_columns(task: TaskConfig, rows: Sequence[LabelRow], header: Sequence[str] | None,
                        source: str = "") -> None:
    """Raise ConfigError naming each of the task's label columns that no row (and not the CSV header) has."""
    needed = [c for c in task.label_columns if c != LABEL_COLUMN]
    if not needed:
        return
    have = {c for c in header or [] if c not in KNOWN_COLUMNS} | {k for r in rows for k in getattr(r, "targets", {})}
    missing = [c for c in needed if c not in have]
    if missing:
        where = f" of {source}" if source else ""
        cols = sorted(have | {LABEL_COLUMN})
        raise ConfigError(f"task.label_columns: column(s) {', '.join(repr(c) for c in missing)} not in the "
                          f"labels{where}; numeric label columns there: {', '.join(cols)}")


def missing_translations(needed_by: str, data: DataConfig, reasons: dict[str, str]) -> str:
    """The one-line error when the model trains on translations and no row has one: both ways to supply them."""
    src = data.translation()
    example = next(iter(reasons.items()), None)
    seen = f" (e.g. row {example[0]}: {example[1]})" if example and BOTH_WAYS not in example[1] else ""
    return (f"{needed_by} train(s) on translated transcripts, but no row has a cached '{src.extractor}' "
            f"translation{seen}: {BOTH_WAYS}; then extract them (`sentiflow train --extract`, or add translation "
            f"and {src.extractor} to extraction.extractors)")


def _pack(samples: Sequence[_Sample], modalities: list[str], shapes: dict[str, tuple[int, int]], prefix: str = "",
          task: TaskConfig | None = None, translation_shape: tuple[int, ...] | None = None) -> PackedSplit:
    n = len(samples)
    tensors: dict[str, torch.Tensor] = {}
    present = torch.zeros(n, len(MODALITIES))
    for m in modalities:
        t, d = shapes[m]
        x = torch.zeros(n, t, d)
        mask = torch.zeros(n, t)
        for i, s in enumerate(samples):
            if m in s.features:
                x[i], mask[i] = s.features[m]
                present[i, MODALITIES.index(m)] = 1.0
        tensors[f"{prefix}{m}"] = x
        tensors[f"{prefix}{m}_mask"] = mask
    if prefix == "aligned_":   # the word mask: words that any modality covers
        tensors["aligned_mask"] = torch.stack([tensors[f"aligned_{m}_mask"] for m in modalities]).amax(0)
    tensors.update(pack_tokens([s.tokens for s in samples]))
    if translation_shape is not None:
        x = torch.zeros(n, *translation_shape)
        mask = torch.zeros(n, translation_shape[0])
        for i, s in enumerate(samples):
            if s.translation is not None:
                x[i], mask[i] = s.translation
        tensors[f"{prefix}{TRANSLATION_KEY}"] = x
        tensors[f"{prefix}{TRANSLATION_KEY}_mask"] = mask
    tensors["present"] = present
    task = task or TaskConfig()
    values = torch.tensor([s.label for s in samples], dtype=torch.float32)
    if task.kind == "multilabel":
        values = values.reshape(n, len(task.label_columns))
    tensors["label"] = task_targets(task, values)
    tensors["index"] = torch.arange(n, dtype=torch.int64)
    return PackedSplit(tensors, [s.id for s in samples])


def pack_tokens(per_row: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack rows' token tensors (rows without text get the filler values); {} when no row has tokens."""
    lengths = {t.numel() for row in per_row for t in row.values()}
    if not lengths:
        return {}
    n_tok = max(lengths)
    out = {}
    for key, (_, fill) in TOKEN_TENSORS.items():
        x = torch.full((len(per_row), n_tok), fill, dtype=torch.int64)
        for i, row in enumerate(per_row):
            if key in row:
                x[i, : row[key].numel()] = row[key]
        out[key] = x
    return out


def fits_on_device(split: PackedSplit, device: torch.device, fraction: float) -> bool:
    """True when the split can live on `device` whole (always on CPU; a share of free memory on CUDA)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return split.nbytes() < fraction * free
