"""The GRPO report's wording, and the progress its before/after evaluation shows."""

from __future__ import annotations

import json

from audio_thinker.report import error_change, eval_items, evaluate_models


def test_error_change_says_which_way_the_error_moved():
    assert error_change(0.04, 0.03) == "cut by 25%"
    assert error_change(0.011, 0.044) == "up 300%"  # was reported as "(-300% cut)"
    assert error_change(0.02, 0.02) == "unchanged"
    assert error_change(0.0, 0.01) == "up from zero"


def test_the_before_after_evaluation_shows_its_progress_on_stderr(tmp_path, capsys):
    from audio_thinker.models import TINY_MODEL_DIR

    items = eval_items(seed=7, per_task=1)
    results = evaluate_models({"start": str(TINY_MODEL_DIR)}, ["no-think", "think"], items, tmp_path)
    err = capsys.readouterr().err
    # which model and prompt is being evaluated, of how many, and the items done so far
    assert "evaluating start · no-think (1 of 2)" in err and "evaluating start · think (2 of 2)" in err, err
    assert f"{len(items)}/{len(items)}" in err, err
    assert set(results["start"]) == {"no-think", "think"}
    saved = json.loads((tmp_path / "eval" / "start-think" / "metrics.json").read_text())
    assert saved["accuracy"] == results["start"]["think"]["accuracy"]
