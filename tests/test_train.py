"""The train CLI: YAML configs, command-line overrides, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from audio_thinker.grpo import GRPOConfig
from audio_thinker.train import DEFAULT_CONFIG, _parser, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_tiny_yaml_is_the_default_config():
    assert DEFAULT_CONFIG.exists()
    assert load_config(DEFAULT_CONFIG) == GRPOConfig()


@pytest.mark.parametrize("name", ["qwen2-audio-7b.yaml", "qwen2.5-omni-7b.yaml"])
def test_paper_recipes_carry_the_paper_hyperparameters(name):
    cfg = load_config(CONFIGS / name)
    assert (cfg.learning_rate, cfg.num_generations, cfg.beta, cfg.temperature, cfg.max_steps) == (
        1e-6,
        8,
        0.04,
        1.0,
        1000,
    )
    assert (cfg.lora, cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules) == (True, 8, 32, "all-linear")
    assert cfg.prompts_per_step * cfg.num_generations == 16  # effective batch 16
    assert cfg.reward_set == "full"


def test_command_line_overrides_yaml(tmp_path):
    args = vars(
        _parser().parse_args(
            [
                "--out",
                "x",
                "--lora",
                "--epsilon-high",
                "0.28",
                "--eval-modes",
                "think",
                "--judge-model",
                "null",
                "--adam-betas",
                "0.9",
                "0.95",
                "--max-steps",
                "7",
            ]
        )
    )
    args.pop("config"), args.pop("no_report")
    cfg = load_config(DEFAULT_CONFIG, args)
    assert cfg.lora is True and cfg.epsilon_high == 0.28 and cfg.eval_modes == ["think"]
    assert (
        cfg.judge_model is None
        and list(cfg.adam_betas) == [0.9, 0.95]
        and cfg.max_steps == 7
        and cfg.out == "x"
    )


def test_bad_configs_are_refused_with_the_reason(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 1e-3\n")
    with pytest.raises(ValueError, match="learning_rat"):
        load_config(bad)
    bad.write_text("reward_set: everything\n")
    with pytest.raises(ValueError, match="reward_set"):
        load_config(bad)
    with pytest.raises(ValueError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_every_config_field_has_a_flag():
    flags = {a.dest for a in _parser()._actions}
    assert {f.name for f in dataclasses.fields(GRPOConfig)} <= flags


def test_a_model_that_cannot_be_loaded_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    from audio_thinker.train import main

    args = ["--out", str(tmp_path / "run"), "--max-steps", "1"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--model", str(tmp_path / "no-such-model")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and "no model folder at" in err
    # a hub id that is not cached, with the hub unreachable: said at once, with what to do
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--model", "Qwen/Qwen2-Audio-7B-Instruct"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err
    assert "not in the local cache" in err and "hf download Qwen/Qwen2-Audio-7B-Instruct" in err
    # the llm judge's default is an 8B download: said so, with the flag that picks another
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--judge", "llm"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and "8B model" in err and "--judge-model" in err
    assert not (tmp_path / "run").exists()


def test_help_has_a_line_for_every_config_field():
    p = _parser()
    helps = {a.dest: a.help for a in p._actions}
    for f in dataclasses.fields(GRPOConfig):
        assert helps.get(f.name) and not helps[f.name].startswith("(default"), f.name
        assert f.metadata["help"] in helps[f.name], f.name
    text = " ".join(p.format_help().split())
    assert "--reward-set" in text and "the paper's Table 1 row" in text


def _given(argv: list[str]) -> dict:
    args = vars(_parser().parse_args(argv))
    args.pop("config"), args.pop("no_report")
    return args


def test_list_flags_take_several_values():
    given = _given(["--eval-modes", "think", "adaptive", "--lora-target-modules", "all-linear"])
    assert set(given) == {"eval_modes", "lora_target_modules"}  # only what was given overrides the YAML
    cfg = load_config(DEFAULT_CONFIG, given)
    assert cfg.eval_modes == ["think", "adaptive"] and cfg.lora_target_modules == "all-linear"
    cfg = load_config(DEFAULT_CONFIG, _given(["--lora-target-modules", "q_proj", "v_proj"]))
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert load_config(DEFAULT_CONFIG, _given(["--lora", "--bf16", "false"])).lora is True


def test_a_run_resumed_without_a_report_marks_the_old_report_stale(tmp_path, capsys, monkeypatch):
    """``--resume latest --no-report`` retrains ``final/``: the earlier report.md must not pass for its report."""
    from audio_thinker import train as train_cli

    out = tmp_path / "run"
    out.mkdir()
    (out / "report.md").write_text("# GRPO run: full reward, 2 steps\n\naccuracy 0.9\n")
    monkeypatch.setattr(train_cli, "resume_point", lambda cfg: (out / "checkpoints" / "step-000002", 2))
    monkeypatch.setattr(train_cli, "train", lambda cfg: {"final": str(out / "final")})
    for _ in range(2):  # a second resume does not stack the note
        train_cli.main(["--out", str(out), "--resume", "latest", "--max-steps", "4", "--no-report"])
    text = (out / "report.md").read_text()
    assert (
        text.startswith("> **Stale**") and text.count("**Stale**") == 1 and "step 4" in text.splitlines()[0]
    )
    assert "accuracy 0.9" in text
    assert "stale" in capsys.readouterr().out


def test_usage_and_help_spell_flags_as_the_docs_do():
    """``--max-steps`` (as the README), not HfArgumentParser's ``--max_steps``; the old spelling still parses."""
    import re

    p = _parser()
    for text in (p.format_usage(), p.format_help()):
        assert "--max-steps" in text and not re.findall(r"--\w+_\w+", text), re.findall(r"--\w+_\w+", text)
    assert _given(["--max_steps", "3", "--reward_set", "atar"]) == {"max_steps": 3, "reward_set": "atar"}


def test_cpu_threads_default_leaves_a_small_machine_a_core(monkeypatch):
    """Issue #22: torch's default (every core) crawls beside another job on 2 cores; the project's rule
    takes one thread on machines with at most 4 cores, half the cores (at most 4) above; the variable wins."""
    from audio_thinker.models import cpu_threads

    monkeypatch.delenv("AUDIO_THINKER_TORCH_THREADS", raising=False)
    for cores, want in ((1, 1), (2, 1), (4, 1), (6, 3), (8, 4), (64, 4)):
        monkeypatch.setattr("os.cpu_count", lambda c=cores: c)
        assert cpu_threads() == want, cores
    monkeypatch.setenv("AUDIO_THINKER_TORCH_THREADS", "3")
    assert cpu_threads() == 3
    assert GRPOConfig().threads == 0  # 0: the rule above, applied when training starts
