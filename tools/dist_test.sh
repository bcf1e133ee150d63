#!/usr/bin/env bash
# Distributed testing with torchrun: NPROC processes on this node, each running tools/test.py with
# --launcher pytorch on its share of the test set (the metric is computed over all of it).
#
#   tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py arguments]
#
# NNODES, NODE_RANK, MASTER_ADDR, PORT and PYTHON as for tools/dist_train.sh.
set -euo pipefail
if [[ $# -lt 3 ]]; then
    echo "usage: $0 CONFIG CHECKPOINT NPROC [test.py arguments]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
source "$(dirname "$0")/_torchrun.sh"
torchrun_on_this_node "$NPROC" "$(dirname "$0")/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
