// ra-train: trains the GPT-2 model (model/) on llm.c-format token shards and
// logs every step to an HDF5 run file (README "Training"):
//
//   /train  one row per step: loss, lr, grad norm, tokens/s, phase timings
//   /val    one row every --eval-every steps: loss on a fixed validation set
//   /gates  one row per RA layer at every evaluation: mean w_std, w_rec, w_disc
//
// A checkpoint (train_checkpoint.hpp) next to the run file every
// --checkpoint-every steps and at the end; --resume RUNFILE reopens the run
// file, drops rows logged after the checkpoint and continues the same curve
// (bit for bit on Serial: nothing random is drawn after initialisation).
//
// Every input is checked before any work starts (shards, vocabulary, context,
// attention names), and a non-finite loss or gradient stops the run naming
// the step, before the optimizer could spread it into the weights.
#include <unistd.h>

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <ra/cli.hpp>
#include <ra/data/cache.hpp>
#include <ra/data/error.hpp>
#include <ra/data/loader.hpp>
#include <ra/data/shard.hpp>
#include <ra/device_info.hpp>
#include <ra/git_revision.hpp>
#include <ra/kokkos/attention.hpp>
#include <ra/model/config.hpp>
#include <ra/model/gpt2.hpp>
#include <ra/run_store.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "data_parallel.hpp"
#include "train_checkpoint.hpp"

