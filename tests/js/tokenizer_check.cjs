// Compares `medvlp tokenize` with Hugging Face's tokenizers (the pure-JS @huggingface/tokenizers,
// installed under third_party/js by scripts/install-deps) on generated text: WordPiece (BERT) and CLIP's
// byte-level BPE, on vocabularies this script writes. Skipped when the library is missing, failed under CI=true.
//   node tests/js/tokenizer_check.cjs MEDVLP_BINARY WORK_DIR [SENTENCES]
"use strict";
const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");

const [medvlp, work, count = "1500"] = process.argv.slice(2);
let Tokenizer;
try {
  ({ Tokenizer } = require(path.join(__dirname, "../../third_party/js/node_modules/@huggingface/tokenizers")));
} catch (e) {
  const reason = "@huggingface/tokenizers is not installed (scripts/install-deps installs it into third_party/js)";
  // In CI a missing reference fails: a comparison that quietly stops comparing hides what it was for.
  if (["true", "1", "yes"].includes(String(process.env.CI || "").toLowerCase())) {
    console.log(`FAIL: ${reason} (CI=true: a missing reference fails instead of skipping)`);
    process.exit(1);
  }
  console.log(`SKIP: ${reason}`);
  process.exit(77);
}
fs.mkdirSync(work, { recursive: true });

// Deterministic generator (mulberry32).
let seed = 20261123;
function rand() {
  seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];

const words = ("there is a small left pleural effusion no pneumothorax the heart size is normal mild cardiomegaly " +
  "moderate pulmonary edema possible right lower lobe consolidation cannot be excluded lungs are clear without focal " +
  "airspace disease bibasilar atelectasis nodule measuring cm mm stable unchanged compared with prior study " +
  "endotracheal tube terminates above the carina interval resolution of opacity findings impression recommend " +
  "follow-up CT Dr. Smith vs. e.g. x-ray AP PA lateral views IMPRESSION FINDINGS").split(" ");
const unicode = ["café", "naïve", "Ångström", "Größe", "résumé", "ΣΟΦΟΣ", "σοφός", "Москва", "İstanbul", "ﬁbrosis",
  "肺结节", "胸腔积液", "カタカナ", "한국어", "😀", "℃", "µm", "½", "→", "—", "…", "¿qué?", "«cita»", "naïve—café",
  "e\u0301", "Ⅻ", "①", "ß", "ǅ", "ﬀ", "x\u200by", "a\u00a0b", "tab\there", "bell\u0007", "\u2028", "\ufeff",
  "٣", "\ue000", "Ａｂｃ", "𠀀", "ḱ", "Ǆ"];
// Unassigned code points (category Cn) are left out: Hugging Face's Rust BertNormalizer drops them
// as "other" characters (medvlp does the same), the JS port keeps them, and which code points are
// unassigned depends on each library's Unicode version anyway.
const punct = [".", ",", ";", ":", "!", "?", "(", ")", "[", "]", "{", "}", "'", "\"", "/", "\\", "-", "_", "+", "=",
  "*", "&", "^", "%", "$", "#", "@", "~", "`", "|", "<", ">", "§", "°", "±", "×", "'s", "don't", "it'll", "we've"];
const sentences = [];
for (let i = 0; i < Number(count); ++i) {
  const n = 3 + Math.floor(rand() * 18);
  const parts = [];
  for (let k = 0; k < n; ++k) {
    const r = rand();
    if (r < 0.65) parts.push(pick(words));
    else if (r < 0.8) parts.push(pick(unicode));
    else if (r < 0.95) parts.push(pick(punct));
    else parts.push(String(Math.floor(rand() * 1000)) + (rand() < 0.5 ? "." + Math.floor(rand() * 10) : "") + pick(["", "cm", "mm", "x4"]));
  }
  if (i % 50 === 7) parts.push("pneumono" + "ultramicroscopic".repeat(7));  // an over-long word
  if (i % 40 === 3) parts.push("[MASK]");
  let s = parts.join(rand() < 0.1 ? "  " : " ");
  if (rand() < 0.3) s = s.toUpperCase();
  sentences.push(s);
}
fs.writeFileSync(path.join(work, "sentences.txt"), sentences.join("\n") + "\n");

function medvlpIds(args) {
  const out = execFileSync(medvlp, ["tokenize", ...args, "--ids", path.join(work, "sentences.txt")], { maxBuffer: 1 << 28 });
  return out.toString().trim().split("\n").map((l) => JSON.parse(l));
}

