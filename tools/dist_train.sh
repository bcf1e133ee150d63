#!/usr/bin/env bash
# Distributed training with torchrun: NPROC processes on this node, each running tools/train.py
# with --launcher pytorch (on GPUs: one process per GPU, NCCL; without CUDA: CPU processes, gloo).
#
#   tools/dist_train.sh CONFIG NPROC [train.py arguments]
#
# Several nodes: run it on every node with the same NNODES, MASTER_ADDR (rank 0's node) and PORT,
# and NODE_RANK 0 .. NNODES-1. PYTHON picks the interpreter (default: python).
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: $0 CONFIG NPROC [train.py arguments]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
source "$(dirname "$0")/_torchrun.sh"
torchrun_on_this_node "$NPROC" "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "$@"
