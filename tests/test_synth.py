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
