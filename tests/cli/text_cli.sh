#!/usr/bin/env bash
# `medvlp existence`, `parse-reports`, `tokenize` and `inspect` from the command line: outputs, errors,
# and batches with bad lines or files (each named, the rest answered, exit status 1).
#   tests/cli/text_cli.sh MEDVLP_BINARY WORK_DIR
set -euo pipefail
medvlp=$1
work=$2
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

printf 'No pleural effusion or pneumothorax.\tpneumothorax\nPneumonia cannot be excluded.\tpneumonia\nThe widget is in place.\twidget\n' > "$work/in.tsv"
got=$("$medvlp" existence "$work/in.tsv" | tr '\n' ' ')
[ "$got" = "absent uncertain present " ] || fail "existence printed '$got'"
printf 'No effusion.\tedema\n' > "$work/bad.tsv"
if err=$("$medvlp" existence "$work/bad.tsv" 2>&1); then fail "existence accepted a missing term"; fi
grep -q 'bad.tsv:1: existence: the term "edema" does not occur' <<<"$err" || fail "existence error: $err"

# A CSV with a quoted, multi-line report; the ids come from a named column.
printf 'study,text\ns1,"FINDINGS: Small left effusion.\nIMPRESSION: No pneumothorax, ""stable""."\ns2,Heart size is normal.\n' > "$work/r.csv"
"$medvlp" parse-reports "$work/r.csv" --column text --id-column study -o "$work/out.jsonl" 2>/dev/null
/usr/bin/python3 - "$work/out.jsonl" <<'PY' || fail "parse-reports output"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["id"] for r in rows] == ["s1", "s2"], rows
t = rows[0]["triplets"]
assert [(x["finding"], x["anatomy"], x["existence"]) for x in t] == [
    ("pleural effusion", "left pleura", "present"), ("pneumothorax", "pleura", "absent")], t
assert rows[0]["labels"]["pleural effusion"] == 1 and rows[1]["labels"]["cardiomegaly"] == 0
PY
if err=$("$medvlp" parse-reports "$work/r.csv" --column report 2>&1); then fail "parse-reports accepted a missing column"; fi
grep -q 'no column "report" (--column); the header has: study, text' <<<"$err" || fail "parse-reports error: $err"

# A folder of reports and the CT lexicon.
mkdir -p "$work/reports" && printf 'The spleen is enlarged. No ascites.' > "$work/reports/a.txt"
"$medvlp" parse-reports "$work/reports" --lexicon chest_ct | grep -q '"finding":"splenomegaly"' || fail "CT lexicon"

# tokenize: a WordPiece vocabulary, fixed length with specials, and decoding.
printf '[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nno\neffusion\n.\n' > "$work/vocab.txt"
printf 'No effusion.\n' > "$work/t.txt"
got=$("$medvlp" tokenize --kind wordpiece --model "$work/vocab.txt" --max-len 6 --ids "$work/t.txt")
[ "$got" = "[2,5,6,7,3,0]" ] || fail "tokenize printed $got"
got=$("$medvlp" tokenize --kind wordpiece --model "$work/vocab.txt" "$work/t.txt")
[ "$got" = '{"ids":[5,6,7],"text":"no effusion."}' ] || fail "tokenize printed $got"

# Batches with bad lines: every bad line is named, every good line answered, the exit status is 1.
printf 'No effusion.\tedema\nNo pleural effusion.\teffusion\nno tab here\nMild edema.\tedema\n' > "$work/mixed.tsv"
status=0; "$medvlp" existence "$work/mixed.tsv" >"$work/mixed.out" 2>"$work/mixed.err" || status=$?
[ "$status" = 1 ] || fail "existence with bad lines exited $status"
[ "$(tr '\n' ' ' <"$work/mixed.out")" = "error absent error present " ] || fail "existence answers: $(cat "$work/mixed.out")"
grep -q 'mixed.tsv:1: existence: the term "edema" does not occur' "$work/mixed.err" &&
  grep -q 'mixed.tsv:3: expected sentence<TAB>term' "$work/mixed.err" &&
  grep -q 'existence: 2 of 4 lines failed' "$work/mixed.err" || fail "existence errors: $(cat "$work/mixed.err")"

printf '{"report":"No effusion.","id":"a"}\nnot json\n{"text":"x"}\n{"report":"Small effusion.","id":"b"}\n' > "$work/mixed.jsonl"
status=0; "$medvlp" parse-reports "$work/mixed.jsonl" >"$work/pr.out" 2>"$work/pr.err" || status=$?
[ "$status" = 1 ] || fail "parse-reports with bad lines exited $status"
/usr/bin/python3 -c 'import json,sys; ids=[json.loads(l)["id"] for l in open(sys.argv[1])]; assert ids == ["a", "b"], ids' \
  "$work/pr.out" || fail "parse-reports answered $(cut -c1-40 "$work/pr.out")"
