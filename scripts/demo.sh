#!/usr/bin/env bash
# The main job: demo dataset (generated if missing) -> train -> evaluate (bbox mAP) -> prediction images.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${DEMO_PYTHON:-.venv/bin/python}"  # (tests substitute a recorder)
CONFIG="${DEMO_CONFIG:?set DEMO_CONFIG}"
WORK_DIR="${DEMO_WORK_DIR:-work_dirs/demo}"
# Extra training settings, e.g. DEMO_CFG_OPTIONS="randomness.seed=1 train_cfg.max_epochs=6"
read -r -a CFG_OPTIONS <<< "${DEMO_CFG_OPTIONS:-}"
[[ -f "$CONFIG" ]] || { echo "demo: config $CONFIG not found" >&2; exit 1; }

# The dataset the config reads: the default one, or e.g. DEMO_DATA_ARGS="--out-dir
# data/demo_shapes_2k --num-train 2000" (the DETR demo's; tools/generate_demo_dataset.py --help).
read -r -a DATA_ARGS <<< "${DEMO_DATA_ARGS:---out-dir data/demo_shapes}"
$PY tools/generate_demo_dataset.py "${DATA_ARGS[@]}"
start=$(date +%s)
$PY tools/train.py "$CONFIG" --work-dir "$WORK_DIR" \
    ${CFG_OPTIONS[@]+--cfg-options "${CFG_OPTIONS[@]}"}
trained=$(date +%s)
ckpt="$(cat "$WORK_DIR/last_checkpoint")"
$PY tools/test.py "$CONFIG" "$ckpt" --work-dir "$WORK_DIR" --show-dir "vis" \
    --out "$WORK_DIR/predictions.pkl" | tee "$WORK_DIR/test.log"
echo "demo: trained in $(( trained - start ))s, evaluated in $(( $(date +%s) - trained ))s"
echo "demo: bbox metrics: $(grep -o 'coco/bbox_mAP: [0-9.]*.*' "$WORK_DIR/test.log" | tail -n1)"
echo "demo: prediction images under $WORK_DIR/*/vis/ (mmdet's DetVisualizationHook)"
