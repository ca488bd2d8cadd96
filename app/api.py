"""Named API endpoints for ``gradio_client`` (``/compare``, ``/vote``, ``/rate``, ``/export``, the admins'
``/share``, and the read-only ``/queue``, ``/my_ratings``, ``/get_rating``).

Every endpoint takes the annotator from the signed-in request (``Client(url, auth=(user, password))``),
never from an argument, and only ever returns or changes that annotator's own ratings. The example below
(:data:`CLIENT_EXAMPLE`, also in the README) is run by ``tests/test_app.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from .services import compare as compare_service
from .services import model as model_service
from .services import rating as rating_service
from .services import reward as reward_service
from .services.auth import annotator
from .services.state import DB_CONCURRENCY, GENERATION_CONCURRENCY, UserError
from .ui import user_error

CLIENT_EXAMPLE = """\
from gradio_client import Client, handle_file

client = Client("http://127.0.0.1:7860", auth=("alice", "secret"))
r = client.predict(handle_file("clip.wav"), "How many beeps are there?", "3\\n4\\n5", api_name="/compare")
a, b = r["a"], r["b"]  # think, no-think: text, think, answer, completion_tokens, latency_s, generation_id
client.predict(a["generation_id"], b["generation_id"], "A", api_name="/vote")  # A | B | tie | both_bad
client.predict(a["generation_id"], True, 0.8, api_name="/rate")  # consistent, quality [, flawed_start, flawed_end, comment]
path = client.predict("trl", api_name="/export")  # trl | jsonl | hf (zip); non-admins get their own ratings
"""


def _uploaded_path(audio: Any) -> tuple[str, str | None]:
    """The server path of an uploaded file (must lie in Gradio's upload folder) and its original name."""
    if isinstance(audio, dict):
        path, name = audio.get("path"), audio.get("orig_name")
    else:
        path, name = getattr(audio, "path", audio), getattr(audio, "orig_name", None)
    if not isinstance(path, str) or not path:
        raise UserError("Send the audio as a file: handle_file('clip.wav').")
    resolved = Path(path).resolve()
    try:
        resolved.relative_to(Path(get_upload_folder()).resolve())
    except ValueError:
        raise UserError("The audio must be uploaded with the request (handle_file).") from None
    return str(resolved), name


def compare(
    audio: gr.FileData, question: str, choices: str = "", pair: str = "think vs no-think",
    request: gr.Request = None,  # type: ignore[assignment]
) -> dict:  # fmt: skip
    """Answer a question about a clip in two prompt modes (default think vs no-think) and store both.

    ``choices``: one per line (optional). Returns ``{"item_id", "clip_hash", "model", "a": {...}, "b":
    {...}}``; each side has ``generation_id``, ``mode``, ``output_mode``, ``think``, ``answer``, ``text``,
    ``completion_tokens``, ``latency_s``, ``first_token_s``, ``ran_out_of_tokens`` (the reasoning hit the
    token cap and no answer came), ``correct`` (against a built-in example's ``gold``, else None); and
    ``audio_flags``: why the clip is unlike what the model was trained to hear (empty when nothing found).
    """
    with user_error():
        user = annotator(request)
        path, name = _uploaded_path(audio)
        *_, last = compare_service.compare_stream(
            path, question, choices, pair, original_name=name, user=user
        )
        return {**last.to_dict(), "model": model_service.model_label(last.model, user)}


def vote(
    generation_a: int, generation_b: int, choice: str, swapped: bool = False,
    request: gr.Request = None,  # type: ignore[assignment]
) -> dict:  # fmt: skip
    """Vote between two generations of the same item: ``choice`` is A, B, tie or both_bad (A =
    ``generation_a``); ``swapped`` records that A was shown on the right."""
    with user_error():
        return compare_service.vote(annotator(request), generation_a, generation_b, choice, swapped)


def rate(
    generation_id: int,
    consistent: bool | None = None,
    quality: float | None = None,
    flawed_start: int | None = None,
    flawed_end: int | None = None,
    comment: str = "",
    status: str = "submitted",
    lead_time_s: float | None = None,
    request: gr.Request = None,  # type: ignore[assignment]
) -> dict:
    """Create or update your own rating of a generation's reasoning trace.

    ``status``: submitted (needs consistent and quality), draft, skipped or discarded. ``quality`` in
    [0, 1] is snapped to tenths; ``flawed_start``/``flawed_end`` are character offsets into the think
    text. Returns the stored rating.
    """
    with user_error():
        span = None
        if flawed_start is not None or flawed_end is not None:
            if flawed_start is None or flawed_end is None:
                raise UserError("Give both flawed_start and flawed_end, or neither.")
            span = (flawed_start, flawed_end)
        return rating_service.rate(
            annotator(request), generation_id, consistent=consistent, quality=quality,
            flawed_span=span, comment=comment, status=status, lead_time_s=lead_time_s,
        )  # fmt: skip


def export(format: str = "jsonl", request: gr.Request = None) -> gr.FileData:  # type: ignore[assignment]  # noqa: A002
    """Download the ratings: admins get all of them, as ``labels`` (every rating with annotator, status,
    consistency, quality, flawed step, comment, times) or preference pairs (``trl``, ``jsonl`` or ``hf`` as
    a zip; the labels when there are no pairs yet), other annotators their own as JSONL."""
    with user_error():
        path = reward_service.export(annotator(request), format)
        return gr.FileData(path=path, orig_name=Path(path).name)


def queue(limit: int = 10, request: gr.Request = None) -> dict:  # type: ignore[assignment]
    """Your next traces to rate: ``{"traces": [{generation_id, question, choices, think, answer}]}``."""
    with user_error():
        user = annotator(request)
        gens = rating_service.queue(user, max(1, min(int(limit), 200)))
        return {
            "traces": [
                {"generation_id": g.id, "question": g.item.question, "choices": list(g.item.choices),
                 "think": g.think, "answer": g.answer, "mode": g.mode, "model": model_service.model_label(g.model, user)}
                for g in gens
            ]
        }  # fmt: skip


def my_ratings(status: str = "", request: gr.Request = None) -> dict:  # type: ignore[assignment]
    """Your own ratings (optionally of one status): ``{"ratings": [...]}``."""
    with user_error():
        return {"ratings": rating_service.my_ratings(annotator(request), status or None)}


def get_rating(rating_id: int, request: gr.Request = None) -> dict:  # type: ignore[assignment]
    """One of your own ratings by id (another annotator's rating is refused)."""
    with user_error():
        return rating_service.get_rating(annotator(request), rating_id)


def share(item_id: int, shared: bool = True, request: gr.Request = None) -> dict:  # type: ignore[assignment]
    """Admins: put an uploaded clip's item (``item_id`` from ``/compare``) into everyone's rating queue, or
    take it back with ``shared=False``. Uploads and recordings are private to their uploader until then."""
    with user_error():
        return compare_service.share(annotator(request), item_id, shared)


def model_card(request: gr.Request = None) -> dict:  # type: ignore[assignment]
    """What the loaded model was trained to hear: ``model``, ``architecture``, ``sampling_rate``,
    ``clip_window_s`` (how much of a clip it hears), ``max_new_tokens``, ``trained_on``, ``numbers`` (where its
    measured accuracy is), ``synthetic_only``."""
    with user_error():
        return model_service.model_card(annotator(request))


def check_audio(audio: gr.FileData, request: gr.Request = None) -> dict:  # type: ignore[assignment]
    """Why a clip is far from what the model was trained to hear: ``{"flags": [...]}`` (empty: nothing
    found). Nothing is stored."""
    with user_error():
        annotator(request)
        path, _ = _uploaded_path(audio)
        return {"flags": model_service.audio_check(path)}


def backup(request: gr.Request = None) -> str:  # type: ignore[assignment]
    """Admins: the whole store as one zip (ratings with annotator and labels, votes, items, generations,
    clips); restore it with ``python -m audio_thinker.store restore --db URL --from F``."""
    with user_error():
        return reward_service.backup(annotator(request))


def register() -> None:
    """Add the endpoints to the enclosing Blocks."""
    gen = {"concurrency_id": "model", "concurrency_limit": GENERATION_CONCURRENCY}
    db = {"concurrency_id": "db", "concurrency_limit": DB_CONCURRENCY}
    gr.api(compare, api_name="compare", **gen)
    gr.api(vote, api_name="vote", **db)
    gr.api(rate, api_name="rate", **db)
    gr.api(export, api_name="export", concurrency_id="export", concurrency_limit=2)
    gr.api(backup, api_name="backup", concurrency_id="export", concurrency_limit=2)
    gr.api(queue, api_name="queue", **db)
    gr.api(my_ratings, api_name="my_ratings", **db)
    gr.api(get_rating, api_name="get_rating", **db)
    gr.api(share, api_name="share", **db)
    gr.api(model_card, api_name="model_card", **db)
    gr.api(check_audio, api_name="check_audio", **db)