function compare(name, jsIds, ours, tokenOf) {
  let mismatches = 0;
  for (let i = 0; i < sentences.length; ++i) {
    if (JSON.stringify(jsIds[i]) !== JSON.stringify(ours[i])) {
      if (++mismatches <= 5) {
        console.log(`${name} mismatch on ${JSON.stringify(sentences[i])}`);
        console.log("  js:     " + jsIds[i].map(tokenOf).join(" "));
        console.log("  medvlp: " + ours[i].map(tokenOf).join(" "));
      }
    }
  }
  let tokens = 0;
  for (const ids of jsIds) tokens += ids.length;
  console.log(`${name}: ${sentences.length - mismatches}/${sentences.length} sentences identical (${tokens} tokens)`);
  return mismatches;
}

// ---------------------------------------------------------------------------------- WordPiece
const specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const vocab = [...specials];
const seen = new Set(vocab);
const add = (t) => { if (!seen.has(t)) { seen.add(t); vocab.push(t); } };
// Characters (start and continuation) of the normalized text, leaving some out so [UNK] occurs.
for (const s of sentences)
  for (const ch of s.toLowerCase().normalize("NFD").replace(/\p{Mn}/gu, ""))
    if (!/\s/u.test(ch) && ch !== "😀" && ch !== "한") { add(ch); add("##" + ch); }
for (const w of words) add(w.toLowerCase());
for (const p of ["pneum", "##onia", "##othorax", "card", "##io", "##megaly", "##ation", "##s", "##ing", "ultra", "##micro"]) add(p);
fs.writeFileSync(path.join(work, "vocab.txt"), vocab.join("\n") + "\n");
const wpVocab = Object.fromEntries(vocab.map((t, i) => [t, i]));
const wpJson = {
  version: "1.0", truncation: null, padding: null,
  added_tokens: specials.map((t, i) => ({ id: i, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
  normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
  pre_tokenizer: { type: "BertPreTokenizer" },
  post_processor: null,
  decoder: { type: "WordPiece", prefix: "##", cleanup: true },
  model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab: wpVocab },
};
const wp = new Tokenizer(wpJson, { do_lower_case: true });
const wpJs = sentences.map((s) => wp.encode(s, { add_special_tokens: false }).ids);
let failures = compare("WordPiece", wpJs, medvlpIds(["--kind", "wordpiece", "--model", path.join(work, "vocab.txt")]), (i) => vocab[i]);
// The same tokenizer as Hugging Face's tokenizer.json, which medvlp reads directly.
fs.writeFileSync(path.join(work, "wordpiece.tokenizer.json"), JSON.stringify(wpJson));
failures += compare("WordPiece tokenizer.json", wpJs, medvlpIds(["--model", path.join(work, "wordpiece.tokenizer.json")]),
  (i) => vocab[i]);

// Hugging Face model folders: the slow tokenizer's vocab.txt with tokenizer_config.json's options
// (uncased, then cased: do_lower_case false keeps case and accents, as BertNormalizer with
// lowercase false and strip_accents null does), and a folder whose tokenizer.json takes precedence.
function folder(name, files) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, file), text);
  return dir;
}
const vocabText = vocab.join("\n") + "\n";
const bertConfig = (lower) => JSON.stringify({ do_lower_case: lower, tokenize_chinese_chars: true, strip_accents: null,
  unk_token: "[UNK]", cls_token: "[CLS]", sep_token: "[SEP]", pad_token: "[PAD]",
  mask_token: { __type: "AddedToken", content: "[MASK]", lstrip: true, normalized: false, rstrip: false, single_word: false },
  tokenizer_class: "BertTokenizer" });
failures += compare("WordPiece model folder (uncased)", wpJs,
  medvlpIds(["--model", folder("bert-uncased", { "vocab.txt": vocabText, "tokenizer_config.json": bertConfig(true) })]),
  (i) => vocab[i]);
const casedJson = { ...wpJson, normalizer: { ...wpJson.normalizer, lowercase: false } };
const casedJs = sentences.map((s) => new Tokenizer(casedJson, { do_lower_case: false }).encode(s, { add_special_tokens: false }).ids);
failures += compare("WordPiece model folder (cased)", casedJs,
  medvlpIds(["--model", folder("bert-cased", { "vocab.txt": vocabText, "tokenizer_config.json": bertConfig(false) })]),
  (i) => vocab[i]);
failures += compare("WordPiece model folder with tokenizer.json", casedJs,
  medvlpIds(["--model", folder("bert-fast", { "tokenizer.json": JSON.stringify(casedJson), "vocab.txt": vocabText,
                                              "tokenizer_config.json": bertConfig(true) })]),
  (i) => vocab[i]);

