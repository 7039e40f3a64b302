#!/usr/bin/env bash
# Train on a Cloud TPU VM (one host or a pod slice): create it, install the
# project on every worker, run main on all workers at once, stream the logs,
# delete the VM.
#
# Needs: gcloud (logged in: `gcloud auth login`), a Google Cloud project with
# TPU quota in the zone, and a Cloud Storage bucket for the workdir
# (checkpoints and TensorBoard logs) and the converted shards, e.g.
#   python -m musicvae_jax.convert --input ~/midi --output data/trio --config configs/trio.py
#   gcloud storage cp -r data/trio gs://BUCKET/data/trio
#
# Usage:
#   launch/tpu_vm.sh --project P --zone us-central2-b --accelerator-type v4-32 \
#     --config configs/trio.py --data gs://BUCKET/data/trio --workdir gs://BUCKET/runs/trio [--spot] [--dry-run]
#
# Flags:
#   --name NAME                 TPU VM name (default musicvae-$USER)
#   --project P                 Google Cloud project (default: gcloud's configured one)
#   --zone Z                    zone with TPU capacity (required)
#   --accelerator-type T        e.g. v4-8, v4-32, v5litepod-16 (required)
#   --runtime-version V         TPU software version (default tpu-ubuntu2204-base)
#   --spot | --preemptible      cheaper capacity that can be taken back (main saves on SIGTERM
#                               and resumes when run again with the same workdir)
#   --config FILE[:VARIANTS]    config file, as for main (required)
#   --data gs://...             converted shards; copied to each worker's local disk
#   --workdir gs://...          checkpoints and TensorBoard logs (required)
#   --keep                      leave the VM running afterwards (default: delete it)
#   --dry-run                   print the gcloud commands instead of running them
#   -- ARGS...                  more flags for main, e.g. --config.batch_size=1024
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=launch/lib.sh
source "$HERE/lib.sh"

NAME="musicvae-${USER:-user}"
PROJECT=""
ZONE=""
ACCELERATOR=""
RUNTIME="tpu-ubuntu2204-base"
CAPACITY=()
CONFIG=""
DATA=""
WORKDIR=""
KEEP=0
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) need_value "$1" "${2:-}"; NAME="$2"; shift 2 ;;
    --project) need_value "$1" "${2:-}"; PROJECT="$2"; shift 2 ;;
    --zone) need_value "$1" "${2:-}"; ZONE="$2"; shift 2 ;;
    --accelerator-type) need_value "$1" "${2:-}"; ACCELERATOR="$2"; shift 2 ;;
    --runtime-version) need_value "$1" "${2:-}"; RUNTIME="$2"; shift 2 ;;
    --spot) CAPACITY=(--spot); shift ;;
    --preemptible) CAPACITY=(--preemptible); shift ;;
    --config) need_value "$1" "${2:-}"; CONFIG="$2"; shift 2 ;;
    --data) need_value "$1" "${2:-}"; DATA="$2"; shift 2 ;;
    --workdir) need_value "$1" "${2:-}"; WORKDIR="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown flag $1 (see --help)" ;;
  esac
done
[[ -n "$ZONE" ]] || die "--zone is required"
[[ -n "$ACCELERATOR" ]] || die "--accelerator-type is required"
[[ -n "$CONFIG" ]] || die "--config is required"
[[ "$WORKDIR" == gs://* ]] || die "--workdir must be a gs:// path that every worker can write (got '${WORKDIR}')"
[[ -z "$DATA" || "$DATA" == gs://* ]] || die "--data must be a gs:// path (got '${DATA}')"
if [[ "$DRY_RUN" != 1 ]]; then
  command -v gcloud >/dev/null || die "gcloud not found: install the Google Cloud CLI"
fi

GCLOUD_SCOPE=(--zone "$ZONE")
[[ -n "$PROJECT" ]] && GCLOUD_SCOPE+=(--project "$PROJECT")
REMOTE_DIR="musicvae-jax"
TARBALL="/tmp/musicvae-jax-$NAME.tar.gz"

# Every worker runs the same command line; JAX finds the pod's other workers itself.
main_args=(--config "$CONFIG" --workdir "$WORKDIR" --distributed=on)
if [[ -n "$DATA" ]]; then
  main_args+=(--config.data.path=/tmp/musicvae_data)
fi
main_args+=("${EXTRA[@]}")
printf -v MAIN_LINE '%q ' "${main_args[@]}"

ssh_all() {
  run gcloud compute tpus tpu-vm ssh "$NAME" "${GCLOUD_SCOPE[@]}" --worker=all --command "$1"
}

delete_vm() {
  run gcloud compute tpus tpu-vm delete "$NAME" "${GCLOUD_SCOPE[@]}" --quiet
}

run gcloud compute tpus tpu-vm create "$NAME" "${GCLOUD_SCOPE[@]}" \
  --accelerator-type "$ACCELERATOR" --version "$RUNTIME" "${CAPACITY[@]}"
if [[ "$KEEP" != 1 ]]; then
  trap delete_vm EXIT
fi

# The working tree as committed (git archive), copied to every worker and installed with JAX's TPU backend.
run git -C "$HERE/.." archive --format=tar.gz --prefix="$REMOTE_DIR/" -o "$TARBALL" HEAD
run gcloud compute tpus tpu-vm scp "$TARBALL" "$NAME:~/musicvae-jax.tar.gz" "${GCLOUD_SCOPE[@]}" --worker=all
ssh_all "tar xzf musicvae-jax.tar.gz && cd $REMOTE_DIR && python3 -m venv .venv && . .venv/bin/activate \
&& pip install -q -e '.[gcs]' 'jax[tpu]>=0.10.2,<0.11'"
if [[ -n "$DATA" ]]; then
  ssh_all "mkdir -p /tmp/musicvae_data && gcloud storage cp -r '${DATA%/}/*' /tmp/musicvae_data/"
fi
# Output of every worker streams here; only worker 0 prints progress lines.
ssh_all "cd $REMOTE_DIR && . .venv/bin/activate && python -m musicvae_jax.main ${MAIN_LINE% }"
echo "done: checkpoints in $WORKDIR/checkpoints; tensorboard --logdir $WORKDIR/tensorboard"
