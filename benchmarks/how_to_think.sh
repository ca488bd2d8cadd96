#!/usr/bin/env bash
# Issue #23's measurements behind one resumable command (docs/grpo.md, "How to think"):
#
#   bash benchmarks/how_to_think.sh [OUT]            # default OUT: runs/h23
#
# Two jobs at a time, one thread each (the 2-core recipe). Every step is reused when its output exists, and
# GRPO runs resume from their last checkpoint, so a killed command continues where it stopped.
#   1. fresh evaluation sets (seeds no training uses: 2323, 2424; shifted 2525)
#   2. the base against the paper's conditions (fidelity) on 2323 and 2424
#   3. the ablation: grpo, atar, atar+rc, full x training seeds 0, 1 (60 steps each), and beside it the
#      default run (configs/tiny.yaml, 120 steps); the evaluations, the default run's on 2323 / 2525 (and in
#      think mode on 2323)
#   4. the ablation's third training seed, and its table over seeds 0, 1, 2
#   5. the no-think R_c rule against the paper's at w_c 0.5 and 2 (full, seeds 0 and 1, 60 steps)
#   6. the learned judge on the base's traces: bootstrap 500 items into a fresh store, train the reward model
#   7. benchmarks/paired_think.py: each adaptive model against the base on the items it thinks on
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/h23}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
BASE=${BASE:-audio_thinker/assets/tiny-qwen2-audio}  # the base every run starts from and is compared with
mkdir -p "$OUT/configs"

config() {  # $1: name, then an optional configs/rc-options file: configs/tiny.yaml with it and model: $BASE
  python - "$OUT/configs/$1.yaml" "$BASE" "${2:-}" <<'PY'
import sys, yaml
out, base, extra = sys.argv[1:4]
cfg = yaml.safe_load(open("configs/tiny.yaml"))
cfg.update(yaml.safe_load(open(extra)) if extra else {})
cfg["model"] = base
yaml.safe_dump(cfg, open(out, "w"), sort_keys=False)
PY
}
config default
for variant in think-mean one-w2 think-mean-w2; do config "rc-$variant" "configs/rc-options/$variant.yaml"; done

sets() {
  [ -f "$OUT/data/std-2323/test.json" ] || python -m audio_thinker.synth --out "$OUT/data/std-2323" --n 360 --seed 2323 --split test
  [ -f "$OUT/data/std-2424/test.json" ] || python -m audio_thinker.synth --out "$OUT/data/std-2424" --n 180 --seed 2424 --split test
  [ -f "$OUT/data/shift-2525/test.json" ] || python -m audio_thinker.synth --out "$OUT/data/shift-2525" --n 360 --seed 2525 --split test --shift
}

fidelity() {  # $1: set name
  [ -f "$OUT/fidelity/$1/summary.json" ] || python -m audio_thinker.fidelity --model "$BASE" \
    --data "$OUT/data/$1/test.json" --out "$OUT/fidelity/$1" >"$OUT/fidelity-$1.log" 2>&1
}

train() {  # $1: out folder, then train flags
  local out=$1
  shift
  [ -d "$out/final" ] && return 0
  local resume=()
  [ -d "$out/checkpoints" ] && resume=(--resume latest)
  python -m audio_thinker.train --config "$OUT/configs/default.yaml" --out "$out" "$@" "${resume[@]}" \
    >"$out.log" 2>&1
}

evaluate() {  # $1: model, $2: mode, $3: set, $4: out
  [ -f "$4/metrics.json" ] || python -m audio_thinker.evaluate --data "$OUT/data/$3/test.json" --judge oracle \
    --model "$1" --mode "$2" --out "$4" >"$4.log" 2>&1
}

ablate() {  # ablate flags (reuses finished runs, resumes cut ones, caches evaluations); a later --config wins
  python -m audio_thinker.ablate --max-steps 60 --config "$OUT/configs/default.yaml" "$@"
}

