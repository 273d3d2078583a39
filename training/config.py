"""``hammer train`` configuration: one YAML file, validated before anything heavy loads."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# The Hammer paper's recipe: LoRA r=32 on all linear layers, lr 5e-5, cosine, warmup ≈0.8%,
# one epoch, batch 4 × accumulation 2, cutoff 2048, bf16 on GPU.


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model: str = Field(description="HF directory, hub id, a .gguf file, or 'embedded' (the bundled SmolLM2-135M)")
    train_file: str = Field(description="JSON Lines from `hammer data build` (prompt, completion)")
    output_dir: str = Field(description="where checkpoints and the final LoRA adapter go")
    lora_rank: int = Field(32, ge=1)
    lora_alpha: int = Field(64, ge=1, description="LoRA scaling numerator (LLaMA-Factory's default: 2 × rank)")
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: str | list[str] = Field("all-linear", description="'all-linear' or module names")
    learning_rate: float = Field(5e-5, gt=0)
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = Field(0.008, ge=0, le=1)
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: run the epochs)")
    per_device_train_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(2, ge=1)
    max_length: int = Field(2048, ge=16, description="cutoff in tokens; longer rows are dropped, not truncated")
    max_samples: int | None = Field(None, ge=1, description="use only the first N rows")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field("auto", description="auto: bf16 on a GPU, else fp32")
    gradient_checkpointing: bool = False
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(500, ge=1)
    save_total_limit: int | None = Field(2, ge=1)
    seed: int = 0
    resume: bool | str = Field(
        "auto", description="auto: continue from the newest checkpoint in output_dir if any; or a checkpoint path")


class ConfigError(ValueError):
    """A config file that cannot be used, with a message that says why."""


def load_config(path: str | Path) -> TrainConfig:
    """The validated config in a YAML file; ``ConfigError`` names every bad or unknown key."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems} (known keys: {', '.join(TrainConfig.model_fields)})") from None
