#include <ra/data/error.hpp>
#include <ra/data/pretokenize.hpp>
#include <ra/data/tokenizer.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <functional>
#include <limits>
#include <queue>
#include <sstream>
#include <tuple>

namespace ra::data {
namespace {

// Repeated words are looked up instead of merged again. Bounded so that a
// long tokenization run cannot grow it without limit: cleared when full.
constexpr std::size_t kMaxCachedPieces = 1 << 18;
// Long pieces (whitespace runs, long numbers) rarely repeat: not cached, and
// merged by the O(n log n) path (the plain one is quadratic in the worst case:
// 5 s for 100 KB of letters without a space).
constexpr std::size_t kMaxCachedPieceBytes = 64;

std::string read_whole_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(std::string(what) + " '" + path + "': cannot open (missing? run scripts/get-data.sh)");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Inverse of gpt2_byte_to_unicode() over its (small) code point range.
class UnicodeToByte {
 public:
  UnicodeToByte() {
    table_.assign(512, -1);
    const auto& forward = gpt2_byte_to_unicode();
    for (int b = 0; b < 256; ++b) table_[forward[b]] = b;
  }
  // Converts a token as written in encoder.json / vocab.bpe (UTF-8 of mapped
  // code points) to its raw bytes; returns false if it is not in the alphabet.
  bool to_bytes(std::string_view mapped, std::string& bytes) const {
    bytes.clear();
    const auto* s = reinterpret_cast<const unsigned char*>(mapped.data());
    for (std::size_t i = 0; i < mapped.size();) {
      char32_t cp;
      if (s[i] < 0x80) {
        cp = s[i], i += 1;
      } else if ((s[i] & 0xE0) == 0xC0 && i + 1 < mapped.size()) {
        cp = ((s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F), i += 2;
      } else {
        return false;  // the alphabet stops at U+0143: never 3-byte UTF-8
      }
      if (cp >= table_.size() || table_[cp] < 0) return false;
      bytes.push_back(static_cast<char>(table_[cp]));
    }
    return true;
  }

 private:
  std::vector<int> table_;
};

std::string describe_token(const std::string& bytes) {
  std::string shown;
  for (unsigned char c : bytes) {
    if (c >= 0x20 && c < 0x7F) {
      shown.push_back(static_cast<char>(c));
    } else {
      static const char* hex = "0123456789abcdef";
      shown += "\\x";
      shown.push_back(hex[c >> 4]);
      shown.push_back(hex[c & 15]);
    }
  }
  return "'" + shown + "'";
}

}  // namespace

const std::vector<char32_t>& gpt2_byte_to_unicode() {
  static const std::vector<char32_t> table = [] {
    std::vector<char32_t> t(256, 0);
    std::vector<bool> printable(256, false);
    for (int b = '!'; b <= '~'; ++b) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) t[b] = printable[b] ? static_cast<char32_t>(b) : next++;
    return t;
  }();
  return table;
}

Gpt2Tokenizer::Gpt2Tokenizer(std::vector<std::string> token_bytes,
                             const std::vector<std::pair<std::string, std::string>>& merges, int end_of_text)
    : token_bytes_(std::move(token_bytes)), end_of_text_(end_of_text) {
  std::unordered_map<std::string, int> id_of;
  id_of.reserve(token_bytes_.size());
  for (std::size_t id = 0; id < token_bytes_.size(); ++id) {
    if (!id_of.emplace(token_bytes_[id], static_cast<int>(id)).second) {
      throw DataError("tokenizer: token " + describe_token(token_bytes_[id]) + " has two ids, " +
                      std::to_string(id_of[token_bytes_[id]]) + " and " + std::to_string(id));
    }
  }
  for (int b = 0; b < 256; ++b) {
    const auto found = id_of.find(std::string(1, static_cast<char>(b)));
    if (found == id_of.end()) throw DataError("tokenizer: byte " + std::to_string(b) + " has no token");
    byte_token_[b] = found->second;
  }
  if (end_of_text_ >= vocab_size()) {
    throw DataError("tokenizer: end-of-text id " + std::to_string(end_of_text_) + " is outside the vocabulary");
  }
  merges_.reserve(merges.size());
  std::vector<std::int64_t> last_made_at(token_bytes_.size(), -1);  // highest rank of a merge making each token
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto l = id_of.find(left), r = id_of.find(right), m = id_of.find(left + right);
    if (l == id_of.end() || r == id_of.end() || m == id_of.end()) {
      throw DataError("tokenizer: merge " + std::to_string(rank) + " (" + describe_token(left) + " + " +
                      describe_token(right) + "): " + (l == id_of.end() ? "left part" : r == id_of.end() ? "right part" : "result") +
                      " is not in the vocabulary");
    }
    // A pair listed twice keeps its later rank, as GPT-2's dict(zip(merges, ranks)) does.
    merges_[pair_key(l->second, r->second)] = Merge{static_cast<std::uint32_t>(rank), m->second};
    last_made_at[m->second] = static_cast<std::int64_t>(rank);
  }
  for (const auto& [pair, merge] : merges_) {
    const auto made_after = [&](std::uint64_t id) { return last_made_at[id] >= static_cast<std::int64_t>(merge.rank); };
    if (made_after(pair >> 32) || made_after(pair & 0xFFFFFFFFu)) ranks_follow_creation_ = false;
  }
}

