"""Issue #24 item 8: how many raters see each trace (overlap) and gold traces mixed into each queue at a set
rate, with each rater's agreement with gold beside κ and α for admins. The services and the store for real
(a temporary SQLite store, the shipped tiny model loaded but unused)."""

from __future__ import annotations

import pytest
from studio_harness import configured_service

USERS = {"ann": "a", "bea": "b", "cat": "c"}


@pytest.fixture()
def studio(tmp_path, shipped_lm):
    """12 ordinary think traces and 4 gold ones (labelled by the oracle), all shared."""
    with configured_service(tmp_path, shipped_lm, USERS, "ann") as state:
        st = state.store()
        plain, gold = [], []
        for k in range(16):
            item = st.add_item(f"How many beeps? ({k})", ["1", "2", "3"], answer="2", source="synth-aqa",
                               external_id=f"q{k}")  # fmt: skip
            g = st.add_generation(item.id, "tiny", "think", f"<think>Beep {k}.</think><answer>2</answer>")
            if k % 4 == 3:
                st.rate(g.id, "oracle", consistent=True, quality=0.8, source="oracle")
                gold.append(g.id)
            else:
                plain.append(g.id)
        yield state, plain, gold


def test_overlap_takes_traces_out_of_the_queue_once_enough_people_rated_them(studio):
    from app.services import rating

    state, plain, gold = studio
    st = state.store()
    for who in ("ann", "bea"):
        st.rate(plain[0], who, consistent=True, quality=0.5)
        st.rate(gold[0], who, consistent=True, quality=0.5)
    queued = {g.id for g in rating.queue("cat", limit=50)}
    assert plain[0] in queued  # no overlap set: everyone rates everything
    with pytest.raises(rating.UserError, match="admin"):
        rating.set_queue_settings("bea", 2, 0)
    assert rating.set_queue_settings("ann", 2, 0) == {"overlap": 2, "gold_rate": 0.0}
    queued = {g.id for g in rating.queue("cat", limit=50)}
    assert plain[0] not in queued and gold[0] in queued  # two people rated it; gold is for everyone
    assert {g.id for g in rating.queue("ann", limit=50)} >= set(plain[1:])
    with pytest.raises(rating.UserError):
        rating.set_queue_settings("ann", -1, 2.0)


def test_gold_comes_at_the_set_rate_and_agreement_with_gold_is_shown_to_admins(studio):
    from types import SimpleNamespace

    from app import reward
    from app.services import rating

    state, plain, gold = studio
    rating.set_queue_settings("ann", 0, 0.25)
    seen = []
    for _ in range(12):  # cat rates twelve traces as the queue serves them
        t = rating.next_trace("cat")
        seen.append(t.generation_id)
        is_gold = t.generation_id in gold
        rating.rate("cat", t.generation_id, consistent=not is_gold or len(seen) < 6, quality=0.8 if is_gold else 0.3,
                    status="submitted")  # fmt: skip
    got = [g in gold for g in seen]
    assert sum(got) == 3 and got[0] and got[4] and got[8], got  # one in four, from the first
    agreement = state.store().gold_agreement()["cat"]
    assert agreement["n"] == 3 and agreement["consistency"] == pytest.approx(2 / 3)
    assert agreement["quality_mae"] == pytest.approx(0.0)
    admin_view = reward.summary(SimpleNamespace(username="ann"))
    table = admin_view[5]["value"]
    assert table["headers"][0] == "annotator" and table["data"][0][:3] == ["cat", 3, "67%"]
    assert admin_view[5]["visible"] is True and admin_view[6]["value"] == 0 and admin_view[7]["value"] == 0.25
    assert reward.summary(SimpleNamespace(username="bea"))[5]["visible"] is False


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5])
def test_progress_counts_what_the_queue_will_serve_with_gold_mixed_in(studio, rate):
    """The Rate panel's "to do" is the number of traces the queue goes on to serve, one fewer after each
    rating, and 0 exactly when the queue is empty: at a low gold rate not every gold trace comes (at 0.1,
    12 ordinary traces bring 2 of the 4 gold ones), so counting every gold trace as to do was wrong."""
    from app.services import rating

    _, plain, gold = studio
    rating.set_queue_settings("ann", 0, rate)
    todo = [rating.progress("cat")["todo"]]
    served = []
    while (t := rating.next_trace("cat")) is not None:
        served.append(t.generation_id)
        rating.rate("cat", t.generation_id, consistent=True, quality=0.5, status="submitted")
        todo.append(rating.progress("cat")["todo"])
    assert len(served) == len(set(served)) and set(served) >= set(plain)
    assert todo == list(range(len(served), -1, -1)), (todo, len(served))
    if rate == 0.1:
        assert sum(g in gold for g in served) == 2
