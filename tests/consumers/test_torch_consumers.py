"""Against real consumers: torch tensors without copies, SDPA and FlexAttention masks, and a
tiny Llama (random weights, nothing downloaded) that must give the same logits and losses
for packed rows as for each sequence alone."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

import seqpack
from conftest import segments_of
from seqpack.batch import rows_varlen

VOCAB = 97


def random_sequences(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, VOCAB, size=n) for n in lengths]


def tolerance(model):
    """Eager attention takes its softmax in float32 whatever the model's dtype; a leak moves
    logits by ~0.1."""
    exact = model.config._attn_implementation == "sdpa"
    return {"rtol": 1e-9, "atol": 1e-9} if exact else {"rtol": 1e-5, "atol": 1e-6}


def tiny_llama(attention="sdpa"):
    """A 2-layer Llama with random weights, in float64 so differences are exact; its config
    keeps the default use_cache=True, as a user's model would."""
    torch.manual_seed(0)
    config = LlamaConfig(  # type: ignore[call-arg]  # attn_implementation passes through kwargs
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        attn_implementation=attention,
    )
    model = LlamaForCausalLM(config).eval().double()
    assert model.config.use_cache
    return model


@pytest.fixture(scope="module")
def model():
    return tiny_llama("sdpa")


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def any_model(request):
    return tiny_llama(request.param)


def test_to_torch_shares_memory_with_numpy():
    batch = seqpack.pack(random_sequences([5, 9, 3, 7, 2]), max_length=16, loss_weights="token")
    for rows in (None, slice(1, 3)):
        tensors = batch.to_torch(rows)
        index = slice(None) if rows is None else rows
        for name in ("input_ids", "labels", "position_ids", "loss_weights"):
            array = getattr(batch, name)[index]
            assert tensors[name].data_ptr() == array.__array_interface__["data"][0], name
            assert tuple(tensors[name].shape) == array.shape
    assert tensors["input_ids"].dtype == torch.int64
    # The numpy arrays own no copy either: they view the buffers Rust allocated.
    assert not batch.input_ids.flags.owndata
    assert type(batch.input_ids.base.base).__name__ == "PySliceContainer"  # type: ignore[union-attr]


def test_nothing_a_model_would_misread():
    batch = seqpack.pack(random_sequences([5, 9, 3]), max_length=16)
    # A 2-D all-ones attention_mask means "padding mask" to every Hugging Face model.
    assert not hasattr(batch, "attention_mask")
    assert "attention_mask" not in batch.to_torch()
    assert "attention_mask" not in batch.padding_free()
    assert batch.to_torch()["use_cache"] is False


def test_padding_free_matches_the_rows():
    sequences = random_sequences([5, 9, 3, 12])
    batch = seqpack.pack(sequences, max_length=16)
    flat = batch.padding_free()
    order = batch.source_index.tolist()
    np.testing.assert_array_equal(
        flat["input_ids"][0].numpy(), np.concatenate([sequences[i] for i in order])
    )
    assert flat["cu_seq_lens_q"].dtype == torch.int32
    assert (
        flat["cu_seq_lens_q"].tolist()
        == np.cumsum([0] + [len(sequences[i]) for i in order]).tolist()
    )
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
    real = torch.from_numpy(batch.segment_ids > 0)
    torch.testing.assert_close(got.transpose(1, 2)[real], expected.transpose(1, 2)[real])


def per_token_loss(logits, labels):
    """Cross-entropy of each position's label given the previous position's logits (the
    shift Hugging Face models apply); the first position has no loss."""
    loss = F.cross_entropy(
        logits[..., :-1, :].reshape(-1, logits.shape[-1]),
        labels[..., 1:].reshape(-1),
        reduction="none",
        ignore_index=-100,
    )
    return loss.reshape(*labels.shape[:-1], -1)