sets
fidelity std-2323 &
fidelity std-2424
wait

# the ablation's reward sets in the order that answers #23 first (R_c, R_t), two seeds, then the default run
mkdir -p "$OUT/default" "$OUT/eval"
{
  ablate --out "$OUT/ablation" --seeds 0 --sets atar,atar+rc,full,grpo >"$OUT/ablation-seed0.log" 2>&1
} &
{
  ablate --out "$OUT/ablation" --seeds 1 --sets atar,atar+rc,full >"$OUT/ablation-seed1.log" 2>&1
  train "$OUT/default/run"
}
wait
ablate --out "$OUT/ablation" --seeds 0,1 >"$OUT/ablation-01.log" 2>&1 &
evaluate "$BASE" think std-2323 "$OUT/eval/base-think-2323"
evaluate "$BASE" no-think std-2323 "$OUT/eval/base-no-think-2323"
evaluate "$BASE" think shift-2525 "$OUT/eval/base-think-2525"
evaluate "$OUT/default/run/final" adaptive std-2323 "$OUT/eval/default-adaptive-2323"
evaluate "$OUT/default/run/final" adaptive shift-2525 "$OUT/eval/default-adaptive-2525"
evaluate "$OUT/default/run/final" think std-2323 "$OUT/eval/default-think-2323"
wait
# the third seed, then the table over all three
ablate --out "$OUT/ablation" --seeds 2 --sets atar,atar+rc >"$OUT/ablation-seed2a.log" 2>&1 &
ablate --out "$OUT/ablation" --seeds 2 --sets full,grpo >"$OUT/ablation-seed2b.log" 2>&1
wait
ablate --out "$OUT/ablation" --seeds 0,1,2 >"$OUT/ablation.log" 2>&1

for variant in think-mean one-w2 think-mean-w2; do
  ablate --out "$OUT/rc-$variant" --sets full --seeds 0 --config "$OUT/configs/rc-$variant.yaml" \
    >"$OUT/rc-$variant-seed0.log" 2>&1 &
  ablate --out "$OUT/rc-$variant" --sets full --seeds 1 --config "$OUT/configs/rc-$variant.yaml" \
    >"$OUT/rc-$variant-seed1.log" 2>&1
  wait
  ablate --out "$OUT/rc-$variant" --sets full --seeds 0,1 --config "$OUT/configs/rc-$variant.yaml" \
    >"$OUT/rc-$variant.log" 2>&1
done
mkdir -p "$OUT/rm"
[ -f "$OUT/rm/bootstrap.done" ] || {
  rm -f "$OUT/rm/ratings.db"
  python -m audio_thinker.reward_model bootstrap --db "sqlite:///$OUT/rm/ratings.db" --n 500 --model "$BASE" \
    >"$OUT/rm/bootstrap.log" 2>&1 && touch "$OUT/rm/bootstrap.done"
}
[ -f "$OUT/rm/model/metrics.json" ] || python -m audio_thinker.reward_model train --db "sqlite:///$OUT/rm/ratings.db" \
  --out "$OUT/rm/model" >"$OUT/rm/train.log" 2>&1
# the judge's numbers on the items each adaptive model thinks on, against the base on the same items
paired() {  # $1: reference predictions, $2: run predictions, $3: out
  [ -f "$3" ] || python benchmarks/paired_think.py --ref "$1" --run "$2" --out "$3" >/dev/null
}
paired "$OUT/eval/base-think-2323/predictions.json" "$OUT/eval/default-adaptive-2323/predictions.json" \
  "$OUT/eval/paired-default-2323.json"
for set in atar atar+rc full; do
  for seed in 0 1 2; do
    paired "$OUT/ablation/eval/base/standard/predictions.json" \
      "$OUT/ablation/eval/$set/seed-$seed/standard/predictions.json" "$OUT/ablation/paired-$set-$seed.json"
  done
done
echo "done: $OUT (ablation: $OUT/ablation/ablation.md)"