namespace {

struct Config {
  // model
  std::string model = "gpt2-tiny";
  int layers = 0, heads = 0, width = 0, vocab = 0, max_context = 0;  // 0: the preset's
  std::string attention = "sdpa_fused";
  std::string ra_layers;  // "" : all layers when --attention is an RA variant
  int window = -1;
  std::string disc = "table";
  std::string anneal_mode = "rec_disc";
  std::string attention_precision = "float";  // storage of the attention's q, k, v, o: float or bf16
  std::string matmul_precision = "float";     // the linear layers' GEMMs: float or tf32
  long anneal_start = -1, anneal_end = -1;  // steps; w_rec scale 1 -> 0 linearly between them
  double anneal_floor = 0;                   // the scale never goes below this (the seeds' max(0.1, ...))
  // data
  std::string train, val;  // shard dir, glob or file; default: the Brown shards in the data cache
  int batch = 8, context = 0;  // context 0: the model's
  // schedule
  long steps = 0;
  double time_budget = 0;
  double lr = 1e-3, min_lr_ratio = 0.1, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, grad_clip = 1.0;
  long warmup = 20;
  long eval_every = 50;
  int val_batches = 20;
  std::uint64_t seed = 1337;
  long checkpoint_every = 0;  // 0: at the end only
  // output
  std::string out, out_dir = "runs", resume;
  std::string rendezvous_dir;  // data parallel: where the ranks meet (default: the run file's folder)
  bool serial = false, time_attention = true, quiet = false;
  // test hooks
  long stop_at_step = 0, inject_nan_at = 0;
};

// Options a resumed run may change; everything else comes from the checkpoint.
const std::set<std::string> kResumeOverrides = {"--steps", "--time-budget", "--eval-every",
                                                "--checkpoint-every", "--stop-at-step",
                                                "--inject-nan-at", "--quiet", "--resume", "--rendezvous-dir"};

void add_options(CLI::App& app, Config& c) {
  app.option_defaults()->always_capture_default()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::vector<std::string> variants;
  for (auto v : ra::kk::all_variants()) variants.push_back(ra::kk::variant_name(v));
  app.add_option("--model", c.model, "model preset")->check(CLI::IsMember(ra::model::preset_names()));
  app.add_option("--layers", c.layers, "override the preset's layers")->check(ra::cli::at_least(1));
  app.add_option("--heads", c.heads, "override the preset's heads")->check(ra::cli::at_least(1));
  app.add_option("--width", c.width, "override the preset's width C")->check(ra::cli::at_least(1));
  app.add_option("--vocab", c.vocab, "override the preset's vocabulary (must cover the shards' tokens)")
      ->check(ra::cli::at_least(1));
  app.add_option("--max-context", c.max_context, "override the preset's context T_max")
      ->check(ra::cli::at_least(1));
  app.add_option("--attention", c.attention,
                 "attention kernel; an RA variant runs in --ra-layers (default all), SDPA elsewhere")
      ->check(CLI::IsMember(variants));
  app.add_option("--ra-layers", c.ra_layers, "layers running RA, e.g. 4-8 or 0,2,5-7 (the seeds' hybrid)");
  app.add_option("--window", c.window, "ra_window's reciprocity window (tokens)")->check(ra::cli::at_least(0));
  app.add_option("--disc", c.disc, "discoverability form")->check(CLI::IsMember({"table", "content"}));
  app.add_option("--anneal-mode", c.anneal_mode, "what annealing fades: rec (w_rec) or rec_disc (w_rec and w_disc; ends at SDPA)")
      ->check(CLI::IsMember({"rec", "rec_disc"}));
  app.add_option("--attention-precision", c.attention_precision,
                 "storage of the attention's q,k,v,o and their gradients: float, or bf16 (CUDA builds, fused "
                 "variants: the tensor-core kernels; the rest of the model stays float)")
      ->check(CLI::IsMember({"float", "bf16"}));
  app.add_option("--matmul-precision", c.matmul_precision,
                 "the GEMMs of the linear layers: float; tf32 (TF32 tensor-core math on float storage); or "
                 "bf16 (bf16 copies of weights and GEMM inputs, fp32 accumulation and outputs; float master "
                 "weights, optimizer and every other layer). tf32 and bf16 need a CUDA build and device")
      ->check(CLI::IsMember({"float", "tf32", "bf16"}));
  app.add_option("--anneal-start", c.anneal_start, "step where w_rec's scale starts falling from 1 (-1: no annealing)");
  app.add_option("--anneal-end", c.anneal_end, "step where w_rec's scale reaches 0 (or --anneal-floor)");
  app.add_option("--anneal-floor", c.anneal_floor,
                 "lowest annealing scale, e.g. 0.1 for the seeds' max(0.1, 1 - step/total) (default 0: down to "
                 "SDPA under rec_disc)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--train", c.train, "training shards: directory, glob or file (default: Brown in the data cache)");
  app.add_option("--val", c.val, "validation shards (default: Brown val in the data cache)");
  app.add_option("--batch", c.batch, "sequences per step")->check(ra::cli::at_least(1));
  app.add_option("--context", c.context, "tokens per sequence (default: the model's context)")
      ->check(ra::cli::at_least(1));
  app.add_option("--steps", c.steps, "training steps (0: until --time-budget)")->check(ra::cli::at_least(0));
  app.add_option("--time-budget", c.time_budget, "wall-clock budget in seconds (0: none)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--lr", c.lr, "peak learning rate")->check(CLI::PositiveNumber);
  app.add_option("--min-lr-ratio", c.min_lr_ratio, "cosine floor as a fraction of --lr")->check(CLI::Range(0.0, 1.0));
  app.add_option("--warmup", c.warmup, "linear warm-up steps")->check(ra::cli::at_least(0));
  app.add_option("--weight-decay", c.weight_decay, "AdamW decoupled weight decay (2-D weights only)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--beta1", c.beta1, "AdamW beta1")->check(CLI::Range(0.0, 1.0));
  app.add_option("--beta2", c.beta2, "AdamW beta2")->check(CLI::Range(0.0, 1.0));
  app.add_option("--grad-clip", c.grad_clip, "clip the global gradient norm to this (0: off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--eval-every", c.eval_every, "validation every K steps")->check(ra::cli::at_least(1));
  app.add_option("--val-batches", c.val_batches, "validation set size in batches (fixed, first of the val shards)")
      ->check(ra::cli::at_least(1));
  app.add_option("--seed", c.seed, "initialisation seed");
  app.add_option("--checkpoint-every", c.checkpoint_every, "checkpoint every M steps (0: only at the end)")
      ->check(ra::cli::at_least(0));
  app.add_option("--out", c.out, "run file to create (must not exist; the checkpoint goes next to it)");
  app.add_option("--out-dir", c.out_dir, "folder for a fresh run file name when --out is not given");
  app.add_option("--rendezvous-dir", c.rendezvous_dir,
                 "data parallel (several ranks, see scripts/launch-dp.sh): a folder every rank sees, where they "
                 "exchange NCCL's id (default: the run file's folder)");
  app.add_option("--resume", c.resume, "continue the run in this run file from its checkpoint");
  app.add_flag("--serial", c.serial, "run on Kokkos::Serial (bit-reproducible reference)");
  app.add_flag("!--no-attention-timing", c.time_attention, "do not fence around attention (its share is then not logged)");
  app.add_flag("--quiet", c.quiet, "no progress line");
  app.add_option("--stop-at-step", c.stop_at_step, "stop after this step as if interrupted (checkpoint first; --resume continues)")
      ->group("Testing")->check(ra::cli::at_least(0));
  app.add_option("--inject-nan-at", c.inject_nan_at, "poison the weights before this step (tests the NaN stop)")
      ->group("Testing")->check(ra::cli::at_least(0));
  app.footer("Kokkos flags (--kokkos-num-threads=N) are accepted too.\n"
             "With --resume only --steps, --time-budget, --eval-every, --checkpoint-every and --quiet may be given again.");
  app.allow_extras();
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char ch : s) o += (ch == '"' || ch == '\\') ? std::string("\\") + ch : std::string(1, ch);
  return o + "\"";
}

