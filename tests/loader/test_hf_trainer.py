"""The Hugging Face recipe for real: transformers' Trainer trains a tiny random Llama on a
store's packed rows in the padding-free format, is stopped at a checkpoint mid-epoch, resumes,
and sees exactly the batches an uninterrupted run sees."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

import seqpack
import seqpack.hf
import seqpack.torch


class RecordingTrainer(Trainer):
    """Records a digest of every batch the model is trained on."""

    seen: list[str]

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        h = hashlib.sha256()
        for name in ("input_ids", "labels", "position_ids", "cu_seq_lens_q"):
            h.update(inputs[name].cpu().numpy().tobytes())
        self.seen.append(h.hexdigest())
        return super().training_step(model, inputs, *args, **kwargs)


class StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step >= self.step:
            control.should_save = True
            control.should_training_stop = True
        return control


def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(  # type: ignore[call-arg]  # attn_implementation passes through kwargs
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        attn_implementation="sdpa",
    )  # fmt: skip
    return LlamaForCausalLM(config)


def trainer(store: Any, out: Any, *callbacks: Any) -> RecordingTrainer:
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=2, max_steps=8, save_steps=100,
        learning_rate=1e-3, seed=7, data_seed=7, report_to=[], logging_steps=100,
        dataloader_num_workers=0, use_cpu=True,
    )  # fmt: skip
    rows = seqpack.hf.packed_dataset(store, max_length=64, pad_rows_to_multiple_of=2)
    recording = RecordingTrainer(
        model=model(), args=args, train_dataset=rows, data_collator=seqpack.hf.collator(),
        callbacks=list(callbacks),
    )  # fmt: skip
    recording.seen = []
    return recording


def test_trainer_resumes_mid_epoch_with_exactly_the_batches_of_an_uninterrupted_run(tmp_path):
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 128, size=int(n)) for n in rng.integers(5, 60, size=80)]
    store = seqpack.store.write(tmp_path / "store", sequences)
    rows = seqpack.hf.packed_dataset(store, max_length=64, pad_rows_to_multiple_of=2)
    assert len(rows) // 2 > 8  # 8 steps stay inside the first epoch

    full = trainer(store, tmp_path / "full")
    full.train()
    assert len(full.seen) == 8

    first = trainer(store, tmp_path / "run", StopAt(3))
    first.train()
    assert first.seen == full.seen[:3]
    resumed = trainer(store, tmp_path / "run")
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-3"))
    assert resumed.seen == full.seen[3:]


def test_to_hf_dataset_holds_the_rows(tmp_path):
    sequences = [np.arange(n) + 1 for n in (5, 9, 3, 12, 7)]
    store = seqpack.store.write(tmp_path / "store", sequences)
    dataset = seqpack.hf.to_hf_dataset(store, max_length=16)
    rows = seqpack.torch.PackedRows(store, max_length=16)
    assert len(dataset) == len(rows)
    for index in range(len(rows)):
        for name in ("input_ids", "labels", "position_ids", "segment_ids"):
            assert list(dataset[index][name]) == rows[index][name].tolist()


def test_hugging_face_rows_carry_real_tokens_only(tmp_path):
    sequences = [np.arange(n) + 1 for n in (5, 9, 3, 12, 7)]
    store = seqpack.store.write(tmp_path / "store", sequences)
    trimmed = seqpack.hf.packed_dataset(store, max_length=16, pad_rows_to_multiple_of=4)
    full = seqpack.torch.PackedRows(store, max_length=16)
    assert len(trimmed) == 4 and len(full) == 3
    for index in range(len(full)):
        real = int((full[index]["segment_ids"] > 0).sum())
        assert set(trimmed[index]) == {"input_ids", "labels", "position_ids"}
        assert trimmed[index]["input_ids"].tolist() == full[index]["input_ids"][:real].tolist()
    assert len(trimmed[3]["input_ids"]) == 0  # an empty row pads the count to 4
    for format in ("padding_free", "rows"):
        # A trainer drops keys its model does not name; the collators need none of them.
        batch = seqpack.hf.collator(format)([trimmed[i] for i in range(4)])
        assert batch["use_cache"] is False and "attention_mask" not in batch
        kept = batch["input_ids"][batch["labels"] != -100].tolist() if format == "rows" else None
        assert kept is None or len(kept) == int((batch["labels"] != -100).sum())
    empty = seqpack.hf.collator(pad_id=7)([trimmed[3]])
    assert empty["input_ids"].tolist() == [[7]] and empty["labels"].tolist() == [[-100]]
