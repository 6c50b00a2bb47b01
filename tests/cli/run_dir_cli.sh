#!/usr/bin/env bash
# Runs never overwrite runs: `medvlp train` refuses a folder holding a run unless told --resume or
# --overwrite, a failed --overwrite puts the earlier run back, and eval/convert accept a run folder.
#   tests/cli/run_dir_cli.sh MEDVLP_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
medvlp=$1
config=$2/tests/cli/tiny_train.yaml
work=$3
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
run=$work/run
# A fingerprint of everything the first run wrote (bytes, not just names).
fingerprint() { (cd "$run" && find . -type f ! -name train.log | LC_ALL=C sort | xargs sha256sum); }

"$medvlp" --log-level warn train -c "$config" -o "$run" >/dev/null
[ -d "$run/checkpoints/step_4" ] && [ -s "$run/metrics.jsonl" ] || fail "the first run wrote no checkpoint or metrics"
before=$(fingerprint)

# A second run into the same folder is refused and changes nothing.
if err=$("$medvlp" --log-level warn train -c "$config" -o "$run" --set seed=4 2>&1); then fail "train reused a run folder"; fi
grep -q "run: already holds a run (2 checkpoints step_2..step_4, metrics.jsonl); give --resume to continue it, --overwrite to replace it" <<<"$err" ||
  fail "refusal message: $err"
[ "$(fingerprint)" = "$before" ] || fail "a refused run changed the earlier run's files"

# --overwrite with a config that does not build: the error names the key, the earlier run is back.
if err=$("$medvlp" --log-level warn train -c "$config" -o "$run" --overwrite --set model.image.name=resnet9000 2>&1); then
  fail "train accepted an unknown encoder"
fi
grep -q 'model.image.name: unknown image encoder "resnet9000"' <<<"$err" || fail "config error: $err"
[ "$(fingerprint)" = "$before" ] || fail "a failed --overwrite lost the earlier run"
[ ! -e "$run/.replaced" ] || fail ".replaced left behind"
[ "$(ls "$run" | LC_ALL=C sort | tr '\n' ' ')" = "checkpoints config.yaml curves.png metrics.jsonl tensorboard tokenizer.model tokenizer.vocab train.log " ] ||
  fail "run folder after a failed overwrite: $(ls "$run")"

# eval and convert take the run folder (its newest checkpoint and its config.yaml).
"$medvlp" --log-level warn eval --checkpoint "$run" >"$work/eval.out" 2>"$work/eval.err" || fail "eval RUN: $(cat "$work/eval.err")"
grep -q "using $run/checkpoints/step_4 (the newest checkpoint of $run)" "$work/eval.err" || fail "eval did not say which checkpoint"
[ -s "$run/eval.json" ] && [ -s "$run/eval_predictions.csv" ] && [ -s "$run/eval_roc.png" ] ||
  fail "eval RUN wrote no eval.json, eval_predictions.csv or eval_roc.png into $run"
# probe takes the run folder too and writes its figures and per-case scores into it.
"$medvlp" --log-level warn probe --checkpoint "$run" --fraction 0.5 --bootstrap 20 >"$work/probe.out" 2>&1 ||
  fail "probe --checkpoint RUN: $(cat "$work/probe.out")"
/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["fraction"] == 0.5 and r["train_cases"] > 0 and "auroc" in r["mean"], r' \
  "$run/probe_0.5.json" || fail "probe wrote no usable $run/probe_0.5.json"
[ -s "$run/probe_0.5_predictions.csv" ] || fail "probe wrote no predictions"
# finetune likewise; the encoder it saves loads back as model.image.weights (strictly: same names).
"$medvlp" --log-level warn finetune --checkpoint "$run" --fraction 0.5 --max-steps 4 --eval-every 2 --batch-size 8 --bootstrap 20 \
  --save "$work/tuned.safetensors" >"$work/finetune.out" 2>&1 || fail "finetune --checkpoint RUN: $(cat "$work/finetune.out")"
/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["fraction"] == 0.5 and r["steps"] <= 4 and "auroc" in r["mean"], r' \
  "$run/finetune_0.5.json" || fail "finetune wrote no usable $run/finetune_0.5.json"
[ -s "$run/finetune_0.5_predictions.csv" ] && [ -s "$work/tuned_head.safetensors" ] || fail "finetune wrote no predictions or head"
"$medvlp" --log-level warn eval -c "$run/config.yaml" --init --set model.image.weights="$work/tuned.safetensors" \
  --set model.image.weights_format=medvlp -o "$work/tuned_eval.json" >"$work/tuned.out" 2>&1 ||
  fail "the fine-tuned encoder does not load as model.image.weights: $(cat "$work/tuned.out")"
