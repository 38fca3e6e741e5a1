// tokenizer/unicode.hpp against the Unicode standard's own examples and hand-derived values.
#include <gtest/gtest.h>

#include <eigenformer/tokenizer/unicode.hpp>

namespace {

namespace u = eigenformer::unicode;

TEST(Unicode, LossyDecodingReplacesMaximalSubparts) {
  // The example of "U+FFFD Substitution of Maximal Subparts" (Unicode 15, chapter 3, table 3-8):
  // 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 -> a FFFD FFFD FFFD b FFFD c FFFD FFFD d.
  const std::string bytes = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64";
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(u::utf8_lossy(bytes), "a" + r + r + r + "b" + r + "c" + r + r + "d");
  EXPECT_EQ(u::utf8_lossy("\xED\xA0\x80"), r + r + r);  // a surrogate: lead, then 2 strays
  EXPECT_EQ(u::utf8_lossy("\xF0\x9F\x98"), r);          // a truncated emoji is one subpart
  EXPECT_EQ(u::utf8_lossy("\xC0\xAF"), r + r);          // overlong lead bytes are never valid
  EXPECT_EQ(u::utf8_lossy("caf\xC3\xA9 \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xF0\x9F\x98\x80");
}

TEST(Unicode, FirstInvalidByte) {
  EXPECT_EQ(u::first_invalid_utf8("plain"), std::string::npos);
  EXPECT_EQ(u::first_invalid_utf8("ab\xFF"), 2u);
  EXPECT_EQ(u::first_invalid_utf8("\xE2\x82"), 0u);
  EXPECT_EQ(u::first_invalid_utf8(std::string("a\0b", 3)), std::string::npos);
}

TEST(Unicode, NormalizationForms) {
  EXPECT_EQ(u::normalize("e\xCC\x81", u::normal_form::nfc), "\xC3\xA9");  // e + U+0301 -> é
  EXPECT_EQ(u::normalize("\xC3\xA9", u::normal_form::nfd), "e\xCC\x81");
  EXPECT_EQ(u::normalize("\xE2\x84\xAB", u::normal_form::nfc), "\xC3\x85");      // Å sign -> Å
  EXPECT_EQ(u::normalize("\xEF\xAC\x81", u::normal_form::nfc), "\xEF\xAC\x81");  // ﬁ stays
  EXPECT_EQ(u::normalize("\xEF\xAC\x81", u::normal_form::nfkc), "fi");
  // Hangul jamo compose algorithmically: U+1100 U+1161 U+11A8 -> U+AC01.
  EXPECT_EQ(u::normalize("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", u::normal_form::nfc),
            "\xEA\xB0\x81");
  EXPECT_EQ(u::normalize(std::string("a\0b", 3), u::normal_form::nfc), std::string("a\0b", 3));
}

TEST(Unicode, CharacterClasses) {
  for (char32_t c : {U' ', U'\t', U'\n', U'\x0B', U'\x85', U'\xA0', U'\u2028', U'\u3000'})
    EXPECT_TRUE(u::is_whitespace(c)) << unsigned(c);
  for (char32_t c : {U'a', U'\u200B', U'\uFEFF', U'_'}) EXPECT_FALSE(u::is_whitespace(c));
  for (char32_t c : {U'7', U'\u0663', U'\u00BD', U'\u216B'}) EXPECT_TRUE(u::is_numeric(c));
  EXPECT_FALSE(u::is_numeric(U'x'));
  EXPECT_TRUE(u::is_word_char(U'_'));
  EXPECT_TRUE(u::is_word_char(U'\u00DF'));
  EXPECT_TRUE(u::is_word_char(U'\u0301'));   // a combining mark
  EXPECT_TRUE(u::is_word_char(U'\u216B'));   // Roman numeral twelve (Nl)
  EXPECT_FALSE(u::is_word_char(U'\u00BD'));  // one half (No)
  EXPECT_FALSE(u::is_word_char(U'\u200B'));
  EXPECT_FALSE(u::is_word_char(U'-'));
}

TEST(Unicode, RegexFindsEveryMatchAndSkipsEmptyOnes) {
  const u::regex digits(R"(\p{N}+)");
  using spans = std::vector<std::pair<std::size_t, std::size_t>>;
  EXPECT_EQ(digits.find_all("a12b\xD9\xA3"
                            "c"),
            (spans{{1, 3}, {4, 6}}));  // ASCII and U+0663
  EXPECT_EQ(u::regex("x*").find_all("axxb"), (spans{{1, 3}}));
  EXPECT_EQ(u::regex("(?i:'s)").find_all("IT'S it's"), (spans{{2, 4}, {7, 9}}));
  EXPECT_THROW(u::regex("("), eigenformer::format_error);
}

}  // namespace
