#include <ra/data/error.hpp>
#include <ra/data/loader.hpp>
#include <ra/data/shard.hpp>

#include <algorithm>

namespace ra::data {

TokenLoader::TokenLoader(std::vector<std::string> shard_paths, BatchShape shape, int vocab_size)
    : paths_(std::move(shard_paths)), shape_(shape), vocab_size_(vocab_size) {
  if (paths_.empty()) throw DataError("token loader: no shard files given");
  if (shape_.batch < 1 || shape_.context < 1) {
    throw DataError("token loader: batch " + std::to_string(shape_.batch) + " and context " +
                    std::to_string(shape_.context) + " must both be >= 1");
  }
  if (shape_.world < 1 || shape_.rank < 0 || shape_.rank >= shape_.world) {
    throw DataError("token loader: rank " + std::to_string(shape_.rank) + " is not in 0.." +
                    std::to_string(shape_.world - 1) + " (world size " + std::to_string(shape_.world) + ")");
  }
  step_tokens_ = static_cast<std::uint64_t>(shape_.batch) * shape_.context * shape_.world;
  for (const auto& path : paths_) {
    const ShardHeader header = read_shard_header(path);
    shard_tokens_.push_back(static_cast<std::uint64_t>(header.num_tokens));
    const std::uint64_t steps = steps_in_shard(shard_tokens_.size() - 1);
    if (steps == 0) {
      throw DataError("shard '" + path + "': " + std::to_string(header.num_tokens) +
                      " tokens, too few for one step of batch*context*world+1 = " + std::to_string(step_tokens_ + 1) +
                      " tokens (lower the batch or context)");
    }
    steps_per_epoch_ += steps;
  }
  load_shard(0);
}

std::uint64_t TokenLoader::steps_in_shard(std::uint64_t index) const {
  // Steps start at 0, S, 2S, ... and each reads S+1 tokens (the last target).
  const std::uint64_t n = shard_tokens_[index];
  return n == 0 ? 0 : (n - 1) / step_tokens_;
}

void TokenLoader::load_shard(std::uint64_t index) {
  if (index == loaded_index_) return;
  tokens_ = read_shard(paths_[index], vocab_size_);
  if (tokens_.size() != shard_tokens_[index]) {
    throw DataError("shard '" + paths_[index] + "': changed while in use (" + std::to_string(shard_tokens_[index]) +
                    " tokens when opened, " + std::to_string(tokens_.size()) + " now)");
  }
  loaded_index_ = index;
}

Batch TokenLoader::next() {
  Batch batch;
  next(batch);
  return batch;
}

void TokenLoader::next(Batch& batch) {
  load_shard(position_.shard);
  const std::size_t count = static_cast<std::size_t>(shape_.batch) * shape_.context;
  const std::uint16_t* begin = tokens_.data() + position_.offset + static_cast<std::uint64_t>(shape_.rank) * count;
  batch.batch = shape_.batch;
  batch.context = shape_.context;
  batch.inputs.assign(begin, begin + count);
  batch.targets.assign(begin + 1, begin + count + 1);
  batch.position = position_;

  position_.offset += step_tokens_;
  if (position_.offset / step_tokens_ >= steps_in_shard(position_.shard)) {
    position_.offset = 0;
    if (++position_.shard == paths_.size()) {
      position_.shard = 0;
      ++position_.epoch;
    }
  }
}

void TokenLoader::seek(const LoaderPosition& position) {
  const auto describe = [&] {
    return "token loader: cannot resume at shard " + std::to_string(position.shard) + ", offset " +
           std::to_string(position.offset) + ", epoch " + std::to_string(position.epoch) + ": ";
  };
  if (position.shard >= paths_.size()) {
    throw DataError(describe() + "there are only " + std::to_string(paths_.size()) + " shards");
  }
  if (position.offset % step_tokens_ != 0 || position.offset / step_tokens_ >= steps_in_shard(position.shard)) {
    throw DataError(describe() + "the offset is not the start of a step of " + std::to_string(step_tokens_) +
                    " tokens in shard '" + paths_[position.shard] +
                    "' (saved with other data, batch, context or world size?)");
  }
  load_shard(position.shard);
  position_ = position;
}

ValidationSet::ValidationSet(std::vector<std::string> shard_paths, BatchShape shape, int vocab_size, int max_batches) {
  if (max_batches < 1) throw DataError("validation set: max_batches " + std::to_string(max_batches) + " must be >= 1");
  TokenLoader loader(std::move(shard_paths), shape, vocab_size);
  const auto count = std::min<std::uint64_t>(static_cast<std::uint64_t>(max_batches), loader.steps_per_epoch());
  batches_.resize(count);
  for (auto& batch : batches_) loader.next(batch);
}

}  // namespace ra::data
