"""The GRPO report's wording."""

from __future__ import annotations

from audio_thinker.report import error_change


def test_error_change_says_which_way_the_error_moved():
    assert error_change(0.04, 0.03) == "cut by 25%"
    assert error_change(0.011, 0.044) == "up 300%"  # was reported as "(-300% cut)"
    assert error_change(0.02, 0.02) == "unchanged"
    assert error_change(0.0, 0.01) == "up from zero"
