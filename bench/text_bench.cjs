// Hugging Face's tokenizers (pure JS) on the vocabulary and text medvlp_text_bench wrote:
// WordPiece tokens per second, one line at a time, as medvlp does. Prints one JSON line.
//   node bench/text_bench.cjs WORK_DIR
"use strict";
const fs = require("fs");
const path = require("path");
const { Tokenizer } = require(path.join(__dirname, "../third_party/js/node_modules/@huggingface/tokenizers"));
const work = process.argv[2];
const vocabList = fs.readFileSync(path.join(work, "vocab.txt"), "utf8").split("\n").filter((l) => l.length);
const vocab = Object.fromEntries(vocabList.map((t, i) => [t, i]));
const specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const tok = new Tokenizer({
  version: "1.0", truncation: null, padding: null,
  added_tokens: specials.map((t) => ({ id: vocab[t], content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
  normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
  pre_tokenizer: { type: "BertPreTokenizer" }, post_processor: null, decoder: { type: "WordPiece", prefix: "##", cleanup: true },
  model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab },
}, {});
const lines = fs.readFileSync(path.join(work, "text.txt"), "utf8").split("\n").filter((l) => l.length);
for (let i = 0; i < 1000; ++i) tok.encode(lines[i % lines.length], { add_special_tokens: false });
const t0 = process.hrtime.bigint();
let tokens = 0;
for (const l of lines) tokens += tok.encode(l, { add_special_tokens: false }).ids.length;
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({ what: "wordpiece_js", lines: lines.length, tokens, seconds, tokens_per_s: tokens / seconds }));
