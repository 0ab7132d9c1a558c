#include <ra/data/error.hpp>
#include <ra/data/shard.hpp>

#include <glob.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>

namespace fs = std::filesystem;

namespace ra::data {
namespace {

// The format is little-endian on disk whatever the host is, so bytes are
// assembled explicitly rather than read into ints.
std::int32_t load_le32(const unsigned char* p) {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
                                   static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24);
}
void store_le32(unsigned char* p, std::int32_t value) {
  const auto v = static_cast<std::uint32_t>(value);
  for (int k = 0; k < 4; ++k) p[k] = static_cast<unsigned char>(v >> (8 * k));
}

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw DataError("shard '" + path + "': " + problem);
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

File open_for_reading(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(path, "is a directory, not a shard file");
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) fail(path, std::string("cannot open: ") + std::strerror(errno));
  return f;
}

ShardHeader read_header_from(std::FILE* f, const std::string& path) {
  ShardHeader header;
  std::error_code ec;
  header.file_bytes = fs::file_size(path, ec);
  if (ec) fail(path, "cannot read its size: " + ec.message());
  if (header.file_bytes < kShardHeaderBytes) {
    fail(path, "too short: " + std::to_string(header.file_bytes) + " bytes, less than the " +
                   std::to_string(kShardHeaderBytes) + "-byte header");
  }
  unsigned char raw[kShardHeaderBytes];
  if (std::fread(raw, 1, sizeof raw, f) != sizeof raw) fail(path, "cannot read the header");
  header.magic = load_le32(raw);
  header.version = load_le32(raw + 4);
  header.num_tokens = load_le32(raw + 8);
  if (header.magic != kShardMagic) {
    fail(path, "wrong magic number " + std::to_string(header.magic) + " (an llm.c token shard starts with " +
                   std::to_string(kShardMagic) + ")");
  }
  if (header.version != kShardVersion) {
    fail(path, "unsupported version " + std::to_string(header.version) + " (only version " +
                   std::to_string(kShardVersion) + ", uint16 tokens, is read)");
  }
  if (header.num_tokens < 0) fail(path, "negative token count " + std::to_string(header.num_tokens));
  const std::uint64_t payload = header.file_bytes - kShardHeaderBytes;
  if (payload != 2 * static_cast<std::uint64_t>(header.num_tokens)) {
    fail(path, "header says " + std::to_string(header.num_tokens) + " tokens (" +
                   std::to_string(2 * header.num_tokens) + " bytes after the header) but the file has " +
                   std::to_string(payload) + " bytes after the header (truncated or not a shard?)");
  }
  return header;
}

}  // namespace

void write_shard(const std::string& path, const std::vector<std::uint16_t>& tokens) {
  if (tokens.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
    fail(path, std::to_string(tokens.size()) + " tokens do not fit the header's int32 count; split into more shards");
  }
  unsigned char header[kShardHeaderBytes] = {};
  store_le32(header, kShardMagic);
  store_le32(header + 4, kShardVersion);
  store_le32(header + 8, static_cast<std::int32_t>(tokens.size()));
  std::vector<unsigned char> body(2 * tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    body[2 * i] = static_cast<unsigned char>(tokens[i] & 0xFF);
    body[2 * i + 1] = static_cast<unsigned char>(tokens[i] >> 8);
  }
  const std::string temporary = path + ".partial";
  {
    File f(std::fopen(temporary.c_str(), "wb"));
    if (!f) fail(path, "cannot create '" + temporary + "': " + std::strerror(errno));
    const bool written = std::fwrite(header, 1, sizeof header, f.get()) == sizeof header &&
                         std::fwrite(body.data(), 1, body.size(), f.get()) == body.size();
    if (!written || std::fflush(f.get()) != 0) {
      const std::string reason = std::strerror(errno);
      f.reset();
      std::remove(temporary.c_str());
      fail(path, "write failed: " + reason);
    }
  }
  std::error_code ec;
  fs::rename(temporary, path, ec);
  if (ec) {
    std::remove(temporary.c_str());
    fail(path, "cannot move the finished file into place: " + ec.message());
  }
}

ShardHeader read_shard_header(const std::string& path) {
  const File f = open_for_reading(path);
  return read_header_from(f.get(), path);
}

std::vector<std::uint16_t> read_shard(const std::string& path, int vocab_size) {
  const File f = open_for_reading(path);
  const ShardHeader header = read_header_from(f.get(), path);
  const auto count = static_cast<std::size_t>(header.num_tokens);
  std::vector<unsigned char> raw(2 * count);
  if (std::fread(raw.data(), 1, raw.size(), f.get()) != raw.size()) fail(path, "cannot read the tokens");
  std::vector<std::uint16_t> tokens(count);
  for (std::size_t i = 0; i < count; ++i) {
    tokens[i] = static_cast<std::uint16_t>(raw[2 * i] | raw[2 * i + 1] << 8);
    if (tokens[i] >= vocab_size) {
      fail(path, "token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                     " is outside the vocabulary of " + std::to_string(vocab_size) +
                     " (shard made with another tokenizer?)");
    }
  }
  return tokens;
}

std::vector<std::string> find_split_shards(const std::string& dir, const std::string& split) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw DataError("shard directory '" + dir + "': not a directory");
  const std::string whole = "_" + split + ".bin", numbered = "_" + split + "_";
  std::vector<std::string> shards;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const bool is_bin = name.size() > 4 && name.compare(name.size() - 4, 4, ".bin") == 0;
    const bool matches = (name.size() > whole.size() && name.compare(name.size() - whole.size(), whole.size(), whole) == 0) ||
                         (is_bin && name.find(numbered) != std::string::npos);
    if (matches && entry.is_regular_file()) shards.push_back(entry.path().string());
  }
  if (shards.empty()) {
    throw DataError("shard directory '" + dir + "': no " + split + " shards (files named *_" + split + ".bin or *_" +
                    split + "_*.bin)");
  }
  std::sort(shards.begin(), shards.end());
  return shards;
}

std::vector<std::string> resolve_shards(const std::string& spec, const std::string& split) {
  std::error_code ec;
  if (fs::is_directory(spec, ec)) return find_split_shards(spec, split);
  if (spec.find_first_of("*?[") == std::string::npos) return {spec};
  glob_t matches{};
  const int rc = ::glob(spec.c_str(), 0, nullptr, &matches);
  std::vector<std::string> shards;
  if (rc == 0) shards.assign(matches.gl_pathv, matches.gl_pathv + matches.gl_pathc);
  ::globfree(&matches);
  if (shards.empty()) throw DataError("no shard file matches '" + spec + "'");
  std::sort(shards.begin(), shards.end());
  return shards;
}

}  // namespace ra::data
