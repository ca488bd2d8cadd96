"""Import traces (the Rate tab's import panel): a run's ``completions.jsonl`` or an evaluation's
``predictions.json`` into the store, with their clips (synth-aqa clips re-rendered from their seed)."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

from audio_thinker import synth
from audio_thinker.prompts import MODES
from audio_thinker.store import Store

from .auth import require_admin
from .model import TINY_MODEL_NAME
from .runs import inside, runs_root
from .state import UserError, db, store

MAX_IMPORT_BYTES = 50 * 1024 * 1024
MAX_IMPORT_RECORDS = 20_000


def importable_files(limit: int = 200) -> list[str]:
    """``completions.jsonl`` and ``predictions.json`` files under the runs folder (relative paths)."""
    root = runs_root()
    if not root.is_dir():
        return []
    found: list[str] = []
    for pattern in ("completions.jsonl", "predictions.json"):
        for p in sorted(root.rglob(pattern)):
            if len(p.relative_to(root).parts) <= 6 and inside(p, root):
                found.append(str(p.relative_to(root)))
    return sorted(found)[:limit]


_SYNTH_ID = re.compile(r"^(?P<split>[a-z][a-z0-9_]*)-(?P<seed>\d+)-(?P<index>\d{6})-(?P<task>[a-z_]+)$")


def _synth_audio(rec: dict, cache: dict) -> tuple[bytes, dict] | None:
    """Re-render a synth-aqa clip from the record's ``synth`` meta or its id; None if not synth."""
    meta = rec.get("synth")
    if isinstance(meta, dict) and {"task", "seed", "index", "split"} <= set(meta):
        key = (str(meta["task"]), int(meta["seed"]), int(meta["index"]), str(meta["split"]))
    else:
        m = _SYNTH_ID.match(str(rec.get("id", "")))
        if not m:
            return None
        key = (m["task"], int(m["seed"]), int(m["index"]), m["split"])
    if key[0] not in synth.TASKS:
        return None
    if key not in cache:
        import soundfile as sf

        item, audio = synth.generate_item(key[0], key[1], key[2], key[3])
        buf = io.BytesIO()
        sf.write(buf, audio, synth.SAMPLE_RATE, format="WAV", subtype="PCM_16")
        cache[key] = (buf.getvalue(), item)
    data, item = cache[key]
    if item["question"] != rec.get("question") or list(item["choices"]) != list(rec.get("choices", [])):
        return None
    return data, item


def _read_records(path: Path) -> list[dict]:
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise UserError(f"{path.name} is larger than {MAX_IMPORT_BYTES // 2**20} MB.")
    text = path.read_text(errors="replace")
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path.name} is not valid JSON: {err}") from err
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UserError(
            f"{path.name}: expected a list of JSON objects (predictions.json or completions.jsonl)."
        )
    if len(records) > MAX_IMPORT_RECORDS:
        raise UserError(f"{path.name} holds {len(records)} records; the limit is {MAX_IMPORT_RECORDS}.")
    return records


