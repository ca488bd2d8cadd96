"""Every command of the package runs from outside the repository (installed as the README says)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [
    "synth",
    "evaluate",
    "train",
    "warmstart",
    "reward_model",
    "ablate",
    "fidelity",
    "store",
    "inference",
    "raters",
]


@pytest.mark.parametrize("module", COMMANDS)
def test_command_runs_from_outside_the_repository(module, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", f"audio_thinker.{module}", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout.lower()


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "argv,says",
    [
        (["synth", "--out", "out", "--n", "-3"], "--n must be at least 1, got -3"),
        (["evaluate", "--data", "items.json", "--limit", "-1"], "--limit must be at least 1, got -1"),
        (["evaluate", "--data", "items.json", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["evaluate", "--data", "items.json", "--out", "taken.json"], "--out taken.json is a file"),
        (
            ["evaluate", "--data", "items.json", "--out", "out"],
            "1 of 1 items have a clip that cannot be used",
        ),
        (["inference", "gone.wav"], "gone.wav: file not found"),
        (["inference", "taken.json"], "taken.json: not a recognised audio file"),
        (["inference", "gone.wav", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1, got 0"),
        (["store", "restore", "--db", "sqlite:///new.db", "--from", "gone.zip"], "gone.zip"),
        (["store", "backup", "--db", "notadriver://x", "--out", "out"], "cannot use database URL"),
        (
            ["fidelity", "--model", "gone", "--data", "items.json", "--out", "out"],
            "no model folder at 'gone'",
        ),
        (["fidelity", "--data", "nothing.json", "--out", "out"], "nothing.json: cannot read"),
        (
            ["fidelity", "--model", ".", "--data", "items.json", "--out", "out"],
            "cannot load a model from '.'",
        ),
        (["warmstart", "--init", "gone", "--out", "out"], "--init: no model folder at 'gone'"),
        (["warmstart", "--init", ".", "--out", "out"], "--init: cannot load a model from '.'"),
    ],
    ids=[
        "synth-n",
        "evaluate-limit",
        "evaluate-batch-size",
        "evaluate-out-file",
        "evaluate-missing-clip",
        "inference-missing-clip",
        "inference-not-audio",
        "inference-max-new-tokens",
        "store-restore-missing-backup",
        "store-bad-url",
        "fidelity-missing-model",
        "fidelity-missing-data",
        "fidelity-not-a-model",
        "warmstart-missing-init",
        "warmstart-init-not-a-model",
    ],
)
def test_bad_input_is_a_one_line_error(argv, says, tmp_path):
    """This checkout's commands, as a user runs them: a non-zero exit (2; the store's 1), one line on
    stderr, no traceback."""
    (tmp_path / "items.json").write_text(
        '[{"audio_id": "gone.wav", "question": "q?", "choices": ["a", "b"], "answer": "a"}]'
    )
    (tmp_path / "taken.json").write_text("an earlier evaluation")
    module, *args = argv
    proc = subprocess.run(
        [sys.executable, "-m", f"audio_thinker.{module}", *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = proc.stderr.strip()
    code = 1 if module == "store" else 2
    assert proc.returncode == code and "\n" not in err and err.startswith("error: ") and says in err, err
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "taken.json").read_text() == "an earlier evaluation"


# -- issue 22, item 4: easy mistakes end on one line naming the problem, never a traceback ---------------


def _run(argv: list[str], cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python ARGV`` from ``cwd`` with this checkout importable (``app.py`` by its path)."""
    env = {
        **os.environ,
        "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("GRADIO_SERVER_PORT", None)
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _one_line_error(proc: subprocess.CompletedProcess, *says: str) -> str:
    """The run failed with one line on stderr that names each of ``says``, and no traceback."""
    err = proc.stderr.strip()
    assert proc.returncode != 0, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and "\n" not in err, err[-2000:]
    for word in says:
        assert word in err, err
    return err


def test_train_out_an_existing_file_is_a_one_line_error(tmp_path):
    (tmp_path / "taken.json").write_text("an earlier file")
    proc = _run(["-m", "audio_thinker.train", "--out", "taken.json", "--max-steps", "1"], tmp_path)
    _one_line_error(proc, "--out taken.json", "is a file")
    assert (tmp_path / "taken.json").read_text() == "an earlier file"


def test_train_with_a_learned_judge_that_is_not_trained_is_a_one_line_error(tmp_path):
    (tmp_path / "rm").mkdir()  # a reward model's --out whose training was stopped
    argv = ["-m", "audio_thinker.train", "--judge", "learned", "--judge-model", "rm", "--out", "run"]
    _one_line_error(_run(argv, tmp_path), "rm is not a trained reward model folder")
    assert not (tmp_path / "run").exists()


def test_synth_out_an_existing_file_is_a_one_line_error(tmp_path):
    (tmp_path / "taken.json").write_text("an earlier file")
    proc = _run(["-m", "audio_thinker.synth", "--out", "taken.json", "--n", "9"], tmp_path)
    _one_line_error(proc, "--out taken.json", "is a file")
    assert (tmp_path / "taken.json").read_text() == "an earlier file"


def test_synth_into_an_earlier_set_refuses_unless_overwrite_then_clears_its_clips(tmp_path):
    first = _run(["-m", "audio_thinker.synth", "--out", "set", "--n", "9", "--seed", "1"], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    old = sorted(p.name for p in (tmp_path / "set" / "audio").iterdir())
    before = (tmp_path / "set" / "test.json").read_text()
    again = _run(["-m", "audio_thinker.synth", "--out", "set", "--n", "9", "--seed", "2"], tmp_path)
    _one_line_error(again, "set/test.json", "--overwrite")
    assert (tmp_path / "set" / "test.json").read_text() == before
    assert sorted(p.name for p in (tmp_path / "set" / "audio").iterdir()) == old
    # another split beside it is not an earlier set of the same name
    other = _run(["-m", "audio_thinker.synth", "--out", "set", "--n", "9", "--split", "train"], tmp_path)
    assert other.returncode == 0, other.stderr[-2000:]
    forced = _run(
        ["-m", "audio_thinker.synth", "--out", "set", "--n", "9", "--seed", "2", "--overwrite"], tmp_path
    )
    assert forced.returncode == 0, forced.stderr[-2000:]
    items = json.loads((tmp_path / "set" / "test.json").read_text())
    clips = {p.name for p in (tmp_path / "set" / "audio").iterdir()}
    test_clips = {c for c in clips if c.startswith("test-")}
    assert test_clips == {Path(it["audio_id"]).name for it in items}  # the old test clips are gone
    assert len(clips - test_clips) == 9  # the train split's clips stay


def test_app_db_not_a_database_is_a_one_line_error(tmp_path):
    (tmp_path / "notes.db").write_text("these are notes, not a database\n" * 50)
    proc = _run([os.path.join(ROOT, "app.py"), "--db", str(tmp_path / "notes.db")], tmp_path)
    err = _one_line_error(proc, "notes.db", "not a database")
    assert "please try again" not in err


def test_app_db_unknown_driver_blames_the_url_not_the_model(tmp_path):
    proc = _run([os.path.join(ROOT, "app.py"), "--db", "notadriver://x"], tmp_path)
    err = _one_line_error(proc, "notadriver://x", "database")
    assert "did not load" not in err and "tiny-qwen2-audio" not in err


def test_app_port_in_use_names_the_port_flag(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _run(
            [os.path.join(ROOT, "app.py"), "--port", str(port), "--db", f"sqlite:///{tmp_path}/r.db"],
            tmp_path,
        )
    _one_line_error(proc, f"--port {port}", "in use")


def test_inference_on_a_clip_that_is_not_audio_is_a_one_line_error(tmp_path):
    (tmp_path / "garbage.wav").write_bytes(b"this is not a wave file" * 40)
    proc = _run(["-m", "audio_thinker.inference", "garbage.wav"], tmp_path)
    _one_line_error(proc, "garbage.wav")
    missing = _run(["-m", "audio_thinker.inference", "missing.wav"], tmp_path)
    _one_line_error(missing, "missing.wav")


# -- issue 22, item 6: every CLI is built from its config dataclass, a help line per field ----------------


def _subparser(parser, name: str):
    import argparse

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _config_clis():
    """(name, config dataclass, its parser, the arguments it requires) for each command with a config."""
    from audio_thinker import ablate, raters, train, warmstart
    from audio_thinker.grpo_config import GRPOConfig
    from audio_thinker.reward_model import cli as rm_cli
    from audio_thinker.reward_model.bootstrap import BootstrapConfig
    from audio_thinker.reward_model.export import ExportConfig
    from audio_thinker.reward_model.train import TrainConfig

    rm = rm_cli._parser()
    return [
        ("train", GRPOConfig, train._parser(), []),
        ("warmstart", warmstart.WarmstartConfig, warmstart._parser(), []),
        ("ablate", ablate.AblationConfig, ablate._parser(), []),
        ("reward_model bootstrap", BootstrapConfig, _subparser(rm, "bootstrap"), []),
        ("reward_model train", TrainConfig, _subparser(rm, "train"), ["--out", "m"]),
        (
            "reward_model export",
            ExportConfig,
            _subparser(rm, "export"),
            ["--out", "p.jsonl", "--format", "trl"],
        ),
        ("raters", raters.RatersConfig, raters._parser(), []),
        ("raters noise", raters.NoiseModel, raters._parser(), []),
    ]


@pytest.mark.parametrize(
    "index",
    range(8),
    ids=["train", "warmstart", "ablate", "rm-bootstrap", "rm-train", "rm-export", "raters", "raters-noise"],
)
def test_each_cli_has_a_flag_with_help_for_every_config_field_and_the_same_defaults(index):
    import dataclasses
    import re

    name, config, parser, required = _config_clis()[index]
    actions = {a.dest: a for a in reversed(parser._actions)}  # --bf16 before its --no-bf16
    given = vars(parser.parse_args(required))
    for f in dataclasses.fields(config):
        action = actions.get(f.name)
        assert action is not None, f"{name}: no flag for {f.name}"
        assert f.metadata.get("help") and f.metadata["help"] in (action.help or ""), (
            f"{name}: {f.name} has no help"
        )
        flag = "--" + f.name.replace("_", "-")
        assert flag in action.option_strings or f"--no-{flag[2:]}" in action.option_strings, (name, f.name)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            continue  # a required flag: given above
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if f.name in given and f"--{f.name.replace('_', '-')}" not in required:
            assert given[f.name] == default or (given[f.name] is None and default is None), (name, f.name)
        elif f.name not in given:  # not given: the config's default applies, and --help says which
            assert f"(default: {default})" in action.help, (name, f.name, action.help)
    usage = parser.format_help()
    assert not re.findall(r"--\w+_\w+", usage), (name, re.findall(r"--\w+_\w+", usage))
