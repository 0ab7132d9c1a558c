// GPT-2's pre-tokenizer: splits text into the pieces that BPE then encodes one
// by one. It reproduces, on Unicode code points, the regular expression
//
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// as Python's `regex` module (GPT-2's own encoder) evaluates it: alternatives
// tried in order at each position, greedy runs, and the look-ahead that leaves
// the last whitespace of a run to the word after it.
//
// Classes: \p{L} and \p{N} are Unicode general categories L* and N*; \s is the
// Unicode White_Space property (what Python's `regex` uses; JavaScript's \s
// differs at U+0085 and U+FEFF). Bytes that are not valid UTF-8 (truncated or
// overlong sequences, surrogates, > U+10FFFF) are taken one byte at a time as
// characters of none of these classes, so any byte string splits
// deterministically and the pieces always concatenate back to the input.
#pragma once

#include <string_view>
#include <vector>

namespace ra::data {

enum class CharClass : unsigned char { letter, number, space, other };

// Class and length in bytes (1..4) of the character that starts at `at`
// (at < text.size()). An invalid UTF-8 byte is a 1-byte `other`.
struct CharAt {
  CharClass cls;
  unsigned len;
};
CharAt char_at(std::string_view text, std::size_t at);

// Walks `text` piece by piece without allocating; the pieces are views into
// `text`, never empty, and concatenate to exactly `text`.
class PieceCursor {
 public:
  explicit PieceCursor(std::string_view text) : text_(text) {}
  // Sets `piece` to the next piece and returns true, or returns false at the end.
  bool next(std::string_view& piece);

 private:
  std::string_view text_;
  std::size_t at_ = 0;
};

// All pieces of `text` (convenience for tests and small inputs).
std::vector<std::string_view> gpt2_pretokenize(std::string_view text);

}  // namespace ra::data
