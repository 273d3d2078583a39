from __future__ import annotations

from pathlib import Path

import pytest
from hammer.training.config import ConfigError, TrainConfig, load_config

from hammer.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


class TestLoadConfig:
    @pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
    def test_shipped_configs_are_valid(self, path):
        assert isinstance(load_config(path), TrainConfig)

    def test_recipe_defaults(self):
        config = TrainConfig(base_model="b", train_file="t", output_dir="o")
        assert (config.lora_rank, config.learning_rate, config.lr_scheduler_type, config.warmup_ratio,
                config.num_train_epochs, config.per_device_train_batch_size, config.gradient_accumulation_steps,
                config.max_length, config.lora_target_modules) == (32, 5e-5, "cosine", 0.008, 1.0, 4, 2, 2048,
                                                                   "all-linear")

    def test_unknown_key_and_bad_value_are_both_named(self, tmp_path):
        path = tmp_path / "c.yaml"
        path.write_text("base_model: b\ntrain_file: t\noutput_dir: o\nlearning_rat: 1\nlora_rank: 0\n")
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert "learning_rat" in str(err.value) and "lora_rank" in str(err.value)

    def test_missing_required_key(self, tmp_path):
        path = tmp_path / "c.yaml"
        path.write_text("base_model: b\n")
        with pytest.raises(ConfigError, match="train_file"):
            load_config(path)

    @pytest.mark.parametrize("text", ["- a\n- b\n", "key: [unclosed\n"])
    def test_not_a_mapping_or_not_yaml(self, tmp_path, text):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError):
            load_config(path)

    def test_bad_yaml_is_one_line_with_its_position(self, tmp_path):
        path = tmp_path / "c.yaml"
        path.write_text("base_model: b\nkey: [unclosed\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert "\n" not in str(info.value) and "line 3, column 1" in str(info.value)

    def test_cli_reports_a_bad_config_with_exit_2(self, tmp_path, capsys):
        path = tmp_path / "c.yaml"
        path.write_text("base_model: b\ntrain_file: t\noutput_dir: o\nbatch: 3\n")
        assert main(["train", "--config", str(path)]) == 2
        assert "batch" in capsys.readouterr().err
