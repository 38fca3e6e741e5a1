// Builds tests/fixtures/gpt2_tokenizer/reference.json: tricky strings and the ids js-tiktoken's
// "gpt2" encoding gives them (special tokens allowed, as Hugging Face's GPT-2 tokenizer does).
// Not run by CI; the output is committed.
//   cd /tmp/t && npm install js-tiktoken && node /path/to/tests/make_tokenizer_fixture.mjs
import { getEncoding } from "js-tiktoken";
import { writeFileSync } from "fs";
import { dirname, join } from "path";
import { fileURLToPath } from "url";

const enc = getEncoding("gpt2");
const fixed = [
  "", " ", "  ", "\n", "\r\n", "\t", "Hello world", "Hello, world!", " Hello", "hello  world",
  "The quick brown fox jumps over the lazy dog.", "I'm", "you're", "they've", "she'll", "he'd",
  "it's", "IT'S", "don't", "Don't stop", "'s", "'tis", "rock'n'roll", "O'Neill's", "''",
  "12345", "3.14159", "1,000,000", "in 2024 there were 42 cats", "version 1.2.3-beta",
  "x=1+2*3/4", "a\tb\tc", "line1\nline2\n\nline4", "trailing space ", "   leading", "        ",
  "\n\n\n", " \n \n ", "tabs\t\t\tand spaces   mixed \t ", "windows\r\nline\r\nendings\r\n",
  "😀", "😀😀😀", "I ❤️ emoji 👨‍👩‍👧‍👦 families", "🇯🇵🇺🇸 flags", "日本語のテキスト", "中文字符测试",
  "한국어 텍스트", "Ελληνικά", "Русский текст", "עברית", "العربية", "हिन्दी", "ไทย",
  "e\u0301 combining", "a\u0308\u0304 stacked", "\u00e9 vs e\u0301", "Zalgo: Z\u0351\u0346\u0353a\u0361l\u0315g\u0322o",
  "<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>", "text <|endoftext|> more",
  "<|endoftext", "<|endoftext|", "|endoftext|>", "\u00a0non-breaking\u00a0space", "zero\u200bwidth",
  "ＦＵＬＬＷＩＤＴＨ", "ﬁ ligature", "math: ∑ ∫ √ ∞ ≠ ≤", "currency: $ € £ ¥ ₹", "©®™",
  "snake_case_name", "camelCaseName", "kebab-case-name", "SCREAMING_CASE", "http://example.com/a?b=c&d=e",
  "user@example.com", "#hashtag @mention", "C++ and C#", "f(x) = x^2", "[1, 2, 3]", "{\"json\": true}",
  "<html><body>hi</body></html>", "    def foo(self):\n        return 1\n", "\\n escaped", "...", "!!!???",
  "—em dash– en dash", "“smart quotes” ‘single’", "«guillemets»", "¿Qué tal?", "¡Hola!", "naïve café",
  "Straße", "İstanbul", "ǅ titlecase", "ß", "ΑΒΓ αβγ", "١٢٣ arabic digits", "٣.١٤", "Ⅻ roman", "½ ¾",
  "①②③", "²³", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "a".repeat(300), " ".repeat(100),
  "\n".repeat(50), "ab".repeat(100), "🙂".repeat(40), "The\u2028line\u2029separators", "\u000b\u000c",
  "\u0085next line", "mixed 日本 English 123 😀!", "x".repeat(5) + " " + "y".repeat(7),
];
// Deterministic combinations of pieces, to reach a few hundred varied strings.
const pieces = [" ", "  ", "\n", "\r\n", "\t", "'s", "'ll", "'ve", "a", "The", " the", "42", " 7",
  "3.5", "!", "?!", ",", "...", "😀", "👍🏽", "日本", "语", "é", "e\u0301", "ß", "Ω", "ا", "٣", "_", "-",
  "<|endoftext|>", "don't", "HTTP", "x2", "\u00a0", "   \n", "ﬀ", "•", "→", "'", "\"", "(", ")"];
let state = 12345;
const rand = (n) => { state = (state * 1103515245 + 12345) % 2147483648; return state % n; };
const generated = [];
for (let i = 0; i < 320; ++i) {
  let s = "";
  const n = 1 + rand(9);
  for (let j = 0; j < n; ++j) s += pieces[rand(pieces.length)];
  generated.push(s);
}
const cases = [...fixed, ...generated].map((text) => ({ text, ids: enc.encode(text, "all") }));
const out = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "gpt2_tokenizer", "reference.json");
writeFileSync(out, JSON.stringify({ source: "js-tiktoken gpt2, allowedSpecial=all", cases }, null, 0));
console.log(`wrote ${cases.length} cases to ${out}`);