def reference_losses(alone, labels):
    """Token-mean and mean-of-sequence-means losses of each sequence run alone."""
    per_seq = [per_token_loss(alone[i], torch.as_tensor(labels[i])) for i in range(len(labels))]
    trained = [torch.as_tensor(labels[i][1:] != -100) for i in range(len(labels))]
    pairs = list(zip(per_seq, trained, strict=True))
    token_mean = sum(loss[m].sum() for loss, m in pairs) / sum(m.sum() for m in trained)
    sequence_mean = torch.stack([loss[m].mean() for loss, m in pairs if m.any()]).mean()
    return token_mean, sequence_mean


@pytest.mark.parametrize("strategy", ["bfd", "sequential"])
def test_model_splat_of_packed_rows_gives_the_logits_and_losses_of_sequences_alone(
    any_model, strategy
):
    model = any_model
    lengths = [5, 9, 3, 12, 7, 1, 4, 30, 17, 2]
    sequences = random_sequences(lengths, seed=4)
    rng = np.random.default_rng(5)
    # Train on a random subset of tokens, as assistant-only labels would.
    labels = [np.where(rng.random(len(s)) < 0.3, -100, s) for s in sequences]
    token_batch = seqpack.pack(
        sequences, labels=labels, max_length=32, strategy=strategy, loss_weights="token"
    )
    seq_batch = seqpack.pack(
        sequences, labels=labels, max_length=32, strategy=strategy, loss_weights="sequence"
    )
    assert token_batch.num_rows < len(sequences)  # really packed

    with torch.no_grad():
        alone = [model(input_ids=torch.as_tensor(s)[None]).logits[0] for s in sequences]
        token_mean, sequence_mean = reference_losses(alone, labels)
        # What a user writes: the whole dict into the model, nothing else.
        out = model(**token_batch.to_torch())
        for row, column, length, source, _chunk, _start in segments_of(token_batch):
            torch.testing.assert_close(
                out.logits[row, column : column + length], alone[source], **tolerance(model)
            )
        # The model's own loss is the token mean (HF computes it in float32).
        torch.testing.assert_close(out.loss.double(), token_mean, rtol=1e-5, atol=1e-6)

        # Minibatches of rows give the same logits.
        for start in range(0, token_batch.num_rows, 2):
            rows = slice(start, start + 2)
            part = model(**token_batch.to_torch(rows)).logits
            torch.testing.assert_close(part, out.logits[rows], rtol=1e-9, atol=1e-9)

        # loss_weights turn the packed per-token loss into either unpacked mean.
        losses = per_token_loss(out.logits, torch.from_numpy(token_batch.labels))
        for batch, reference in ((token_batch, token_mean), (seq_batch, sequence_mean)):
            weights = torch.from_numpy(batch.loss_weights)[:, 1:].double()
            loss = (losses * weights).sum() / weights.sum()
            torch.testing.assert_close(loss, reference, **tolerance(model))

        # Control: the same rows with the model's defaults and nothing else leak.
        leaky = model(input_ids=torch.from_numpy(token_batch.input_ids)).logits
        row, column, length, source, *_ = next(s for s in segments_of(token_batch) if s[1] > 0)
        assert not torch.allclose(leaky[row, column : column + length], alone[source])


def test_model_splat_of_padding_free_rows_gives_the_logits_of_sequences_alone(any_model):
    model = any_model
    sequences = random_sequences([6, 11, 4, 20, 9, 3], seed=9)
    batch = seqpack.pack(sequences, max_length=32)
    with torch.no_grad():
        alone = {
            i: model(input_ids=torch.as_tensor(s)[None]).logits[0] for i, s in enumerate(sequences)
        }
        for rows in (None, slice(1, 2), [1, 0]):
            flat = batch.padding_free(rows)
            logits = model(**flat).logits[0]
            index = (
                range(batch.num_rows)
                if rows is None
                else (range(*rows.indices(batch.num_rows)) if isinstance(rows, slice) else rows)
            )
            order = [
                int(batch.source_index[k])
                for r in index
                for k in range(batch.row_offsets[r], batch.row_offsets[r + 1])
            ]
            bounds = flat["cu_seq_lens_q"].tolist()
            assert len(bounds) == len(order) + 1
            for k, source in enumerate(order):
                torch.testing.assert_close(
                    logits[bounds[k] : bounds[k + 1]], alone[source], **tolerance(model)
                )


