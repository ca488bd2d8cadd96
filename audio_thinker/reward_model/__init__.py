"""The ``learned`` judge: a reward model trained from the ratings store (bootstrap, export, train, judge).

    python -m audio_thinker.reward_model bootstrap --db sqlite:////tmp/rm/ratings.db --n 2000
    python -m audio_thinker.reward_model train --db sqlite:////tmp/rm/ratings.db --out /tmp/rm/model
    python -m audio_thinker.reward_model export --db ... --out pairs.jsonl --format trl|jsonl|hf
    python -m audio_thinker.reward_model export --db ... --out steps.jsonl --format stepwise

The judge itself, and what the model reads (:func:`~audio_thinker.judges.learned.render`: the reasoning
aligned sentence by sentence with the item's reference), live in :mod:`audio_thinker.judges.learned`;
``make_judge("learned", path=DIR)`` loads a ``train --out DIR`` folder. This package makes that folder:

* :mod:`.data` — traces, labels and preference pairs from the store;
* :mod:`.bootstrap` — policy traces (and corrupted gold traces) on synth-aqa items, rated by the oracle;
* :mod:`.model` — the network (a tiny ``Qwen2ForSequenceClassification`` or an HF base);
* :mod:`.train` — both heads, calibration and held-out metrics;
* :mod:`.export` — pairs or labels as TRL JSONL, JSONL or an HF dataset;
* :mod:`.stepwise` — the raters' flawed-step marks as TRL stepwise-supervision rows;
* :mod:`.cli` — the command line.

``train --no-reference`` trains a text-only model. The consistency head reads the reasoning alone by
default (``Reasoning: …``): R_c asks whether the reasoning supports its answer, which the truth does not
decide (the oracle checks the trace against its own claims), and without the reference lines the head
learns the check better (held-out AUC on policy traces 0.937 vs 0.921 on the same data in the same
time: 5 epochs without the reference against 3 with it, whose sequences are twice as long);
``--consistency-reference`` shows it the reference too.

**Two heads.** R_t: a sequence-classification model with one output trained by TRL's ``RewardTrainer``
on preference pairs — for every item, each two rated traces whose quality differs by at least
``min_gap`` (chosen = the better one, ``margin`` = the quality gap), plus the studio's A/B votes
(``margin`` = :data:`VOTE_MARGIN`; ties and both-bad are skipped). Its raw score is mapped to the 0-1
quality grid by an isotonic fit on the training traces (``calibration.json``). R_c: a second one-output
model trained with weighted binary cross-entropy on the per-trace consistency labels (classes balanced).

**Human over oracle.** A trace's label is the weighted mean of its ratings, a human rating weighing
:data:`HUMAN_WEIGHT` (3) times an oracle or judge rating (consistency: weighted majority); a pair in which
either trace carries a human rating, and every vote, is replicated :data:`HUMAN_WEIGHT` times in the
pair set (and in the ``trl`` export); human consistency labels get loss weight :data:`HUMAN_WEIGHT`.

**Default model.** A tiny ``Qwen2ForSequenceClassification`` (:data:`TINY_CONFIG`) on the project's
shipped tokenizer, trained from scratch on CPU in minutes; ``--base NAME_OR_PATH`` fine-tunes any HF
sequence-classification base instead (its own tokenizer).

**Bootstrap.** Synth-aqa items (clips, items with the ground truth in ``meta``) are answered by the policy
in think mode at a ladder of temperatures (one trace per item per temperature, run ``bootstrap``) and
every think trace is rated by the oracle (annotator and source ``oracle``). ``--corrupt-share S`` adds a
share S of corrupted gold traces (one fact, count, onset or the answer changed; run
``bootstrap-corrupted``), rated by the oracle like the others; the default is 0 (policy traces only).
Items that already have bootstrap traces are skipped, so an interrupted bootstrap resumes.

**Held-out metrics.** Items are split (seeded) into train and eval; ``metrics.json`` reports
``pairwise_accuracy`` (eval pairs, unreplicated, where score(chosen) > score(rejected)),
``consistency_auc`` (ROC AUC of the R_c head on eval traces), accuracy by quality gap, calibrated-quality
error, counts and timings; ``calibration.png`` plots calibrated vs rated quality and the R_c reliability.
"""

from .bootstrap import CORRUPTIONS, DEFAULT_TEMPERATURES, bootstrap, corrupt_trace
from .cli import main
from .data import (
    BOOTSTRAP_RUN,
    CORRUPTED_RUN,
    HUMAN_WEIGHT,
    VOTE_MARGIN,
    Pair,
    RewardModelError,
    Trace,
    build_pairs,
    collect_traces,
    replicate,
    split_items,
    vote_pairs,
)
from .export import export, label_rows, pair_rows
from .metrics import fit_isotonic, heldout_metrics, roc_auc
from .model import TINY_CONFIG, build_model, default_tokenizer_path
from .train import METRICS_FILE, PLOT_FILE, TrainConfig, train

__all__ = [
    "BOOTSTRAP_RUN",
    "CORRUPTED_RUN",
    "CORRUPTIONS",
    "DEFAULT_TEMPERATURES",
    "HUMAN_WEIGHT",
    "METRICS_FILE",
    "PLOT_FILE",
    "TINY_CONFIG",
    "VOTE_MARGIN",
    "Pair",
    "RewardModelError",
    "Trace",
    "TrainConfig",
    "bootstrap",
    "build_model",
    "build_pairs",
    "collect_traces",
    "corrupt_trace",
    "default_tokenizer_path",
    "export",
    "fit_isotonic",
    "heldout_metrics",
    "label_rows",
    "main",
    "pair_rows",
    "replicate",
    "roc_auc",
    "split_items",
    "train",
    "vote_pairs",
]
