"""Tiny randomly initialised BERT and RoBERTa encoders with fast tokenizers, built with `from_config` and saved with
`save_pretrained`: what a user's local copy of a paper's encoder (bert-base-uncased, roberta-large) looks like, small
enough for offline tests of the real loading code."""

from __future__ import annotations

from pathlib import Path

SENTENCES = ["i really loved this movie", "not bad at all", "a complete waste of time", "it was really good",
             "they did not explain why she has to fight", "the acting was great but the story was weak"]


def tiny_bert(folder: Path, max_positions: int = 64) -> Path:
    """A 2-layer, 16-wide random BERT with the packaged MiniLM's (BERT uncased WordPiece) tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from extractors.text.encoder import PACKAGED_MINILM, resolve_text_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_text_model(PACKAGED_MINILM), local_files_only=True)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=max_positions,
                        pad_token_id=tokenizer.pad_token_id)
    return _save(folder, BertModel(config), tokenizer)


def tiny_roberta(folder: Path, max_positions: int = 66) -> Path:
    """A 2-layer, 16-wide random RoBERTa with a byte-level BPE tokenizer trained on a few sentences (positions
    start after the padding index, as in roberta-large: `max_positions - 2` tokens per pass)."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    bpe = ByteLevelBPETokenizer(add_prefix_space=True, trim_offsets=True)
    bpe.train_from_iterator(SENTENCES, vocab_size=300, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=True)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                        cls_token="<s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                        mask_token="<mask>")
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=max_positions,
                           pad_token_id=tokenizer.pad_token_id)
    return _save(folder, RobertaModel(config), tokenizer)


def _save(folder: Path, model, tokenizer) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.manual_seed(0)
        model.init_weights()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
