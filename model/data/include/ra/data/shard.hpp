// Token shards in llm.c's format, so shards made here and by llm.c's scripts
// (TinyStories, FineWeb, tinyshakespeare) are interchangeable:
//
//   bytes 0..1023   256 little-endian int32: [0] magic 20240520, [1] version 1,
//                   [2] token count; the rest zero
//   bytes 1024..    the tokens, little-endian uint16
//
// Every reader validates and throws DataError with the file's path and the
// problem: cannot open, shorter than the header, wrong magic or version, a
// token count that does not match the file size, a token >= the vocabulary.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ra::data {

inline constexpr std::int32_t kShardMagic = 20240520;
inline constexpr std::int32_t kShardVersion = 1;
inline constexpr std::size_t kShardHeaderInts = 256;
inline constexpr std::size_t kShardHeaderBytes = kShardHeaderInts * 4;

struct ShardHeader {
  std::int32_t magic = 0;
  std::int32_t version = 0;
  std::int64_t num_tokens = 0;
  std::uint64_t file_bytes = 0;
};

// Writes `tokens` to `path` through a temporary file renamed into place, so
// a reader never sees a half-written shard. At most INT32_MAX tokens (the
// header's count is an int32).
void write_shard(const std::string& path, const std::vector<std::uint16_t>& tokens);

// Validates the header against the file size without reading the tokens.
ShardHeader read_shard_header(const std::string& path);

// Reads and validates the whole shard, including every token < vocab_size.
std::vector<std::uint16_t> read_shard(const std::string& path, int vocab_size);

// The shards of one split in `dir`, sorted: files named *_<split>.bin or
// *_<split>_*.bin (ra-data's "brown_train_000000.bin" as well as llm.c's
// "tiny_shakespeare_val.bin" and "fineweb_train_000001.bin"). Throws if
// `dir` is not a directory or holds none.
std::vector<std::string> find_split_shards(const std::string& dir, const std::string& split);

// A shard list from a user's argument: a directory (with `split`, as
// find_split_shards), a glob pattern such as "data/fineweb_train_*.bin"
// (sorted matches; none is an error), or one file.
std::vector<std::string> resolve_shards(const std::string& spec, const std::string& split);

}  // namespace ra::data
