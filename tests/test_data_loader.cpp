// The training token loader: batch contents, determinism, rank slicing,
// advancing through shards and wrapping around (epochs), saving and
// restoring its position, the fixed validation set, and refused input.
#include "test_data_util.hpp"

#include <ra/data/error.hpp>
#include <ra/data/loader.hpp>
#include <ra/data/shard.hpp>

using ra::data::Batch;
using ra::data::BatchShape;
using ra::data::LoaderPosition;
using ra::data::TokenLoader;
using namespace ra::data::testing;
using Catch::Matchers::Contains;

namespace {

constexpr int kVocab = 50257;

// Shards whose tokens encode where they are: shard s, index i -> s*1000 + i,
// so every batch says which tokens it took.
std::vector<std::string> numbered_shards(const TempDir& dir, const std::vector<int>& sizes) {
  std::vector<std::string> paths;
  for (std::size_t s = 0; s < sizes.size(); ++s) {
    std::vector<std::uint16_t> tokens(sizes[s]);
    for (int i = 0; i < sizes[s]; ++i) tokens[i] = static_cast<std::uint16_t>(s * 1000 + i);
    paths.push_back(dir.file("t_train_00000" + std::to_string(s) + ".bin"));
    ra::data::write_shard(paths.back(), tokens);
  }
  return paths;
}

std::vector<Batch> take(TokenLoader& loader, int steps) {
  std::vector<Batch> batches;
  for (int i = 0; i < steps; ++i) batches.push_back(loader.next());
  return batches;
}

bool same_tokens(const Batch& a, const Batch& b) { return a.inputs == b.inputs && a.targets == b.targets; }

}  // namespace

TEST_CASE("loader: a batch is B*T inputs and the same shifted by one as targets", "[loader]") {
  TempDir dir;
  TokenLoader loader(numbered_shards(dir, {100}), BatchShape{2, 4}, kVocab);
  const Batch b = loader.next();
  CHECK(b.batch == 2);
  CHECK(b.context == 4);
  CHECK(b.inputs == std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(b.targets == std::vector<std::int32_t>{1, 2, 3, 4, 5, 6, 7, 8});
  CHECK(b.position == LoaderPosition{0, 0, 0});
  CHECK(loader.position() == LoaderPosition{0, 8, 0});
  CHECK(loader.next().inputs.front() == 8);
  CHECK(loader.tokens_per_step() == 8);
}

TEST_CASE("loader: the same shards and shape give the same batches", "[loader]") {
  TempDir dir;
  const auto shards = numbered_shards(dir, {61, 45, 90});
  TokenLoader first(shards, BatchShape{3, 5}, kVocab), second(shards, BatchShape{3, 5}, kVocab);
  const auto a = take(first, 40), b = take(second, 40);
  for (std::size_t i = 0; i < a.size(); ++i) {
    REQUIRE(same_tokens(a[i], b[i]));
    REQUIRE(a[i].position == b[i].position);
  }
}

TEST_CASE("loader: ranks take disjoint consecutive slices of each step", "[loader]") {
  TempDir dir;
  const auto shards = numbered_shards(dir, {200, 130});
  const int B = 2, T = 6, world = 3;
  TokenLoader whole(shards, BatchShape{B * world, T}, kVocab);
  std::vector<TokenLoader> ranks;
  for (int r = 0; r < world; ++r) ranks.emplace_back(shards, BatchShape{B, T, r, world}, kVocab);
  CHECK(ranks[0].steps_per_epoch() == whole.steps_per_epoch());
  for (int step = 0; step < 12; ++step) {
    const Batch all = whole.next();
    std::vector<std::int32_t> inputs, targets;
    for (auto& rank : ranks) {
      const Batch part = rank.next();
      REQUIRE(part.position == all.position);  // one position for every rank
      inputs.insert(inputs.end(), part.inputs.begin(), part.inputs.end());
      targets.insert(targets.end(), part.targets.begin(), part.targets.end());
    }
    REQUIRE(inputs == all.inputs);
    REQUIRE(targets == all.targets);
  }
}

TEST_CASE("loader: advances through the shards and wraps around, counting epochs", "[loader]") {
  TempDir dir;
  // Step = 2*4 = 8 tokens (+1 target): shard 0 (30 tokens) has 3 steps
  // (offsets 0, 8, 16; 24+9 > 30), shard 1 (17 tokens) 2 steps (0, 8).
  TokenLoader loader(numbered_shards(dir, {30, 17}), BatchShape{2, 4}, kVocab);
  REQUIRE(loader.steps_per_epoch() == 5);
  const auto epoch0 = take(loader, 5);
  const std::vector<LoaderPosition> expected = {{0, 0, 0}, {0, 8, 0}, {0, 16, 0}, {1, 0, 0}, {1, 8, 0}};
  for (std::size_t i = 0; i < expected.size(); ++i) CHECK(epoch0[i].position == expected[i]);
  CHECK(epoch0[3].inputs.front() == 1000);  // shard 1's first token
  CHECK(epoch0[4].targets.back() == 1016);  // shard 1's last token used: index 16 of 17
  CHECK(loader.position() == LoaderPosition{0, 0, 1});
  const auto epoch1 = take(loader, 5);
  for (std::size_t i = 0; i < epoch0.size(); ++i) {
    CHECK(same_tokens(epoch0[i], epoch1[i]));
    CHECK(epoch1[i].position.epoch == 1);
  }
}

TEST_CASE("loader: a saved position resumes exactly", "[loader]") {
  TempDir dir;
  const auto shards = numbered_shards(dir, {50, 33, 41});
  const BatchShape shape{1, 7, 1, 2};
  TokenLoader uninterrupted(shards, shape, kVocab);
  take(uninterrupted, 4);
  const LoaderPosition saved = uninterrupted.position();
  const auto expected = take(uninterrupted, 9);  // crosses shards and an epoch

  TokenLoader resumed(shards, shape, kVocab);
  resumed.seek(saved);
  CHECK(resumed.position() == saved);
  const auto got = take(resumed, 9);
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(same_tokens(got[i], expected[i]));
    CHECK(got[i].position == expected[i].position);
  }
  CHECK(resumed.position() == uninterrupted.position());

  CHECK_THROWS_WITH(resumed.seek({3, 0, 0}), Contains("there are only 3 shards"));
  CHECK_THROWS_WITH(resumed.seek({0, 5, 0}), Contains("offset is not the start of a step of 14 tokens"));
  CHECK_THROWS_WITH(resumed.seek({1, 28, 0}), Contains("offset is not the start of a step of 14 tokens in shard '" + shards[1]));
}

