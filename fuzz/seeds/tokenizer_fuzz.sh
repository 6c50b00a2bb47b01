#!/usr/bin/env bash
# Seeds for tokenizer_fuzz: report text, and small WordPiece / CLIP BPE vocabularies.
set -u
out=$1
printf '\x00No pleural effusions, [MASK] left pneumothorax. Café – naïve 3.5 cm' >"$out/text"
printf '\x01[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nno\npleural\n##s\n' >"$out/vocab_txt"
printf '\x01{"<|startoftext|>": 0, "<|endoftext|>": 1, "n": 2, "o</w>": 3, "no</w>": 4}\x00#version: 0.2\nn o</w>\n' >"$out/vocab_json"
exit 0