def test_padding_rows_give_a_zero_loss_not_nan(model):
    # Three sequences, rows padded to a multiple of 4: the last row has nothing to train.
    batch = seqpack.pack(random_sequences([30, 29, 28]), max_length=32, pad_rows_to_multiple_of=4)
    assert batch.stats.padding_rows == 1
    empty = slice(batch.num_rows - 1, batch.num_rows)
    with torch.no_grad():
        for inputs in (batch.to_torch(empty), batch.padding_free(empty)):
            loss = model(**inputs).loss
            assert torch.isfinite(loss) and loss.item() == 0.0
        # A full minibatch's loss is the mean over its trained tokens, padding row or not.
        whole = model(**batch.to_torch()).loss
        real = model(**batch.to_torch(slice(0, batch.num_rows - 1))).loss
        torch.testing.assert_close(whole, real)


def test_whole_dataset_views_refuse_sizes_that_cannot_fit():
    batch = seqpack.pack(random_sequences([40] * 20), max_length=64)
    with pytest.raises(seqpack.TooLargeError, match="rows="):
        batch.padding_free(max_tokens=100)
    assert batch.padding_free(rows=slice(0, 2), max_tokens=200)["input_ids"].shape == (1, 80)
    big = seqpack.pack([np.arange(4096) % VOCAB] * 200, max_length=4096)
    with pytest.raises(seqpack.TooLargeError, match=r"GiB; pass rows="):
        big.sdpa_mask()
    assert big.sdpa_mask(rows=slice(0, 2)).shape == (2, 1, 4096, 4096)


def test_an_old_transformers_is_warned_about(monkeypatch):
    import sys
    import types

    from seqpack import batch as batch_module

    monkeypatch.setattr(batch_module, "_OLD_TRANSFORMERS_WARNED", False)
    monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(__version__="4.46.3"))
    batch = seqpack.pack(random_sequences([5, 9]), max_length=16)
    with pytest.warns(UserWarning, match=r"transformers 4\.46\.3 does not find packed sequences"):
        batch.to_torch()


@pytest.mark.parametrize(
    ("attention", "fmt", "mask"),
    [
        ("eager", "rows", None),
        ("sdpa", "rows", None),
        ("sdpa", "rows", "sdpa"),
        ("eager", "rows", "eager"),
        ("eager", "padding_free", None),
        ("sdpa", "padding_free", None),
    ],
)
def test_every_loader_batch_splats_into_a_model_and_keeps_sequences_apart(
    tmp_path, attention, fmt, mask
):
    model = tiny_llama(attention)
    import seqpack.torch as sptorch

    sequences = random_sequences([5, 9, 3, 12, 7, 1, 4, 30, 17, 2, 25, 6], seed=11)
    store = seqpack.store.write(tmp_path / "store", sequences)
    loader = sptorch.PackedLoader(
        store, max_length=32, batch_rows=2, format=fmt, mask=mask, remainder="pad", seed=4
    )
    with torch.no_grad():
        alone = {
            i: model(input_ids=torch.as_tensor(s)[None]).logits[0] for i, s in enumerate(sequences)
        }
        checked = 0
        for batch in loader:
            out = model(**batch)
            assert torch.isfinite(out.loss)
            ids = batch["input_ids"]
            logits = out.logits
            if fmt == "padding_free":
                bounds = batch["cu_seq_lens_q"].tolist()
                spans = [(0, bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1)]
            else:
                segments = batch["segment_ids"]
                spans = []
                for row in range(ids.shape[0]):
                    for seg in segments[row].unique().tolist():
                        if seg > 0:
                            cols = (segments[row] == seg).nonzero().flatten()
                            spans.append((row, int(cols[0]), int(cols[-1]) + 1))
            for row, start, end in spans:
                tokens = ids[row, start:end]
                source = next(
                    i
                    for i, s in enumerate(sequences)
                    if len(s) == end - start and (torch.as_tensor(s) == tokens).all()
                )
                torch.testing.assert_close(
                    logits[row, start:end], alone[source], **tolerance(model)
                )
                checked += 1
        assert checked == len(sequences)


