"""The studio's Blocks: header, the four tabs, the API endpoints, and how it is launched.

``build_app()`` makes the Blocks (queue included); ``launch_kwargs()`` is what ``launch`` needs (auth,
upload limit, the keyboard-shortcut script and CSS, which Gradio 6 takes in ``launch``); ``launch()``
does both. ``app.py`` at the repository root is the entry point that calls them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from . import api, compare, guard, rate, reward, runs
from .services import model as model_service
from .services.auth import annotator, is_admin
from .services.model import MAX_UPLOAD_BYTES
from .services.state import StoreUnavailable, UserError, settings, store

KEYBOARD_JS = """
<script>
(() => {
  if (window.__audioThinkerKeys) return;
  window.__audioThinkerKeys = true;
  const QUALITY = {"`": "0.0", q: "0.1", w: "0.2", e: "0.3", r: "0.4", t: "0.5", y: "0.6", u: "0.7",
                   i: "0.8", o: "0.9", p: "1.0"};
  const shown = (el) => !!el && el.offsetParent !== null;
  // unsaved changes: a choice or comment made in the Rate panel since the trace was shown or saved
  let dirty = false;
  const ACTIONS = ["rate-submit", "rate-draft", "rate-skip", "rate-discard", "rate-undo"];
  const inPanel = (t) => !!t && !!t.closest && !!t.closest("#rate-panel") && !t.closest("#rate-mine");
  for (const kind of ["change", "input"]) {
    document.addEventListener(kind, (ev) => {
      const t = ev.target;
      if (inPanel(t) && (t.matches("input[type=radio]") || t.tagName === "TEXTAREA")) dirty = true;
    }, true);
  }
  document.addEventListener("click", (ev) => {
    const t = ev.target;
    if (t && t.closest && ACTIONS.some((id) => t.closest("#" + id))) dirty = false;
  }, true);
  const watchHeader = () => {  // another trace shown (next, undo, reopened): its values are the saved ones
    const head = document.getElementById("rate-header");
    if (!head) { setTimeout(watchHeader, 500); return; }
    new MutationObserver(() => { dirty = false; }).observe(head, {childList: true, subtree: true, characterData: true});
  };
  watchHeader();
  // Radio groups act as groups for the keyboard. Gradio gives every radio input its own name, so each is
  // a group of one: Tab stops at every choice and the arrow keys do nothing. Here each group (the radios
  // of one fieldset) has one tab stop, its checked choice (else its first), and the arrow keys move and
  // select within it, wrapping around, as for native radio groups.
  const radios = (group) => [...group.querySelectorAll("input[type=radio]")].filter((r) => !r.disabled);
  const rove = () => {
    for (const group of document.querySelectorAll("fieldset")) {
      const all = radios(group);
      if (!all.length) continue;
      const stop = all.find((r) => r.checked) || all[0];
      for (const r of all) r.tabIndex = r === stop ? 0 : -1;
    }
  };
  let roveQueued = false;
  const queueRove = () => {
    if (roveQueued) return;
    roveQueued = true;
    requestAnimationFrame(() => { roveQueued = false; rove(); });
  };
  new MutationObserver(queueRove).observe(document.documentElement,
    {childList: true, subtree: true, attributes: true, attributeFilter: ["aria-checked", "disabled"]});
  document.addEventListener("change", queueRove, true);
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (!t || t.tagName !== "INPUT" || t.type !== "radio" || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const step = {ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1}[ev.key];
    const group = t.closest("fieldset");
    if (!step || !group) return;
    const all = radios(group);
    const next = all[(all.indexOf(t) + step + all.length) % all.length];
    ev.preventDefault();
    ev.stopPropagation();
    if (!next || next === t) return;
    next.focus();
    if (!next.checked) next.click();
    rove();  // now, not at the next frame: a Tab pressed right away must leave the group
  }, true);
  window.addEventListener("beforeunload", (ev) => {
    if (!dirty) return undefined;
    ev.preventDefault();
    ev.returnValue = "";  // the browser asks: your rating is not saved
    return "";
  });
  // a time named in the reasoning ("0.6 s ▶") plays the clip from there: the player's own media element
  const mediaIn = (root) => {
    const found = [];
    const walk = (n) => {
      if (!n) return;
      if (n.tagName === "AUDIO") found.push(n);
      if (n.shadowRoot) walk(n.shadowRoot);
      for (const c of n.children || []) walk(c);
    };
    walk(root);
    return found;
  };
  document.addEventListener("click", (ev) => {
    const link = ev.target && ev.target.closest && ev.target.closest(".at-time");
    if (!link) return;
    ev.preventDefault();
    const players = mediaIn(document.getElementById("rate-audio")).filter((m) => m.currentSrc || m.src);
    const media = players.find((m) => !m.classList.contains("hidden")) || players[0];
    if (!media) return;
    media.currentTime = parseFloat(link.dataset.t) || 0;
    const p = media.play();
    if (p && p.catch) p.catch(() => {});
  }, true);
  const pick = (id, value) => {
    const root = document.getElementById(id);
    if (!root) return false;
    for (const input of root.querySelectorAll("input[type=radio]")) {
      const label = input.closest("label");
      const text = label ? label.textContent.trim() : "";
      if (input.value === value || text === value) { input.click(); dirty = true; return true; }
    }
    return false;
  };
  const press = (id) => {
    const el = document.getElementById(id);
    const btn = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    if (btn && !btn.disabled && shown(btn)) { btn.click(); return true; }
    return false;
  };
  // never act while the focus is in a text field, on a button or link, or on a media control
  const MEDIA = "audio, video, [role=slider], #rate-audio, [data-testid^=waveform]";
  const ignored = (t) => !!t && t !== document.body && (
    t.isContentEditable || ["TEXTAREA", "SELECT", "BUTTON", "A", "AUDIO", "VIDEO"].includes(t.tagName) ||
    (t.tagName === "INPUT" && !["radio", "checkbox"].includes(t.type)) ||
    (t.closest && !!t.closest(MEDIA)));
  document.addEventListener("keydown", (ev) => {
    if (!shown(document.getElementById("rate-panel"))) return;
    if (ev.altKey || ev.metaKey || ev.repeat) return;
    const t = ev.target;
    const k = ev.key;
    const inComment = t && t.tagName === "TEXTAREA" && t.closest && t.closest("#rate-comment");
    if (inComment && k === "Enter" && ev.ctrlKey) {  // Ctrl+Enter submits from the comment box
      if (press("rate-submit")) ev.preventDefault();
      return;
    }
    if (ignored(t) || ev.ctrlKey) return;
    let done = false;
    if (k === "1") done = pick("rate-consistent", "yes");
    else if (k === "0") done = pick("rate-consistent", "no");
    else if (k in QUALITY) done = pick("rate-quality", QUALITY[k]);
    else if (k === "Enter") done = press("rate-submit");
    else if (k === "d") done = press("rate-draft");
    else if (k === "s") done = press("rate-skip");
    else if (k === "x") done = press("rate-discard");
    else if (k === "z") done = press("rate-undo");
    if (done) ev.preventDefault();
  });
})();
</script>
"""

CSS = """
.at-progress { margin: 4px 0 8px; }
.at-progress-label { font-size: 0.85em; opacity: 0.8; margin-bottom: 3px; }
.at-progress-track { height: 10px; border-radius: 5px; background: var(--neutral-200); overflow: hidden; }
.at-progress-fill { height: 100%; background: var(--color-accent); transition: width 0.3s; }
.at-trace-head .at-q { font-weight: 600; font-size: 1.1em; margin-bottom: 4px; }
.at-trace-head .at-choices { margin: 2px 0 4px 1.2em; }
.at-trace-head .at-meta, .at-empty { font-size: 0.85em; opacity: 0.75; }
.at-reasoning { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 12px; }
.at-reasoning .at-label { font-size: 0.8em; text-transform: uppercase; opacity: 0.6; margin-top: 6px; }
.at-reasoning .at-sent sup { opacity: 0.55; margin: 0 2px 0 6px; }
.at-reasoning .at-answer { font-weight: 600; }
.at-reasoning a.at-time { text-decoration: underline dotted; cursor: pointer; white-space: nowrap; }
#rate-quality .wrap { gap: 4px; }
.at-empty-state { border: 1px dashed var(--border-color-primary); border-radius: 8px; padding: 12px 14px; }
/* table headers break between words, never inside one (My ratings, the agreement and ranking tables) */
#rate-mine-table th, #rate-mine-table th *, #rm-rank th, #rm-rank th *, #rm-counts th, #rm-counts th *,
#rm-kappa th, #rm-kappa th * { word-break: normal !important; overflow-wrap: normal !important;
  hyphens: none !important; }
