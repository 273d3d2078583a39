"""Supervised LoRA fine-tuning on prompt–completion rows with TRL's SFTTrainer.

Loss is on the completion only (the fenced call list plus ``<|im_end|>``), the prompt being
context. Runs unchanged under ``accelerate launch`` for several GPUs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hammer.training.config import TrainConfig
from hammer.training.export import BASE_RECORD, write_base_record
from hammer.training.model import load_base

log = logging.getLogger(__name__)

END_OF_TURN = "<|im_end|>"  # ends the assistant turn in the Hammer prompt; the server stops on it


def precision(config: TrainConfig) -> str:
    """The precision to train in: ``auto`` is bf16 on a GPU that has it, else fp32."""
    if config.precision != "auto":
        return config.precision
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def load_rows(config: TrainConfig, tokenizer: Any) -> Any:
    """The training rows as a ``datasets.Dataset``, without rows longer than the cutoff.

    Dropping (rather than truncating, which keeps the start) guarantees no row silently
    loses the completion the loss is computed on.
    """
    from datasets import load_dataset

    path = Path(config.train_file)
    if not path.is_file():
        raise FileNotFoundError(f"train_file {path} does not exist; make it with `hammer data build`")
    rows = load_dataset("json", data_files=str(path), split="train")
    missing = {"prompt", "completion"} - set(rows.column_names)
    if missing:
        raise ValueError(f"{path} lacks the column(s) {sorted(missing)}; make it with `hammer data build`")
    rows = rows.select_columns(["prompt", "completion"])
    if config.max_samples:
        rows = rows.select(range(min(config.max_samples, len(rows))))
    fits = rows.filter(lambda r: len(tokenizer(r["prompt"] + r["completion"] + END_OF_TURN).input_ids)
                       <= config.max_length)
    if len(fits) < len(rows):
        log.warning("dropped %d of %d rows longer than max_length=%d tokens",
                    len(rows) - len(fits), len(rows), config.max_length)
    if not len(fits):
        raise ValueError(f"no row of {path} fits max_length={config.max_length}")
    return fits


def build_trainer(config: TrainConfig) -> Any:
    """An SFTTrainer with the LoRA model, ready for ``.train()``."""
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    mode = precision(config)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[mode]
    model, tokenizer = load_base(config.base_model, dtype=dtype)
    rows = load_rows(config, tokenizer)
    args = SFTConfig(
        output_dir=config.output_dir,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        max_length=config.max_length,
        completion_only_loss=True,
        eos_token=END_OF_TURN if END_OF_TURN in tokenizer.get_vocab() else None,
        bf16=mode == "bf16",
        fp16=mode == "fp16",
        gradient_checkpointing=config.gradient_checkpointing,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        report_to="none",
    )
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.lora_target_modules, task_type="CAUSAL_LM")
    return SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer, peft_config=lora)


def resume_checkpoint(config: TrainConfig) -> str | bool | None:
    """What to resume from: ``auto`` is the newest checkpoint in ``output_dir`` (or a fresh start)."""
    from transformers.trainer_utils import get_last_checkpoint

    if config.resume == "auto":
        out = Path(config.output_dir)
        return get_last_checkpoint(str(out)) if out.is_dir() else None
    if config.resume is False:
        return None
    if config.resume is not True and not Path(str(config.resume)).is_dir():
        raise FileNotFoundError(f"resume checkpoint {config.resume} does not exist")
    return config.resume


def run_training(trainer: Any, config: TrainConfig) -> Path:
    """Train (resuming as configured) and save the LoRA adapter, tokenizer and base record."""
    checkpoint = resume_checkpoint(config)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    if trainer.accelerator.is_main_process:  # recorded first, so an interrupted run's checkpoints can be exported
        write_base_record(config.output_dir, config.base_model)
    trainer.train(resume_from_checkpoint=checkpoint)
    out = Path(config.output_dir)
    trainer.save_model(str(out))
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(str(out))
        (out / BASE_RECORD).write_text(json.dumps({"base_model": config.base_model}) + "\n", encoding="utf-8")
    return out


def train(config: TrainConfig) -> Path:
    """Fine-tune ``config.base_model`` and return the directory holding the LoRA adapter."""
    return run_training(build_trainer(config), config)