std::string config_json(const Config& c, const ra::model::GPTConfig& g, int context) {
  std::ostringstream s;
  s << "{\"model\":" << json_str(c.model) << ",\"L\":" << g.L << ",\"H\":" << g.H << ",\"C\":" << g.C
    << ",\"T_max\":" << g.T_max << ",\"V\":" << g.V << ",\"Vp\":" << g.padded()
    << ",\"attention\":" << json_str(c.attention) << ",\"ra_layers\":" << json_str(g.attn.ra_layers)
    << ",\"variant\":" << json_str(g.attn.variant) << ",\"ra_variant\":" << json_str(g.attn.ra_variant)
    << ",\"window\":" << c.window << ",\"disc\":" << json_str(c.disc) << ",\"anneal_mode\":"
    << json_str(c.anneal_mode) << ",\"attention_precision\":" << json_str(c.attention_precision)
    << ",\"matmul_precision\":" << json_str(c.matmul_precision)
    << ",\"anneal_start\":" << c.anneal_start << ",\"anneal_end\":" << c.anneal_end
    << ",\"anneal_floor\":" << c.anneal_floor
    << ",\"train\":" << json_str(c.train) << ",\"val\":" << json_str(c.val) << ",\"batch\":" << c.batch
    << ",\"context\":" << context << ",\"steps\":" << c.steps << ",\"time_budget\":" << c.time_budget
    << ",\"lr\":" << c.lr << ",\"min_lr_ratio\":" << c.min_lr_ratio << ",\"warmup\":" << c.warmup
    << ",\"weight_decay\":" << c.weight_decay << ",\"beta1\":" << c.beta1 << ",\"beta2\":" << c.beta2
    << ",\"grad_clip\":" << c.grad_clip << ",\"eval_every\":" << c.eval_every
    << ",\"val_batches\":" << c.val_batches << ",\"seed\":" << c.seed
    << ",\"checkpoint_every\":" << c.checkpoint_every << ",\"serial\":" << (c.serial ? "true" : "false") << "}";
  return s.str();
}

// The model config from the preset, overrides and attention options.
ra::model::GPTConfig model_config(const Config& c) {
  auto g = ra::model::preset(c.model);
  if (c.layers) g.L = c.layers;
  if (c.heads) g.H = c.heads;
  if (c.width) g.C = c.width;
  if (c.vocab) g.V = c.vocab, g.Vp = 0;
  if (c.max_context) g.T_max = c.max_context;
  if (c.layers || c.heads || c.width || c.vocab || c.max_context) g.name = c.model + "-custom";
  const bool ra = ra::kk::is_ra(ra::kk::parse_variant(c.attention));
  if (ra) {
    // The non-RA layers run the SDPA kernel of the same family.
    g.attn.variant = c.attention == "ra_open" ? "sdpa_open" : "sdpa_fused";
    g.attn.ra_variant = c.attention;
    g.attn.ra_layers = c.ra_layers.empty() ? "all" : c.ra_layers;
  } else {
    if (!c.ra_layers.empty())
      throw std::invalid_argument("--ra-layers " + c.ra_layers + " needs an RA --attention (ra_fused, ra_open, ra_window); got " + c.attention);
    g.attn.variant = c.attention;
  }
  g.attn.window = c.window;
  g.attn.disc = ra::model::parse_disc_form(c.disc);
  g.attn.anneal = ra::model::parse_anneal(c.anneal_mode);
  g.attn.precision = ra::model::parse_attention_precision(c.attention_precision);
  g.matmul = ra::model::parse_matmul_precision(c.matmul_precision);
  g.validate();
  return g;
}

double reciprocity_scale(const Config& c, long step) {
  if (c.anneal_start < 0) return 1.0;
  if (step <= c.anneal_start) return 1.0;
  if (step >= c.anneal_end) return c.anneal_floor;
  return std::max(c.anneal_floor, 1.0 - double(step - c.anneal_start) / double(c.anneal_end - c.anneal_start));
}

// Linear warm-up, then cosine from lr to min_lr_ratio * lr over the run's
// progress: the larger of steps done / --steps and seconds / --time-budget.
double learning_rate(const Config& c, long step, double seconds) {
  if (step < c.warmup) return c.lr * double(step + 1) / double(c.warmup);
  double p = 0;
  if (c.steps > c.warmup) p = double(step - c.warmup) / double(c.steps - c.warmup);
  if (c.time_budget > 0) p = std::max(p, seconds / c.time_budget);
  p = std::clamp(p, 0.0, 1.0);
  const double min_lr = c.lr * c.min_lr_ratio;
  return min_lr + 0.5 * (1.0 + std::cos(M_PI * p)) * (c.lr - min_lr);
}