grep -q 'mixed.jsonl:2: not valid JSON' "$work/pr.err" && grep -q 'mixed.jsonl:3: expected an object with a string "report"' "$work/pr.err" &&
  grep -q 'parse-reports: 2 of 4 reports failed' "$work/pr.err" || fail "parse-reports errors: $(cat "$work/pr.err")"

printf 'No effusion.\n\xff\xfe bad\nno\n' > "$work/mixed.txt"
status=0; "$medvlp" tokenize --kind wordpiece --model "$work/vocab.txt" --ids "$work/mixed.txt" >"$work/tok.out" 2>"$work/tok.err" || status=$?
[ "$status" = 1 ] || fail "tokenize with a bad line exited $status"
[ "$(tr '\n' ' ' <"$work/tok.out")" = "[5,6,7] null [5] " ] || fail "tokenize answers: $(cat "$work/tok.out")"
grep -q 'mixed.txt:2: WordPiece input: invalid UTF-8' "$work/tok.err" || fail "tokenize error: $(cat "$work/tok.err")"

# inspect over many files: a corrupt DICOM among good images.
"$medvlp" synth -o "$work/synth" --kind cxr --size 32 --train 2 --val 0 --test 0 >/dev/null
printf 'DICM but not really' > "$work/broken.dcm"
good=$(ls "$work"/synth/images/*.png | head -2)
status=0; "$medvlp" inspect --json $good "$work/broken.dcm" >"$work/in.out" 2>"$work/in.err" || status=$?
[ "$status" = 1 ] || fail "inspect with a corrupt file exited $status"
[ "$(grep -c '"kind":"image"' "$work/in.out")" = 2 ] || fail "inspect answers: $(cat "$work/in.out")"
grep -q "{\"error\":\"$work/broken.dcm: not a readable DICOM file" "$work/in.out" ||
  fail "inspect --json has no error line for the corrupt file: $(cat "$work/in.out")"
grep -q "error: $work/broken.dcm" "$work/in.err" && grep -q 'inspect: 1 of 3 inputs failed' "$work/in.err" ||
  fail "inspect errors: $(cat "$work/in.err")"

# --version: the CMake project version, the LibTorch headers' version and CUDA; tool options
# (--log-level) are accepted after the subcommand.
want=$(sed -n 's/^project(medvlp VERSION \([0-9.]*\).*/\1/p' "$(dirname "$0")/../../CMakeLists.txt")
got=$("$medvlp" --version | head -1)
[[ "$got" =~ ^medvlp\ $want\ \(LibTorch\ [0-9]+\.[0-9]+\.[0-9]+[^,]*,\ CUDA:\ (no|yes,\ [0-9]+\ devices?)\)$ ]] ||
  fail "--version printed '$got' (project version $want)"
# A build tree reads the source tree's configs.
configs=$("$medvlp" --version | sed -n 's/^configs: //p')
[ "$(cd "$configs" && pwd -P)" = "$(cd "$(dirname "$0")/../../configs" && pwd -P)" ] ||
  fail "--version names configs '$configs', not the source tree's"
[ "$("$medvlp" existence "$work/in.tsv" --log-level error | head -1)" = absent ] || fail "--log-level after the subcommand"

# Bash completion, generated from the command line: subcommands, their options (the tool's too),
# an option's fixed choices, and paths for values and positional arguments.
"$medvlp" completion bash -o "$work/completion.bash"
complete_words() {
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _medvlp; printf "%s\n" "${COMPREPLY[@]}"' \
    _ "$work/completion.bash" medvlp "$@" | sort | tr '\n' ' '
}
[ "$(complete_words tr)" = "train " ] || fail "completion of 'tr': '$(complete_words tr)'"
[ "$(complete_words --log-level warn ev)" = "eval " ] || fail "completion after --log-level: '$(complete_words --log-level warn ev)'"
[ "$(complete_words train --dev)" = "--device " ] || fail "completion of train --dev: '$(complete_words train --dev)'"
[ "$(complete_words train -c x --log)" = "--log-level " ] || fail "train does not offer the tool's --log-level"
[ "$(complete_words loss-check --dtype '')" = "float32 float64 " ] || fail "--dtype choices: '$(complete_words loss-check --dtype '')'"
[ "$(complete_words convert --part i)" = "image " ] || fail "--part choices: '$(complete_words convert --part i)'"
[ "$(complete_words eval --checkpoint "$work/completion.b")" = "$work/completion.bash " ] ||
  fail "eval --checkpoint does not complete paths: '$(complete_words eval --checkpoint "$work/completion.b")'"
for sub in train eval probe finetune embed zero-shot convert loss-check; do
  grep -A2 "^    $sub)" "$work/completion.bash" | grep -q -- '--device' || fail "$sub has no --device"
done
echo "text CLI: ok"
