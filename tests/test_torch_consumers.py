"""Against real consumers: torch tensors without copies, SDPA and FlexAttention masks, and a
tiny Llama (random weights, nothing downloaded) that must give the same logits and losses
for packed rows as for each sequence alone."""

from __future__ import annotations

import numpy as np
import pytest
import seqpack
import torch
import torch.nn.functional as F
from conftest import segments_of
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 97


def random_sequences(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, VOCAB, size=n) for n in lengths]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).eval().double()


def test_to_torch_shares_memory_with_numpy():
    batch = seqpack.pack(random_sequences([5, 9, 3]), max_length=16, loss_weights="token")
    tensors = batch.to_torch()
    for name, tensor in tensors.items():
        array = getattr(batch, name)
        assert tensor.data_ptr() == array.__array_interface__["data"][0], name
        assert tuple(tensor.shape) == array.shape
    assert tensors["input_ids"].dtype == torch.int64
    assert tensors["cu_seqlens"].dtype == torch.int32
    # The numpy arrays own no copy either: they view the buffers Rust allocated.
    assert not batch.input_ids.flags.owndata
    assert type(batch.input_ids.base.base).__name__ == "PySliceContainer"


def test_padding_free_matches_the_rows():
    sequences = random_sequences([5, 9, 3, 12])
    batch = seqpack.pack(sequences, max_length=16)
    flat = batch.padding_free()
    order = [int(s) for s, _ in batch.source_index]
    np.testing.assert_array_equal(
        flat["input_ids"][0].numpy(), np.concatenate([sequences[i] for i in order])
    )
    assert flat["cu_seq_lens_q"].dtype == torch.int32
    assert flat["cu_seq_lens_q"].tolist() == np.cumsum([0] + [len(sequences[i]) for i in order]).tolist()
    assert flat["max_length_q"] == 12
    starts = flat["cu_seq_lens_q"][:-1].long()
    assert (flat["position_ids"][0, starts] == 0).all()
    assert (flat["labels"][0, starts] == -100).all()


def test_sdpa_mask_is_block_causal_and_has_no_empty_rows():
    segments = np.array([[1, 1, 2, 2, 2, 0, 0], [1, 2, 3, 3, 0, 0, 0]], dtype=np.int32)
    mask = seqpack.sdpa_mask(segments)
    assert mask.shape == (2, 1, 7, 7) and mask.dtype == torch.bool
    for b in range(2):
        for q in range(7):
            for k in range(7):
                same = segments[b, q] == segments[b, k] and segments[b, q] > 0 and k <= q
                assert mask[b, 0, q, k].item() == (same or q == k)
    assert mask.any(dim=-1).all()


def test_flex_block_mask_gives_the_same_attention_as_the_sdpa_mask():
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    batch = seqpack.pack(random_sequences([20, 33, 7, 64, 1, 50]), max_length=128)
    torch.manual_seed(1)
    q, k, v = (torch.randn(batch.num_rows, 2, 128, 16) for _ in range(3))
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=batch.sdpa_mask())
    got = flex.flex_attention(q, k, v, block_mask=batch.flex_block_mask())
    real = torch.from_numpy(batch.attention_mask).bool()
    torch.testing.assert_close(got.transpose(1, 2)[real], expected.transpose(1, 2)[real])


def per_token_loss(logits, labels):
    """Cross-entropy of each position's label given the previous position's logits (the
    shift Hugging Face models apply); the first position has no loss."""
    loss = F.cross_entropy(
        logits[..., :-1, :].reshape(-1, logits.shape[-1]), labels[..., 1:].reshape(-1),
        reduction="none", ignore_index=-100,
    )
    return loss.reshape(*labels.shape[:-1], -1)


@pytest.mark.parametrize("strategy", ["bfd", "sequential"])
def test_packed_rows_give_the_logits_and_losses_of_sequences_alone(model, strategy):
    lengths = [5, 9, 3, 12, 7, 1, 4, 30, 17, 2]
    sequences = random_sequences(lengths, seed=4)
    rng = np.random.default_rng(5)
    # Train on a random subset of tokens, as assistant-only labels would.
    labels = [np.where(rng.random(len(s)) < 0.3, -100, s) for s in sequences]
    token_batch = seqpack.pack(sequences, labels=labels, max_length=32, strategy=strategy, loss_weights="token")
    seq_batch = seqpack.pack(sequences, labels=labels, max_length=32, strategy=strategy, loss_weights="sequence")
    assert token_batch.num_rows < len(sequences)  # really packed
    t = token_batch.to_torch()

    with torch.no_grad():
        packed = model(
            input_ids=t["input_ids"], attention_mask=token_batch.sdpa_mask(), position_ids=t["position_ids"]
        ).logits
        alone = [model(input_ids=torch.as_tensor(s)[None]).logits[0] for s in sequences]

        for row, column, length, source, _chunk, _start in segments_of(token_batch):
            torch.testing.assert_close(packed[row, column : column + length], alone[source], rtol=1e-9, atol=1e-9)

        # Unpacked reference losses.
        per_seq = [per_token_loss(alone[i], torch.as_tensor(labels[i])) for i in range(len(sequences))]
        trained = [torch.as_tensor(labels[i][1:] != -100) for i in range(len(sequences))]
        token_mean = sum(l[m].sum() for l, m in zip(per_seq, trained)) / sum(m.sum() for m in trained)
        sequence_mean = torch.stack([l[m].mean() for l, m in zip(per_seq, trained) if m.any()]).mean()

        losses = per_token_loss(packed, t["labels"])
        for batch, reference in ((token_batch, token_mean), (seq_batch, sequence_mean)):
            weights = torch.from_numpy(batch.loss_weights)[:, 1:].double()
            loss = (losses * weights).sum() / weights.sum()
            torch.testing.assert_close(loss, reference, rtol=1e-9, atol=1e-9)

        # The model's own loss over packed labels is the token mean too (HF computes it in
        # float32, hence the looser tolerance).
        own = model(
            input_ids=t["input_ids"], attention_mask=token_batch.sdpa_mask(),
            position_ids=t["position_ids"], labels=t["labels"],
        ).loss
        torch.testing.assert_close(own.double(), token_mean, rtol=1e-5, atol=1e-6)

        # Control: without the block mask and restarting positions, packing leaks.
        leaky = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits
        row, column, length, source, *_ = next(s for s in segments_of(token_batch) if s[1] > 0)
        assert not torch.allclose(leaky[row, column : column + length], alone[source])


def test_padding_free_batch_gives_the_logits_of_sequences_alone(model):
    sequences = random_sequences([6, 11, 4, 20], seed=9)
    flat = seqpack.pack(sequences, max_length=32).padding_free()
    with torch.no_grad():
        # Hugging Face detects packed sequences from restarting position_ids when there is no
        # attention mask and no cache (a training forward).
        logits = model(
            input_ids=flat["input_ids"], position_ids=flat["position_ids"], use_cache=False
        ).logits[0]
        bounds = flat["cu_seq_lens_q"].tolist()
        order = [int(s) for s, _ in seqpack.pack(sequences, max_length=32).source_index]
        for k, source in enumerate(order):
            alone = model(input_ids=torch.as_tensor(sequences[source])[None]).logits[0]
            torch.testing.assert_close(logits[bounds[k] : bounds[k + 1]], alone, rtol=1e-9, atol=1e-9)