@pytest.fixture
def flash_attention_on_cpu(monkeypatch):
    """transformers' own FlashAttention-2 code path (``_flash_attention_forward``: unpadding,
    varlen bounds from ``cu_seq_lens_q/k`` or ``position_ids``) on the CPU. Only the kernel
    behind the ``flash_attn`` names it imports is ours: SDPA run on each sequence alone, so
    the result is exact when, and only when, transformers hands the kernel the right bounds.
    On a GPU, benches/gpu_attention.py runs the same path on PyTorch's FlashAttention-2 kernel
    (results in benches/results/gpu_attention.txt)."""
    import sys
    import types

    import transformers.modeling_flash_attention_utils as fa

    def varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
               dropout_p=0.0, softmax_scale=None, causal=False):  # fmt: skip
        assert torch.equal(cu_seqlens_q, cu_seqlens_k) and int(cu_seqlens_q[-1]) == len(q)
        bounds = cu_seqlens_q.tolist()
        assert max(b - a for a, b in pairwise(bounds)) == max_seqlen_q
        parts = [
            dense(q[None, a:b], k[None, a:b], v[None, a:b], softmax_scale=softmax_scale,
                  causal=causal)[0]
            for a, b in pairwise(bounds)
        ]  # fmt: skip
        return torch.cat(parts)

    def dense(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False):
        query, key, value = (x.transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(
            query, key, value, is_causal=causal, scale=softmax_scale, enable_gqa=True
        )
        return out.transpose(1, 2)

    module = types.ModuleType("flash_attn")
    module.flash_attn_func = dense  # type: ignore[attr-defined]
    module.flash_attn_varlen_func = varlen  # type: ignore[attr-defined]
    module.flash_attn_with_kvcache = None  # type: ignore[attr-defined]
    padding = types.ModuleType("flash_attn.bert_padding")
    padding.pad_input = fa._pad_input  # type: ignore[attr-defined]
    padding.unpad_input = fa._unpad_input  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flash_attn", module)
    monkeypatch.setitem(sys.modules, "flash_attn.bert_padding", padding)
    monkeypatch.setattr(fa, "is_flash_attn_2_available", lambda *args, **kwargs: True)
    monkeypatch.setattr(fa, "_loaded_implementation", None)
    model = tiny_llama("sdpa")
    # transformers offers FlashAttention-2 with CUDA only; the code path itself runs anywhere.
    model.config._attn_implementation = "flash_attention_2"
    return model


def spans_in(batch, segment_ids=None):
    """(row, start, end) of every sequence in a batch, from its own arrays (or from
    ``segment_ids`` for a batch that does not carry them)."""
    if segment_ids is None and "segment_ids" not in batch:
        bounds = batch["cu_seq_lens_q"].tolist()
        return [(0, a, b) for a, b in pairwise(bounds)]
    spans = []
    for row, segments in enumerate(
        torch.as_tensor(batch["segment_ids"] if segment_ids is None else segment_ids)
    ):
        for seg in segments.unique().tolist():
            if seg > 0:
                cols = (segments == seg).nonzero().flatten()
                spans.append((row, int(cols[0]), int(cols[-1]) + 1))
    return spans


@pytest.mark.parametrize("fmt", ["rows", "padding_free"])
def test_flash_attention_2_keeps_packed_sequences_apart_in_every_format(
    tmp_path, flash_attention_on_cpu, fmt
):
    import seqpack.torch as sptorch

    model = flash_attention_on_cpu
    sequences = random_sequences([5, 9, 3, 12, 7, 1, 4, 30, 17, 2, 25, 6], seed=13)
    store = seqpack.store.write(tmp_path / "store", sequences)
    loader = sptorch.PackedLoader(store, max_length=32, batch_rows=3, format=fmt, seed=2)
    packed = seqpack.pack(sequences, max_length=32)
    batches = [(b, spans_in(b)) for b in loader]
    if fmt == "rows":  # the loader's bounds (made in Rust) are rows_varlen's
        for b, _ in batches:
            same = rows_varlen(b["position_ids"].numpy(), b["segment_ids"].numpy())
            assert b["cu_seq_lens_q"].tolist() == same["cu_seq_lens_q"].tolist()
            assert b["max_length_q"] == same["max_length_q"]
    if fmt == "rows":
        # The in-memory batch and the collator for a plain DataLoader give the same keywords.
        rows = sptorch.PackedRows(store, max_length=32)
        collated = sptorch.collate_rows([rows[i] for i in range(3)])
        batches += [
            (packed.to_torch(), spans_in(None, packed.segment_ids)),
            (collated, spans_in(collated)),
        ]
        assert max(b["input_ids"].shape[0] for b, _ in batches) > 1  # several rows per batch
    by_tokens = {tuple(s.tolist()): i for i, s in enumerate(sequences)}
    with torch.no_grad():
        alone = [model(input_ids=torch.as_tensor(s)[None]).logits[0] for s in sequences]
        checked, leaked = 0, 0.0
        for batch, spans in batches:
            out = model(**batch).logits
            # Control: the same batch without the varlen keywords, as before rows carried them.
            bare = {k: v for k, v in batch.items() if not k.startswith(("cu_seq", "max_length"))}
            control = model(**bare).logits
            for row, start, end in spans:
                source = by_tokens[tuple(batch["input_ids"][row, start:end].tolist())]
                torch.testing.assert_close(out[row, start:end], alone[source], **tolerance(model))
                leaked = max(leaked, float((control[row, start:end] - alone[source]).abs().max()))
                checked += 1
    assert checked >= len(sequences)
    if fmt == "rows":
        assert leaked > 1e-3  # without cu_seq_lens, FlashAttention-2 mixes a row's sequences


@settings(max_examples=60)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    max_length=st.integers(40, 64),
)
def test_rows_varlen_bounds_are_the_sequences_and_padding_runs(lengths, max_length):
    batch = seqpack.pack(random_sequences(lengths), max_length=max_length)
    inputs = batch.to_torch()
    bounds = inputs["cu_seq_lens_q"].tolist()
    assert inputs["cu_seq_lens_k"] is inputs["cu_seq_lens_q"]
    expected = []
    for row in range(batch.num_rows):
        segments = batch.segment_ids[row]
        starts = [0, *(np.flatnonzero(np.diff(segments) != 0) + 1).tolist()]
        expected += [row * max_length + s for s in starts]
    assert bounds == [*expected, batch.num_rows * max_length]
    assert inputs["max_length_q"] == inputs["max_length_k"] == max(np.diff(bounds))
    assert inputs["cu_seq_lens_q"].dtype == torch.int32


def test_a_flex_block_mask_moves_with_the_segment_ids_it_reads():
    batch = seqpack.pack(random_sequences([20, 33, 7, 64, 1, 50]), max_length=128)
    mask = batch.flex_block_mask()
    moved = mask.to("meta")
    assert moved.kv_num_blocks.device.type == "meta"
    assert moved.segment_ids.device.type == "meta"  # type: ignore[attr-defined]
    captured = [c.cell_contents for c in moved.mask_mod.__closure__ or ()]
    assert all(t.device.type == "meta" for t in captured if isinstance(t, torch.Tensor))
    back = mask.to("cpu")  # a moved mask still masks the same (meta tensors hold no data)
    assert type(back) is type(mask)
    from torch.nn.attention import flex_attention as flex

    torch.manual_seed(2)
    q, k, v = (torch.randn(batch.num_rows, 2, 128, 16) for _ in range(3))
    torch.testing.assert_close(
        flex.flex_attention(q, k, v, block_mask=back),
        flex.flex_attention(q, k, v, block_mask=mask),
    )
