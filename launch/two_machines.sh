#!/usr/bin/env bash
# Train on two (or more) machines without a scheduler: run this on every
# machine with the same flags and its own --process-id. Process 0's machine
# hosts the coordinator; the others must reach it at --coordinator.
#
# Needs: the project installed on every machine (same version), converted
# shards on each machine's disk at --data, and a workdir every machine
# writes: a shared filesystem or a gs:// bucket (`pip install -e '.[gcs]'`).
#
# Usage, two GPU machines (10.0.0.1 is machine 0's address, port open between them):
#   machine 0$ launch/two_machines.sh --coordinator 10.0.0.1:8476 --num-processes 2 --process-id 0 \
#                --config configs/trio.py --data data/trio --workdir gs://BUCKET/runs/trio
#   machine 1$ launch/two_machines.sh --coordinator 10.0.0.1:8476 --num-processes 2 --process-id 1 \
#                --config configs/trio.py --data data/trio --workdir gs://BUCKET/runs/trio
# Add --dry-run to print the command instead of running it; `-- ARGS` passes more flags to main.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=launch/lib.sh
source "$HERE/lib.sh"

COORDINATOR=""
NUM_PROCESSES=""
PROCESS_ID=""
CONFIG=""
DATA=""
WORKDIR=""
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --coordinator) need_value "$1" "${2:-}"; COORDINATOR="$2"; shift 2 ;;
    --num-processes) need_value "$1" "${2:-}"; NUM_PROCESSES="$2"; shift 2 ;;
    --process-id) need_value "$1" "${2:-}"; PROCESS_ID="$2"; shift 2 ;;
    --config) need_value "$1" "${2:-}"; CONFIG="$2"; shift 2 ;;
    --data) need_value "$1" "${2:-}"; DATA="$2"; shift 2 ;;
    --workdir) need_value "$1" "${2:-}"; WORKDIR="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown flag $1 (see --help)" ;;
  esac
done
[[ "$COORDINATOR" == *:* ]] || die "--coordinator must be HOST:PORT of process 0's machine (got '${COORDINATOR}')"
[[ "$NUM_PROCESSES" =~ ^[1-9][0-9]*$ ]] || die "--num-processes must be a positive integer (got '${NUM_PROCESSES}')"
[[ "$PROCESS_ID" =~ ^[0-9]+$ && "$PROCESS_ID" -lt "$NUM_PROCESSES" ]] \
  || die "--process-id must be in 0..$((NUM_PROCESSES - 1)) (got '${PROCESS_ID}')"
[[ -n "$CONFIG" ]] || die "--config is required"
[[ -n "$DATA" ]] || die "--data is required (converted shards on this machine)"
[[ -n "$WORKDIR" ]] || die "--workdir is required (shared by every machine)"

cd "$HERE/.."
run python -m musicvae_jax.main --config "$CONFIG" --workdir "$WORKDIR" --config.data.path="$DATA" \
  --coordinator_address="$COORDINATOR" --num_processes="$NUM_PROCESSES" --process_id="$PROCESS_ID" "${EXTRA[@]}"
