// ra-train's checkpoints: one HDF5 file next to the run file holding the
// whole training state, so --resume continues the same curve.
//
//   /params, /adam_m, /adam_v   1-D float32, the model's flat buffers
//                               (ra::model::ParamLayout order)
//   /args                       1-D strings: the run's options (re-parsed on resume)
//   root attributes             step, optimizer_steps, tokens (int64),
//                               elapsed_seconds (float64), loader_shard,
//                               loader_offset, loader_epoch,
//                               data_parallel_ranks (int64),
//                               rows_<table> (int64: rows of each run-file
//                               table at this step), config (JSON), model
//                               (GPTConfig::describe), format
//
// The training has no random state beyond the initial seed (no dropout; the
// loader reads in a fixed order), so the loader position is the only stream
// position to save.
//
// Written to "<path>.tmp", fsynced, then renamed over <path>: a kill at any
// moment leaves either the previous checkpoint or the new one, never half of
// one.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ra/data/loader.hpp>

namespace ra::train {

inline constexpr const char* kCheckpointFormat = "ra-train-checkpoint/1";

struct Checkpoint {
  std::vector<float> params, adam_m, adam_v;
  std::int64_t step = 0;             // training steps done (the last logged step)
  std::int64_t optimizer_steps = 0;  // AdamW's step count (bias correction)
  std::int64_t tokens = 0;           // training tokens seen
  double elapsed_seconds = 0;        // wall clock of the run so far
  std::int64_t ranks = 1;            // data-parallel ranks the run trains on (resume needs as many)
  ra::data::LoaderPosition loader;
  std::map<std::string, std::int64_t> table_rows;  // run-file table -> rows at this step
  std::vector<std::string> args;                   // the run's options
  std::string config_json, model;
};

void write_checkpoint(const std::string& path, const Checkpoint& ckpt);
// Throws std::runtime_error naming the path and what is wrong (missing,
// not HDF5, not a checkpoint, a missing part, inconsistent buffer sizes).
Checkpoint read_checkpoint(const std::string& path);

// "<run>.h5" -> "<run>.ckpt.h5".
std::string checkpoint_path_for(const std::string& run_path);

}  // namespace ra::train