#rate-mine-table th, #rm-rank th, #rm-counts th, #rm-kappa th { min-width: max-content; }
/* toasts at the bottom right, clear of the header's Sign out button */
.toast-wrap { top: auto !important; bottom: var(--size-4) !important; }
"""


def header(request: gr.Request) -> str:
    """Who is signed in (or the no-auth notice) and the model; the database for admins only."""
    try:
        user = annotator(request)
    except UserError:
        return "Please sign in."
    info = model_service.info(user)
    who = (
        f"Signed in as **{user}**" + (" (admin)" if is_admin(user) and info["auth"] != "none" else "")
        if info["auth"] != "none"
        else f"**No login configured**: you are the anonymous annotator **{user}** for this page; your "
        "uploads and ratings are yours alone and admin actions are off. "
        "Set `AUDIO_THINKER_USERS=user:pass,…` for rating sessions."
    )
    return f"{who} · model `{info['model']}`" + (f" · database `{info['db']}`" if info["db"] else "")


def admin_controls(n: int):
    """A page-load handler that shows the ``n`` admin-only components to admins (hidden for others)."""

    def show(request: gr.Request) -> Any:
        try:
            admin = is_admin(annotator(request))
        except UserError:
            admin = False
        updates = [gr.update(visible=admin) for _ in range(n)]
        return updates[0] if n == 1 else tuple(updates)

    return show


def build_app() -> gr.Blocks:
    """The studio: header, Ask & compare, Rate, Reward model, Runs, and the named API endpoints."""
    with gr.Blocks(title="Audio-Thinker studio") as demo:
        gr.Markdown(
            "## Audio-Thinker studio\nAsk an audio question, compare thinking with answering directly, "
            "vote, and rate reasoning traces for the reward model."
        )
        with gr.Row():
            notice = gr.Markdown(elem_id="studio-notice")
            if settings().oauth:  # a Space with hf_oauth: true and no AUDIO_THINKER_USERS
                gr.LoginButton(scale=0)
            elif settings().users:  # Gradio's /logout ends the session and shows the sign-in page
                gr.Button("Sign out", link="/logout", size="sm", scale=0, elem_id="sign-out")
        api.register()  # first, so the named endpoints keep their names
        with gr.Tabs():
            with gr.Tab("Ask & compare", id="compare", elem_id="tab-compare"):
                admin_only, card = compare.build()
            with gr.Tab("Rate", id="rate", elem_id="tab-rate") as rate_tab:
                rate_load, rate_outputs, rate_admin = rate.build()
            with gr.Tab("Reward model", id="reward", elem_id="tab-reward") as reward_tab:
                reward_summary, reward_outputs, reward_admin = reward.build()
            with gr.Tab("Runs", id="runs", elem_id="tab-runs") as runs_tab:
                runs_show, runs_outputs, run_pick = runs.build()
        demo.load(header, None, notice, api_visibility="private")
        demo.load(compare.card_text, None, card, api_visibility="private")
        admin_only += rate_admin + reward_admin
        demo.load(admin_controls(len(admin_only)), None, admin_only, api_visibility="private")
        rate_tab.select(rate_load, None, rate_outputs, api_visibility="private")
        reward_tab.select(reward_summary, None, reward_outputs, api_visibility="private")
        runs_tab.select(runs_show, [run_pick], runs_outputs, api_visibility="private")
    demo.queue(default_concurrency_limit=2, max_size=512)
    return demo


def launch_kwargs(**overrides: Any) -> dict[str, Any]:
    """``launch`` arguments: auth from ``AUDIO_THINKER_USERS``, the upload limit, script and CSS, and the
    HTTP guard (``app/guard.py``). The media folder is an allowed path only so that Gradio may copy a clip
    a handler returns into its cache; the guard never serves it by path. Exports live in private
    temporary folders, not in an allowed path."""
    s = settings()
    allowed = {str(Path(p).resolve()) for p in (s.runs_root,) if p}
    with contextlib.suppress(StoreUnavailable):  # else the header and every handler say so
        allowed.add(str(store().media_dir.resolve()))
    kwargs: dict[str, Any] = {
        "max_file_size": MAX_UPLOAD_BYTES,
        "head": KEYBOARD_JS,
        "css": CSS,
        "allowed_paths": sorted(allowed),
        "show_error": True,
        "footer_links": ["api", "gradio"],
        "app_kwargs": {"middleware": [Middleware(guard.StudioGuard)]},
    }
    if s.users:
        kwargs["auth"] = guard.authenticate  # the users' passwords, throttled per account and address
        kwargs["auth_message"] = "Audio-Thinker studio: sign in with your annotator account."
    if os.environ.get("GRADIO_SERVER_PORT"):
        kwargs["server_port"] = int(os.environ["GRADIO_SERVER_PORT"])
    kwargs.update(overrides)
    return kwargs


def launch(demo: gr.Blocks | None = None, **overrides: Any) -> tuple[Any, str, str]:
    """Build (unless given) and launch the studio; returns what ``Blocks.launch`` returns."""
    demo = demo or build_app()
    return demo.launch(**launch_kwargs(**overrides))


def free_port() -> int:
    """A free TCP port on localhost."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int | None = None, **overrides: Any) -> tuple[gr.Blocks, str]:
    """Build and launch the studio in background threads (tests, benchmarks); returns ``(demo, url)``.

    Call ``app.services.state.configure(...)`` first; close with ``demo.close()``.
    """
    demo = build_app()
    _, url, _ = launch(
        demo, prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=port or free_port(),
        **overrides,
    )  # fmt: skip
    return demo, url
