"""Rate: a personal queue of reasoning traces to rate (from the compare tab and imported runs).

Each trace shows the clip, question, choices, reasoning and answer; the annotator sets consistent
(yes/no), quality (0.0–1.0) and optionally the first flawed sentence (stored as a character span of the
think text) and a comment, then submits, saves a draft, skips (the trace comes back later) or discards
it. Keyboard shortcuts (see ``annotations/guidelines.md``) are installed by ``studio.KEYBOARD_JS``.
The annotator is always the signed-in user of the request.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import gradio as gr

from audio_thinker.rewards import QUALITY_GRID

from .services import importing, spectrogram
from .services import rating as service
from .services.auth import annotator, is_admin
from .services.state import DB_CONCURRENCY, UserError
from .ui import progress_bar, user_error, warn_instead

GUIDELINES = Path(__file__).resolve().parent.parent / "annotations" / "guidelines.md"
QUALITY_CHOICES = [f"{q:.1f}" for q in QUALITY_GRID]  # the R_t grid
NO_FLAW = "none"


def guidelines() -> str:
    """The rating guidelines (markdown)."""
    try:
        return GUIDELINES.read_text()
    except OSError:
        return "_annotations/guidelines.md not found._"


def _span_value(span: tuple[int, int]) -> str:
    return f"{span[0]}:{span[1]}"


def parse_span(value: str | None) -> tuple[int, int] | None:
    """A flawed-step choice (``"start:end"``) as a span; None for no flaw."""
    if not value or value == NO_FLAW:
        return None
    try:
        start, end = (int(x) for x in value.split(":"))
    except ValueError as err:
        raise UserError(f"Bad flawed-step value {value!r}.") from err
    return start, end


def _header(t: service.Trace) -> str:
    choices = "".join(f"<li>{html.escape(c)}</li>" for c in t.choices) or "<li><em>open question</em></li>"
    origin = (
        f"{t.source}"
        + (f" · run {t.run}" if t.run else "")
        + (f" · step {t.step}" if t.step is not None else "")
    )
    return (
        f"<div class='at-trace-head'><div class='at-q'>{html.escape(t.question)}</div>"
        f"<ul class='at-choices'>{choices}</ul>"
        f"<div class='at-meta'>trace #{t.generation_id} · {html.escape(t.model)} · prompt {t.mode} · "
        f"{html.escape(origin)}</div></div>"
    )


def _with_times(text: str, playable: bool) -> str:
    """``text`` escaped, each time it names ("0.6 s") a link that plays the clip from there."""
    if not playable:
        return html.escape(text)
    out, pos = [], 0
    for start, end, seconds in spectrogram.named_times(text):
        out.append(html.escape(text[pos:start]))
        out.append(
            f"<a href='#' class='at-time' data-t='{seconds:g}' title='Play the clip from {seconds:g} s'>"
            f"{html.escape(text[start:end])} ▶</a>"
        )
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _reasoning(t: service.Trace) -> str:
    playable = bool(t.audio_path)
    numbered = " ".join(
        f"<span class='at-sent'><sup>{k + 1}</sup>{_with_times(t.think[s:e], playable)}</span>"
        for k, (s, e) in enumerate(t.sentences)
    )
    answer = html.escape(t.answer) if t.answer else "<em>(no answer)</em>"
    return (
        f"<div class='at-reasoning'><div class='at-label'>Reasoning</div><div>{numbered}</div>"
        f"<div class='at-label'>Answer</div><div class='at-answer'>{answer}</div></div>"
    )


def _flaw_choices(t: service.Trace) -> list[tuple[str, str]]:
    opts = [("— no flawed step —", NO_FLAW)]
    for k, span in enumerate(t.sentences):
        text = t.think[span[0] : span[1]]
        opts.append((f"{k + 1}. {text if len(text) <= 90 else text[:87] + '…'}", _span_value(span)))
    return opts


def _progress(user: str) -> str:
    p = service.progress(user)
    total = p["submitted"] + p["discarded"] + p["todo"]
    label = f"{user}: {p['submitted']} submitted · {p['todo']} to do · {p['draft']} drafts · {p['skipped']} skipped"
    return progress_bar(p["submitted"] + p["discarded"], total, label)


OUTPUTS = 18
"""state, shown_at, progress, header, audio, reasoning, flawed, consistent, quality, comment, then the undo
state, the undo button, the "My ratings" table and the submit, draft, skip and discard buttons (off while
the queue is empty), and the clip's spectrogram."""
MINE_HEADERS = ["trace", "status", "rating", "question", "updated (UTC)"]
MINE_WIDTHS = ["12%", "17%", "13%", "32%", "26%"]


