#!/usr/bin/env bash
# A disk that fills up during a checkpoint write: `medvlp train` stops with an error naming the
# file and "No space left on device", and the previous checkpoint stays complete and unchanged.
# The disk is a tmpfs sized to hold the run up to its first checkpoint and half of the next, mounted
# in a private mount namespace (unshare), so no root or loop device is needed.
#   tests/cli/full_disk.sh MEDVLP_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
medvlp=$1
config=$2/tests/cli/tiny_train.yaml
work=$3
rm -rf "$work" && mkdir -p "$work"
ci() { case "${CI:-}" in true | 1 | yes) return 0 ;; esac; return 1; }
if ! unshare -rm true 2>/dev/null; then
  if ci; then echo "FAIL: unshare -rm (user + mount namespaces) is not available here; CI=true: a missing tool fails"; exit 1; fi
  echo "SKIP: unshare -rm (user + mount namespaces) is not available here"; exit 77
fi
sets=(--set train.checkpoint_every=1 --set train.log_every=1)
# The run up to its first checkpoint, on an ordinary disk: what the small disk must hold.
"$medvlp" --log-level warn train -c "$config" -o "$work/measure" "${sets[@]}" --set train.steps=1 >/dev/null
run_bytes=$(du -sb "$work/measure" | cut -f1)
ckpt_bytes=$(du -sb "$work/measure/checkpoints/step_1" | cut -f1)
size=$((run_bytes + ckpt_bytes / 2 + 4096))
mkdir -p "$work/disk"
unshare -rm bash -s "$medvlp" "$config" "$work" "$size" <<'INSIDE'
set -euo pipefail
medvlp=$1 config=$2 work=$3 size=$4
fail() { echo "FAIL: $*" >&2; exit 1; }
mount -t tmpfs -o size="$size" medvlp-full-disk "$work/disk"
run=$work/disk/run
status=0
"$medvlp" --log-level warn train -c "$config" -o "$run" --set train.checkpoint_every=1 --set train.log_every=1 \
  --set train.steps=3 >/dev/null 2>"$work/err" || status=$?
[ "$status" = 1 ] || fail "train on a full disk exited $status: $(cat "$work/err")"
grep -Eq "^error: $run/(checkpoints/\.tmp_step_2_[0-9]+/[a-z_]+\.(safetensors|json)|metrics\.jsonl|tensorboard/events\.out\.tfevents\.[^ ]*)[^ ]*: .*No space left on device" "$work/err" ||
  fail "the error does not name the file and the full disk: $(cat "$work/err")"
for f in model.safetensors optimizer.safetensors; do
  cmp -s "$work/measure/checkpoints/step_1/$f" "$run/checkpoints/step_1/$f" || fail "step_1/$f changed or is damaged"
done
[ "$(ls -A "$run/checkpoints" | tr '\n' ' ')" = "step_1 " ] || fail "checkpoints left: $(ls -A "$run/checkpoints")"
echo "full disk: $(head -1 "$work/err")"
echo "full disk: step_1 intact, no partial checkpoint left"
INSIDE
