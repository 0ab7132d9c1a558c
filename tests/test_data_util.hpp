// Helpers shared by the data-path tests (test_tokenizer, test_shards,
// test_data_*): temporary folders, whole-file I/O, and the tokenizer from
// the data cache, skipped visibly when scripts/get-data.sh has not run.
#pragma once

#include <catch2/catch.hpp>
#include <ra/data/cache.hpp>
#include <ra/data/tokenizer.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>

namespace ra::data::testing {

// A fresh folder under /tmp, removed with its contents at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char templ[] = "/tmp/ra_data_test_XXXXXX";
    if (!mkdtemp(templ)) throw std::runtime_error("mkdtemp failed");
    path = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path + "/" + name; }
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

// ctest marks a test whose output holds "SKIPPED:" as skipped
// (SKIP_REGULAR_EXPRESSION in tests/CMakeLists.txt); Catch2 v2 has no SKIP.
#define RA_DATA_SKIP(why)            \
  do {                               \
    WARN("SKIPPED: " << (why));      \
    return;                          \
  } while (0)

inline bool tokenizer_files_present() {
  const std::string dir = ra::data::default_tokenizer_dir();
  return std::filesystem::exists(dir + "/encoder.json") && std::filesystem::exists(dir + "/vocab.bpe");
}

inline std::string missing_tokenizer_message() {
  return "GPT-2 tokenizer files not in " + ra::data::default_tokenizer_dir() +
         " (run scripts/get-data.sh --fetch-only, or set RA_DATA_CACHE)";
}

// Loaded once per test binary (about 0.1 s), shared by the test cases.
inline ra::data::Gpt2Tokenizer& gpt2_tokenizer() {
  static std::unique_ptr<ra::data::Gpt2Tokenizer> tokenizer;
  if (!tokenizer) {
    tokenizer = std::make_unique<ra::data::Gpt2Tokenizer>(
        ra::data::Gpt2Tokenizer::from_dir(ra::data::default_tokenizer_dir()));
  }
  return *tokenizer;
}

}  // namespace ra::data::testing
