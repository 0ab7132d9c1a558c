// Character classes come from ICU (Debian's libicu-dev), not a table of our
// own: ICU is the maintained reference implementation of the Unicode
// character database, follows each Unicode version with the distribution,
// and its property lookups are a trie read per character. A generated table
// would need a generator, a copy of the UCD and someone to refresh both.
// ASCII, nearly all of English text, is answered from a small table first.
#include <ra/data/pretokenize.hpp>

#include <unicode/uchar.h>

#include <array>
#include <cstdint>

namespace ra::data {
namespace {

constexpr std::array<CharClass, 128> make_ascii_classes() {
  std::array<CharClass, 128> classes{};
  for (auto& c : classes) c = CharClass::other;
  for (int c = 'a'; c <= 'z'; ++c) classes[c] = CharClass::letter;
  for (int c = 'A'; c <= 'Z'; ++c) classes[c] = CharClass::letter;
  for (int c = '0'; c <= '9'; ++c) classes[c] = CharClass::number;
  // Unicode White_Space in ASCII: \t \n \v \f \r and space (not 0x1C-0x1F).
  for (int c : {'\t', '\n', '\v', '\f', '\r', ' '}) classes[c] = CharClass::space;
  return classes;
}
constexpr std::array<CharClass, 128> kAsciiClasses = make_ascii_classes();

CharClass classify(UChar32 cp) {
  if (u_isUWhiteSpace(cp)) return CharClass::space;
  switch (u_charType(cp)) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return CharClass::letter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return CharClass::number;
    default:
      return CharClass::other;
  }
}

bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// Contractions GPT-2 splits off first, case-sensitively, ASCII apostrophe only.
std::size_t contraction_length(std::string_view text, std::size_t at) {
  if (text[at] != '\'' || at + 1 >= text.size()) return 0;
  const char a = text[at + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (at + 2 >= text.size()) return 0;
  const char b = text[at + 2];
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

}  // namespace

CharAt char_at(std::string_view text, std::size_t at) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t left = text.size() - at;
  const unsigned char b0 = s[at];
  if (b0 < 0x80) return {kAsciiClasses[b0], 1};
  const CharAt invalid{CharClass::other, 1};
  // Strict UTF-8 (RFC 3629): the second byte's range excludes overlong forms,
  // surrogates and code points past U+10FFFF.
  unsigned len = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  UChar32 cp = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return invalid;
  }
  if (left < len || s[at + 1] < lo || s[at + 1] > hi) return invalid;
  for (unsigned k = 1; k < len; ++k) {
    if (!is_continuation(s[at + k])) return invalid;
    cp = (cp << 6) | (s[at + k] & 0x3F);
  }
  return {classify(cp), len};
}

bool PieceCursor::next(std::string_view& piece) {
  const std::size_t n = text_.size();
  const std::size_t start = at_;
  if (start >= n) return false;

  std::size_t end = start;
  if (const std::size_t c = contraction_length(text_, start)) {
    end = start + c;  // 's 't 're 've 'm 'll 'd
  } else {
    const CharAt first = char_at(text_, start);
    CharClass run_class = first.cls;
    std::size_t run_start = start;
    // " ?X+" for X in {letter, number, other}: a single leading space joins
    // the run that follows it.
    if (text_[start] == ' ' && start + 1 < n) {
      const CharAt after = char_at(text_, start + 1);
      if (after.cls != CharClass::space) run_class = after.cls, run_start = start + 1;
    }
    if (run_class != CharClass::space) {
      end = run_start;
      for (CharAt c = char_at(text_, end); c.cls == run_class;) {
        end += c.len;
        if (end >= n) break;
        c = char_at(text_, end);
      }
    } else {
      // "\s+(?!\S)|\s+": a whitespace run; when a non-space follows it, its
      // last character is left to start the next piece (" word"), unless the
      // run is that single character.
      std::size_t last_start = start;
      end = start;
      while (end < n) {
        const CharAt c = char_at(text_, end);
        if (c.cls != CharClass::space) break;
        last_start = end;
        end += c.len;
      }
      if (end < n && last_start > start) end = last_start;
    }
  }
  piece = text_.substr(start, end - start);
  at_ = end;
  return true;
}

std::vector<std::string_view> gpt2_pretokenize(std::string_view text) {
  std::vector<std::string_view> pieces;
  PieceCursor cursor(text);
  for (std::string_view piece; cursor.next(piece);) pieces.push_back(piece);
  return pieces;
}

}  // namespace ra::data
