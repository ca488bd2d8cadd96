"""The studio's service layer: the only module of ``app/`` that imports ``audio_thinker``.

Tabs and API endpoints call these functions with plain Python values (and the annotator name that
:func:`annotator` took from the server-side request) and get plain values back; they never touch models,
tensors, SQL sessions or training internals. Every function that reads or writes ratings takes the
annotator and checks ownership itself, so no UI path can bypass it.

Errors meant for people are :class:`UserError` (shown as is); a database that cannot be reached raises
:class:`StoreUnavailable`, whose message says that nothing was saved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from audio_thinker import synth
from audio_thinker.audio import MAX_FILE_BYTES, AudioError, load_audio
from audio_thinker.inference import Answer, AudioLM
from audio_thinker.models import TINY_MODEL_DIR, check_model_source, default_model_path, load_policy
from audio_thinker.prompts import MODES, check_question
from audio_thinker.rewards import match_choice
from audio_thinker.store import (
    DEFAULT_URL,
    AccessDeniedError,
    Annotator,
    Generation,
    Item,
    NotFoundError,
    Rating,
    Store,
)

__all__ = [
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_SECONDS",
    "MIN_UPLOAD_SECONDS",
    "MODES",
    "PAIRS",
    "AccessDeniedError",
    "Comparison",
    "NotFoundError",
    "Settings",
    "StoreUnavailable",
    "Trace",
    "UserError",
]

MAX_UPLOAD_SECONDS = 30.0
"""Longest clip the studio accepts (``load_audio(max_seconds=...)``)."""
MIN_UPLOAD_SECONDS = 0.05
MAX_UPLOAD_BYTES = MAX_FILE_BYTES
"""Largest upload (bytes); also passed to ``launch(max_file_size=...)`` so bigger files never arrive."""
MAX_IMPORT_BYTES = 50 * 1024 * 1024
MAX_IMPORT_RECORDS = 20_000
LOCAL_ANNOTATOR = "local"
PAIRS: dict[str, tuple[str, str]] = {
    "think vs no-think": ("think", "no-think"),
    "think vs adaptive": ("think", "adaptive"),
    "no-think vs adaptive": ("no-think", "adaptive"),
}
EXPORT_FORMATS = ("trl", "jsonl", "hf")
TINY_MODEL_NAME = "tiny-qwen2-audio"
GENERATION_CONCURRENCY = int(os.environ.get("AUDIO_THINKER_GENERATION_CONCURRENCY", "1"))
"""Generations running at once (the rest wait in the queue); one keeps a small CPU box responsive."""
DB_CONCURRENCY = int(os.environ.get("AUDIO_THINKER_DB_CONCURRENCY", "8"))
"""Rating / vote requests handled at once (SQLite serialises the writes; each is one short transaction)."""


class UserError(ValueError):
    """A problem with what the user gave or asked for; its message is shown as is."""


class StoreUnavailable(RuntimeError):
    """The ratings database could not be reached; nothing was written."""


# ------------------------------------------------------------------------------------------- settings


def _parse_users(value: str | None) -> dict[str, str]:
    """``"user:pass,user2:pass2"`` or the path of a file with one ``user:pass`` per line (``#`` comments)."""
    if not value or not value.strip():
        return {}
    entries = Path(value).read_text().splitlines() if os.path.isfile(value) else value.split(",")
    users: dict[str, str] = {}
    for raw in entries:
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        name, sep, password = entry.partition(":")
        if not sep or not name.strip() or not password:
            raise ValueError(f"AUDIO_THINKER_USERS: expected user:password, got {entry.split(':')[0]!r}:…")
        users[name.strip()] = password
    return users


@dataclass
class Settings:
    """Where the studio keeps things and who may use it (see :func:`configure`)."""

    db_url: str | None = None
    model_path: str | None = None
    users: dict[str, str] = field(default_factory=dict)
    admins: set[str] = field(default_factory=set)
    oauth: bool = False
    runs_root: Path = Path("runs")
    reward_model_dir: Path = Path("annotations/reward_model")
    exports_dir: Path = Path("annotations/exports")  # no longer written (exports are per request, private);
    # kept so that older files there stay unserved (``private_roots``)
    lm: AudioLM | None = None  # an already loaded model (tests), else loaded from model_path

    @classmethod
    def from_env(cls) -> Settings:
        users = _parse_users(os.environ.get("AUDIO_THINKER_USERS"))
        admins_env = os.environ.get("AUDIO_THINKER_ADMINS")
        oauth = bool(os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID")) and not users
        if admins_env is not None:
            admins = {a.strip() for a in admins_env.split(",") if a.strip()}
        elif users:
            admins = {next(iter(users))}
        elif oauth and os.environ.get("SPACE_AUTHOR_NAME"):
            admins = {os.environ["SPACE_AUTHOR_NAME"]}
        else:
            admins = set()
        return cls(
            db_url=os.environ.get("AUDIO_THINKER_DB") or None,
            model_path=os.environ.get("AUDIO_THINKER_MODEL") or None,
            users=users,
            admins=admins,
            oauth=oauth,
            runs_root=Path(os.environ.get("AUDIO_THINKER_RUNS", "runs")),
            reward_model_dir=Path(os.environ.get("AUDIO_THINKER_REWARD_MODEL", "annotations/reward_model")),
            exports_dir=Path(os.environ.get("AUDIO_THINKER_EXPORTS", "annotations/exports")),
        )

    @property
    def auth_required(self) -> bool:
        return bool(self.users) or self.oauth


_settings: Settings | None = None
_state_lock = threading.RLock()


def settings() -> Settings:
    """The current settings (from the environment unless :func:`configure` was called)."""
    global _settings
    with _state_lock:
        if _settings is None:
            _settings = Settings.from_env()
        return _settings


def configure(base: Settings | None = None, **overrides: Any) -> Settings:
    """Set the studio's settings (environment defaults, then ``overrides``); resets the store and model."""
    global _settings, _store, _examples
    for key in overrides:
        if key not in Settings.__dataclass_fields__:
            raise TypeError(f"unknown setting {key!r}")
    new = dataclasses.replace(base or Settings.from_env(), **overrides)
    with _state_lock:
        if _store is not None:
            _store.close()
        _settings, _store, _examples = new, None, None
    model.cache_clear()
    return new


# ------------------------------------------------------------------------------------------- identity


def _oauth_username(request: Any) -> str | None:
    """The Hugging Face user name from the OAuth session cookie (Spaces with ``hf_oauth: true``)."""
    underlying = getattr(request, "request", None) or request
    scope = getattr(underlying, "scope", None)
    session = scope.get("session", {}) if isinstance(scope, dict) else getattr(underlying, "session", None)
    info = (session or {}).get("oauth_info") or {}
    user = info.get("userinfo") or {}
    return user.get("preferred_username") or user.get("name")


GUEST_PREFIX = "guest-"


def annotator(request: Any) -> str:
    """Who is asking: the logged-in user of the server-side request.

    Never taken from a form field. With auth (or OAuth) configured and no user on the request, refuses.
    Without auth, every browser session (or client) is an anonymous guest, ``guest-<12 hex>`` from its
    session, whose uploads and ratings are its own; ``local`` only for calls without a request (scripts).
    """
    name = getattr(request, "username", None) if request is not None else None
    if not name and settings().oauth and request is not None:
        name = _oauth_username(request)
    if name:
        return str(name)
    if settings().auth_required:
        raise UserError("Please sign in first.")
    session = getattr(request, "session_hash", None) if request is not None else None
    if isinstance(session, str) and session:
        return GUEST_PREFIX + hashlib.sha256(session.encode()).hexdigest()[:12]
    return LOCAL_ANNOTATOR


def is_admin(name: str) -> bool:
    """Admins may import traces, share clips, export everyone's ratings and train. Without auth nobody
    who comes through the web is (guests); only ``local`` (scripts calling the service directly) is."""
    s = settings()
    if not s.auth_required:
        return name == LOCAL_ANNOTATOR
    return name in s.admins


def _require_admin(name: str, what: str) -> None:
    if not is_admin(name):
        raise UserError(f"Only studio admins can {what} (AUDIO_THINKER_ADMINS).")


# -------------------------------------------------------------------------------------- store / model

_store: Store | None = None
_examples: dict[str, dict] | None = None


def store() -> Store:
    """The ratings store (opened on first use; WAL, busy timeout and migrations by ``Store``)."""
    global _store
    with _state_lock:
        if _store is None:
            try:
                _store = Store(settings().db_url)
            except (SQLAlchemyError, OSError) as err:
                raise StoreUnavailable(_db_message(err)) from err
        return _store


def db_label() -> str:
    """The database in use, for display (password hidden)."""
    url = settings().db_url or os.environ.get("AUDIO_THINKER_DB") or DEFAULT_URL
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


def _db_message(err: Exception) -> str:
    reason = str(getattr(err, "orig", None) or err).splitlines()[0][:200]
    return f"The ratings database is unavailable ({reason}). Nothing was saved; please try again."


def _db(fn: Callable[[], Any]) -> Any:
    """Run a store call, turning database failures into :class:`StoreUnavailable` and bad values into
    :class:`UserError`."""
    try:
        return fn()
    except (OperationalError, DBAPIError) as err:
        raise StoreUnavailable(_db_message(err)) from err
    except (NotFoundError, AccessDeniedError):
        raise
    except AudioError as err:
        raise UserError(f"That audio file cannot be used: {err}") from err
    except ValueError as err:
        raise UserError(str(err)) from err


_model_lock = threading.Lock()


def model_device() -> str:
    """Where the model runs: ``$AUDIO_THINKER_DEVICE``, else ``cuda`` when a GPU is visible, else ``cpu``."""
    env = os.environ.get("AUDIO_THINKER_DEVICE")
    if env:
        return env
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_model(path: str | None) -> AudioLM:
    device = model_device()
    if device.startswith("cuda"):  # bf16 on a GPU: a 7B model takes ~16 GB instead of ~32
        import torch

        policy, processor = load_policy(path or default_model_path(), dtype=torch.bfloat16, device=device)
        return AudioLM(policy, processor)
    lm = AudioLM.from_pretrained(path or default_model_path())
    if _on_gpu:
        import torch

        if torch.cuda.is_available():
            lm.model.to("cuda")
    return lm


class _ModelCache:
    """The studio's model, loaded once (``--model`` / ``$AUDIO_THINKER_MODEL`` / the shipped model)."""

    def __init__(self) -> None:
        self._lm: AudioLM | None = None

    def __call__(self) -> AudioLM:
        s = settings()
        if s.lm is not None:
            return s.lm
        with _model_lock:
            if self._lm is None:
                self._lm = _load_model(s.model_path)
            return self._lm

    def cache_clear(self) -> None:
        self._lm = None


model = _ModelCache()


def model_name() -> str:
    """A short name for the model in use (stored with every generation)."""
    path = settings().model_path or default_model_path()
    if Path(path).resolve() == TINY_MODEL_DIR.resolve():
        return TINY_MODEL_NAME
    return str(path)[-200:]


def model_label(model: str | None, user: str) -> str | None:
    """How ``user`` may see a model name: admins as stored; others without the server folders a local model
    lives in (its last two path parts), hub ids unchanged."""
    if not model or is_admin(user):
        return model
    path = Path(model)
    if path.is_absolute() or model.startswith((".", "~")) or path.exists():
        return "/".join(path.parts[-2:])
    return model


def torch_threads() -> int:
    """Intra-op threads for generation: ``$AUDIO_THINKER_TORCH_THREADS``, else 1 on machines with at most
    4 cores. On a small CPU shared with training jobs one thread is much faster than two that contend
    (measured on 2 busy cores: first token 0.5 s with one thread, 10-20 s with two)."""
    env = os.environ.get("AUDIO_THINKER_TORCH_THREADS")
    if env:
        return max(1, int(env))
    cores = os.cpu_count() or 1
    return 1 if cores <= 4 else min(4, cores // 2)


def warm_up() -> None:
    """Set the torch thread count, load the model and open the store before the first request."""
    import torch

    torch.set_num_threads(torch_threads())
    model()
    store()


# ------------------------------------------------------------------------------------------ model card


def check_model(path: str | None = None) -> str:
    """The model source the studio will load (``--model`` / ``$AUDIO_THINKER_MODEL`` / shipped); raises
    :class:`UserError` with the one-line reason when it cannot be loaded."""
    try:
        return check_model_source(path or settings().model_path or default_model_path())
    except ValueError as err:
        raise UserError(str(err)) from err


def clip_window_s(lm: AudioLM | None = None) -> float | None:
    """How much of a clip the model hears: its feature extractor's window (``n_samples`` / rate)."""
    fe = getattr((lm or model()).processor, "feature_extractor", None)
    n, rate = getattr(fe, "n_samples", None), getattr(fe, "sampling_rate", None)
    if n and rate:
        return round(n / rate, 3)
    chunk = getattr(fe, "chunk_length", None)
    return float(chunk) if chunk else None


def is_tiny_model() -> bool:
    return model_name() == TINY_MODEL_NAME


def model_card(user: str | None = None) -> dict:
    """What the loaded model was trained to hear, for the visitor: the shipped tiny model's training
    data and measured accuracy, or what can be read from another model's config and processor."""
    lm = model()
    cfg = getattr(lm.model, "config", None)
    card = {
        "model": info(user)["model"],
        "architecture": (getattr(cfg, "architectures", None) or [type(lm.model).__name__])[0],
        "sampling_rate": lm.sampling_rate,
        "clip_window_s": clip_window_s(lm),
        "max_new_tokens": lm.max_new_tokens,
        "parameters": sum(p.numel() for p in lm.model.parameters()),
        "trained_on": None,
        "numbers": None,
        "synthetic_only": False,
    }
    if is_tiny_model():
        card.update(
            trained_on="synth-aqa only: 3 s synthetic clips of faint hiss with a few pure tones, chirps and "
            "noise bursts, and questions about their count, pitch, loudness, length and order",
            numbers="docs/models.md (held-out synth-aqa: 0.978 with thinking, 0.769 without)",
            synthetic_only=True,
        )
    return card


def model_card_markdown(user: str | None = None) -> str:
    """The model card as the Ask & compare panel shows it."""
    c = model_card(user)
    window = (
        f"the first **{c['clip_window_s']:g} s** of each clip" if c["clip_window_s"] else "(window unknown)"
    )
    lines = [
        f"**Model** `{c['model']}` · {c['architecture']} · {c['parameters'] / 1e6:.1f} M parameters",
        f"**Hears** {window}, at {c['sampling_rate'] / 1000:g} kHz; anything later is cut off.",
        f"**Answers** with at most {c['max_new_tokens']} tokens; a reasoning that does not close by then "
        "gets no answer.",
    ]
    if c["synthetic_only"]:
        lines += [
            f"**Trained on** {c['trained_on']}.",
            "⚠️ It has **never heard speech, music or real-world sounds**: on those it produces confident "
            "nonsense. Use the examples below, or clips like them.",
            f"**Its numbers** {c['numbers']}.",
        ]
    else:
        lines.append(
            "**Trained on** whatever its authors used: see its model card. The studio reads only its config "
            "and processor."
        )
    return "\n\n".join(lines)


def audio_check(path: str | None) -> list[str]:
    """Why an uploaded clip is far from what the model heard (empty: nothing found). Decodes the clip
    (a bad file raises :class:`UserError`), then :func:`app.card.unlike_synth` for the shipped model, and
    only the clip window for any other model."""
    from .card import unlike_synth

    lm = model()
    wave = _load_upload(path, lm.sampling_rate)
    window = clip_window_s(lm)
    if is_tiny_model():
        return unlike_synth(wave, lm.sampling_rate, window).flags
    seconds = len(wave) / lm.sampling_rate
    if window and seconds > window + 0.05:
        return [f"it is {seconds:.1f} s long and the model hears only its first {window:g} s"]
    return []


def audio_warning(flags: Sequence[str]) -> str:
    """The flags as one line for the page (empty string when there are none)."""
    if not flags:
        return ""
    return (
        "⚠️ **This clip is unlike what the model was trained on**: "
        + "; ".join(flags)
        + ". Expect a poor answer."
    )


# --------------------------------------------------------------------------------------------- compare


def parse_choices(text: str | Sequence[str] | None) -> list[str] | None:
    """Choices typed one per line (or a list); blank lines ignored; None when there are none."""
    lines = text.splitlines() if isinstance(text, str) else list(text or [])
    choices = [str(line).strip() for line in lines if str(line).strip()]
    return choices or None


def check_upload(path: str | None) -> None:
    """Refuse a missing, oversized, too long/short or non-audio upload with a friendly :class:`UserError`."""
    _load_upload(path)


def _load_upload(path: str | None, sampling_rate: int = 16000) -> Any:
    if not path:
        raise UserError("Please upload or record an audio clip first.")
    try:
        return load_audio(
            path, sampling_rate=sampling_rate, max_seconds=MAX_UPLOAD_SECONDS, min_seconds=MIN_UPLOAD_SECONDS
        )
    except AudioError as err:
        reason = str(err)
        prefix = f"{path}: "
        for candidate in (prefix, f"{Path(path).name}: "):
            if reason.startswith(candidate):
                reason = reason[len(candidate) :]
        reason = reason.replace(".)", ")").rstrip(". ")
        raise UserError(
            f"That file cannot be used as audio: {reason}. Upload a WAV, FLAC, OGG or MP3 clip of "
            f"{MIN_UPLOAD_SECONDS:g}–{MAX_UPLOAD_SECONDS:g} s (at most {MAX_UPLOAD_BYTES // 2**20} MB)."
        ) from err


@dataclass
class Side:
    """One of the two answers of a comparison, in stored order (A is the pair's first mode)."""

    mode: str
    answer: Answer | None = None
    done: bool = False
    compute_s: float = 0.0
    first_token_s: float | None = None
    generation_id: int | None = None
    max_tokens: int | None = None  # the model's token cap
    correct: bool | None = None  # against a built-in example's gold answer (None: no gold known)

    @property
    def ran_out_of_tokens(self) -> bool:
        """Finished at the token cap without closing its answer (the reasoning never ended)."""
        a = self.answer
        return bool(
            self.done and a is not None and a.answer is None and self.max_tokens
            and a.completion_tokens >= self.max_tokens
        )  # fmt: skip

    @property
    def text(self) -> str:
        return self.answer.text if self.answer else ""

    @property
    def tokens(self) -> int:
        return self.answer.completion_tokens if self.answer else 0

    def to_dict(self) -> dict:
        a = self.answer
        return {
            "generation_id": self.generation_id,
            "mode": self.mode,
            "output_mode": a.output_mode if a else None,
            "think": a.think if a else None,
            "answer": a.answer if a else None,
            "text": self.text,
            "completion_tokens": self.tokens,
            "latency_s": round(self.compute_s, 4),
            "first_token_s": None if self.first_token_s is None else round(self.first_token_s, 4),
            "ran_out_of_tokens": self.ran_out_of_tokens,
            "correct": self.correct,
        }


@dataclass
class Comparison:
    """The state of a two-mode comparison while it streams and after it is stored."""

    a: Side
    b: Side
    item_id: int | None = None
    clip_hash: str | None = None
    model: str = ""
    gold: str | None = None  # a built-in example's correct answer
    audio_flags: list[str] = field(default_factory=list)  # why the clip is unlike the training clips

    @property
    def finished(self) -> bool:
        return self.a.done and self.b.done

    @property
    def stored(self) -> bool:
        return self.a.generation_id is not None and self.b.generation_id is not None

    def to_dict(self) -> dict:
        return {
            "item_id": self.item_id,
            "clip_hash": self.clip_hash,
            "model": self.model,
            "gold": self.gold,
            "audio_flags": self.audio_flags,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
        }


def compare_stream(
    audio_path: str | None,
    question: str,
    choices: str | Sequence[str] | None,
    pair: str = "think vs no-think",
    *,
    save: bool = True,
    original_name: str | None = None,
    user: str | None = None,
) -> Iterator[Comparison]:
    """Answer in both modes of ``pair``, token by token in turn (side by side), then store everything.

    Yields the growing :class:`Comparison` after every step; the last one is stored (clip by content
    hash, item, both generations) and carries the generation ids. Nothing is stored when the audio or
    question is refused or generation fails. Each side's ``compute_s`` counts only its own steps. ``user``
    (who asked) is recorded as having been shown the pair, which is what lets them vote on it.
    """
    if pair not in PAIRS:
        raise UserError(f"Unknown comparison {pair!r}; choose one of: {', '.join(PAIRS)}.")
    question = (question or "").strip()
    choice_list = parse_choices(choices)
    try:
        check_question(question, choice_list)
    except ValueError as err:
        raise UserError(f"Please check the question: {err}.") from err
    lm = model()
    wave = _load_upload(audio_path, lm.sampling_rate)
    cap = lm.max_new_tokens
    comp = Comparison(
        Side(PAIRS[pair][0], max_tokens=cap), Side(PAIRS[pair][1], max_tokens=cap), model=model_name()
    )
    assert audio_path is not None
    example = _example_for(hashlib.sha256(Path(audio_path).read_bytes()).hexdigest(), question)
    if example is not None:
        comp.gold = example["answer"]
    else:
        comp.audio_flags = audio_check(audio_path)
    sides = (comp.a, comp.b)
    steps = _pair_runner(lm, wave, question, choice_list, (comp.a.mode, comp.b.mode))
    try:
        for k, ans, seconds in steps:
            side = sides[k]
            side.compute_s += seconds
            if ans is None:
                side.done = True
                if comp.gold is not None:
                    side.correct = match_choice(side.answer.answer if side.answer else None, comp.gold,
                                                choice_list or [])  # fmt: skip
            else:
                side.answer = ans
                if side.first_token_s is None:
                    side.first_token_s = side.compute_s
            yield comp
    except ValueError as err:  # the model refused the inputs
        raise UserError(str(err)) from err
    finally:
        steps.close()
    if save:
        _save_comparison(comp, audio_path, question, choice_list or [], original_name, user)
        yield comp


def _stream_pair(
    lm: AudioLM, wave: Any, question: str, choices: list[str] | None, modes: tuple[str, str]
) -> Iterator[tuple[int, Answer | None, float]]:
    """Interleave the two streams token by token: yields (side, growing answer or None when that side
    has finished, seconds spent on this step)."""
    streams = [lm.stream(wave, question, choices, mode) for mode in modes]
    done = [False, False]
    try:
        while not all(done):
            for k, stream in enumerate(streams):
                if done[k]:
                    continue
                t0 = time.perf_counter()
                try:  # Gradio may resume this on another worker thread: AudioLM.stream handles that
                    ans: Answer | None = next(stream)
                except StopIteration:
                    done[k], ans = True, None
                yield k, ans, time.perf_counter() - t0
    finally:
        for stream in streams:
            stream.close()


_pair_runner: Callable[..., Iterator[tuple[int, Answer | None, float]]] = _stream_pair
_on_gpu = False


def use_gpu_decorator(decorator: Callable) -> None:
    """Run generation under ``decorator`` (``spaces.GPU`` on a ZeroGPU Space) and put the model on CUDA."""
    global _pair_runner, _on_gpu
    _pair_runner = decorator(_stream_pair)
    _on_gpu = True


def _save_comparison(
    comp: Comparison, audio_path: str | None, question: str, choices: list[str], original_name: str | None,
    user: str | None = None,
) -> None:  # fmt: skip
    st = store()
    assert audio_path is not None
    clip = _db(lambda: st.add_clip(audio_path, original_name=original_name or Path(audio_path).name))
    example = _example_for(clip.hash, question)
    if example is not None:
        item = _db(
            lambda: st.add_item(
                question, choices, answer=example["answer"], source="synth-aqa", external_id=example["id"],
                clip=clip.hash, task=example.get("sub-category"), difficulty=example.get("difficulty"),
                meta={"events": example.get("events", [])},
            )
        )  # fmt: skip
    else:  # an upload or recording: private to whoever asked (its key includes them)
        owner = user or LOCAL_ANNOTATOR
        key = hashlib.sha256(json.dumps([owner, clip.hash, question, choices]).encode()).hexdigest()[:32]
        item = _db(
            lambda: st.add_item(
                question, choices, source="upload", external_id=key, clip=clip.hash, owner=owner
            )
        )
    comp.item_id, comp.clip_hash = item.id, clip.hash
    for side in (comp.a, comp.b):
        ans = side.answer
        raw = (ans.text if ans else "") or "(empty)"
        gen = _db(
            lambda ans=ans, raw=raw, side=side: st.add_generation(
                item.id, comp.model, side.mode, raw,
                think=(ans.think or None) if ans else None, answer=(ans.answer or None) if ans else None,
                completion_tokens=side.tokens, latency_s=round(side.compute_s, 4), run="studio", reuse=True,
            )
        )  # fmt: skip
        side.generation_id = gen.id
    if user is not None:
        a, b = comp.a.generation_id, comp.b.generation_id
        assert a is not None and b is not None
        _db(lambda: st.show_comparison(a, b, user))


def example_items() -> list[tuple[str, dict]]:
    """One synth-aqa example per task, written once to a temporary folder: (wav path, item)."""
    global _examples
    import tempfile

    with _state_lock:
        if _examples is None:
            out = Path(tempfile.mkdtemp(prefix="audio-thinker-examples-"))
            path = synth.make_split(out, n=len(synth.TASKS), seed=2024, split="example")
            items = json.loads(path.read_text())
            _examples = {}
            for it in items:
                wav = out / it["audio_id"]
                it["path"] = str(wav)
                _examples[hashlib.sha256(wav.read_bytes()).hexdigest()] = it
        return [(it["path"], it) for it in _examples.values()]


def _example_for(clip_hash: str, question: str) -> dict | None:
    """The synth-aqa example with these bytes and this question (to store its gold answer), if any."""
    if _examples is None:
        return None
    it = _examples.get(clip_hash)
    return it if it is not None and it["question"] == question else None


# ------------------------------------------------------------------------------------------------ votes

VOTE_CHOICES = ("A", "B", "tie", "both_bad")


def vote(user: str, generation_a: int, generation_b: int, choice: str, swapped: bool = False) -> dict:
    """Record ``user``'s preference (``choice`` names the stored generation: A, B, tie, both_bad).

    Only on a comparison ``user`` was shown (or two imported traces); voting again updates the vote.
    """
    if choice not in VOTE_CHOICES:
        raise UserError(f"A vote is one of {', '.join(VOTE_CHOICES)}; got {choice!r}.")
    st = store()
    try:
        v = _db(
            lambda: st.vote(
                int(generation_a), int(generation_b), choice, user, swapped=bool(swapped), shown_only=True
            )
        )
    except (NotFoundError, AccessDeniedError):
        raise UserError("You can only vote on a comparison you were shown.") from None
    return {"vote_id": v.id, "generation_a": v.generation_a_id, "generation_b": v.generation_b_id,
            "choice": v.choice, "swapped": v.swapped, "annotator": user}  # fmt: skip


def screen_vote_to_stored(screen_choice: str, swapped: bool) -> str:
    """The stored vote for a click on the screen: ``left``/``right``/``tie``/``both_bad``.

    ``swapped`` means generation A is shown on the right.
    """
    if screen_choice == "left":
        return "B" if swapped else "A"
    if screen_choice == "right":
        return "A" if swapped else "B"
    if screen_choice in ("tie", "both_bad"):
        return screen_choice
    raise UserError(f"unknown vote {screen_choice!r}")


# ---------------------------------------------------------------------------------------------- rating

_SENTENCE_RE = re.compile(r"[^.!?;\n]*(?:[.!?;](?![0-9])|\n|$)")


def sentence_spans(text: str | None) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of the sentences of a think text (a period before a digit is a
    decimal point); surrounding whitespace is not part of a span."""
    if not text:
        return []
    spans: list[tuple[int, int]] = []
    pos = 0
    n = len(text)
    while pos < n:
        end = pos
        while end < n:
            ch = text[end]
            if ch == "\n" or (ch in ".!?;" and not (end + 1 < n and text[end + 1].isdigit())):
                end += 1
                break
            end += 1
        start, stop = pos, end
        while start < stop and text[start].isspace():
            start += 1
        while stop > start and text[stop - 1].isspace():
            stop -= 1
        if stop > start:
            spans.append((start, stop))
        pos = end
    return spans


@dataclass
class Trace:
    """A generation to rate, with the annotator's own draft (if any)."""

    generation_id: int
    question: str
    choices: list[str]
    gold: str | None
    think: str
    answer: str | None
    mode: str
    model: str
    source: str
    run: str | None
    step: int | None
    audio_path: str | None
    sentences: list[tuple[int, int]]
    draft: dict | None = None

    def sentence_texts(self) -> list[str]:
        return [self.think[s:e] for s, e in self.sentences]


def rating_dict(r: Rating) -> dict:
    """A rating as plain values (what the API returns; only ever the caller's own)."""
    return {
        "rating_id": r.id,
        "generation_id": r.generation_id,
        "annotator": r.annotator.name,
        "status": r.status,
        "consistent": r.consistent,
        "quality": r.quality,
        "flawed_span": list(r.flawed_span) if r.flawed_span else None,
        "comment": r.comment,
        "lead_time_s": r.lead_time_s,
        "updated_at": r.updated_at.isoformat() if r.updated_at else None,
    }


def _own_rating(user: str, generation_id: int) -> Rating | None:
    st = store()

    def q() -> Rating | None:
        with st.session() as s:
            return s.scalar(
                select(Rating).join(Annotator, Rating.annotator_id == Annotator.id)
                .where(Annotator.name == user, Rating.generation_id == generation_id)
            )  # fmt: skip

    return _db(q)


_judge_cache: dict[str, Any] = {}
_p_cache: dict[int, float] = {}
UNCERTAINTY_POOL = 200
"""Oldest unrated traces the learned judge ranks per queue request (scores are cached per generation)."""


def learned_judge() -> Any | None:
    """The trained reward model in ``settings().reward_model_dir`` (a ``LearnedJudge``), or None."""
    path = settings().reward_model_dir
    meta = path / "reward_model.json"
    if not meta.is_file():
        return None
    key = f"{path.resolve()}:{meta.stat().st_mtime_ns}"
    if key not in _judge_cache:
        _judge_cache.clear()
        _p_cache.clear()
        try:
            from audio_thinker.judges import LearnedJudge

            _judge_cache[key] = LearnedJudge(path, batch_size=32, device="cpu")
        except Exception:  # a half-written or incompatible folder: fall back to oldest first
            _judge_cache[key] = None
    return _judge_cache[key]


def _uncertainty_order(gens: list[Generation]) -> list[Generation]:
    """``gens`` sorted by the learned judge's P(consistent) closeness to 0.5 (least sure first); unchanged
    without a judge."""
    judge = learned_judge()
    if judge is None or not gens:
        return gens
    from audio_thinker.judges import JudgeRequest

    todo = [g for g in gens if g.id not in _p_cache]
    if todo:
        requests = [
            JudgeRequest(
                g.item.question, list(g.item.choices), g.think or "", g.answer or "", g.item.meta or None
            )
            for g in todo
        ]
        try:
            _, probs = judge.raw_scores(requests)
        except Exception:
            return gens
        _p_cache.update({g.id: float(p) for g, p in zip(todo, probs, strict=True)})
    return sorted(gens, key=lambda g: abs(_p_cache[g.id] - 0.5))  # stable: ties stay oldest first


def queue(user: str, limit: int = 20) -> list[Generation]:
    """``user``'s rating queue: unrated traces (most uncertain first when a reward model exists, else
    oldest first), then the traces they skipped (least recently skipped first)."""
    st = store()
    if learned_judge() is not None:
        fresh = _uncertainty_order(_db(lambda: st.rating_queue(user, max(limit, UNCERTAINTY_POOL))))[:limit]
    else:
        fresh = _db(lambda: st.rating_queue(user, limit))
    if len(fresh) >= limit:
        return fresh

    def skipped() -> list[Generation]:
        with st.session() as s:
            return list(
                s.scalars(
                    select(Generation)
                    .join(Rating, Rating.generation_id == Generation.id)
                    .join(Annotator, Rating.annotator_id == Annotator.id)
                    .join(Item, Generation.item_id == Item.id)
                    .where(Annotator.name == user, Rating.status == "skipped", Generation.think.is_not(None))
                    .where(Store._visible(user))
                    .order_by(Rating.updated_at, Rating.id)
                    .limit(limit - len(fresh))
                )
            )

    return fresh + _db(skipped)


def next_trace(user: str, after: int | None = None) -> Trace | None:
    """The first trace of ``user``'s queue (not ``after``, the one just left, when others wait)."""
    gens = queue(user, limit=2 if after is not None else 1)
    if after is not None and len(gens) > 1 and gens[0].id == after:
        gens = gens[1:]
    return trace(user, gens[0].id) if gens else None


def trace(user: str, generation_id: int) -> Trace:
    """One generation prepared for rating by ``user`` (with ``user``'s own draft, never another's); only
    a trace ``user`` may see (shared, or their own upload)."""
    st = store()
    gen = _visible_generation(user, generation_id)
    item = gen.item
    audio = None
    if item.clip_hash:
        try:
            path = _db(lambda: st.clip_path(item.clip_hash))
            audio = str(path) if path.is_file() else None
        except NotFoundError:
            audio = None
    own = _own_rating(user, gen.id)
    think = gen.think or ""
    return Trace(
        generation_id=gen.id, question=item.question, choices=list(item.choices), gold=item.answer,
        think=think, answer=gen.answer, mode=gen.mode, model=model_label(gen.model, user) or "", source=item.source,
        run=gen.run,
        step=gen.step, audio_path=audio, sentences=sentence_spans(think),
        draft=rating_dict(own) if own is not None else None,
    )  # fmt: skip


def _visible_generation(user: str, generation_id: Any) -> Generation:
    """The generation if ``user`` may see it; else the same :class:`UserError` whether it exists or not."""
    st = store()
    try:
        gid = int(generation_id)
    except (TypeError, ValueError):
        raise UserError(f"No trace {generation_id!r}.") from None
    gen = _db(lambda: st.visible_generation(gid, user))
    if gen is None:
        raise UserError(f"No trace {gid} in your queue.")
    return gen


def share(user: str, item_id: int, shared: bool = True) -> dict:
    """Admins only: put an item (an upload's clip and question, with its traces) into everyone's queue, or
    take it back (``shared=False``)."""
    _require_admin(user, "share clips")
    st = store()
    try:
        item = _db(lambda: st.share_item(int(item_id), bool(shared)))
    except NotFoundError:
        raise UserError(f"No item {item_id}.") from None
    return {"item_id": item.id, "shared": item.shared}


def rate(
    user: str,
    generation_id: int,
    *,
    consistent: bool | None = None,
    quality: float | None = None,
    flawed_span: Sequence[int] | None = None,
    comment: str | None = None,
    status: str = "submitted",
    lead_time_s: float | None = None,
) -> dict:
    """Create or update ``user``'s own rating of a generation (submitted, draft, skipped, discarded).

    The row is keyed by (generation, user): nobody can write another annotator's rating.
    """
    if status not in ("submitted", "draft", "skipped", "discarded"):
        raise UserError(f"status must be submitted, draft, skipped or discarded; got {status!r}")
    if status == "submitted" and (consistent is None or quality is None):
        raise UserError("To submit, choose consistent (yes/no) and a quality first.")
    span = tuple(int(x) for x in flawed_span) if flawed_span else None
    if lead_time_s is not None:
        lead_time_s = min(max(float(lead_time_s), 0.0), 24 * 3600.0)
    gen = _visible_generation(user, generation_id)
    if not (gen.think or "").strip() and (consistent is not None or quality is not None or span):
        raise UserError(
            f"Trace {gen.id} has no reasoning (a {gen.mode} answer without <think>): there is nothing to rate "
            "for consistency or quality."
        )
    st = store()
    try:
        r = _db(
            lambda: st.rate(
                int(generation_id), user, consistent=consistent, quality=quality, flawed_span=span,
                comment=comment or None, lead_time=lead_time_s, status=status,
            )
        )  # fmt: skip
    except NotFoundError as err:
        raise UserError(str(err)) from err
    return rating_dict(r)


def my_rating_list(user: str) -> list[dict]:
    """``user``'s own ratings with each trace's question, most recently changed first (the "My ratings"
    list; any of them can be reopened with :func:`trace` and rated again)."""
    st = store()
    return [
        {**rating_dict(r), "question": question}
        for r, question in _db(lambda: st.ratings_with_questions(user))
    ]


def own_rating(user: str, generation_id: int) -> dict | None:
    """``user``'s own rating of a generation as plain values, or None."""
    r = _own_rating(user, int(generation_id))
    return rating_dict(r) if r is not None else None


def undo(user: str, generation_id: int, before: dict | None) -> None:
    """Put ``user``'s rating of a generation back as it was (``before``, from :func:`own_rating`, None
    when there was none): undoes a skip or a discard."""
    gid = int(generation_id)
    _visible_generation(user, gid)
    st = store()
    if before is None:
        _db(lambda: st.delete_rating(gid, user))
        return
    span = before.get("flawed_span")
    _db(
        lambda: st.rate(
            gid, user, consistent=before.get("consistent"), quality=before.get("quality"),
            flawed_span=tuple(span) if span else None, comment=before.get("comment"),
            lead_time=before.get("lead_time_s"), status=before["status"],
        )
    )  # fmt: skip


def get_rating(user: str, rating_id: int) -> dict:
    """``user``'s own rating by id; another annotator's rating raises :class:`UserError` (not found or
    not yours, without saying which)."""
    st = store()
    try:
        return rating_dict(_db(lambda: st.get_rating(int(rating_id), user)))
    except (NotFoundError, AccessDeniedError) as err:
        raise UserError(f"No rating {rating_id} of yours.") from err


def my_ratings(user: str, status: str | None = None) -> list[dict]:
    """All of ``user``'s own ratings (optionally one status), oldest first."""
    st = store()
    return [rating_dict(r) for r in _db(lambda: st.ratings_for(user, status=status))]


def progress(user: str) -> dict:
    """``user``'s personal progress: submitted, drafts, skipped, discarded and still to do."""
    st = store()

    def q() -> dict:
        with st.session() as s:
            by_status = dict(
                s.execute(
                    select(Rating.status, func.count())
                    .join(Annotator, Rating.annotator_id == Annotator.id)
                    .where(Annotator.name == user)
                    .group_by(Rating.status)
                ).all()
            )
        todo = st.rating_queue_size(user)
        return {
            "submitted": int(by_status.get("submitted", 0)),
            "draft": int(by_status.get("draft", 0)),
            "skipped": int(by_status.get("skipped", 0)),
            "discarded": int(by_status.get("discarded", 0)),
            "todo": int(todo or 0),
        }

    return _db(q)


# ---------------------------------------------------------------------------------------------- import


def _runs_root() -> Path:
    return settings().runs_root.resolve()


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def importable_files(limit: int = 200) -> list[str]:
    """``completions.jsonl`` and ``predictions.json`` files under the runs folder (relative paths)."""
    root = _runs_root()
    if not root.is_dir():
        return []
    found: list[str] = []
    for pattern in ("completions.jsonl", "predictions.json"):
        for p in sorted(root.rglob(pattern)):
            if len(p.relative_to(root).parts) <= 6 and _inside(p, root):
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
    _require_admin(user, "import traces")
    root = _runs_root()
    path = Path(file) if uploaded else (root / file)
    if not uploaded and (not _inside(path, root) or not path.is_file()):
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
        clip_hash = _db(lambda: st.add_clip(data, original_name=f"{item['id']}.wav")).hash
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
            if _inside(candidate, Path.cwd()) and candidate.is_file():
                try:
                    clip_hash = _db(lambda: st.add_clip(str(candidate))).hash
                except UserError:
                    clip_hash = None
    item_row = _db(
        lambda: st.add_item(
            question, [str(c) for c in choices], answer=rec.get("answer") if isinstance(rec.get("answer"), str) else None,
            source=source, external_id=external_id[:200], clip=clip_hash,
            task=rec.get("sub-category") if isinstance(rec.get("sub-category"), str) else None,
            difficulty=rec.get("difficulty") if isinstance(rec.get("difficulty"), str) else None,
            meta={"events": rec["events"]} if isinstance(rec.get("events"), list) else None,
        )
    )  # fmt: skip
    step = rec.get("step") if isinstance(rec.get("step"), int) and rec.get("step") >= 0 else None

    def dup() -> bool:
        with st.session() as s:
            return bool(
                s.scalar(
                    select(func.count()).select_from(Generation).where(
                        Generation.item_id == item_row.id, Generation.run == run, Generation.raw_text == raw,
                        Generation.step.is_(None) if step is None else Generation.step == step,
                    )
                )
            )  # fmt: skip

    if _db(dup):
        return "already"
    _db(
        lambda: st.add_generation(
            item_row.id, model_label, mode, raw, completion_tokens=rec.get("completion_tokens")
            if isinstance(rec.get("completion_tokens"), int) else None, run=run, step=step,
        )
    )  # fmt: skip
    return "imported" if clip_hash else "no_audio"


# ---------------------------------------------------------------------------------------- reward model


def counts() -> dict:
    """Totals and counts by source and annotator (aggregates only)."""
    st = store()
    return _db(st.counts)


def _submitted() -> list:
    st = store()
    return _db(lambda: list(st.ratings(statuses=("submitted",))))


def agreement_data() -> dict:
    """Per-generation consistency labels and quality values of submitted human ratings, by annotator."""
    consistency: dict[str, dict[int, bool]] = {}
    quality: dict[int, list[float]] = {}
    for r in _submitted():
        if r.source != "human":
            continue
        if r.consistent is not None:
            consistency.setdefault(r.annotator, {})[r.generation_id] = bool(r.consistent)
        if r.quality is not None:
            quality.setdefault(r.generation_id, []).append(float(r.quality))
    return {"consistency": consistency, "quality": quality}


def vote_comparisons() -> tuple[list[tuple[int, int, float]], list[str]]:
    """Votes as ``(player_a, player_b, score_a)`` over players "model · mode"; ties and both-bad are 0.5."""
    st = store()
    votes = _db(lambda: list(st.votes()))
    if not votes:
        return [], []
    gen_ids = {v.generation_a_id for v in votes} | {v.generation_b_id for v in votes}

    def q() -> dict[int, str]:
        with st.session() as s:
            rows = s.execute(
                select(Generation.id, Generation.model, Generation.mode).where(Generation.id.in_(gen_ids))
            ).all()
        return {gid: f"{m} · {mode}" for gid, m, mode in rows}

    player_of = _db(q)
    names = sorted(set(player_of.values()))
    index = {n: i for i, n in enumerate(names)}
    score = {"A": 1.0, "B": 0.0, "tie": 0.5, "both_bad": 0.5}
    comps = []
    for v in votes:
        a, b = player_of[v.generation_a_id], player_of[v.generation_b_id]
        if a != b:
            comps.append((index[a], index[b], score[v.choice]))
    return comps, names


def _reward_model() -> Any:
    try:
        from audio_thinker import reward_model
    except ImportError as err:
        raise UserError(f"The reward-model module is not available ({err}).") from err
    return reward_model


EXPORT_TTL_S = float(os.environ.get("AUDIO_THINKER_EXPORT_TTL_S", "600"))
"""How long an export stays fetchable by the user who asked for it (then its files are deleted)."""


@dataclass
class _PrivateFile:
    owner: str
    folder: Path
    expires: float


_private_files: dict[str, _PrivateFile] = {}
_private_lock = threading.Lock()


def private_roots() -> list[Path]:
    """Folders whose files are never served by path: the store's media and the (former) exports folder."""
    roots = [settings().exports_dir.resolve()]
    with _state_lock:
        if _store is not None:
            roots.append(Path(_store.media_dir).resolve())
    return roots


def private_file_owner(name: str) -> str | None:
    """Who may fetch the delivered file called ``name`` (an export), or None when it is not one."""
    with _private_lock:
        entry = _private_files.get(name)
    return entry.owner if entry is not None else None


def _register_private(name: str, owner: str, folder: Path) -> None:
    with _private_lock:
        _private_files[name] = _PrivateFile(owner, folder, time.time() + EXPORT_TTL_S)
    timer = threading.Timer(EXPORT_TTL_S, _expire_private, args=(name,))
    timer.daemon = True
    timer.start()


def _expire_private(name: str) -> None:
    """Delete an export's folder and the copies Gradio delivered from it (its cache keeps them by name)."""
    from gradio.utils import get_upload_folder

    with _private_lock:
        entry = _private_files.pop(name, None)
    if entry is None:
        return
    shutil.rmtree(entry.folder, ignore_errors=True)
    for copy in Path(get_upload_folder()).glob(f"*/{name}"):
        copy.unlink(missing_ok=True)


def export(user: str, fmt: str) -> str:
    """An export file for ``user`` alone: admins get the preference data of every rating and vote
    (``trl`` / ``jsonl`` / ``hf`` as a zip, by ``audio_thinker.reward_model.export``); other annotators get
    their own ratings as JSONL.

    Written to a new private temporary folder under a name with a random part, registered as ``user``'s
    (the studio's HTTP guard serves it, and Gradio's copy of it, to nobody else) and deleted after
    :data:`EXPORT_TTL_S` seconds; never into a shared folder.
    """
    import tempfile

    if fmt not in EXPORT_FORMATS:
        raise UserError(f"Export format must be one of {', '.join(EXPORT_FORMATS)}.")
    out_dir = Path(tempfile.mkdtemp(prefix="audio-thinker-export-"))  # mode 0700
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")  # noqa: UP017
    tag = f"{stamp}-{os.urandom(8).hex()}"
    try:
        if not is_admin(user):
            path = out_dir / f"my-ratings-{tag}.jsonl"
            rows = my_ratings(user)
            with path.open("w") as fh:
                for r in rows:
                    fh.write(json.dumps(r) + "\n")
        else:
            rm = _reward_model()
            target = out_dir / (f"ratings-hf-{tag}" if fmt == "hf" else f"ratings-{fmt}-{tag}.jsonl")
            st = store()
            try:
                _db(lambda: rm.export(st, str(target), fmt))
            except rm.RewardModelError as err:
                raise UserError(f"Nothing exported: {_scrub(str(err))}.") from err
            if target.is_dir():
                archive = shutil.make_archive(str(target), "zip", root_dir=target)
                shutil.rmtree(target, ignore_errors=True)
                path = Path(archive)
            else:
                path = target
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    _register_private(path.name, user, out_dir)
    return str(path)


_PATH_RE = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[\\/](?:[^\\/\s'\"(),;]+[\\/])+[^\\/\s'\"(),;:]*")


def _scrub(message: str) -> str:
    """``message`` with server paths reduced to their last part (people see the name, not the folder)."""
    return _PATH_RE.sub(lambda m: Path(m.group(0).rstrip("/\\")).name or "…", message)


_train_lock = threading.Lock()


def train_reward_model(user: str) -> dict:
    """Train the learned judge on the store's ratings and votes into ``settings().reward_model_dir`` (tqdm
    progress bars, which ``gr.Progress(track_tqdm=True)`` shows); returns its metrics."""
    _require_admin(user, "train the reward model")
    rm = _reward_model()
    if not _train_lock.acquire(blocking=False):
        raise UserError("A reward model is already training; wait for it to finish.")
    try:
        out = settings().reward_model_dir
        cfg = rm.TrainConfig(out=str(out), progress=True)
        st = store()
        try:
            metrics = _db(lambda: rm.train(st, cfg))
        except rm.RewardModelError as err:
            raise UserError(f"Cannot train yet: {err}.") from err
    finally:
        _train_lock.release()
    metrics_file = out / "metrics.json"
    if metrics_file.is_file():
        return json.loads(metrics_file.read_text())
    return metrics


# ------------------------------------------------------------------------------------------------ runs

RUN_MARKERS = (
    "history.jsonl",
    "completions.jsonl",
    "ablation.json",
    "ablation.md",
    "report.md",
    "metrics.json",
)


def list_runs() -> list[str]:
    """Run directories under the runs folder (relative names): training runs (with ``history.jsonl``)
    first, newest first within each group."""
    root = _runs_root()
    if not root.is_dir():
        return []
    runs = set()
    for marker in RUN_MARKERS:
        for p in root.rglob(marker):
            if len(p.relative_to(root).parts) <= 4 and _inside(p, root):
                runs.add(p.parent)
    ordered = sorted(runs, key=lambda d: (not (d / "history.jsonl").is_file(), -d.stat().st_mtime))
    return [str(d.relative_to(root)) for d in ordered]


def run_dir(name: str) -> Path:
    """A run directory by its name under the runs folder (nothing outside it)."""
    root = _runs_root()
    path = (root / name).resolve()
    if not name or not _inside(path, root) or not path.is_dir():
        raise UserError(f"{name!r} is not a run folder under {root}.")
    return path


def _jsonl(path: Path, limit: int | None = None) -> list[dict]:
    rows: list[dict] = []
    if not path.is_file():
        return rows
    with path.open(errors="replace") as fh:
        for line in fh:
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows[-limit:] if limit else rows


def run_history(name: str) -> list[dict]:
    """``history.jsonl`` of a run (one dict per logged step)."""
    return _jsonl(run_dir(name) / "history.jsonl")


def run_completions(name: str, limit: int = 30) -> list[dict]:
    """The last ``limit`` sampled completions of a run."""
    return _jsonl(run_dir(name) / "completions.jsonl", limit)


def run_predictions(name: str, limit: int = 30) -> list[dict]:
    """The first ``limit`` predictions of an evaluation folder."""
    path = run_dir(name) / "predictions.json"
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError:
        return []
    return rows[:limit] if isinstance(rows, list) else []


def run_text(name: str, filename: str) -> str | None:
    """A small text file of a run (``ablation.md``, ``report.md``, ``metrics.json``, ...), if present."""
    if filename not in ("ablation.md", "ablation.json", "report.md", "metrics.json", "config.json"):
        raise UserError(f"{filename} is not a run file the studio shows.")
    path = run_dir(name) / filename
    if not path.is_file() or path.stat().st_size > 2 * 2**20:
        return None
    return path.read_text(errors="replace")


def run_images(name: str) -> list[str]:
    """PNG plots a run wrote (report plots)."""
    return [str(p) for p in sorted(run_dir(name).glob("*.png"))]


def info(user: str | None = None) -> dict:
    """What the header shows ``user``: the model, the auth mode, and (admins only) the database."""
    s = settings()
    admin = user is None or is_admin(user)
    return {
        "db": db_label() if admin else None,
        "model": model_name() if admin else model_label(model_name(), user or ""),
        "auth": "users" if s.users else "oauth" if s.oauth else "none",
    }
