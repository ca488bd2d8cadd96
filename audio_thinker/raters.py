"""Simulated rating sessions through the studio's HTTP API: K raters label traces as people do.

    python -m audio_thinker.raters --url http://127.0.0.1:7860 --users "ann:pw1,bob:pw2" \\
        --per-rater 50 --seed 0 --db sqlite:///annotations/ratings.db

Each rater signs in with ``gradio_client`` (``--users``: the studio's ``user:password`` list or a file of
them; none on an open studio: anonymous guests), takes traces from its ``/queue`` in the order the studio
serves them, labels each through ``/rate`` and, where it submitted two or more traces of one item, votes on
each two of them through ``/vote``, so a session's ratings land in the store exactly as people's do.

**Labels: the oracle, through a noise model.** A rater hears the clip: its labels start from the oracle
judge's verdict on the trace (:mod:`audio_thinker.judges.oracle`) against the item's synth ground truth,
which the rater reads from the studio's store (``--db``; read only, the API never shows it). The noise:

* ``skip``: the probability that the rater skips the trace (``/rate`` with status ``skipped``);
* ``flip``: the probability that the consistency label is the opposite of the oracle's;
* quality = the oracle's quality + the rater's bias + Gaussian noise of sd ``quality_sd``, rounded half
  up to the studio's 0.1 grid and clipped to [0, 1]; the bias is drawn once per rater, Gaussian with sd
  ``bias_sd``;
* the first flawed step: the oracle's (:meth:`~audio_thinker.judges.oracle.OracleJudge.first_flawed_step`
  on the Rate panel's sentences), moved to a neighbouring sentence with probability ``off_by_one``; a
  trace whose every sentence passes gets no mark;
* a vote prefers the trace the rater gave the higher quality (``tie`` when equal).

Traces whose item has no ground truth (uploads, imports without ``events``) are passed over without a
rating and counted. Randomness is drawn per rater and trace from ``(seed, rater index, generation id)``
(the bias from ``(seed, rater index)``), so the same seed gives the same labels to the same traces,
whatever the order or the accounts. One summary line per rater; exit status 2 with a one-line error when
the studio, the sign-in or the store fails.
"""

from __future__ import annotations

import random
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_args import config_field as _arg
from .config_args import config_parser
from .errors import first_line
from .judges import JudgeRequest
from .judges.oracle import OracleJudge
from .rewards import quantize_quality, sentence_spans

__all__ = [
    "Label",
    "NoiseModel",
    "RaterResult",
    "RatersConfig",
    "RatersError",
    "ground_truth",
    "main",
    "noisy_label",
    "parse_credentials",
    "rater_bias",
    "run_rater",
    "run_session",
]

EMPTY_QUEUE = (
    "; its queue was empty: seed the store (python -m audio_thinker.reward_model bootstrap --db URL --n 50) "
    "or ask questions in the studio's Ask & compare"
)
"""The summary's remark for a rater that found nothing to rate."""

QUEUE_LIMIT = 200
"""Traces asked of ``/queue`` at a time (the studio's largest)."""


class RatersError(RuntimeError):
    """A problem the CLI reports in one line with exit status 2 (bad flags, no studio, no store)."""


