// ra-data's command line end to end: tokenizing files into train/val
// shards, refusing to overwrite them without --force, --inspect on a good
// and a bad shard.
#include "run_command.hpp"
#include "test_data_util.hpp"

#include <ra/data/shard.hpp>


#include <cstdio>

using namespace ra::data::testing;
using Catch::Matchers::Contains;

namespace {

using ra::testing::Outcome;
Outcome run_ra_data(const std::string& args) { return ra::testing::run_command(RA_DATA_BIN, args); }

}  // namespace

TEST_CASE("ra-data: --help and bad options", "[cli]") {
  const auto help = run_ra_data("--help");
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.output, Contains("--val-fraction") && Contains("--inspect") && Contains("--force"));
  const auto bad = run_ra_data("--val-fraction 0.9 x.txt --out-dir /tmp");
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.output, Contains("--val-fraction"));
  const auto no_out = run_ra_data("x.txt");
  CHECK(no_out.exit_code == 1);
  CHECK_THAT(no_out.output, Contains("--out-dir is required"));
}

TEST_CASE("ra-data: text files to shards, never overwritten without --force", "[cli][gpt2]") {
  if (!tokenizer_files_present()) RA_DATA_SKIP(missing_tokenizer_message());
  TempDir dir;
  std::filesystem::create_directories(dir.file("docs"));
  write_bytes(dir.file("docs/1.txt"), "Hello world");
  write_bytes(dir.file("docs/2.txt"), "Second document.\n");
  write_bytes(dir.file("docs/3.txt"), "The third one is for validation.");
  const std::string args = "--name t --out-dir '" + dir.file("out") + "' '" + dir.file("docs") + "'";

  const auto made = run_ra_data(args + " --val-fraction 0.34");
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  CHECK_THAT(made.output, Contains("1 of 3 documents") && Contains("MB/s"));
  auto& tok = gpt2_tokenizer();
  const auto train = ra::data::read_shard(dir.file("out/t_train_000000.bin"), 50257);
  const auto val = ra::data::read_shard(dir.file("out/t_val_000000.bin"), 50257);
  CHECK(tok.decode(train.data(), train.size()) == "<|endoftext|>Hello world<|endoftext|>Second document.\n");
  CHECK(train[0] == 50256);
  CHECK(train[1] == 15496);
  CHECK(tok.decode(val.data(), val.size()) == "<|endoftext|>The third one is for validation.");

  const auto again = run_ra_data(args + " --val-fraction 0.34");
  CHECK(again.exit_code == 1);
  CHECK_THAT(again.output, Contains("already has shards named 't'") && Contains("--force"));
  const auto forced = run_ra_data(args + " --force --val-fraction 0");
  CHECK(forced.exit_code == 0);
  CHECK(!std::filesystem::exists(dir.file("out/t_val_000000.bin")));  // the old val shard went too
  CHECK(ra::data::read_shard_header(dir.file("out/t_train_000000.bin")).num_tokens ==
        static_cast<std::int64_t>(train.size() + val.size()));

  // One document: the last tokens are the validation split.
  const auto single = run_ra_data("--name one --val-fraction 0.5 --out-dir '" + dir.file("out") + "' '" + dir.file("docs/1.txt") + "'");
  CHECK(single.exit_code == 0);
  CHECK_THAT(single.output, Contains("the last 2 tokens"));
  CHECK(ra::data::read_shard(dir.file("out/one_val_000000.bin"), 50257) == std::vector<std::uint16_t>{15496, 995});
}

TEST_CASE("ra-data --inspect validates a shard and shows its first tokens", "[cli]") {
  TempDir dir;
  ra::data::write_shard(dir.file("s.bin"), {50256, 15496, 995});
  const auto shown = run_ra_data("--inspect '" + dir.file("s.bin") + "'");
  CHECK(shown.exit_code == 0);
  CHECK_THAT(shown.output, Contains("magic 20240520, version 1, 3 tokens (1030 bytes)") &&
                               Contains("documents): 1") && Contains("50256 15496 995"));
  if (tokenizer_files_present()) CHECK_THAT(shown.output, Contains("decoded: \"<|endoftext|>Hello world\""));

  write_bytes(dir.file("bad.bin"), std::string(2000, 'x'));
  const auto bad = run_ra_data("--inspect '" + dir.file("bad.bin") + "'");
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.output, Contains("shard '" + dir.file("bad.bin") + "': wrong magic number"));
}
