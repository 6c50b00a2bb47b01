#!/usr/bin/env bash
# `medvlp train` on several ranks (Gloo, processes on this machine, torchrun's environment):
#  - 2 and 4 ranks x (global batch / N) give the weights of 1 rank x the global batch to 1e-5 after
#    4 steps, for CLIP and for AFLoc's multi-level (local) loss;
#  - the same under the real torchrun (its agent's store) and with medvlp train --nproc 2;
#  - gradient accumulation gives the same weights on 1 and 2 ranks, and resumes;
#  - a run resumes with a different number of ranks (2 -> 1, 1 -> 2) and still matches;
#  - rank 0 alone writes the run folder;
#  - a rank killed, stopped or failing makes the others exit non-zero, naming it, well within
#    distributed.timeout_s, and the last checkpoint resumes.
#   tests/cli/distributed_cli.sh MEDVLP_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
medvlp=$1
src=$2
work=$3
config=$src/tests/cli/dist_train.yaml
launch=$src/scripts/launch
rm -rf "$work" && mkdir -p "$work"
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  case "${CI:-}" in true | 1 | yes) echo "FAIL: /usr/bin/python3 cannot import torch (python3-torch), which compares the weights; CI=true: a missing reference fails"; exit 1 ;; esac
  echo "SKIP: /usr/bin/python3 cannot import torch (python3-torch), which compares the weights"; exit 77
fi
fail() { echo "FAIL: $*" >&2; exit 1; }
same() { /usr/bin/python3 "$src/tests/python/same_weights.py" "$1/model.safetensors" "$2/model.safetensors" 1e-5 ||
           fail "$1 and $2 differ"; }
steps_logged() { /usr/bin/python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["step"]) for l in open(sys.argv[1])))' "$1"; }
# Event file names hold the time and the process id; one such file means rank 0 alone wrote one.
listing() { (cd "$1" && find . -path ./train.log -prune -o -print | LC_ALL=C sort | sed 's/tfevents\..*/tfevents.*/' | tr '\n' ' '); }
q=(--log-level warn)

# --- equivalence: 1 rank x 8 = 2 ranks x 4 = 4 ranks x 2 ---
"$medvlp" "${q[@]}" train -c "$config" -o "$work/one" >/dev/null
"$launch" 2 "$medvlp" "${q[@]}" train -c "$config" -o "$work/two" >/dev/null
"$launch" 4 "$medvlp" "${q[@]}" train -c "$config" -o "$work/four" >/dev/null
for s in 2 4; do
  same "$work/one/checkpoints/step_$s" "$work/two/checkpoints/step_$s"
  same "$work/one/checkpoints/step_$s" "$work/four/checkpoints/step_$s"
done
[ "$(listing "$work/two")" = "$(listing "$work/one")" ] || fail "2-rank run folder: $(listing "$work/two")"
[ "$(steps_logged "$work/two/metrics.jsonl")" = "1 2 3 4" ] || fail "2-rank metrics: $(steps_logged "$work/two/metrics.jsonl")"
grep -q '"world_size": 2' "$work/two/checkpoints/step_4/trainer_state.json" || fail "no world_size in trainer_state.json"
# The logged loss is the mean over ranks: the one-rank loss.
/usr/bin/python3 - "$work/one/metrics.jsonl" "$work/four/metrics.jsonl" <<'PY' || fail "logged losses differ"
import json, sys
a, b = ([json.loads(l)["total_loss"] for l in open(p)] for p in sys.argv[1:])
assert all(abs(x - y) < 1e-5 for x, y in zip(a, b)) and len(a) == len(b) == 4, (a, b)
PY

# The real torchrun (python3-torch's), its agent serving the rendezvous store. Debian 12's torchrun
# 1.13 under Python 3.11 dies at launch unless --redirects and --tee are given a stream (1: stdout).
torchrun=$(command -v torchrun || true)
[ -n "$torchrun" ] || fail "torchrun not found (python3-torch installs /usr/bin/torchrun)"
"$torchrun" --nproc_per_node 2 --redirects 1 --tee 1 --log_dir "$work/torchrun-logs" --no_python \
  "$medvlp" "${q[@]}" train -c "$config" -o "$work/torchrun" >"$work/torchrun.log" 2>&1 || fail "torchrun: $(tail -20 "$work/torchrun.log")"
same "$work/one/checkpoints/step_4" "$work/torchrun/checkpoints/step_4"

# medvlp train --nproc 2: the ranks started by medvlp itself.
"$medvlp" train -c "$config" -o "$work/nproc" --nproc 2 >/dev/null 2>"$work/nproc.err"
same "$work/one/checkpoints/step_4" "$work/nproc/checkpoints/step_4"
grep -q '^\[rank 1\] \[.*\] \[info\] training 0 -> 4 steps' "$work/nproc.err" || fail "--nproc: rank 1's log lines are not labelled: $(cat "$work/nproc.err")"
if out=$(WORLD_SIZE=2 "$medvlp" train -c "$config" -o "$work/nproc-in-launcher" --nproc 2 2>&1); then fail "--nproc under a launcher"; fi
grep -q "starts ranks itself, but WORLD_SIZE is already set" <<<"$out" || fail "--nproc under a launcher: $out"

