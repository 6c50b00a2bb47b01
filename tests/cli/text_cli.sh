#!/usr/bin/env bash
# `medvlp existence`, `parse-reports` and `tokenize` from the command line: outputs and errors.
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
echo "text CLI: ok"
