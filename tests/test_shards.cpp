// llm.c-format token shards: round trip, a shard laid out byte by byte as
// llm.c writes it, every malformed-shard message, and finding shard files.
#include "test_data_util.hpp"

#include <ra/data/error.hpp>
#include <ra/data/shard.hpp>

#include <cstdint>

using ra::data::DataError;
using namespace ra::data::testing;
using Catch::Matchers::Contains;

namespace {

void put_le32(std::string& out, std::int32_t value) {
  for (int k = 0; k < 4; ++k) out.push_back(static_cast<char>(static_cast<std::uint32_t>(value) >> (8 * k)));
}

// A shard as llm.c's data scripts write it (numpy: int32 header[256] with
// magic, version, count; then uint16 tokens; little-endian), built by hand.
std::string llmc_shard_bytes(std::int32_t magic, std::int32_t version, std::int32_t count,
                             const std::vector<std::uint16_t>& tokens) {
  std::string bytes;
  put_le32(bytes, magic);
  put_le32(bytes, version);
  put_le32(bytes, count);
  bytes.append(4 * 253, '\0');
  for (auto t : tokens) {
    bytes.push_back(static_cast<char>(t & 0xFF));
    bytes.push_back(static_cast<char>(t >> 8));
  }
  return bytes;
}

}  // namespace

TEST_CASE("shards: write then read gives the same tokens and header", "[shards]") {
  TempDir dir;
  const std::vector<std::uint16_t> tokens = {50256, 15496, 995, 0, 1, 65535 % 50257, 50255};
  ra::data::write_shard(dir.file("a.bin"), tokens);
  CHECK(ra::data::read_shard(dir.file("a.bin"), 50257) == tokens);
  const auto header = ra::data::read_shard_header(dir.file("a.bin"));
  CHECK(header.magic == 20240520);
  CHECK(header.version == 1);
  CHECK(header.num_tokens == 7);
  CHECK(header.file_bytes == 1024 + 2 * 7);
  CHECK(!std::filesystem::exists(dir.file("a.bin.partial")));

  ra::data::write_shard(dir.file("empty.bin"), {});
  CHECK(ra::data::read_shard(dir.file("empty.bin"), 50257).empty());
}

TEST_CASE("shards: a shard in llm.c's layout is read, and ours is byte-identical to it", "[shards]") {
  TempDir dir;
  const std::vector<std::uint16_t> tokens = {50256, 464, 3290, 7586, 13, 258, 1};
  const std::string llmc = llmc_shard_bytes(20240520, 1, 7, tokens);
  write_bytes(dir.file("tiny_shakespeare_val.bin"), llmc);
  CHECK(ra::data::read_shard(dir.file("tiny_shakespeare_val.bin"), 50257) == tokens);
  ra::data::write_shard(dir.file("ours.bin"), tokens);
  CHECK(read_bytes(dir.file("ours.bin")) == llmc);
}

TEST_CASE("shards: every malformed shard is refused with the file and the problem named", "[shards]") {
  TempDir dir;
  const auto read = [&](const std::string& name) { return ra::data::read_shard(dir.file(name), 50257); };
  const auto shard_named = [&](const std::string& name) { return "shard '" + dir.file(name) + "': "; };

  CHECK_THROWS_WITH(read("missing.bin"), Contains(shard_named("missing.bin") + "cannot open: No such file or directory"));
  std::filesystem::create_directory(dir.file("folder.bin"));
  CHECK_THROWS_WITH(read("folder.bin"), Contains(shard_named("folder.bin") + "is a directory"));

  write_bytes(dir.file("short.bin"), std::string(100, '\0'));
  CHECK_THROWS_WITH(read("short.bin"), Contains(shard_named("short.bin") + "too short: 100 bytes, less than the 1024-byte header"));

  write_bytes(dir.file("magic.bin"), llmc_shard_bytes(12345, 1, 2, {1, 2}));
  CHECK_THROWS_WITH(read("magic.bin"), Contains(shard_named("magic.bin") + "wrong magic number 12345"));

  write_bytes(dir.file("version.bin"), llmc_shard_bytes(20240520, 2, 2, {1, 2}));
  CHECK_THROWS_WITH(read("version.bin"), Contains(shard_named("version.bin") + "unsupported version 2"));

  write_bytes(dir.file("count.bin"), llmc_shard_bytes(20240520, 1, 10, {1, 2, 3, 4, 5, 6, 7, 8, 9}));
  CHECK_THROWS_WITH(read("count.bin"), Contains(shard_named("count.bin") +
                                                "header says 10 tokens (20 bytes after the header) but the file has 18 bytes"));
  write_bytes(dir.file("odd.bin"), llmc_shard_bytes(20240520, 1, 1, {1}) + "x");
  CHECK_THROWS_WITH(read("odd.bin"), Contains("header says 1 tokens (2 bytes after the header) but the file has 3 bytes"));

  write_bytes(dir.file("negative.bin"), llmc_shard_bytes(20240520, 1, -4, {}));
  CHECK_THROWS_WITH(read("negative.bin"), Contains(shard_named("negative.bin") + "negative token count -4"));

  write_bytes(dir.file("vocab.bin"), llmc_shard_bytes(20240520, 1, 3, {5, 50257, 7}));
  CHECK_THROWS_WITH(read("vocab.bin"), Contains(shard_named("vocab.bin") +
                                                "token 50257 at index 1 is outside the vocabulary of 50257"));
  CHECK(ra::data::read_shard(dir.file("vocab.bin"), 50304) == std::vector<std::uint16_t>{5, 50257, 7});

  // Header-only reads check the same things but the tokens.
  CHECK_THROWS_WITH(ra::data::read_shard_header(dir.file("count.bin")), Contains("header says 10 tokens"));
  CHECK(ra::data::read_shard_header(dir.file("vocab.bin")).num_tokens == 3);

  CHECK_THROWS_WITH(ra::data::write_shard(dir.file("no/such/dir/x.bin"), {1}),
                    Contains("shard '" + dir.file("no/such/dir/x.bin") + "': cannot create"));
}

TEST_CASE("shards: finding the train or val shards of a folder, a glob, a file", "[shards]") {
  TempDir dir;
  for (const char* name : {"brown_train_000001.bin", "brown_train_000000.bin", "brown_val_000000.bin",
                           "tiny_shakespeare_val.bin", "notes_train.txt", "other.bin"}) {
    write_bytes(dir.file(name), "");
  }
  CHECK(ra::data::find_split_shards(dir.path, "train") ==
        std::vector<std::string>{dir.file("brown_train_000000.bin"), dir.file("brown_train_000001.bin")});
  CHECK(ra::data::find_split_shards(dir.path, "val") ==
        std::vector<std::string>{dir.file("brown_val_000000.bin"), dir.file("tiny_shakespeare_val.bin")});
  CHECK_THROWS_WITH(ra::data::find_split_shards(dir.path, "test"), Contains("no test shards"));
  CHECK_THROWS_WITH(ra::data::find_split_shards(dir.file("other.bin"), "train"), Contains("not a directory"));

  CHECK(ra::data::resolve_shards(dir.path, "val").size() == 2);
  CHECK(ra::data::resolve_shards(dir.file("brown_train_*.bin"), "train") ==
        std::vector<std::string>{dir.file("brown_train_000000.bin"), dir.file("brown_train_000001.bin")});
  CHECK(ra::data::resolve_shards(dir.file("other.bin"), "train") == std::vector<std::string>{dir.file("other.bin")});
  CHECK_THROWS_WITH(ra::data::resolve_shards(dir.file("fineweb_*.bin"), "train"), Contains("no shard file matches"));
}
