#!/usr/bin/env bash
# Runs every ```sh block of docs/tutorial.md, in order, in an empty folder, with `medvlp` on PATH:
# the tutorial is executed as written, so a command that stops working fails this test.
#   tests/docs/run_tutorial.sh MEDVLP_BINARY WORK_DIR
set -euo pipefail
medvlp=$1
work=$2
doc="$(cd "$(dirname "$0")/../.." && pwd)/docs/tutorial.md"
rm -rf "$work" && mkdir -p "$work/bin"
ln -s "$medvlp" "$work/bin/medvlp"
awk '/^```sh$/ {on = 1; next} /^```$/ {on = 0} on' "$doc" > "$work/tutorial.sh"
blocks=$(grep -c '^```sh$' "$doc")
[ "$blocks" -ge 6 ] || { echo "FAIL: $doc has $blocks sh blocks, expected at least 6"; exit 1; }
cd "$work"
# Debian's python3 (with python3-torch), as on a user's machine, ahead of any other on PATH.
PATH="$work/bin:/usr/bin:$PATH" bash -euo pipefail tutorial.sh
# What the tutorial says the run leaves behind.
for f in run/eval.json run/eval_predictions.csv run/best scores.csv texts.safetensors exported/export.json \
         exported/medvlp_model.py; do
  [ -e "$f" ] || { echo "FAIL: the tutorial left no $f"; exit 1; }
done
[ -n "$(ls maps)" ] || { echo "FAIL: the tutorial's zero-shot --maps wrote no heat map"; exit 1; }
echo "tutorial: $blocks blocks ran"