local_loss=(--set 'losses=[{name: multi_level}]' --set model.local_dim=16
            --set 'data.report={lexicon: chest_xray, max_sentences: 4, sentence_max_len: 16}')
"$medvlp" "${q[@]}" train -c "$config" -o "$work/local-one" "${local_loss[@]}" >/dev/null
"$launch" 2 "$medvlp" "${q[@]}" train -c "$config" -o "$work/local-two" "${local_loss[@]}" >/dev/null
same "$work/local-one/checkpoints/step_4" "$work/local-two/checkpoints/step_4"

# --- gradient accumulation: 2 micro-batches of 4 per step, on 1 and on 2 ranks (the same micro-batches) ---
accum=(--set train.accumulate=2)
"$medvlp" "${q[@]}" train -c "$config" -o "$work/accum-one" "${accum[@]}" >/dev/null
"$launch" 2 "$medvlp" "${q[@]}" train -c "$config" -o "$work/accum-two" "${accum[@]}" >/dev/null
same "$work/accum-one/checkpoints/step_4" "$work/accum-two/checkpoints/step_4"
# It does change the computation: a CLIP loss over micro-batches of 4 is not the loss over 8.
if /usr/bin/python3 "$src/tests/python/same_weights.py" "$work/one/checkpoints/step_4/model.safetensors" \
     "$work/accum-one/checkpoints/step_4/model.safetensors" 1e-4 >/dev/null 2>&1; then
  fail "train.accumulate=2 trained the same weights as one batch of 8"
fi
cp -r "$work/accum-two" "$work/accum-resume" && rm -r "$work/accum-resume/checkpoints/step_4"
"$medvlp" "${q[@]}" train -c "$config" -o "$work/accum-resume" --resume "${accum[@]}" >/dev/null
same "$work/accum-one/checkpoints/step_4" "$work/accum-resume/checkpoints/step_4"
if out=$("$medvlp" train -c "$config" -o "$work/accum-odd" --set train.accumulate=3 2>&1); then fail "batch 8 in 3 micro-batches"; fi
grep -q "train.batch_size: is the global batch and must divide into 3 micro-batch(es) (train.accumulate) on each of 1 rank(s); got 8" <<<"$out" ||
  fail "accumulate error: $out"

# --- resume with another world size: 2 -> 1 and 1 -> 2 ---
cp -r "$work/two" "$work/two-one" && rm -r "$work/two-one/checkpoints/step_4"
"$medvlp" "${q[@]}" train -c "$config" -o "$work/two-one" --resume >/dev/null
same "$work/one/checkpoints/step_4" "$work/two-one/checkpoints/step_4"
cp -r "$work/one" "$work/one-two" && rm -r "$work/one-two/checkpoints/step_4"
"$launch" 2 "$medvlp" "${q[@]}" train -c "$config" -o "$work/one-two" --resume >/dev/null
same "$work/one/checkpoints/step_4" "$work/one-two/checkpoints/step_4"
[ "$(steps_logged "$work/one-two/metrics.jsonl")" = "1 2 3 4" ] || fail "metrics after resume on 2 ranks"

# --- a folder holding a run: every rank stops with rank 0's reason ---
if out=$("$launch" 2 "$medvlp" train -c "$config" -o "$work/two" 2>&1); then fail "2 ranks reused a run folder"; fi
grep -q "\[rank 1\] .*rank 0 stopped: .*already holds a run" <<<"$out" || fail "rank 1 did not give rank 0's reason: $out"
# A global batch that does not divide over the ranks names the key.
if out=$("$launch" 4 "$medvlp" train -c "$config" -o "$work/odd" --set train.batch_size=6 2>&1); then fail "batch 6 on 4 ranks"; fi
grep -q "train.batch_size: is the global batch and must divide into 1 micro-batch(es) (train.accumulate) on each of 4 rank(s); got 6" <<<"$out" ||
  fail "batch error: $out"