# zero-shot scores image files (resized to the model's 32 px) against configured and ad-hoc labels,
# and agrees with the embeddings `embed` writes for the same images and prompts.
"$medvlp" --log-level warn synth -o "$work/syn" --kind cxr --size 48 --train 0 --val 0 --test 3 >/dev/null
images=("$work/syn/images/test_0.png" "$work/syn/images/test_1.png" "$work/syn/images/test_2.png")
"$medvlp" --log-level warn zero-shot --checkpoint "$run" "${images[@]}" --labels "pleural effusion,cardiomegaly" \
  -o "$work/zs.csv" --maps "$work/maps" >"$work/zs.out" 2>&1 || fail "zero-shot: $(cat "$work/zs.out")"
[ "$(ls "$work/maps" | wc -l)" = 6 ] || fail "zero-shot --maps wrote $(ls "$work/maps" | wc -l) heat maps, expected 6"
printf '%s\n' "pleural effusion." "no pleural effusion." "cardiomegaly." "no cardiomegaly." >"$work/prompts.txt"
"$medvlp" --log-level warn embed --checkpoint "$run" --images "${images[@]}" --texts "$work/prompts.txt" -o "$work/emb.safetensors" \
  >"$work/embed.out" 2>&1 || fail "embed: $(cat "$work/embed.out")"
/usr/bin/python3 - "$work/emb.safetensors" "$work/zs.csv" <<'PY' || fail "zero-shot scores disagree with the embeddings"
import csv, json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
def tensor(name):
    h = header[name]; a, b = h["data_offsets"]
    assert h["dtype"] == "F32", h
    return np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(h["shape"])
img, txt = tensor("image_embed"), tensor("text_embed")
assert img.shape[0] == 3 and txt.shape[0] == 4 and img.shape[1] == txt.shape[1], (img.shape, txt.shape)
assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5), "image embeddings are not unit vectors"
assert json.loads(header["__metadata__"]["texts"])[1] == "no pleural effusion."
rows = list(csv.DictReader(open(sys.argv[2])))
assert len(rows) == 3
for k, label in enumerate(["pleural effusion", "cardiomegaly"]):
    pos, neg = txt[2 * k], txt[2 * k + 1]  # one prompt each: the mean is the prompt itself
    want = img @ pos - img @ neg
    got = np.array([float(r["score:" + label]) for r in rows])
    assert np.allclose(got, want, atol=1e-5), (label, got, want)
PY
if err=$("$medvlp" zero-shot --checkpoint "$run" "$work/syn/images/nope.png" 2>&1); then fail "zero-shot accepted a missing image"; fi
grep -q "nope.png" <<<"$err" || fail "zero-shot missing-file error: $err"
"$medvlp" --log-level warn convert --checkpoint "$run" --part image -o "$work/image.safetensors" >/dev/null 2>&1 ||
  fail "convert --checkpoint RUN"
grep -aq "$run/checkpoints/step_4" "$work/image.safetensors" || fail "convert did not record the resolved checkpoint"
if err=$("$medvlp" eval --checkpoint "$work" 2>&1); then fail "eval accepted a folder that is not a run"; fi
grep -q "$work: neither a checkpoint folder (model.safetensors, optimizer.safetensors, trainer_state.json) nor a run folder" <<<"$err" ||
  fail "eval error: $err"

# --resume continues the run: 2 more steps, metrics still one line per step.
"$medvlp" --log-level warn train -c "$config" -o "$run" --resume --set train.steps=6 >/dev/null
[ -d "$run/checkpoints/step_6" ] || fail "resume wrote no step_6"
steps=$(/usr/bin/python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["step"]) for l in open(sys.argv[1])))' "$run/metrics.jsonl")
[ "$steps" = "1 2 3 4 5 6" ] || fail "metrics after resume: $steps"
if err=$("$medvlp" train -c "$config" -o "$run" --resume --overwrite 2>&1); then fail "--resume with --overwrite accepted"; fi
grep -q "excludes" <<<"$err" || fail "--resume --overwrite: $err"

# --overwrite replaces the run: no checkpoint of the earlier run survives, other files stay.
echo "my notes" >"$run/notes.txt"
"$medvlp" --log-level warn train -c "$config" -o "$run" --overwrite --set train.steps=3 >/dev/null
[ "$(ls "$run/checkpoints" | tr '\n' ' ')" = "step_2 step_3 " ] || fail "checkpoints after --overwrite: $(ls "$run/checkpoints")"
[ "$(cat "$run/notes.txt")" = "my notes" ] || fail "--overwrite removed a file it does not own"
[ ! -e "$run/eval.json" ] && [ ! -e "$run/.replaced" ] || fail "--overwrite left the earlier run's eval.json or .replaced"
# --device overrides the config's device; a device that is not there is named.
"$medvlp" --log-level warn eval --checkpoint "$run" --device cpu >/dev/null 2>&1 || fail "eval --device cpu"
if err=$("$medvlp" eval --checkpoint "$run" --device cuda:7 2>&1); then fail "eval ran on cuda:7"; fi
grep -q 'device "cuda:7"' <<<"$err" || fail "--device cuda:7 error: $err"
echo "run folder checks passed"