Gpt2Tokenizer Gpt2Tokenizer::from_files(const std::string& encoder_json_path, const std::string& vocab_bpe_path) {
  const UnicodeToByte unmap;

  nlohmann::json encoder;
  try {
    encoder = nlohmann::json::parse(read_whole_file(encoder_json_path, "encoder.json"));
  } catch (const nlohmann::json::exception& e) {
    throw DataError("encoder.json '" + encoder_json_path + "': not valid JSON: " + e.what());
  }
  if (!encoder.is_object() || encoder.empty()) {
    throw DataError("encoder.json '" + encoder_json_path + "': expected a non-empty object of token -> id");
  }
  std::vector<std::string> token_bytes(encoder.size());
  std::vector<bool> seen(encoder.size(), false);
  int end_of_text = -1;
  std::string bytes;
  for (const auto& [key, value] : encoder.items()) {
    const auto where = "encoder.json '" + encoder_json_path + "': token " + nlohmann::json(key).dump();
    if (!value.is_number_integer()) throw DataError(where + ": id is not an integer");
    const auto id = value.get<long long>();
    if (id < 0 || id >= static_cast<long long>(token_bytes.size())) {
      throw DataError(where + ": id " + std::to_string(id) + " is outside 0.." + std::to_string(token_bytes.size() - 1) +
                      " (ids must be 0..n-1)");
    }
    if (seen[id]) throw DataError(where + ": id " + std::to_string(id) + " is used twice");
    seen[id] = true;
    if (key == "<|endoftext|>") {
      end_of_text = static_cast<int>(id);
      token_bytes[id] = key;  // decodes to its own spelling, as in GPT-2
    } else if (!unmap.to_bytes(key, bytes)) {
      throw DataError(where + ": has characters outside GPT-2's byte alphabet");
    } else {
      token_bytes[id] = bytes;
    }
  }

  const std::string bpe = read_whole_file(vocab_bpe_path, "vocab.bpe");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(50000);
  std::istringstream lines(bpe);
  std::string line;
  for (int line_no = 1; std::getline(lines, line); ++line_no) {
    if (line_no == 1 && line.rfind("#version", 0) == 0) continue;
    if (line.empty()) continue;
    const auto where = "vocab.bpe '" + vocab_bpe_path + "' line " + std::to_string(line_no);
    const auto space = line.find(' ');
    if (space == std::string::npos || space == 0 || line.find(' ', space + 1) != std::string::npos ||
        space + 1 == line.size()) {
      throw DataError(where + ": expected two tokens separated by one space, got '" + line + "'");
    }
    std::pair<std::string, std::string> merge;
    if (!unmap.to_bytes(std::string_view(line).substr(0, space), merge.first) ||
        !unmap.to_bytes(std::string_view(line).substr(space + 1), merge.second)) {
      throw DataError(where + ": has characters outside GPT-2's byte alphabet");
    }
    merges.push_back(std::move(merge));
  }
  if (merges.empty()) throw DataError("vocab.bpe '" + vocab_bpe_path + "': no merges");

  try {
    return Gpt2Tokenizer(std::move(token_bytes), merges, end_of_text);
  } catch (const DataError& e) {
    throw DataError("'" + encoder_json_path + "' with '" + vocab_bpe_path + "': " + e.what());
  }
}

Gpt2Tokenizer Gpt2Tokenizer::from_dir(const std::string& dir) {
  return from_files(dir + "/encoder.json", dir + "/vocab.bpe");
}

