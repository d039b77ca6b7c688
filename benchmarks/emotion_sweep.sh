#!/usr/bin/env bash
# Train several variants of the emotion head side by side, from feature caches built once (issue #5).
#
#   benchmarks/emotion_sweep.sh OUT_DIR [TIME_LIMIT_S] [VARIANTS_FILE]
#
# Meant for a machine with many cores and a GPU (each variant is one process; on a GPU they share it). Step 1 runs
# the frozen LM once per layer / context setting (`voiceos.emotion.train --features-only`); step 2 starts every
# variant at once, each stopped when TIME_LIMIT_S (default 420) has passed since the start; step 3 writes
# OUT_DIR/summary.tsv (dev figures per variant; "-" for one that did not finish). Each variant's checkpoint is
# OUT_DIR/NAME, its log OUT_DIR/NAME.log. VARIANTS_FILE has one "NAME ARGS..." line per variant (the arguments of
# `python -m voiceos.emotion.train` beyond the shared ones below); default: the table at the end of this file.
# $PYTHON (default python) runs the trainer; $EXTRA is added to every run (e.g. subsample sizes for a quick check).
set -u
out=${1:?usage: emotion_sweep.sh OUT_DIR [TIME_LIMIT_S] [VARIANTS_FILE]}
limit=${2:-420}
variants=${3:-}
py=${PYTHON:-python}
cache=${EMOTION_CACHE:-$out/cache}
start=$SECONDS
mkdir -p "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

trainer=("$py" -m voiceos.emotion.train --feature-batch-size 64 --no-baseline)
train() {
    # shellcheck disable=SC2086
    "${trainer[@]}" --cache-dir "$cache" ${EXTRA:-} "$@"
}

# 1. The LM's states. Runs that share a cache file (GoEmotions' has no context) must not write it at once, so the
# variants with a longer MELD context get their own cache directory.
train --features-only --branch-layers 2 --layer 14 >"$out/features-14.log" 2>&1 &
train --features-only --branch-layers 2 --layer 14 --context-turns 4 --cache-dir "$cache-context4" >"$out/features-14-context4.log" 2>&1 &
train --features-only --branch-layers 2 --layer 10 >"$out/features-10.log" 2>&1 &
wait
echo "features cached after $((SECONDS - start)) s"

# 2. The variants, all at once.
shared="--branch-epochs 6 --branch-patience 2 --meld-class-weight-power 0.5"
if [ -n "$variants" ]; then table=$(cat "$variants"); else table=$(sed -n '/^# VARIANTS$/,$p' "$0" | sed -n 's/^# //p' | tail -n +2); fi
names=()
while read -r name args; do
    [ -n "$name" ] || continue
    names+=("$name")
    left=$((limit - (SECONDS - start)))
    variant_cache=$cache
    [[ $args == *"--context-turns 4"* ]] && variant_cache=$cache-context4
    # shellcheck disable=SC2086
    timeout "$left" "${trainer[@]}" --cache-dir "$variant_cache" $shared ${EXTRA:-} $args --out-dir "$out/$name" \
        >"$out/$name.log" 2>&1 &
done <<<"$table"
wait
echo "variants ended after $((SECONDS - start)) s"

# 3. The summary.
"$py" - "$out" "${names[@]}" <<'EOF'
import json, sys
from pathlib import Path
out, names = Path(sys.argv[1]), sys.argv[2:]
rows = ["name\tgoemotions_macro_f1\tmeld_weighted_f1\tbest_epoch\ttrain_s"]
for name in names:
    path = out / name / "metrics.json"
    if not path.is_file():
        rows.append(f"{name}\t-\t-\t-\t-")
        continue
    m = json.loads(path.read_text())
    d = m["dev"]
    rows.append(f"{name}\t{d['goemotions']['macro_f1']:.4f}\t{d['meld']['weighted_f1']:.4f}\t{m['best_epoch']}\t{m['train_s']}")
(out / "summary.tsv").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
EOF
[ -n "${KEEP_CACHE:-}" ] || rm -rf "$cache" "$cache-context4"

# VARIANTS
# ctl --layer 14 --branch-layers 2
# ctl_seed1 --layer 14 --branch-layers 2 --seed 1
# ctl_seed2 --layer 14 --branch-layers 2 --seed 2
# b4 --layer 14 --branch-layers 4
# b6 --layer 14 --branch-layers 6
# r32 --layer 14 --branch-layers 2 --lora-rank 32 --lora-alpha 64
# b4_e10 --layer 14 --branch-layers 4 --branch-epochs 10 --branch-patience 3
# b4_mw2 --layer 14 --branch-layers 4 --meld-weight 2
# l10b4 --layer 10 --branch-layers 4
# l10b8 --layer 10 --branch-layers 8
# ctx4 --layer 14 --branch-layers 2 --context-turns 4
# ctx4b4 --layer 14 --branch-layers 4 --context-turns 4