def _mine(user: str) -> dict:
    """The "My ratings" table: every rating of ``user``'s, most recently changed first; "rating" is
    consistent (yes / no) and quality, e.g. "yes 0.8"."""
    data = []
    for r in service.my_rating_list(user):
        consistent = {True: "yes", False: "no"}.get(r["consistent"], "")
        quality = "" if r["quality"] is None else f"{r['quality']:.1f}"
        question = r["question"] if len(r["question"]) <= 80 else r["question"][:77] + "…"
        updated = (r["updated_at"] or "")[:16].replace("T", " ")
        data.append(
            [f"#{r['generation_id']}", r["status"], f"{consistent} {quality}".strip(), question, updated]
        )
    return {"headers": MINE_HEADERS, "data": data or [["", "", "", "nothing rated yet", ""]]}


def _show(user: str, t: service.Trace | None, undo: dict | None = None) -> tuple[Any, ...]:
    """Everything the tab shows for trace ``t`` (None: the queue is empty); ``undo`` is the skip or
    discard that the Undo button would take back."""
    live = gr.update(interactive=t is not None)
    fig = spectrogram.figure(t.audio_path) if t is not None else None
    extra = (undo, gr.update(visible=undo is not None), _mine(user), live, live, live, live,
             gr.update(value=fig, visible=fig is not None))  # fmt: skip
    problem = service.judge_problem()  # a broken reward model: the queue is oldest first, and people are told
    if problem:
        gr.Warning(problem)
    return _trace_view(user, t) + extra


def _trace_view(user: str, t: service.Trace | None) -> tuple[Any, ...]:
    if t is None:
        how = (
            "import a run's traces (<b>Import traces</b>, at the foot of the right column), or ask questions "
            "in <b>Ask &amp; compare</b>: "
            "the think answers land here"
            if is_admin(user)
            else "ask a question in <b>Ask &amp; compare</b> (pick an example, then Ask both): its think "
            "answers land here; or ask an admin to import traces or share clips into the common queue"
        )
        return (
            None, None, _progress(user),
            f"<div class='at-empty-state'><b>Nothing to rate: your queue is empty.</b> To get traces, {how}."
            "</div>",
            gr.update(value=None, visible=False), "",
            gr.update(choices=[(("— no flawed step —"), NO_FLAW)], value=None, visible=False),
            gr.update(value=None, interactive=False), gr.update(value=None, interactive=False),
            gr.update(value="", interactive=False),
        )  # fmt: skip
    d = t.draft or {}
    consistent = None if d.get("consistent") is None else ("yes" if d["consistent"] else "no")
    quality = None if d.get("quality") is None else f"{d['quality']:.1f}"
    span = d.get("flawed_span")
    return (
        t.generation_id, time.time(), _progress(user), _header(t), gr.update(value=t.audio_path, visible=True),
        _reasoning(t),
        gr.update(choices=_flaw_choices(t), value=_span_value(tuple(span)) if span else None, visible=True),
        gr.update(value=consistent, interactive=True), gr.update(value=quality, interactive=True),
        gr.update(value=d.get("comment") or "", interactive=True),
    )  # fmt: skip


def _lead_time(shown_at: float | None) -> float | None:
    """Seconds since the trace was shown; None when unknown or outside what the store records (a tab left
    open for more than :data:`~audio_thinker.store.MAX_LEAD_TIME_S`, or a clock that went back)."""
    if not shown_at:
        return None
    seconds = time.time() - shown_at
    return seconds if 0 <= seconds <= service.MAX_LEAD_TIME_S else None


@warn_instead(OUTPUTS)
def load(request: gr.Request) -> tuple[Any, ...]:
    """Show the first trace of the signed-in user's queue."""
    with user_error():
        user = annotator(request)
        return _show(user, service.next_trace(user))


