"""synth-aqa follows its spec: layout, timing, levels, pitches, answers and traces, measured on the audio."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from audio_thinker import synth
from audio_thinker.rewards import match_choice

N_PER_TASK = 25
ITEMS = [(t, i, *synth.generate_item(t, 5, i)) for t in synth.TASKS for i in range(N_PER_TASK)]


def _segment(audio: np.ndarray, ev: dict) -> np.ndarray:
    a = int(round(ev["onset"] * synth.SAMPLE_RATE))
    return audio[a : a + int(round(ev["duration"] * synth.SAMPLE_RATE))]


def _dominant_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=1 << 16))
    return float(np.argmax(spec) * synth.SAMPLE_RATE / (1 << 16))


def _sine_amplitude(x: np.ndarray, freq: float) -> float:
    """Amplitude of the sine at ``freq`` in ``x`` (fades excluded), by least squares."""
    fade = int(synth.FADE_SECONDS * synth.SAMPLE_RATE)
    t = np.arange(len(x))[fade:-fade] / synth.SAMPLE_RATE
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], 1)
    coef, *_ = np.linalg.lstsq(basis, x[fade:-fade], rcond=None)
    return float(np.hypot(*coef))


def test_deterministic_by_seed_and_index():
    a_item, a_audio = synth.generate_item("count", 11, 3)
    b_item, b_audio = synth.generate_item("count", 11, 3)
    c_item, c_audio = synth.generate_item("count", 12, 3)
    assert a_item == b_item and np.array_equal(a_audio, b_audio)
    assert not np.array_equal(a_audio, c_audio)


@pytest.mark.parametrize(("task", "i", "item", "audio"), ITEMS, ids=[f"{t}-{i}" for t, i, _, _ in ITEMS])
def test_item_matches_spec(task, i, item, audio):
    spec = synth.TASKS[task]
    assert audio.dtype == np.float32 and audio.shape == (synth.CLIP_SAMPLES,) and np.isfinite(audio).all()
    assert item["difficulty"] == spec.difficulty and item["sub-category"] == task
    assert item["category"] == ("Perception" if spec.difficulty == "easy" else "Reasoning")
    assert item["dataset"] == "synth-aqa" and item["task"] == "sound"
    assert item["audio_id"] == f"./audio/{item['id']}.wav"
    assert item["answer"] in item["choices"] and len(set(item["choices"])) == len(item["choices"])
    assert sum(match_choice(c, item["answer"], item["choices"]) for c in item["choices"]) == 1

    events = item["events"]
    if events:
        assert synth.FIRST_ONSET[0] <= events[0]["onset"] <= synth.FIRST_ONSET[1] + 1e-9
        assert events[-1]["onset"] + events[-1]["duration"] <= synth.CLIP_SECONDS
    for prev, nxt in zip(events, events[1:], strict=False):
        gap = nxt["onset"] - (prev["onset"] + prev["duration"])
        assert synth.GAP[0] - 1e-3 <= gap <= synth.GAP[1] + 1e-3  # no overlap, gap in range
    for ev in events:
        seg = _segment(audio, ev)
        # the peak stands out of the hiss (at most -35 dBFS RMS, so 6 sigma < 0.11)
        assert abs(float(np.max(np.abs(seg))) - ev["peak"]) < 0.11
        lo_peak, hi_peak = synth.LEVEL_RANGES[ev["level"]]
        assert lo_peak - 1e-6 <= ev["peak"] <= hi_peak + 1e-6
        if ev["kind"] == "tone":
            lo, hi = synth.PITCH_RANGES[ev["pitch"]]
            assert lo <= ev["freq"] <= hi
            assert abs(_dominant_hz(seg) - ev["freq"]) < 0.03 * ev["freq"] + 10
            assert (
                abs(_sine_amplitude(seg, ev["freq"]) - ev["peak"]) < 0.01
            )  # least squares averages the hiss out
            assert (
                synth.LENGTH_RANGES[ev["length"]][0] - 1e-3
                <= ev["duration"]
                <= synth.LENGTH_RANGES[ev["length"]][1] + 1e-3
            )
            # 10 ms raised-cosine fades: the first 2 ms carry a small fraction of the amplitude
            head = np.concatenate([np.zeros(160), seg[:32], np.zeros(160)])
            assert _sine_amplitude(head, ev["freq"]) < 0.1 * ev["peak"] + 0.02
        elif ev["kind"] == "chirp":
            lo_f, hi_f = sorted((ev["f_start"], ev["f_end"]))
            assert 220 <= lo_f <= 440 and 1800 <= hi_f <= 3500
            half = len(seg) // 4
            first, last = _dominant_hz(seg[:half]), _dominant_hz(seg[-half:])
            assert (last > first) == (ev["direction"] == "up")
        else:
            assert synth.NOISE_SECONDS[0] - 1e-3 <= ev["duration"] <= synth.NOISE_SECONDS[1] + 1e-3


@pytest.mark.parametrize(("task", "i", "item", "audio"), ITEMS[:: N_PER_TASK // 5], ids=lambda x: str(x)[:20])
def test_background_hiss_level(task, i, item, audio):
    mask = np.ones(len(audio), bool)
    for ev in item["events"]:
        a = int(ev["onset"] * synth.SAMPLE_RATE)
        mask[a : a + int(ev["duration"] * synth.SAMPLE_RATE) + 2] = False
    rms_db = 20 * np.log10(np.sqrt(np.mean(audio[mask].astype(np.float64) ** 2)))
    assert -50.5 <= rms_db <= -34.5


def _derived_answer(task: str, evs: list[dict], choices: list[str]) -> str:
    """The answer re-derived from the events, independently of the generator."""
    pitches = [e.get("pitch") for e in evs]
    order = {"low": 0, "middle": 1, "high": 2}
    if task == "sound_type":
        return synth.SOUND_TYPES[evs[0]["kind"] if evs else "none"]
    if task == "pitch_level":
        return pitches[0]
    if task == "loudness":
        return evs[0]["level"]
    if task == "count":
        return str(len(evs))
    if task == "compare_pitch":
        return "higher" if order[pitches[1]] > order[pitches[0]] else "lower"
    if task == "longest":
        durs = [e["duration"] for e in evs]
        return synth.ORDINALS[int(np.argmax(durs))]
    if task == "high_low_difference":
        return str(abs(pitches.count("high") - pitches.count("low")))
    if task == "pitch_pattern":
        steps = ["up" if order[b] > order[a] else "down" for a, b in zip(pitches, pitches[1:], strict=False)]
        return {"up up": "rising", "down down": "falling"}.get(" ".join(steps), " then ".join(steps))
    if task == "odd_one_out":
        odd = [k for k, p in enumerate(pitches) if pitches.count(p) == 1]
        return synth.ORDINALS[odd[0]]
    raise AssertionError(task)


@pytest.mark.parametrize("task", list(synth.TASKS))
def test_answers_follow_from_events_and_layouts_match_table(task):
    kinds, counts = set(), set()
    for t, _, item, _ in ITEMS:
        if t != task:
            continue
        evs = item["events"]
        assert item["answer"] == _derived_answer(task, evs, item["choices"])
        kinds.add(evs[0]["kind"] if evs else "none")
        counts.add(len(evs))
        tones = [e for e in evs if e["kind"] == "tone"]
        if task in (
            "count",
            "compare_pitch",
            "longest",
            "high_low_difference",
            "pitch_pattern",
            "odd_one_out",
        ):
            assert len(tones) == len(evs)
        if task in ("count", "high_low_difference", "pitch_pattern", "odd_one_out", "compare_pitch"):
            assert all(e["length"] == "short" and e["level"] == "loud" for e in tones)
        if task == "longest":
            assert [e["length"] for e in evs].count("long") == 1
        if task == "high_low_difference":
            assert {e["pitch"] for e in evs} <= {"low", "high"}
        if task == "pitch_pattern":
            assert sorted(e["pitch"] for e in evs) == ["high", "low", "middle"]
        if task in ("count", "high_low_difference"):
            assert len(item["choices"]) == 4 and all(c.isdigit() for c in item["choices"])
    expected_counts = {
        "sound_type": {0, 1},
        "pitch_level": {1},
        "loudness": {1},
        "count": set(range(1, 7)),
        "compare_pitch": {2},
        "longest": {3},
        "high_low_difference": set(range(3, 7)),
        "pitch_pattern": {3},
        "odd_one_out": {4},
    }[task]
    assert counts <= expected_counts
    if task in ("count", "high_low_difference"):
        assert counts == expected_counts  # 25 draws cover every count
    if task == "sound_type":
        assert kinds == {"tone", "noise", "chirp", "none"}


def test_gold_trace_enumerates_then_derives():
    item, _ = synth.generate_item("high_low_difference", 3, 0)
    trace = item["reasoning"]
    for k, ev in enumerate(item["events"], 1):
        assert f"Beep {k} at {ev['onset']:.1f} s: {ev['pitch']} (" in trace
    high = sum(ev["pitch"] == "high" for ev in item["events"])
    low = len(item["events"]) - high
    # the derivation reads the last tally, which sits right before it
    last = f"({high} high, {low} low). {max(high, low)} - {min(high, low)} = {item['answer']}."
    assert last in trace and trace.index(last) > trace.index(f"Beep {len(item['events'])} at")
    assert trace.endswith(f"So the answer is {item['answer']}.")
    count_item, _ = synth.generate_item("count", 3, 0)
    n = len(count_item["events"])
    assert f"That is {n} beep{'s' if n != 1 else ''}." in count_item["reasoning"]


def test_cli_writes_mmau_layout(tmp_path):
    synth.main(["--out", str(tmp_path), "--n", "18", "--seed", "9", "--split", "dev"])
    items = json.loads((tmp_path / "dev.json").read_text())
    assert len(items) == 18
    assert {it["sub-category"] for it in items} == set(synth.TASKS)
    for it in items:
        data, sr = sf.read(tmp_path / it["audio_id"])
        info = sf.info(tmp_path / it["audio_id"])
        assert sr == 16000 and info.channels == 1 and info.subtype == "PCM_16" and len(data) == 48000


def test_cli_rejects_unknown_task(tmp_path):
    with pytest.raises(SystemExit):
        synth.main(["--out", str(tmp_path), "--tasks", "count,nonsense"])


# --------------------------------------------------------------------------------------------------
# derive: the answer rule every trace (gold or a flawed teacher's) follows


@pytest.mark.parametrize("shift", [False, True])
def test_derive_reproduces_answer_and_gold_trace(shift):
    for task in synth.TASKS:
        for i in range(15):
            item, _ = synth.generate_item(task, 17, i, "x", shift)
            events = synth.events_from_item(item)
            answer, why = synth.derive(task, events)
            assert answer == item["answer"]
            assert synth.gold_trace(task, events, answer, why) == item["reasoning"]


# --------------------------------------------------------------------------------------------------
# --shift: each documented change, measured on generated items (events and audio)

SHIFT_N = 16


def _split(shift: bool):
    return [(t, *synth.generate_item(t, 9, i, "x", shift)) for t in synth.TASKS for i in range(SHIFT_N)]


@pytest.fixture(scope="module")
def standard_and_shifted():
    return _split(False), _split(True)


def _tones(item):
    return [e for e in item["events"] if e["kind"] == "tone"]


def test_shift_more_events_per_clip(standard_and_shifted):
    std, sh = standard_and_shifted
    n = {
        name: {t: [len(it["events"]) for tt, it, _ in items if tt == t] for t in synth.TASKS}
        for name, items in (("std", std), ("shift", sh))
    }
    assert min(n["std"]["count"]) == 1 and min(n["shift"]["count"]) == 3
    assert max(n["std"]["count"]) == max(n["shift"]["count"]) == 6  # answers stay in the trained space
    assert min(n["std"]["high_low_difference"]) == 3 and min(n["shift"]["high_low_difference"]) == 4
    assert max(n["shift"]["high_low_difference"]) == 6
    # expected means: count 3.5 -> 4.5, high_low_difference 4.5 -> 5.0
    assert np.mean(n["shift"]["count"]) > np.mean(n["std"]["count"]) + 0.5
    assert np.mean(n["shift"]["high_low_difference"]) > np.mean(n["std"]["high_low_difference"]) + 0.25
    for task in ("pitch_pattern", "compare_pitch", "odd_one_out", "longest"):  # unchanged counts
        assert set(n["shift"][task]) == set(n["std"][task])


def _cross_class_ratios(items):
    """Per item, the smallest frequency ratio between two tones of different pitch classes, measured on
    the audio (dominant frequency of each tone's segment)."""
    out = []
    for t, it, audio in items:
        if t not in ("compare_pitch", "pitch_pattern", "odd_one_out", "count"):
            continue
        tones = [(e["pitch"], _dominant_hz(_segment(audio, e))) for e in _tones(it)]
        r = [max(fa, fb) / min(fa, fb) for pa, fa in tones for pb, fb in tones if pa != pb]
        if r:
            out.append(min(r))
    return np.array(out)


def test_shift_closer_pitches(standard_and_shifted):
    std, sh = standard_and_shifted
    r_std, r_sh = _cross_class_ratios(std), _cross_class_ratios(sh)
    # standard classes are at least 700/440 = 1.59x apart; the shift lets neighbours come within 1.12x
    assert r_std.min() > 1.55
    assert r_sh.min() < 1.3 and (r_sh < 1.55).mean() > 0.15
    assert np.median(r_sh) < np.median(r_std)
    for _, it, audio in sh:  # every shifted tone lies in its documented range (measured)
        for e in _tones(it):
            lo, hi = synth.SHIFT.pitch_ranges[e["pitch"]]
            assert lo * 0.98 <= _dominant_hz(_segment(audio, e)) <= hi * 1.02


def _floor_dbfs(item, audio):
    keep = np.ones(len(audio), bool)
    for e in item["events"]:
        a = max(0, int((e["onset"] - 0.01) * synth.SAMPLE_RATE))
        keep[a : int((e["onset"] + e["duration"] + 0.01) * synth.SAMPLE_RATE)] = False
    return 20 * np.log10(np.sqrt(np.mean(audio[keep].astype(float) ** 2)))


def test_shift_louder_noise_floor(standard_and_shifted):
    std, sh = standard_and_shifted
    f_std = np.array([_floor_dbfs(it, a) for _, it, a in std])
    f_sh = np.array([_floor_dbfs(it, a) for _, it, a in sh])
    assert f_std.max() < -34.6 and f_std.min() > -50.5
    assert f_sh.min() > -34.4 and f_sh.max() < -27.6
    assert np.median(f_sh) - np.median(f_std) > 8


def _gaps(items):
    return np.array(
        [
            b["onset"] - (a["onset"] + a["duration"])
            for _, it, _ in items
            for a, b in zip(it["events"], it["events"][1:], strict=False)
        ]
    )


def test_shift_onsets_packed_tighter(standard_and_shifted):
    std, sh = standard_and_shifted
    g_std, g_sh = _gaps(std), _gaps(sh)
    assert g_std.min() >= 0.12 - 1e-3 and g_sh.max() <= 0.12 + 1e-3 and g_sh.min() >= 0.04 - 1e-3
    assert np.median(g_sh) < 0.5 * np.median(g_std)
    _, it, audio = next(x for x in sh if x[0] == "count")  # the silence between beeps is really there
    a, b = it["events"][0], it["events"][1]
    start = int(round((a["onset"] + a["duration"]) * synth.SAMPLE_RATE)) + 10
    stop = int(round(b["onset"] * synth.SAMPLE_RATE)) - 10
    assert np.abs(audio[start:stop]).max() < 0.2


def test_shift_combinations_unseen_in_training(standard_and_shifted):
    std, sh = standard_and_shifted
    multi = ("count", "compare_pitch", "high_low_difference", "pitch_pattern", "odd_one_out")

    def attrs(items, key):
        return [e[key] for t, it, _ in items if t in multi for e in _tones(it)]

    assert set(attrs(std, "level")) == {"loud"} and set(attrs(std, "length")) == {"short"}
    assert 0.15 < np.mean([x == "quiet" for x in attrs(sh, "level")]) < 0.45
    assert "long" in attrs(sh, "length")
    levels = [e["level"] for t, it, _ in std if t == "pitch_level" for e in it["events"]]
    assert set(levels) == {"loud"}
    assert "quiet" in [e["level"] for t, it, _ in sh if t == "pitch_level" for e in it["events"]]
    # quiet is quiet on the audio: peak amplitude of each shifted quiet tone in the quiet range
    for t, it, audio in sh:
        for e in _tones(it):
            if e["level"] == "quiet" and t in multi:
                amp = _sine_amplitude(_segment(audio, e), e["freq"])
                assert 0.02 < amp < 0.075


def test_shift_answers_stay_verifiable(standard_and_shifted):
    from audio_thinker.judges import JudgeRequest, make_judge

    _, sh = standard_and_shifted
    judge = make_judge("oracle")
    for task, it, _ in sh:
        assert it["distribution"] == "shift" and it["answer"] in it["choices"]
        assert len(set(it["choices"])) == len(it["choices"])
        events = synth.events_from_item(it)
        assert synth.derive(task, events)[0] == it["answer"]
        (v,) = judge.score_batch(
            [JudgeRequest(it["question"], it["choices"], it["reasoning"], it["answer"], it)]
        )
        assert (v.consistent, v.quality) == (1, 1.0), (task, it["reasoning"], v.detail)
        wrong = next(c for c in it["choices"] if c != it["answer"])
        (v,) = judge.score_batch([JudgeRequest(it["question"], it["choices"], it["reasoning"], wrong, it)])
        assert v.consistent == 0


def test_cli_shift_writes_shifted_items(tmp_path):
    synth.main(["--out", str(tmp_path), "--n", "9", "--seed", "3", "--split", "shifted", "--shift"])
    items = json.loads((tmp_path / "shifted.json").read_text())
    assert len(items) == 9 and all(it["distribution"] == "shift" for it in items)
    assert all((tmp_path / it["audio_id"]).exists() for it in items)


def test_cli_refuses_a_count_below_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        synth.main(["--out", str(tmp_path / "out"), "--n", "-3"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err == "error: --n must be at least 1, got -3"
    assert not (tmp_path / "out").exists()