using Col = ra::Column;
using Ty = ra::Column::Type;

void create_tables(ra::RunWriter& w) {
  w.create_table(
      "train",
      {Col{"step", Ty::Int64, "", "optimizer steps done, this one included"},
       Col{"seconds", Ty::Float64, "s", "wall clock since the run started (resumed runs continue the count)"},
       Col{"tokens", Ty::Int64, "tokens", "training tokens seen"},
       Col{"loss", Ty::Float64, "nats/token", "mean cross-entropy of this step's batch (before the update)"},
       Col{"lr", Ty::Float64, "", "learning rate of this step"},
       Col{"grad_norm", Ty::Float64, "", "global L2 gradient norm before clipping"},
       Col{"tokens_per_s", Ty::Float64, "tokens/s", "batch tokens / this step's wall time"},
       Col{"forward_ms", Ty::Float64, "ms", "forward pass"},
       Col{"backward_ms", Ty::Float64, "ms", "backward pass (zero_grad included)"},
       Col{"optimizer_ms", Ty::Float64, "ms", "gradient clipping and AdamW"},
       Col{"attention_ms", Ty::Float64, "ms", "attention kernels, forward + backward (NaN when not timed)"},
       Col{"attention_share", Ty::Float64, "", "attention_ms / (forward_ms + backward_ms)"},
       Col{"rec_scale", Ty::Float64, "", "reciprocity annealing scale a (effective w_rec = a w_rec)"},
       Col{"epoch", Ty::Int64, "", "completed passes over the training shards"}},
      "one row per training step, appended as it finishes");
  w.create_table("val",
                 {Col{"step", Ty::Int64, "", "optimizer steps done"},
                  Col{"seconds", Ty::Float64, "s", "wall clock since the run started"},
                  Col{"tokens", Ty::Int64, "tokens", "training tokens seen"},
                  Col{"loss", Ty::Float64, "nats/token", "mean cross-entropy over the fixed validation set"}},
                 "validation loss every --eval-every steps and at the end");
  w.create_table("gates",
                 {Col{"step", Ty::Int64, "", "optimizer steps done"},
                  Col{"layer", Ty::Int64, "", "layer index (RA layers only)"},
                  Col{"kernel", Ty::String, "", "attention kernel the layer runs now"},
                  Col{"w_std", Ty::Float64, "", "mean over heads of the raw w_std parameter"},
                  Col{"w_rec", Ty::Float64, "", "mean over heads of the raw w_rec parameter (before annealing)"},
                  Col{"w_disc", Ty::Float64, "", "mean over heads of the raw w_disc parameter"},
                  Col{"rec_scale", Ty::Float64, "", "annealing scale applied to w_rec (and w_disc under rec_disc)"}},
                 "per-layer RA gate means at every evaluation");
}

std::vector<std::string> resolve(const std::string& spec, const std::string& split, const char* option) {
  try {
    return ra::data::resolve_shards(spec, split);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string(option) + " " + spec + ": " + e.what());
  }
}

struct Clock {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  double s() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};

std::string hms(double s) {
  char b[32];
  const long t = long(s + 0.5);
  std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  return b;
}

// SIGTERM (Slurm's time limit, a scheduler's preemption) and SIGINT (Ctrl-C)
// end the run at the next step boundary with a checkpoint, instead of losing
// the steps since the last one. The handler only sets this flag.
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

// The stream Kokkos runs exec's kernels on (what the gradient all-reduce
// must follow); only the CUDA space has one.
template <class Exec>
void* stream_of(const Exec& exec) {
#if defined(KOKKOS_ENABLE_CUDA)
  if constexpr (std::is_same_v<Exec, Kokkos::Cuda>) return exec.cuda_stream();
#endif
  (void)exec;
  return nullptr;
}