@warn_instead(OUTPUTS)
def act(
    action: str,
    gen_id: int | None,
    shown_at: float | None,
    flawed: str | None,
    consistent: str | None,
    quality: str | None,
    comment: str | None,
    request: gr.Request,
) -> tuple[Any, ...]:
    """Submit / draft / skip / discard the current trace, then show the next one."""
    with user_error():
        user = annotator(request)
        if gen_id is None:
            raise UserError("Your queue is empty: there is no trace to rate. Ask in Ask & compare.")
        status = {"submit": "submitted", "draft": "draft", "skip": "skipped", "discard": "discarded"}[action]
        before = service.own_rating(user, gen_id) if action in ("skip", "discard") else None
        service.rate(
            user,
            gen_id,
            consistent=None if consistent is None else consistent == "yes",
            quality=None if quality in (None, "") else float(quality),
            flawed_span=parse_span(flawed),
            comment=comment,
            status=status,
            lead_time_s=_lead_time(shown_at),
        )
        gr.Info({"submit": "Rating submitted.", "draft": "Draft saved.",
                 "skip": "Skipped: it comes back later (Undo, or z, takes it back).",
                 "discard": "Discarded (Undo, or z, takes it back)."}[action])  # fmt: skip
        if action == "draft":
            return _show(user, service.trace(user, gen_id))
        undo = {"generation_id": gen_id, "before": before} if action in ("skip", "discard") else None
        return _show(user, service.next_trace(user, after=gen_id), undo)


@warn_instead(OUTPUTS)
def undo_last(undo: dict | None, request: gr.Request) -> tuple[Any, ...]:
    """Take back the last skip or discard: the rating is put back as it was and that trace is shown."""
    with user_error():
        user = annotator(request)
        if not undo:
            raise UserError("Nothing to undo.")
        service.undo(user, undo["generation_id"], undo["before"])
        gr.Info("Undone.")
        return _show(user, service.trace(user, undo["generation_id"]))


