#!/usr/bin/env bash
# Seeds for tokenizer_fuzz: report text, and small WordPiece / CLIP BPE vocabularies.
set -u
out=$1
printf '\x00No pleural effusions, [MASK] left pneumothorax. Café – naïve 3.5 cm' >"$out/text"
printf '\x01[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nno\npleural\n##s\n' >"$out/vocab_txt"
printf '\x01{"<|startoftext|>": 0, "<|endoftext|>": 1, "n": 2, "o</w>": 3, "no</w>": 4}\x00#version: 0.2\nn o</w>\n' >"$out/vocab_json"
printf '\x02{"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "no": 5}}, "normalizer": {"type": "BertNormalizer", "lowercase": true, "strip_accents": null}, "pre_tokenizer": {"type": "BertPreTokenizer"}}' >"$out/wordpiece_json"
printf '\x02{"model": {"type": "BPE", "end_of_word_suffix": "</w>", "vocab": {"<|startoftext|>": 0, "<|endoftext|>": 1, "n": 2, "o</w>": 3, "no</w>": 4}, "merges": [["n", "o</w>"]]}}' >"$out/clip_json"
exit 0