TEST_CASE("loader: the validation set is the first batches, always the same", "[loader]") {
  TempDir dir;
  const auto shards = numbered_shards(dir, {40, 25});
  const BatchShape shape{1, 8};
  const ra::data::ValidationSet val(shards, shape, kVocab, 3), again(shards, shape, kVocab, 3);
  REQUIRE(val.size() == 3);
  TokenLoader loader(shards, shape, kVocab);
  for (std::size_t i = 0; i < val.size(); ++i) {
    const Batch b = loader.next();
    CHECK(same_tokens(val.batches()[i], b));
    CHECK(same_tokens(val.batches()[i], again.batches()[i]));
  }
  // Never wraps: at most one pass (4 + 3 steps here).
  CHECK(ra::data::ValidationSet(shards, shape, kVocab, 100).size() == 7);
  CHECK_THROWS_WITH(ra::data::ValidationSet(shards, shape, kVocab, 0), Contains("max_batches 0 must be >= 1"));
}

TEST_CASE("loader: bad shards and shapes are refused before the first batch", "[loader]") {
  TempDir dir;
  const auto shards = numbered_shards(dir, {40});
  CHECK_THROWS_WITH(TokenLoader({}, BatchShape{1, 4}, kVocab), Contains("no shard files"));
  CHECK_THROWS_WITH(TokenLoader(shards, BatchShape{0, 4}, kVocab), Contains("batch 0 and context 4 must both be >= 1"));
  CHECK_THROWS_WITH(TokenLoader(shards, BatchShape{1, 4, 2, 2}, kVocab), Contains("rank 2 is not in 0..1"));
  CHECK_THROWS_WITH(TokenLoader(shards, BatchShape{4, 10}, kVocab),
                    Contains("shard '" + shards[0] + "': 40 tokens, too few for one step of batch*context*world+1 = 41"));
  CHECK_THROWS_WITH(TokenLoader({shards[0], dir.file("gone.bin")}, BatchShape{1, 4}, kVocab),
                    Contains("shard '" + dir.file("gone.bin") + "': cannot open"));
  // Tokens are checked against the model's vocabulary when a shard is read.
  CHECK_THROWS_WITH(TokenLoader(shards, BatchShape{1, 4}, 30), Contains("token 30 at index 30 is outside the vocabulary of 30"));
}