@warn_instead(OUTPUTS)
def reopen(evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
    """Open a trace from "My ratings" (a click on its row) with your rating, to change it."""
    with user_error():
        user = annotator(request)
        row = evt.row_value if isinstance(evt.row_value, list) else []
        cell = str(row[0]) if row else ""
        if not cell.startswith("#") or not cell[1:].isdigit():
            raise UserError("Click a rated trace in the list.")
        return _show(user, service.trace(user, int(cell[1:])))


def _actor(action: str):
    def handler(
        gen_id: int | None, shown_at: float | None, flawed: str | None, consistent: str | None,
        quality: str | None, comment: str | None, request: gr.Request,
    ) -> tuple[Any, ...]:  # fmt: skip
        return act(action, gen_id, shown_at, flawed, consistent, quality, comment, request)

    handler.__name__ = f"rate_{action}"
    return handler


def import_file(
    server_file: str | None,
    upload: str | None,
    request: gr.Request,
    progress=gr.Progress(),  # noqa: B008
) -> str:
    """Import traces from a run file under ``runs/`` or an uploaded completions.jsonl / predictions.json."""
    with user_error():
        user = annotator(request)
        if upload:
            target, uploaded = upload, True
        elif server_file:
            target, uploaded = server_file, False
        else:
            raise UserError("Pick a file under runs/ or upload one.")
        progress(0, desc="importing")
        c = importing.import_traces(
            user,
            target,
            uploaded=uploaded,
            progress_cb=lambda k, n: progress(k / max(n, 1), desc="importing"),
        )
        return (
            f"Imported **{c['imported'] + c['no_audio']}** traces ({c['no_audio']} without audio), "
            f"{c['already']} were already there, {c['no_think']} had no reasoning (not rated), "
            f"{c['bad']} unreadable; {c['records']} records in the file."
        )


def build() -> tuple[Any, Any, list[Any]]:
    """Add the tab's components and events to the enclosing Blocks; returns (load event fn, outputs) and
    the admin-only components (hidden until the page knows its user is an admin)."""
    gen_state = gr.State(None)
    shown_state = gr.State(None)
    undo_state = gr.State(None)
    with gr.Row(elem_id="rate-panel"):
        with gr.Column(scale=3):
            progress_html = gr.HTML(elem_id="rate-progress")
            header = gr.HTML(elem_id="rate-header")
            audio = gr.Audio(type="filepath", interactive=False, label="Clip", elem_id="rate-audio")
            spectro = gr.Plot(label="Spectrogram (time in seconds; a time in the reasoning plays the clip from "
                              "there)", visible=False, elem_id="rate-spectrogram")  # fmt: skip
            reasoning = gr.HTML(elem_id="rate-reasoning")
            flawed = gr.Radio(
                [("— no flawed step —", NO_FLAW)],
                label="Flawed step: the first sentence that goes wrong (leave empty for a flawless trace)",
                elem_id="rate-flawed",
            )
        with gr.Column(scale=2):
            consistent = gr.Radio(
                [("yes", "yes"), ("no", "no")], label="Consistent? (keys 1 / 0)", elem_id="rate-consistent"
            )
            quality = gr.Radio(
                QUALITY_CHOICES, label="Think quality (keys ` q w e r t y u i o p = 0.0 … 1.0)",
                elem_id="rate-quality",
            )  # fmt: skip
            comment = gr.Textbox(
                label="Comment (optional)",
                lines=2,
                max_length=service.MAX_COMMENT_CHARS,
                elem_id="rate-comment",
            )
            with gr.Row():
                submit = gr.Button("Submit (Enter)", variant="primary", elem_id="rate-submit")
                draft = gr.Button("Save draft (d)", elem_id="rate-draft")
            with gr.Row():
                skip = gr.Button("Skip (s)", elem_id="rate-skip")
                discard = gr.Button("Discard (x)", variant="stop", elem_id="rate-discard")
            undo_btn = gr.Button("Undo skip / discard (z)", size="sm", visible=False, elem_id="rate-undo")
            gr.Markdown(
                "<sub>Keys work when the focus is not in a text box, on a button or on the clip's player: "
                "`1`/`0` consistent, `` ` `` `q`…`p` quality, `Enter` submit, `d` draft, `s` skip, "
                "`x` discard, `z` undo a skip or discard.</sub>"
            )
            with gr.Accordion("My ratings", open=False, elem_id="rate-mine"):
                gr.Markdown("<sub>Everything you rated, skipped or discarded; click a row to reopen it and "
                            "change your rating.</sub>")  # fmt: skip
                mine = gr.Dataframe(
                    headers=MINE_HEADERS,
                    column_widths=MINE_WIDTHS,
                    interactive=False,
                    wrap=True,
                    max_height=300,
                    elem_id="rate-mine-table",
                )
            with gr.Accordion("Guidelines", open=False, elem_id="rate-guidelines"):
                gr.Markdown(guidelines())
            with gr.Accordion(
                "Import traces (admins)", open=False, visible=False, elem_id="rate-import"
            ) as imp:
                server_file = gr.Dropdown(
                    choices=importing.importable_files(), label="A run's completions.jsonl or an evaluation's "
                    "predictions.json under runs/", allow_custom_value=False, elem_id="rate-import-file",
                )  # fmt: skip
                upload = gr.File(label="… or upload one", file_types=[".json", ".jsonl"], type="filepath")
                with gr.Row():
                    refresh = gr.Button("Refresh list", size="sm")
                    do_import = gr.Button("Import", variant="secondary", elem_id="rate-import-btn")
                import_result = gr.Markdown()
    outputs = [
        gen_state,
        shown_state,
        progress_html,
        header,
        audio,
        reasoning,
        flawed,
        consistent,
        quality,
        comment,
        undo_state,
        undo_btn,
        mine,
        submit,
        draft,
        skip,
        discard,
        spectro,
    ]
    assert len(outputs) == OUTPUTS
    inputs = [gen_state, shown_state, flawed, consistent, quality, comment]
    for btn, action in ((submit, "submit"), (draft, "draft"), (skip, "skip"), (discard, "discard")):
        btn.click(
            _actor(action),
            inputs,
            outputs,
            api_visibility="private",
            concurrency_id="db",
            concurrency_limit=DB_CONCURRENCY,
        )
    undo_btn.click(
        undo_last, [undo_state], outputs, api_visibility="private", concurrency_id="db",
        concurrency_limit=DB_CONCURRENCY,
    )  # fmt: skip
    mine.select(reopen, None, outputs, api_visibility="private", concurrency_id="db")
    refresh.click(
        lambda: gr.update(choices=importing.importable_files()), None, server_file, api_visibility="private"
    )
    do_import.click(
        import_file, [server_file, upload], import_result, api_visibility="private", concurrency_id="import"
    ).then(load, None, outputs, api_visibility="private")
    return load, outputs, [imp]