@dataclass
class NoiseModel:
    """How a simulated rater departs from the oracle (the module docstring)."""

    flip: float = _arg(0.05, "probability that a rater's consistency label is the opposite of the oracle's")
    quality_sd: float = _arg(
        0.1, "sd of the Gaussian noise added to the oracle's quality (then snapped to 0.1)"
    )
    bias_sd: float = _arg(0.05, "sd of each rater's quality offset, drawn once per rater")
    off_by_one: float = _arg(0.2, "probability that the marked flawed step is a neighbour of the oracle's")
    skip: float = _arg(0.05, "probability that a rater skips a trace")

    def check(self) -> None:
        """RatersError for a probability outside [0, 1] or a negative sd."""
        for name in ("flip", "off_by_one", "skip"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise RatersError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        for name in ("quality_sd", "bias_sd"):
            if not getattr(self, name) >= 0.0:
                raise RatersError(f"--{name.replace('_', '-')} must be at least 0, got {getattr(self, name)}")


@dataclass
class RatersConfig:
    """The session's options of ``python -m audio_thinker.raters`` (a flag and a help line per field; the
    noise model's are :class:`NoiseModel`'s)."""

    url: str = _arg("http://127.0.0.1:7860", "the running studio's address")
    users: str | None = _arg(
        None, "sign-in per rater: user:password,... or a file with one a line (as AUDIO_THINKER_USERS); "
        "none: guests of an open studio"
    )  # fmt: skip
    raters: int | None = _arg(None, "how many raters (the first K users; default: every user, or 2 guests)")
    per_rater: int = _arg(20, "traces each rater labels (submitted or skipped), as far as its queue goes")
    seed: int = _arg(0, "seed of the raters' labels")
    db: str | None = _arg(
        None, "the studio's store, read for the items' ground truth (default: $AUDIO_THINKER_DB, else "
        "annotations/ratings.db)"
    )  # fmt: skip
    votes: bool = _arg(True, "vote on each two traces of an item a rater submitted (--no-votes: none)")
    parallel: bool = _arg(False, "run the raters at once, a thread each (a load test)")

    def check(self) -> None:
        """RatersError for a bad count."""
        if self.per_rater < 1:
            raise RatersError(f"--per-rater must be at least 1, got {self.per_rater}")
        if self.raters is not None and self.raters < 1:
            raise RatersError(f"--raters must be at least 1, got {self.raters}")


@dataclass(frozen=True)
class Label:
    """One simulated rating: ``status`` submitted (with labels) or skipped."""

    generation_id: int
    status: str
    consistent: bool | None = None
    quality: float | None = None
    flawed_step: int | None = None
    flawed_span: tuple[int, int] | None = None


@dataclass
class RaterResult:
    """What one rater did: its labels (in order), votes, traces passed over, timings."""

    rater: int
    annotator: str
    bias: float
    labels: list[Label] = field(default_factory=list)
    votes: list[tuple[int, int, str]] = field(default_factory=list)
    no_truth: int = 0
    seconds: float = 0.0
    rate_s: list[float] = field(default_factory=list)

    def summary(self) -> str:
        """The rater's one-line summary."""
        submitted = sum(lab.status == "submitted" for lab in self.labels)
        p50 = sorted(self.rate_s)[len(self.rate_s) // 2] if self.rate_s else 0.0
        return (
            f"rater {self.rater} ({self.annotator}): {len(self.labels)} traces, {submitted} submitted, "
            f"{len(self.labels) - submitted} skipped, {self.no_truth} without ground truth passed over, "
            f"{len(self.votes)} votes; bias {self.bias:+.3f}; {self.seconds:.1f} s, /rate p50 {p50:.2f} s"
            + (EMPTY_QUEUE if not self.labels and not self.no_truth else "")
        )


def parse_credentials(value: str | None) -> list[tuple[str, str]]:
    """``user:password`` pairs, in order, from ``"u:p,u2:p2"`` or a file with one a line (``#`` comments)."""
    if not value or not value.strip():
        return []
    path = Path(value)
    entries = path.read_text().splitlines() if path.is_file() else value.split(",")
    pairs = []
    for entry in (e.strip() for e in entries):
        if entry and not entry.startswith("#"):
            name, sep, password = entry.partition(":")
            if not sep or not name.strip() or not password:
                raise RatersError(f"--users: expected user:password, got {name.strip()!r}:…")
            pairs.append((name.strip(), password))
    return pairs


def rater_bias(seed: int, rater: int, bias_sd: float) -> float:
    """Rater ``rater``'s quality offset for a session seeded ``seed``."""
    return random.Random(f"{seed}:{rater}:bias").gauss(0.0, bias_sd) if bias_sd > 0 else 0.0


def ground_truth(store: Any, generation_id: int) -> tuple[JudgeRequest, int] | None:
    """The oracle's request for a stored think trace (its item's synth ``events`` and task from the store)
    and the item's id, or None when the item has no ground truth."""
    gen = store.get_generation(generation_id)
    item = store.get_item(gen.item_id)
    meta = item.meta if isinstance(item.meta, Mapping) else {}
    if not isinstance(meta.get("events"), list):
        return None
    truth = {**meta, "sub-category": meta.get("sub-category") or item.task, "question": item.question,
             "choices": list(item.choices)}  # fmt: skip
    request = JudgeRequest(item.question, list(item.choices), gen.think or "", gen.answer or "", truth)
    return request, item.id


def noisy_label(
    generation_id: int,
    think: str,
    verdict: Any,
    flawed: int | None,
    *,
    noise: NoiseModel,
    bias: float,
    rng: random.Random,
) -> Label:
    """A rater's label of a trace from the oracle's ``verdict`` and first flawed step (an index into the
    trace's :func:`~audio_thinker.rewards.sentence_spans`), drawn from ``rng`` in a fixed order."""
    if rng.random() < noise.skip:
        return Label(generation_id, "skipped")
    consistent = bool(verdict.consistent) != (rng.random() < noise.flip)
    quality = quantize_quality(verdict.quality + bias + rng.gauss(0.0, noise.quality_sd))
    spans = sentence_spans(think)
    moved = rng.random() < noise.off_by_one
    step = rng.choice((-1, 1))
    if flawed is not None and moved and len(spans) > 1:
        shifted = flawed + step
        flawed = shifted if 0 <= shifted < len(spans) else flawed - step
    span = spans[flawed] if flawed is not None else None
    return Label(generation_id, "submitted", consistent, quality, flawed, span)


def _vote_choice(a: Label, b: Label) -> str:
    if a.quality == b.quality:
        return "tie"
    return "A" if (a.quality or 0.0) > (b.quality or 0.0) else "B"


def run_rater(
    client: Any,
    store: Any,
    rater: int,
    annotator: str,
    cfg: RatersConfig,
    noise: NoiseModel,
    oracle: OracleJudge | None = None,
) -> RaterResult:
    """Rater ``rater`` labels up to ``cfg.per_rater`` traces of its queue through ``client`` (a signed-in
    ``gradio_client.Client``) with ``noise``, then votes; returns what it did."""
    oracle = oracle or OracleJudge()
    t0 = time.perf_counter()
    result = RaterResult(rater, annotator, rater_bias(cfg.seed, rater, noise.bias_sd))
    seen: set[int] = set()
    items: dict[int, list[Label]] = defaultdict(list)
    while len(result.labels) < cfg.per_rater:
        traces = client.predict(QUEUE_LIMIT, api_name="/queue")["traces"]
        fresh = [t for t in traces if int(t["generation_id"]) not in seen]
        if not fresh:
            break  # the queue holds nothing this rater has not seen
        for t in fresh:
            if len(result.labels) >= cfg.per_rater:
                break
            gid = int(t["generation_id"])
            seen.add(gid)
            found = ground_truth(store, gid)
            verdict = oracle.judge(found[0]) if found else None
            if found is None or verdict is None or verdict.failed:
                result.no_truth += 1
                continue
            request, item_id = found
            ends = [end for _, end in sentence_spans(request.think)]
            label = noisy_label(
                gid, request.think, verdict, oracle.first_flawed_step(request, ends), noise=noise,
                bias=result.bias, rng=random.Random(f"{cfg.seed}:{rater}:{gid}"),
            )  # fmt: skip
            span = label.flawed_span or (None, None)
            start = time.perf_counter()
            stored = client.predict(
                gid, label.consistent, label.quality, span[0], span[1], "", label.status, None,
                api_name="/rate",
            )  # fmt: skip
            result.annotator = str(stored.get("annotator") or result.annotator)
            result.rate_s.append(time.perf_counter() - start)
            result.labels.append(label)
            if label.status == "submitted":
                items[item_id].append(label)
    if cfg.votes:
        for item_id in sorted(items):
            group = sorted(items[item_id], key=lambda lab: lab.generation_id)
            for i, a in enumerate(group):
                for b in group[i + 1 :]:
                    choice = _vote_choice(a, b)
                    client.predict(a.generation_id, b.generation_id, choice, False, api_name="/vote")
                    result.votes.append((a.generation_id, b.generation_id, choice))
    result.seconds = time.perf_counter() - t0
    return result


def _client(url: str, credentials: tuple[str, str] | None) -> Any:
    from gradio_client import Client

    try:
        return Client(url, auth=credentials, verbose=False)
    except Exception as err:  # connection refused, bad sign-in, not a Gradio app: one line
        who = f" as {credentials[0]}" if credentials else ""
        raise RatersError(
            f"cannot reach the studio at {url}{who}: {str(err).strip() or type(err).__name__}"
        ) from err


def run_session(cfg: RatersConfig, store: Any, noise: NoiseModel | None = None) -> list[RaterResult]:
    """Run the session ``cfg`` describes against the studio at ``cfg.url``, the raters' labels drawn with
    ``noise`` (default: :class:`NoiseModel`'s defaults); one result per rater."""
    noise = noise or NoiseModel()
    cfg.check()
    noise.check()
    users = parse_credentials(cfg.users)
    k = cfg.raters if cfg.raters is not None else (len(users) or 2)
    if users and k > len(users):
        raise RatersError(f"--raters {k} but --users names {len(users)}; give a sign-in per rater")
    accounts: list[tuple[str, str] | None] = list(users[:k]) if users else [None] * k
    oracle = OracleJudge()

    def one(rater: int) -> RaterResult:
        account = accounts[rater]
        client = _client(cfg.url, account)
        name = account[0] if account else "guest"  # a guest's name comes back from its first /rate
        try:
            return run_rater(client, store, rater, name, cfg, noise, oracle)
        finally:
            client.close()

    if cfg.parallel and k > 1:
        with ThreadPoolExecutor(max_workers=k) as pool:
            return list(pool.map(one, range(k)))
    return [one(r) for r in range(k)]


def _parser():
    """The CLI's parser: a flag and a help line for each field of :class:`RatersConfig` and :class:`NoiseModel`."""
    return config_parser(
        [RatersConfig, NoiseModel], prog="python -m audio_thinker.raters", description=__doc__
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: a summary line per rater; one-line errors with exit status 2."""
    from .store import Store, _sqlite_file, database_url

    cfg, noise = _parser().parse_args_into_dataclasses(args=argv)
    try:
        cfg.check()
        noise.check()
        url = database_url(cfg.db)
        db_file = _sqlite_file(url)
        if db_file is not None and not db_file.is_file():
            raise RatersError(f"no database at {db_file} (--db: the studio's store, for the ground truth)")
        with Store(url) as store:
            results = run_session(cfg, store, noise)
    except RatersError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # the studio refused a call (gradio_client's AppError), the store failed
        print(f"error: {type(err).__name__}: {first_line(err)}", file=sys.stderr)
        return 2
    for r in results:
        print(r.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
