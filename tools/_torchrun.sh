# Sourced by tools/dist_train.sh and tools/dist_test.sh (not run by itself).
# torchrun_on_this_node NPROC SCRIPT [ARGS]: start NPROC processes of SCRIPT with torchrun, as node
# NODE_RANK (default 0) of NNODES (default 1), meeting at MASTER_ADDR (default 127.0.0.1) and
# PORT (default 29500); PYTHON picks the interpreter (default: python).
torchrun_on_this_node() {
    local nproc=$1
    shift
    exec "${PYTHON:-python}" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --master_port="${PORT:-29500}" \
        --nproc_per_node="$nproc" \
        "$@"
}
