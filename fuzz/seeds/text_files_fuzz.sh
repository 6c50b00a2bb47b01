#!/usr/bin/env bash
# Seeds for text_files_fuzz: the shipped lexicons, knowledge tables and cues, and an annotations
# JSONL, each behind the selector byte the target reads first.
set -u
out=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
{ printf '\x00'; cat "$root/configs/lexicons/chest_ct.yaml"; } >"$out/lexicon_ct"
{ printf '\x01'; cat "$root/configs/knowledge/chest_xray.yaml"; } >"$out/knowledge_cxr"
{ printf '\x02'; cat "$root/configs/lexicons/cues.yaml"; } >"$out/cues"
printf '\x03{"id":"a","sentences":["No effusion."],"triplets":[{"finding":"pleural effusion","anatomy":"pleura","existence":"absent","sentence":0}]}\n{"id":"b","triplets":[]}\n' >"$out/annotations"
exit 0