# --- faults: ranks started by hand with torchrun's environment ---
long=(--set train.steps=5000 --set train.checkpoint_every=10 --set train.keep_checkpoints=2)
port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start_ranks() {  # RUN_DIR EXTRA_ARGS...: starts 2 ranks; sets pid0, pid1 and pids (by rank)
  local run=$1 p
  shift
  p=$(port)
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$p WORLD_SIZE=2 RANK=0 LOCAL_RANK=0 \
    "$medvlp" "${q[@]}" train -c "$config" -o "$run" "${long[@]}" "$@" >"$run.0.log" 2>&1 &
  pid0=$!
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$p WORLD_SIZE=2 RANK=1 LOCAL_RANK=1 \
    "$medvlp" "${q[@]}" train -c "$config" -o "$run" "${long[@]}" "$@" >"$run.1.log" 2>&1 &
  pid1=$!
  pids=("$pid0" "$pid1")
}
wait_for_checkpoint() {  # RUN_DIR STEP
  for _ in $(seq 600); do [ -d "$1/checkpoints/step_$2" ] && return 0; sleep 0.05; done
  fail "no checkpoint step_$2 in $1 after 30 s: $(cat "$1".*.log)"
}
# Waits for PID; fails unless it exits non-zero within SECONDS. Sets elapsed.
expect_exit() {  # PID SECONDS WHAT
  local start=$SECONDS
  for _ in $(seq $(($2 * 20))); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$1" 2>/dev/null; then kill -9 "$1"; fail "$3 still running after $2 s"; fi
  if wait "$1"; then fail "$3 exited 0"; fi
  elapsed=$((SECONDS - start))
}

# Starts 2 ranks into RUN, SIGKILLs VICTIM (0 or 1) after checkpoint step_20, and expects the
# other rank to stop with an error within 30 s whose log matches PATTERN (@PID@: the victim's pid).
kill_rank() {  # RUN VICTIM PATTERN
  local victim survivor=$((1 - $2))
  start_ranks "$1"
  wait_for_checkpoint "$1" 20
  victim=${pids[$2]}
  kill -9 "$victim"
  wait "$victim" 2>/dev/null || true
  expect_exit "${pids[$survivor]}" 30 "rank $survivor after rank $2 was killed"
  grep -q "${3//@PID@/$victim}" "$1.$survivor.log" || fail "rank $survivor's message: $(cat "$1.$survivor.log")"
}

# Rank 1 killed: rank 0 names it, long before the 60 s timeout; the last checkpoint resumes.
kill_rank "$work/kill1" 1 "distributed: rank 0: .* failed: rank 1 (pid @PID@) is gone: killed or crashed"
last=$(ls "$work/kill1/checkpoints" | sed 's/step_//' | sort -n | tail -1)
"$launch" 2 "$medvlp" "${q[@]}" train -c "$config" -o "$work/kill1" --resume "${long[@]}" --set train.steps=$((last + 3)) >/dev/null ||
  fail "resume after the kill"
[ -d "$work/kill1/checkpoints/step_$((last + 3))" ] || fail "resume after the kill wrote no step_$((last + 3))"
echo "rank 1 killed: rank 0 stopped after ${elapsed} s (timeout 60 s); resumed from step_$last"

# Rank 0 (which serves the rendezvous store) killed: rank 1 says so.
kill_rank "$work/kill0" 0 "distributed: rank 1: .* failed: rank 0 is unreachable (it serves the rendezvous store): killed or crashed"

# Rank 1 stopped (alive, silent): rank 0 gives up after distributed.timeout_s, not later.
start_ranks "$work/stop1" --set distributed.timeout_s=5
wait_for_checkpoint "$work/stop1" 20
kill -STOP "$pid1"
expect_exit "$pid0" 30 "rank 0 after rank 1 stopped answering"
kill -9 "$pid1"; wait "$pid1" 2>/dev/null || true
# The timeout (5 s) plus at most 2 s looking for a dead process, plus slack for a busy machine.
((elapsed <= 12)) || fail "rank 0 stopped after $elapsed s, timeout 5 s"
grep -q "no rank reported a failure; a rank that does not answer within distributed.timeout_s (5 s) fails every collective" "$work/stop1.0.log" ||
  fail "rank 0's message: $(cat "$work/stop1.0.log")"
echo "rank 1 stopped: rank 0 stopped after ${elapsed} s (timeout 5 s)"

# Rank 1 fails with an error of its own (here a config only it reads): rank 0 prints rank 1's reason.
p=$(port)
MASTER_ADDR=127.0.0.1 MASTER_PORT=$p WORLD_SIZE=2 RANK=0 "$medvlp" "${q[@]}" train -c "$config" -o "$work/err1" >"$work/err1.0.log" 2>&1 &
pid0=$!
MASTER_ADDR=127.0.0.1 MASTER_PORT=$p WORLD_SIZE=2 RANK=1 "$medvlp" "${q[@]}" train -c "$config" -o "$work/err1" \
  --set model.image.name=vit_nope >"$work/err1.1.log" 2>&1 && fail "rank 1 accepted an unknown encoder"
expect_exit "$pid0" 30 "rank 0 after rank 1 failed"
grep -q "rank 1 stopped: .*model.image.name: unknown image encoder \"vit_nope\"" "$work/err1.0.log" ||
  fail "rank 0's message: $(cat "$work/err1.0.log")"
echo "PASS"
