// Batches of tokens for training, read from llm.c-format shards in a fixed
// order (as llm.c's DataLoader, without shuffling):
//
//   * a "step" takes the next B*T*world+1 tokens of the current shard; rank r
//     gets the B*T+1 tokens starting at r*B*T of them: inputs are the first
//     B*T, targets the same shifted by one (row b = tokens [b*T, b*T+T]);
//   * when the shard has no room for another step, the next shard starts;
//     after the last shard the first one comes again and the epoch counts up
//     (the tokens past the last full step of a shard are not used);
//   * LoaderPosition (shard, offset, epoch) is the same on every rank, and
//     seek(position()) resumes exactly where a checkpoint was taken.
//
// Shard headers are all checked when the loader is made (missing files,
// corrupt headers, shards too small for one step), and the first shard is
// read then, so bad input is refused before training starts; every shard's
// tokens are checked against the vocabulary when it is read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ra::data {

struct BatchShape {
  int batch = 0;    // B: sequences per rank and step
  int context = 0;  // T: tokens per sequence
  int rank = 0;     // this process's rank, 0 <= rank < world
  int world = 1;    // number of data-parallel ranks
};

// Where the next step starts. `offset` is in tokens from the start of shard
// `shard`; `epoch` counts completed passes over all shards.
struct LoaderPosition {
  std::uint64_t shard = 0;
  std::uint64_t offset = 0;
  std::uint64_t epoch = 0;
  bool operator==(const LoaderPosition& o) const {
    return shard == o.shard && offset == o.offset && epoch == o.epoch;
  }
  bool operator!=(const LoaderPosition& o) const { return !(*this == o); }
};

struct Batch {
  int batch = 0, context = 0;
  std::vector<std::int32_t> inputs;   // [batch][context], row-major
  std::vector<std::int32_t> targets;  // inputs shifted by one token
  LoaderPosition position;            // where this batch's step started
};

class TokenLoader {
 public:
  TokenLoader(std::vector<std::string> shard_paths, BatchShape shape, int vocab_size);

  // This rank's batch of the next step; advances the position.
  Batch next();
  void next(Batch& batch);  // the same, reusing `batch`'s buffers

  LoaderPosition position() const { return position_; }
  // Restores a position saved by position(); throws DataError if it does not
  // fit these shards and shape (a checkpoint from other data, batch, context
  // or world size).
  void seek(const LoaderPosition& position);

  std::uint64_t tokens_per_step() const { return step_tokens_; }  // B*T*world
  std::uint64_t steps_per_epoch() const { return steps_per_epoch_; }
  const std::vector<std::string>& shard_paths() const { return paths_; }
  const BatchShape& shape() const { return shape_; }

 private:
  void load_shard(std::uint64_t index);
  std::uint64_t steps_in_shard(std::uint64_t index) const;

  std::vector<std::string> paths_;
  std::vector<std::uint64_t> shard_tokens_;
  BatchShape shape_;
  int vocab_size_;
  std::uint64_t step_tokens_ = 0;
  std::uint64_t steps_per_epoch_ = 0;
  LoaderPosition position_;
  std::uint64_t loaded_index_ = ~std::uint64_t{0};
  std::vector<std::uint16_t> tokens_;
};

// A fixed validation set: the first min(max_batches, steps in one pass)
// steps of `shard_paths`, read once and kept, identical on every call (this
// rank's share of each step). Throws DataError if not even one step fits.
class ValidationSet {
 public:
  ValidationSet(std::vector<std::string> shard_paths, BatchShape shape, int vocab_size, int max_batches);

  const std::vector<Batch>& batches() const { return batches_; }
  std::size_t size() const { return batches_.size(); }

 private:
  std::vector<Batch> batches_;
};

}  // namespace ra::data