template <class Exec>
int train(const Config& c, const std::vector<std::string>& run_args, const std::string& cmdline,
          const std::optional<ra::train::Checkpoint>& resume_from, const ra::train::Ranks& ranks) {
  using Model = ra::model::GPT2<float, Exec>;
  // ---- every check before any work
  const ra::model::GPTConfig g = model_config(c);
  const int T = c.context ? c.context : g.T_max;
  if (T > g.T_max)
    throw std::invalid_argument("--context " + std::to_string(T) + " is longer than the model's context T_max = " +
                                std::to_string(g.T_max) + " (" + g.name + ")");
  if (c.steps == 0 && c.time_budget == 0) throw std::invalid_argument("give --steps N and/or --time-budget SECONDS");
  if (!ra::model::Matmul<float, Exec>::supports(g.matmul))
    throw std::invalid_argument("--matmul-precision " + c.matmul_precision +
                                " needs the CUDA execution space (tensor-core GEMMs through cuBLAS)");
  if (c.anneal_floor > 0 && c.anneal_start < 0) {
    std::ostringstream floor;
    floor << c.anneal_floor;
    throw std::invalid_argument("--anneal-floor " + floor.str() + " needs annealing (--anneal-start and --anneal-end)");
  }
  if (c.anneal_floor >= 1.0)
    throw std::invalid_argument("--anneal-floor must be below 1 (1 means no annealing)");
  if (c.anneal_start >= 0 && c.anneal_end <= c.anneal_start)
    throw std::invalid_argument("--anneal-end " + std::to_string(c.anneal_end) + " must be after --anneal-start " +
                                std::to_string(c.anneal_start));
  const std::string brown = ra::data::default_data_cache() + "/brown";
  const auto train_paths = resolve(c.train.empty() ? brown : c.train, "train", "--train");
  const auto val_paths = resolve(c.val.empty() ? brown : c.val, "val", "--val");
  if (resume_from && resume_from->ranks != ranks.world)
    throw std::invalid_argument("--resume: the run trained on " + std::to_string(resume_from->ranks) +
                                " data-parallel rank(s) and this session has " + std::to_string(ranks.world) +
                                "; resume it with the same number (the global batch and each rank's data slice "
                                "depend on it)");
  if (resume_from && c.steps > 0 && resume_from->step >= c.steps) {
    // Nothing to train: say so before the run file is reopened, so it and the
    // checkpoint stay exactly as they are (zero steps would end with NaN losses).
    if (ranks.rank == 0)
      std::fprintf(stderr, "ra-train: the run in %s is already at step %ld, not below --steps %ld: nothing to do; "
                   "ask for more steps to continue it\n", c.resume.c_str(), static_cast<long>(resume_from->step),
                   static_cast<long>(c.steps));
    return 0;
  }
  if (ranks.world > 1 && !stream_of(Exec()))
    throw std::invalid_argument("data parallel over " + std::to_string(ranks.world) +
                                " ranks needs a CUDA build with NCCL and the CUDA execution space (this run is on " +
                                Exec::name() + ")");
  // Every rank reads its own slice of each step's tokens (the loader's
  // rank/world); all ranks evaluate the same validation batches.
  const ra::data::BatchShape shape{c.batch, T, ranks.rank, ranks.world};
  const ra::data::BatchShape val_shape{c.batch, T, 0, 1};
  std::optional<ra::data::TokenLoader> loader;
  std::optional<ra::data::ValidationSet> valset;
  try {
    loader.emplace(train_paths, shape, g.V);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("training data: ") + e.what());
  }
  try {
    valset.emplace(val_paths, val_shape, g.V, c.val_batches);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("validation data: ") + e.what());
  }

  // Meet the other ranks (a world of one: nothing happens). The id file goes
  // where the run file goes unless --rendezvous-dir says otherwise.
  const std::string out_dir = !c.rendezvous_dir.empty() ? c.rendezvous_dir
                              : !c.resume.empty()       ? std::filesystem::path(c.resume).parent_path().string()
                              : !c.out.empty()          ? std::filesystem::path(c.out).parent_path().string()
                                                        : c.out_dir;
  ra::train::Collective world(ranks, out_dir);
  const bool root = world.is_root();  // only rank 0 writes the run file, checkpoints and progress

  Model model(g, c.batch, T, c.seed);
  model.set_attention_timing(c.time_attention);
  long step = 0;  // steps done
  double elapsed0 = 0;
  std::int64_t tokens = 0;
  std::string run_path;
  std::optional<ra::RunWriter> run;
  if (resume_from) {
    const auto& ck = *resume_from;
    typename Model::HostState st;
    st.params = ck.params, st.m = ck.adam_m, st.v = ck.adam_v, st.step = ck.optimizer_steps;
    model.load_state(st);
    loader->seek(ck.loader);
    step = ck.step, elapsed0 = ck.elapsed_seconds, tokens = ck.tokens;
    run_path = c.resume;
    if (root) {
      // Every session's device, so a report can tell a run resumed on other
      // hardware (read before the writer holds the file).
      std::string devices;
      try {
        const auto attrs = ra::RunReader(run_path).attributes();
        const auto it = attrs.count("session_devices") ? attrs.find("session_devices") : attrs.find("device_name");
        if (it != attrs.end()) devices = it->second;
      } catch (const std::exception&) {
      }
      run.emplace(ra::RunWriter::reopen(run_path));
      for (const auto& [table, rows] : ck.table_rows) run->truncate_rows(table, std::size_t(rows));
      run->set_attribute("resumed_at_steps", std::to_string(step));
      run->set_attribute("session_devices", (devices.empty() ? "" : devices + ";") + ra::device_info<Exec>().device_name);
      run->set_attribute("status", "running");
    }
  } else if (root) {
    run_path = c.out.empty() ? ra::unique_run_path(c.out_dir, "ra-train") : c.out;
    const auto dev = ra::device_info<Exec>();
    auto attrs = dev.attributes();
    attrs["program"] = "ra-train";
    attrs["git_revision"] = RA_GIT_REVISION;
    attrs["build_type"] = RA_BUILD_TYPE;
    attrs["command_line"] = cmdline;
    attrs["config"] = config_json(c, g, T);
    attrs["model"] = g.describe();
    // The model's precision, and the attention's where it differs.
    attrs["precision"] = std::string("float") + (c.matmul_precision != "float" ? ", matmuls " + c.matmul_precision : "") +
                         (c.attention_precision == "bf16" ? ", attention bf16" : "");
    std::string shards;
    for (const auto& p : train_paths) shards += (shards.empty() ? "" : ",") + p;
    attrs["train_shards"] = shards;
    shards.clear();
    for (const auto& p : val_paths) shards += (shards.empty() ? "" : ",") + p;
    attrs["val_shards"] = shards;
    attrs["data_parallel_ranks"] = std::to_string(ranks.world);
    attrs["session_devices"] = dev.device_name;
    // running -> finished | stopped | failed (a killed run stays "running"):
    // what ra-sweep and ra-report read to tell a run's state.
    attrs["status"] = "running";
    run.emplace(ra::RunWriter::create(run_path, attrs));
    create_tables(*run);
  }
  const std::string ckpt_path = ra::train::checkpoint_path_for(run_path);
  long last_ckpt_step = resume_from ? step : -1;

  const double B_T = double(c.batch) * T * ranks.world;  // tokens per step, all ranks
  Clock clock;
  auto seconds = [&] { return elapsed0 + clock.s(); };
  const bool tty = isatty(2) && !c.quiet && root;
  double last_val = std::nan("");
  double last_loss = std::nan("");

  auto save_checkpoint = [&] {
    if (!root) return;
    ra::train::Checkpoint ck;
    auto st = model.save_state();
    ck.params = std::move(st.params), ck.adam_m = std::move(st.m), ck.adam_v = std::move(st.v);
    ck.optimizer_steps = st.step;
    ck.step = step, ck.tokens = tokens, ck.elapsed_seconds = seconds();
    ck.ranks = ranks.world;
    ck.loader = loader->position();
    for (const char* t : {"train", "val", "gates"}) ck.table_rows[t] = std::int64_t(run->rows(t));
    ck.args = run_args;
    ck.config_json = config_json(c, g, T);
    ck.model = g.describe();
    ra::train::write_checkpoint(ckpt_path, ck);
    last_ckpt_step = step;
  };
  auto evaluate = [&] {
    double sum = 0;
    for (const auto& b : valset->batches()) {
      model.set_batch(b.inputs.data(), b.targets.data());
      sum += model.forward();
    }
    last_val = sum / double(valset->size());
    if (!root) return;
    run->append_row("val", {std::int64_t(step), seconds(), tokens, last_val});
    for (const auto& lg : model.gate_means())
      if (lg.ra)
        run->append_row("gates", {std::int64_t(step), std::int64_t(lg.layer), lg.kernel, lg.w_std, lg.w_rec,
                                  lg.w_disc, model.reciprocity_scale()});
  };
  // Rank 0 decides for all (clocks differ a little between ranks).
  // The run ends when its budget is spent at time `now` or a signal came;
  // rank 0 decides for all (clocks differ a little between ranks). Decided
  // once per step, at the time the step's row records, so the row that ends
  // a time budget is the one that reached it, and the final evaluation and
  // checkpoint always follow the decision.
  auto budget_spent = [&](double now) {
    return (c.steps > 0 && step >= c.steps) || (c.time_budget > 0 && now >= c.time_budget);
  };
  auto done = [&](double now) { return world.broadcast(budget_spent(now) || g_stop_signal != 0); };
  double now_s = seconds();
  auto set_status = [&](const std::string& status) {
    if (root) run->set_attribute("status", status);
  };
  g_stop_signal = 0;
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);

  if (root)
    std::fprintf(stderr, "ra-train: %s, B=%d T=%d%s, %s on %s, run file %s%s\n", g.describe().c_str(), c.batch, T,
                 ranks.world > 1 ? (" per rank, " + std::to_string(ranks.world) + " ranks (NCCL)").c_str() : "",
                 Exec::name(), ra::device_info<Exec>().device_name.c_str(), run_path.c_str(),
                 resume_from ? (", resumed at step " + std::to_string(step)).c_str() : "");
  if (!resume_from) evaluate();  // the curve starts at the initial loss

  ra::data::Batch batch;
  Exec exec;
  for (bool finished = done(now_s); !finished;) {
    const double t_start = clock.s();
    const double lr = learning_rate(c, step, seconds());
    const double a = reciprocity_scale(c, step);
    model.set_reciprocity_scale(a);
    if (c.inject_nan_at > 0 && step + 1 == c.inject_nan_at) {
      const auto& t = model.layout().at("lnf.w");
      Kokkos::deep_copy(Kokkos::subview(model.params(), std::make_pair(t.offset, t.offset + t.size)),
                        std::nanf(""));
    }
    loader->next(batch);
    model.set_batch(batch.inputs.data(), batch.targets.data());
    model.reset_attention_timing();
    const double t0 = clock.s();
    const double loss = world.average(model.forward());  // the mean over all ranks' tokens
    const double t1 = clock.s();
    model.zero_grad();
    model.backward();
    // Every rank's gradient of its own tokens -> their mean, on every rank:
    // the same update everywhere keeps the replicas identical.
    world.average(model.grads().data(), model.grads().size(), stream_of(exec));
    exec.fence("ra-train backward");
    const double t2 = clock.s();
    const double norm = c.grad_clip > 0 ? model.clip_grad_norm(c.grad_clip) : model.grad_norm();
    const bool finite = std::isfinite(loss) && std::isfinite(norm);
    if (finite) model.step(ra::model::AdamWConfig{lr, c.beta1, c.beta2, 1e-8, c.weight_decay});
    exec.fence("ra-train optimizer");
    const double t3 = clock.s();
    ++step;
    tokens += std::int64_t(B_T);
    const double fwd = (t1 - t0) * 1e3, bwd = (t2 - t1) * 1e3, opt = (t3 - t2) * 1e3;
    const double attn = c.time_attention ? model.attention_forward_ms() + model.attention_backward_ms() : std::nan("");
    now_s = seconds();
    if (root)
      run->append_row("train", {std::int64_t(step), now_s, tokens, loss, lr, norm, B_T / (t3 - t_start), fwd, bwd,
                              opt, attn, attn / (fwd + bwd), a, std::int64_t(batch.position.epoch)});
    if (!finite) {
      if (tty) std::fputc('\n', stderr);
      if (root)
        std::fprintf(stderr,
                   "ra-train: error: %s at step %ld (loss %g, grad norm %g, lr %g); stopping. %s keeps every "
                   "row logged; %s\n",
                   std::isfinite(loss) ? "non-finite gradient" : "non-finite loss", step, loss, norm, lr,
                   run_path.c_str(),
                   last_ckpt_step >= 0
                       ? ("the last good checkpoint is " + ckpt_path + " (step " + std::to_string(last_ckpt_step) + ")").c_str()
                       : "no checkpoint was written before it (use --checkpoint-every)");
      set_status(std::string("failed: ") + (std::isfinite(loss) ? "non-finite gradient" : "non-finite loss") +
                 " at step " + std::to_string(step));
      return 3;
    }
    last_loss = loss;
    const bool stop_here = c.stop_at_step > 0 && step >= c.stop_at_step;
    const bool end = done(now_s), last = end || stop_here;
    if (step % c.eval_every == 0 || last) evaluate();
    if ((c.checkpoint_every > 0 && step % c.checkpoint_every == 0) || last) save_checkpoint();
    if (root && !c.quiet && (tty || step % c.eval_every == 0 || last)) {
      double eta = 0;
      if (c.steps > 0) eta = (seconds() - elapsed0) / double(step - (resume_from ? resume_from->step : 0)) * double(c.steps - step);
      if (c.time_budget > 0) eta = c.steps > 0 ? std::min(eta, c.time_budget - seconds()) : c.time_budget - seconds();
      std::fprintf(stderr, "%sstep %ld%s | loss %.4f | val %.4f | %.0f tok/s | %s elapsed | ETA %s%s",
                   tty ? "\r" : "", step, c.steps > 0 ? ("/" + std::to_string(c.steps)).c_str() : "", loss, last_val,
                   B_T / (t3 - t_start), hms(seconds()).c_str(), hms(std::max(eta, 0.0)).c_str(), tty ? "   " : "\n");
    }
    if (stop_here && !end) {
      if (tty) std::fputc('\n', stderr);
      if (root)
        std::fprintf(stderr, "ra-train: stopped at step %ld (--stop-at-step); continue with --resume %s\n", step,
                     run_path.c_str());
      set_status("stopped");
      return 0;
    }
    finished = last;
  }
  if (tty) std::fputc('\n', stderr);
  const bool signalled = !budget_spent(now_s);
  if (signalled) {
    // Stopped by a signal: usually the loop's last step saw it and already
    // evaluated and checkpointed; a signal landing after that check is
    // caught by the loop's condition instead, so checkpoint here too.
    if (last_ckpt_step != step) save_checkpoint();
    set_status("stopped");
    if (root)
      std::fprintf(stderr, "ra-train: %s at step %ld: checkpoint written; continue with --resume %s\n",
                   g_stop_signal == SIGINT ? "interrupted (SIGINT)" : "stopped by SIGTERM", step, run_path.c_str());
    return 128 + (g_stop_signal ? int(g_stop_signal) : SIGTERM);
  }
  set_status("finished");
  if (!root) return 0;
  std::printf("ra-train: %ld steps, %lld tokens, %.1f s: train loss %.4f, val loss %.4f\nwrote %s and %s\n", step,
              static_cast<long long>(tokens), seconds(), last_loss, last_val, run_path.c_str(), ckpt_path.c_str());
  return 0;
}

