"""A tiny randomly initialised MarianMT model and its sentencepiece tokenizer, saved with save_pretrained: what the
translation extractor loads in tests (no model hub needed; its output is random text in the target vocabulary)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

# English sentences and their French translations: the sentencepiece training text of the tiny tokenizer
CORPUS = [
    ("i absolutely loved this movie", "j'ai adoré ce film"),
    ("this film was terrible", "ce film était horrible"),
    ("the acting was really good", "le jeu des acteurs était vraiment bon"),
    ("the music was nice", "la musique était belle"),
    ("the plot was weak and the jokes were dull", "l'intrigue était faible et les blagues ennuyeuses"),
    ("what a great film", "quel grand film"),
    ("it was not very good", "ce n'était pas très bon"),
    ("i did not like the characters", "je n'ai pas aimé les personnages"),
]


def tiny_marian(folder: Path, seed: int = 0) -> Path:
    """Build, save (save_pretrained) and return the directory of a 2-layer, 16-wide random MarianMT en->fr model."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    work = folder / "spm"
    work.mkdir(exist_ok=True)
    for side, texts in (("source", [e for e, _ in CORPUS]), ("target", [f for _, f in CORPUS])):
        spm.SentencePieceTrainer.train(sentence_iterator=iter(texts * 10), model_prefix=str(work / side),
                                       vocab_size=48, model_type="unigram", character_coverage=1.0,
                                       hard_vocab_limit=False, minloglevel=2)
    pieces: dict[str, int] = {"</s>": 0, "<unk>": 1, "<pad>": 2}
    for side in ("source", "target"):
        sp = spm.SentencePieceProcessor(model_file=str(work / f"{side}.model"))
        for i in range(sp.get_piece_size()):
            pieces.setdefault(sp.id_to_piece(i), len(pieces))
    (work / "vocab.json").write_text(json.dumps(pieces), encoding="utf-8")
    with warnings.catch_warnings():     # Marian recommends the optional sacremoses
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        tokenizer = MarianTokenizer(str(work / "source.model"), str(work / "target.model"),
                                    str(work / "vocab.json"), source_lang="en", target_lang="fr")
    config = MarianConfig(vocab_size=len(pieces), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                          decoder_ffn_dim=32, max_position_embeddings=128, pad_token_id=2, eos_token_id=0,
                          decoder_start_token_id=2, forced_eos_token_id=0)
    torch.manual_seed(seed)
    out = folder / "opus-mt-tiny-en-fr"
    MarianMTModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
