# Shared by the launch scripts: run a command, or only print it under --dry-run.
# shellcheck shell=bash

DRY_RUN=${DRY_RUN:-0}

# run CMD ARGS...: prints the command (shell-quoted, so it can be pasted), then runs it unless DRY_RUN=1.
run() {
  local quoted
  printf -v quoted '%q ' "$@"
  echo "+ ${quoted% }"
  if [[ "$DRY_RUN" != 1 ]]; then
    "$@"
  fi
}

die() {
  echo "error: $*" >&2
  exit 2
}

# need_value FLAG VALUE: a flag that takes a value must have one.
need_value() {
  [[ -n "${2:-}" && "${2:0:2}" != "--" ]] || die "$1 needs a value"
}