// --------------------------------------------------------------------------------- CLIP BPE
// GPT-2's byte table, the 256 characters and their word-final forms, then merges learned here.
const byteChar = [];
let next = 256;
for (let b = 0; b < 256; ++b) {
  const printable = (b >= 33 && b <= 126) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  byteChar.push(String.fromCodePoint(printable ? b : next++));
}
const clipTokens = [...byteChar, ...byteChar.map((c) => c + "</w>")];
const pattern = /'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu;
const wordCounts = new Map();
for (const s of sentences) {
  const norm = s.normalize("NFC").replace(/\s+/gu, " ").toLowerCase();
  for (const w of norm.match(pattern) || []) {
    const chars = [...Buffer.from(w, "utf8")].map((b) => byteChar[b]);
    chars[chars.length - 1] += "</w>";
    const key = chars.join(" ");
    wordCounts.set(key, (wordCounts.get(key) || 0) + 1);
  }
}
let wordsList = [...wordCounts.entries()].map(([k, c]) => [k.split(" "), c]);
const merges = [];
for (let m = 0; m < 400; ++m) {
  const pairs = new Map();
  for (const [syms, c] of wordsList)
    for (let i = 0; i + 1 < syms.length; ++i) {
      const k = syms[i] + " " + syms[i + 1];
      pairs.set(k, (pairs.get(k) || 0) + c);
    }
  let best = null, bestCount = 1;
  for (const [k, c] of [...pairs.entries()].sort()) if (c > bestCount) { best = k; bestCount = c; }
  if (!best) break;
  merges.push(best);
  const [a, b] = best.split(" ");
  clipTokens.push(a + b);
  wordsList = wordsList.map(([syms, c]) => {
    const out = [];
    for (let i = 0; i < syms.length; ++i) {
      if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) { out.push(a + b); ++i; } else out.push(syms[i]);
    }
    return [out, c];
  });
}
clipTokens.push("<|startoftext|>", "<|endoftext|>");
const clipVocab = {};
clipTokens.forEach((t, i) => { if (!(t in clipVocab)) clipVocab[t] = i; });
fs.writeFileSync(path.join(work, "vocab.json"), JSON.stringify(clipVocab));
fs.writeFileSync(path.join(work, "merges.txt"), "#version: 0.2\n" + merges.join("\n") + "\n");
const n = clipTokens.length;
const clipJson = {
  version: "1.0", truncation: null, padding: null,
  added_tokens: [
    { id: n - 2, content: "<|startoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
    { id: n - 1, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
  normalizer: { type: "Sequence", normalizers: [{ type: "NFC" }, { type: "Replace", pattern: { Regex: "\\s+" }, content: " " }, { type: "Lowercase" }] },
  pre_tokenizer: { type: "Sequence", pretokenizers: [
    { type: "Split", pattern: { Regex: "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" }, behavior: "Removed", invert: true },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false }] },
  post_processor: null,
  decoder: { type: "BPEDecoder", suffix: "</w>" },
  model: { type: "BPE", dropout: null, unk_token: "<|endoftext|>", continuing_subword_prefix: "", end_of_word_suffix: "</w>",
           fuse_unk: false, byte_fallback: false, vocab: clipVocab, merges },
};
const clip = new Tokenizer(clipJson, {});
const clipJs = sentences.map((s) => clip.encode(s, { add_special_tokens: false }).ids);
failures += compare("CLIP BPE", clipJs,
  medvlpIds(["--kind", "clip_bpe", "--model", path.join(work, "vocab.json"), "--merges", path.join(work, "merges.txt")]),
  (i) => clipTokens[i]);
// As tokenizer.json, with merges as "a b" strings and as ["a", "b"] pairs (tokenizers >= 0.20).
fs.writeFileSync(path.join(work, "clip.tokenizer.json"), JSON.stringify(clipJson));
failures += compare("CLIP BPE tokenizer.json", clipJs, medvlpIds(["--model", path.join(work, "clip.tokenizer.json")]),
  (i) => clipTokens[i]);
failures += compare("CLIP BPE model folder", clipJs,
  medvlpIds(["--model", folder("clip", { "vocab.json": JSON.stringify(clipVocab), "merges.txt": "#version: 0.2\n" + merges.join("\n") + "\n",
                                         "tokenizer_config.json": JSON.stringify({ tokenizer_class: "CLIPTokenizer" }) })]),
  (i) => clipTokens[i]);
const pairs = { ...clipJson, model: { ...clipJson.model, merges: merges.map((m) => m.split(" ")) } };
fs.writeFileSync(path.join(work, "clip_pairs.tokenizer.json"), JSON.stringify(pairs));
failures += compare("CLIP BPE tokenizer.json (merge pairs)", clipJs,
  medvlpIds(["--model", path.join(work, "clip_pairs.tokenizer.json")]), (i) => clipTokens[i]);
process.exit(failures === 0 ? 0 : 1);