void Gpt2Tokenizer::bpe(std::string_view piece, std::vector<int>& out) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(piece.data());
  if (piece.size() == 1) {
    out.push_back(byte_token_[bytes[0]]);
    return;
  }
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  if (!cacheable && ranks_follow_creation_) {
    bpe_long(piece, out);
    return;
  }
  std::string key;
  if (cacheable) {
    key.assign(piece);
    if (const auto hit = piece_cache_.find(key); hit != piece_cache_.end()) {
      out.insert(out.end(), hit->second.begin(), hit->second.end());
      return;
    }
  }

  // Merge the lowest-ranked adjacent pair, everywhere it occurs (left to
  // right, non-overlapping), until no adjacent pair has a merge: GPT-2's
  // bpe(). Pairs are compared by token id, which is the same as comparing
  // their strings since every string has one id.
  auto& word = scratch_;
  word.clear();
  for (std::size_t i = 0; i < piece.size(); ++i) word.push_back(byte_token_[bytes[i]]);
  while (word.size() > 1) {
    std::uint32_t best_rank = std::numeric_limits<std::uint32_t>::max();
    int left = -1, right = -1, merged = -1;
    for (std::size_t i = 0; i + 1 < word.size(); ++i) {
      const auto found = merges_.find(pair_key(word[i], word[i + 1]));
      if (found != merges_.end() && found->second.rank < best_rank) {
        best_rank = found->second.rank;
        left = word[i], right = word[i + 1], merged = found->second.merged;
      }
    }
    if (merged < 0) break;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == left && word[i + 1] == right) {
        word[kept++] = merged;
        i += 2;
      } else {
        word[kept++] = word[i++];
      }
    }
    word.resize(kept);
  }
  out.insert(out.end(), word.begin(), word.end());
  if (cacheable) {
    if (piece_cache_.size() >= kMaxCachedPieces) piece_cache_.clear();
    piece_cache_.emplace(std::move(key), word);
  }
}

void Gpt2Tokenizer::bpe_long(std::string_view piece, std::vector<int>& out) const {
  // The same merges as bpe(), found with a heap instead of a scan per merge.
  // Symbols form a linked list; candidates are (rank, left symbol) pairs,
  // popped lowest rank first and, within a rank, left to right -- the order
  // bpe() merges in, because a merge only creates pairs of higher rank
  // (ranks_follow_creation_). A candidate whose symbols have changed since
  // it was pushed is stale and skipped.
  const std::size_t n = piece.size();
  const auto* bytes = reinterpret_cast<const unsigned char*>(piece.data());
  std::vector<int> symbol(n);
  std::vector<std::size_t> prev(n), next(n);
  for (std::size_t i = 0; i < n; ++i) symbol[i] = byte_token_[bytes[i]], prev[i] = i - 1, next[i] = i + 1;
  using Candidate = std::tuple<std::uint32_t, std::size_t, int, int>;  // rank, left, left and right symbols
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto push = [&](std::size_t left) {
    if (left >= n || next[left] >= n) return;  // prev of the first symbol wraps to SIZE_MAX
    const auto found = merges_.find(pair_key(symbol[left], symbol[next[left]]));
    if (found != merges_.end()) heap.emplace(found->second.rank, left, symbol[left], symbol[next[left]]);
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const auto [rank, left, left_symbol, right_symbol] = heap.top();
    heap.pop();
    const std::size_t right = next[left];
    if (symbol[left] != left_symbol || right >= n || symbol[right] != right_symbol) continue;
    symbol[left] = merges_.find(pair_key(left_symbol, right_symbol))->second.merged;
    symbol[right] = -1;  // unlinked
    next[left] = next[right];
    if (next[right] < n) prev[next[right]] = left;
    push(prev[left]);
    push(left);
  }
  for (std::size_t i = 0; i < n; i = next[i]) out.push_back(symbol[i]);
}

void Gpt2Tokenizer::encode_append(std::string_view text, std::vector<int>& out) {
  PieceCursor cursor(text);
  for (std::string_view piece; cursor.next(piece);) bpe(piece, out);
}

std::vector<int> Gpt2Tokenizer::encode(std::string_view text) {
  std::vector<int> ids;
  ids.reserve(text.size() / 3 + 1);
  encode_append(text, ids);
  return ids;
}

const std::string& Gpt2Tokenizer::token_bytes(int id) const {
  if (id < 0 || id >= vocab_size()) {
    throw DataError("token id " + std::to_string(id) + " is outside the vocabulary 0.." + std::to_string(vocab_size() - 1));
  }
  return token_bytes_[id];
}

template <class Id>
std::string Gpt2Tokenizer::decode_ids(const Id* ids, std::size_t count) const {
  std::string text;
  text.reserve(count * 4);
  for (std::size_t i = 0; i < count; ++i) {
    const long long id = ids[i];
    if (id < 0 || id >= vocab_size()) {
      throw DataError("decode: token " + std::to_string(i) + " is " + std::to_string(id) +
                      ", outside the vocabulary 0.." + std::to_string(vocab_size() - 1));
    }
    text += token_bytes_[id];
  }
  return text;
}

std::string Gpt2Tokenizer::decode(const std::vector<int>& ids) const { return decode_ids(ids.data(), ids.size()); }

std::string Gpt2Tokenizer::decode(const std::uint16_t* ids, std::size_t count) const { return decode_ids(ids, count); }

}  // namespace ra::data