std::vector<std::string> options_to_keep(int argc, char** argv) {
  // The run's own options, what a resumed run re-parses: without Kokkos'
  // flags, the paths (the run file is --resume's argument) and the one-shot
  // test hooks (a stop or a NaN must not recur in the resumed session).
  static const std::vector<std::string> session_only = {"--resume", "--out", "--stop-at-step", "--inject-nan-at",
                                                        "--rendezvous-dir"};
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--kokkos-", 0) == 0) continue;
    bool skip = false;
    for (const auto& opt : session_only) {
      if (a == opt) ++i, skip = true;  // and its value
      if (a.rfind(opt + "=", 0) == 0) skip = true;
    }
    if (!skip) out.push_back(a);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{"ra-train: train GPT-2 (SDPA, RA or hybrid attention) on token shards; log loss curves,\n"
               "timings and RA gates to an HDF5 run file; checkpoint and resume.",
               "ra-train"};
  add_options(app, cfg);
  std::string cmdline;
  for (int i = 0; i < argc; ++i) cmdline += (i ? " " : "") + std::string(argv[i]);
  return ra::cli::run(app, argc, argv, [&] {
    for (const auto& extra : app.remaining())
      if (extra.rfind("--kokkos-", 0) != 0) throw CLI::ValidationError("unknown argument '" + extra + "' (see --help)");
    const ra::train::Ranks ranks = ra::train::Ranks::from_environment();
    std::vector<std::string> run_args = options_to_keep(argc, argv);
    std::optional<ra::train::Checkpoint> ckpt;
    if (!cfg.resume.empty()) {
      for (const auto* opt : app.get_options())
        if (opt->count() > 0 && !kResumeOverrides.count(opt->get_name()))
          throw std::invalid_argument(opt->get_name() + " cannot change on --resume (it comes from the checkpoint); "
                                      "only --steps, --time-budget, --eval-every, --checkpoint-every, --quiet can");
      if (!std::filesystem::exists(cfg.resume)) throw std::invalid_argument("--resume " + cfg.resume + ": no such run file");
      ckpt = ra::train::read_checkpoint(ra::train::checkpoint_path_for(cfg.resume));
      // The stored options first, then this command line's overrides.
      Config resumed;
      CLI::App again{"", "ra-train"};
      add_options(again, resumed);
      std::vector<std::string> args(ckpt->args.rbegin(), ckpt->args.rend());  // CLI11 wants them reversed
      again.parse(args);
      again.clear();
      std::vector<std::string> now;
      for (int i = argc - 1; i >= 1; --i)
        if (std::string(argv[i]).rfind("--kokkos-", 0) != 0) now.push_back(argv[i]);
      again.parse(now);
      cfg = resumed;
      run_args = ckpt->args;  // keep the original options (overrides apply to this session only)
      for (const auto& a : options_to_keep(argc, argv)) run_args.push_back(a);
    } else if (ranks.rank == 0 && !cfg.out.empty() && std::filesystem::exists(cfg.out)) {
      throw std::invalid_argument("--out " + cfg.out + " already exists; refusing to overwrite (use --resume to continue it)");
    }
    Kokkos::ScopeGuard kokkos(argc, argv);
#if defined(KOKKOS_ENABLE_SERIAL)
    if (cfg.serial) return train<Kokkos::Serial>(cfg, run_args, cmdline, ckpt, ranks);
#else
    if (cfg.serial) throw std::invalid_argument("--serial: this build has no Kokkos::Serial");
#endif
    return train<Kokkos::DefaultExecutionSpace>(cfg, run_args, cmdline, ckpt, ranks);
  });
}
