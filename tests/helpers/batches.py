"""Model batches of random features for the zoo's tests: the shapes and masks the packed dataset produces."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from models.base import ModelSpec
from pipeline.modalities import MODALITIES

TOKEN_SPEC = ModelSpec(dims={"text": 384, "audio": 16, "visual": 7})   # the packaged encoder's width; token_batch's
# Short real sentences of clear polarity with sentiment labels in [-3, 3] (for models that read token ids).
SENTENCES = [
    "i really loved this movie", "the plot was boring and slow", "not bad at all", "terrible acting honestly",
    "what a wonderful surprise", "i would never watch it again", "it was okay i guess", "absolutely brilliant work",
    "the ending made me angry", "pretty good overall", "a complete waste of time", "funny and warm",
    "dull characters everywhere", "best film this year", "the music was lovely", "i hated every minute",
]
LABELS = [2.4, -1.8, 0.6, -2.6, 2.0, -2.2, 0.2, 2.8, -1.4, 1.2, -3.0, 1.6, -1.2, 3.0, 1.0, -2.8]


def random_batch(spec: ModelSpec, n: int, seed: int = 0, *, shortest: Callable[[int], int] = lambda t: 1,
                 full_first: bool = False, absent: Mapping[int, Sequence[str]] | None = None
                 ) -> dict[str, torch.Tensor]:
    """Unaligned (n, T, D) features for each modality of `spec` with valid lengths drawn in
    [shortest(T), T] (row 0 full when `full_first`), a `present` column when `absent` names the modalities a
    row lacks, and regression labels in [-3, 3]; the same seed gives the same batch."""
    g = torch.Generator().manual_seed(seed)
    batch: dict[str, torch.Tensor] = {}
    for m, d in spec.dims.items():
        t = spec.seq_lens[m]
        batch[m] = torch.randn(n, t, d, generator=g)
        lengths = torch.randint(shortest(t), t + 1, (n,), generator=g)
        if full_first:
            lengths[0] = t
        batch[f"{m}_mask"] = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).float()
    if absent is not None:
        present = torch.ones(n, len(MODALITIES))
        for row, lacking in absent.items():
            for m in lacking:
                present[row, MODALITIES.index(m)] = 0.0
        batch["present"] = present
    batch["label"] = torch.rand(n, generator=g) * 6 - 3
    return batch


def random_aligned_batch(spec: ModelSpec, n: int, steps: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Word-aligned (n, steps, D) features of `spec`'s modalities, ragged word masks (row 0 full, at least two
    words), and regression labels in [-3, 3]."""
    g = torch.Generator().manual_seed(seed)
    batch = {f"aligned_{m}": torch.randn(n, steps, d, generator=g) for m, d in spec.dims.items()}
    lengths = torch.randint(2, steps + 1, (n,), generator=g)
    lengths[0] = steps
    batch["aligned_mask"] = (torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)).float()
    batch["label"] = torch.rand(n, generator=g) * 6 - 3
    return batch


def token_batch(tokenizer: Any, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Token ids of `n` of SENTENCES with their word index, word-aligned random audio (16-d) and visual (7-d)
    features, and their LABELS."""
    words = [s.split() for s in SENTENCES[:n]]
    enc = tokenizer(words, is_split_into_words=True, padding=True, return_tensors="pt")
    word_index = torch.tensor([[-1 if w is None else w for w in enc.word_ids(i)] for i in range(n)])
    n_words = max(len(w) for w in words)
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([len(w) for w in words])
    return {
        "text_ids": enc["input_ids"], "text_attention_mask": enc["attention_mask"], "text_word_index": word_index,
        "aligned_audio": torch.randn(n, n_words, 16, generator=g),
        "aligned_visual": torch.randn(n, n_words, 7, generator=g),
        "aligned_mask": (torch.arange(n_words)[None] < lengths[:, None]).float(),
        "label": torch.tensor(LABELS[:n]),
    }