def import_traces(
    user: str, file: str, *, uploaded: bool = False, progress_cb: Callable | None = None
) -> dict:
    """Import think traces from a run's ``completions.jsonl`` or an evaluation's ``predictions.json``.

    ``file`` is relative to the runs folder, or (``uploaded=True``) an uploaded file. synth-aqa clips are
    re-rendered from their seed; other clips are found next to the evaluated data (server files only).
    Re-importing a file adds nothing twice. Returns counts.
    """
    require_admin(user, "import traces")
    root = runs_root()
    path = Path(file) if uploaded else (root / file)
    if not uploaded and (not inside(path, root) or not path.is_file()):
        raise UserError(f"{file}: not a file under the runs folder.")
    if uploaded and not path.is_file():
        raise UserError("The uploaded file is missing; please upload it again.")
    records = _read_records(path)
    run_dir = path.parent
    config: dict = {}
    data_dir: Path | None = None
    if not uploaded:
        for name in ("config.json", "metrics.json"):
            f = run_dir / name
            if f.is_file():
                try:
                    cfg = json.loads(f.read_text())
                    config = cfg.get("config", cfg) if name == "metrics.json" else cfg
                except (json.JSONDecodeError, OSError):
                    config = {}
                break
        if isinstance(config.get("data"), str) and config["data"].endswith(".json"):
            data_dir = Path(config["data"]).parent
    run_label = (f"upload:{Path(file).name}" if uploaded else str(path.parent.relative_to(root)))[:200]
    model_label = str(config.get("model") or TINY_MODEL_NAME)[-200:]
    st = store()
    cache: dict = {}
    counts = {"records": len(records), "imported": 0, "already": 0, "no_think": 0, "no_audio": 0, "bad": 0}
    for k, rec in enumerate(records):
        if progress_cb is not None and k % 20 == 0:
            progress_cb(k, len(records))
        raw = rec.get("completion", rec.get("model_output"))
        question, choices = rec.get("question"), rec.get("choices") or []
        if not isinstance(raw, str) or not isinstance(question, str) or not isinstance(choices, list):
            counts["bad"] += 1
            continue
        mode = rec.get("prompt_mode") or rec.get("mode") or config.get("prompt_mode") or "adaptive"
        mode = mode if mode in MODES else "adaptive"
        try:
            ids = _import_one(st, rec, raw, question, choices, mode, run_label, model_label, data_dir, cache)
        except UserError:
            counts["bad"] += 1
            continue
        counts[ids] += 1
    return counts


def _import_one(
    st: Store, rec: dict, raw: str, question: str, choices: list, mode: str, run: str, model_label: str,
    data_dir: Path | None, cache: dict,
) -> str:  # fmt: skip
    from audio_thinker.rewards import parse_completion

    parsed = parse_completion(raw)
    if not parsed.think:
        return "no_think"
    synth_hit = _synth_audio(rec, cache)
    clip_hash = None
    if synth_hit is not None:
        data, item = synth_hit
        clip_hash = db(lambda: st.add_clip(data, original_name=f"{item['id']}.wav")).hash
        source, external_id = "synth-aqa", item["id"]
    else:
        source = (
            re.sub(r"[^a-z0-9._-]+", "-", str(rec.get("dataset") or "import").lower()).strip("-") or "import"
        )
        source = source[:32] if source[0].isalnum() else "import"
        external_id = str(
            rec.get("id") or hashlib.sha256(json.dumps([question, choices]).encode()).hexdigest()
        )
        audio_id = rec.get("audio_id")
        if data_dir is not None and isinstance(audio_id, str):
            candidate = (data_dir / audio_id).resolve()
            if inside(candidate, Path.cwd()) and candidate.is_file():
                try:
                    clip_hash = db(lambda: st.add_clip(str(candidate))).hash
                except UserError:
                    clip_hash = None
    item_row = db(
        lambda: st.add_item(
            question, [str(c) for c in choices], answer=rec.get("answer") if isinstance(rec.get("answer"), str) else None,
            source=source, external_id=external_id[:200], clip=clip_hash,
            task=rec.get("sub-category") if isinstance(rec.get("sub-category"), str) else None,
            difficulty=rec.get("difficulty") if isinstance(rec.get("difficulty"), str) else None,
            meta={"events": rec["events"]} if isinstance(rec.get("events"), list) else None,
        )
    )  # fmt: skip
    step = rec.get("step") if isinstance(rec.get("step"), int) and rec.get("step") >= 0 else None

    if db(lambda: st.has_generation(item_row.id, run, raw, step)):
        return "already"
    db(
        lambda: st.add_generation(
            item_row.id, model_label, mode, raw, completion_tokens=rec.get("completion_tokens")
            if isinstance(rec.get("completion_tokens"), int) else None, run=run, step=step,
        )
    )  # fmt: skip
    return "imported" if clip_hash else "no_audio"
