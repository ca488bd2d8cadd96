"""Issue #24 item 3: with no preference pairs yet, an admin's pair export still succeeds and holds the human
labels (a fresh store, the studio's services for real)."""

from __future__ import annotations

import json
from pathlib import Path

from studio_harness import configured_service


def test_a_pair_export_without_pairs_delivers_the_labels_and_says_so(tmp_path, shipped_lm):
    from app.services import reward

    with configured_service(tmp_path, shipped_lm, {"ann": "a", "bea": "b"}, "ann") as state:
        st = state.store()
        item = st.add_item("How many beeps?", ["1", "2"], answer="2", source="synth-aqa", external_id="one")
        g = st.add_generation(item.id, "tiny", "think", "<think>Two beeps.</think><answer>2</answer>")
        st.rate(g.id, "bea", consistent=True, quality=0.6, flawed_span=(0, 3), comment="ok")
        for fmt in ("trl", "jsonl", "hf"):
            path = reward.export("ann", fmt)  # no pairs: before issue 24, "Nothing exported"
            rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
            labels = [
                (r["annotator"], r["consistent"], r["quality"], r["flawed_step"], r["comment"]) for r in rows
            ]
            assert labels == [("bea", True, 0.6, "Two", "ok")], fmt
            _, note = reward.export_with_note("ann", fmt)
            assert note and "No preference pairs" in note, fmt
