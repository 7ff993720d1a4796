#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG GPUS [train.py args]
# PYTHON (default python3) is the interpreter with the stack; its
# torch.distributed.run is torchrun, so no torchrun need be on PATH
# exec: signals sent to this script (SIGTERM from a scheduler) reach
# torchrun, which passes them to every rank (no orphans)
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHONPATH="$(dirname $0)/..":$PYTHONPATH \
exec ${PYTHON:-python3} -m torch.distributed.run --nnodes=$NNODES \
    --node_rank=$NODE_RANK --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS --master_port=$PORT \
    $(dirname "$0")/train.py $CONFIG --launcher pytorch ${@:3}
