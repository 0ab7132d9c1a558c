// ra-bench: times every attention variant, forward and forward+backward, on
// one shape, with Google Benchmark driving the repetitions and device-fenced
// timers (CUDA events on the GPU) measuring each one.
//
// Writes three things:
//   * a table on stdout (median ms, GFLOP/s, ratio to sdpa_fused);
//   * Google Benchmark JSON (<out>.json);
//   * an HDF5 run file (<out>.h5, table /bench) -- see README "Run files";
//     with --save-outputs also every output tensor and a checksum of the
//     inputs under /outputs, for scripts/ra-compare across backends.
//
// Inputs are drawn by the deterministic counter-based RNG, so every backend
// times the same numbers.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <ra/checks.hpp>
#include <ra/cli.hpp>
#include <ra/device_info.hpp>
#include <ra/git_revision.hpp>
#include <ra/kokkos/kernel_traits.hpp>
#include <ra/kokkos/attention.hpp>
#include <ra/rng.hpp>
#include <ra/run_store.hpp>
#include <ra/timer.hpp>
#include <sstream>
#include <vector>
#if defined(RA_HAVE_VULKAN)
#include <ra/vulkan/attention.hpp>
#include <cmath>
#endif

namespace {

using ra::kk::Variant;

struct Config {
  int B = 0, H = 0, T = 0, D = 0;  // 0: the backend's default shape
  std::vector<std::string> variants;
  std::vector<std::string> passes = {"fwd", "fwdbwd"};
  std::vector<std::string> dtypes = {"float"};
  int window = 128;
  int gate_batch = 1;
  int tile = 0;  // 0: kernel_traits table
  bool portable = false;  // force the portable kernels (ra-bench --portable)
  bool nondeterministic = false;  // --nondeterministic: Options::deterministic = false
  std::vector<int> tc_candidates;  // tensor-core forward candidates to time (empty: the table's)
  std::vector<int> T_sweep;        // sequence lengths to run one after another (empty: --T)
  int warmup = 3;
  int reps = 0;  // 0: backend default
  std::uint64_t seed = 1234;
  double input_scale = 1.0;  // stddev of q, k, v
  std::string out_dir = "runs";
  std::string out;  // explicit path stem (no extension); must not exist
  std::vector<std::string> benchmark_flags;
  std::string backend = "kokkos";  // kokkos | vulkan
  std::string vk_device;           // --vk-device (Vulkan: index or part of the name)
  std::string vk_timing = "batched";  // --vk-timing: batched | each (Vulkan repetitions)
  double vk_warmup_ms = 1000;  // --vk-warmup-ms: Vulkan warm-up lasts at least this long (wall)
  bool serial = false;             // --serial: Kokkos::Serial instead of the default space
  bool save_outputs = false;       // --save-outputs: tensors into /outputs
  std::size_t save_max = 16384;    // --save-max: elements kept per tensor (0: all)
};

// --save-outputs: the output tensors of one (variant, dtype, shape), widened
// to float64 on the host, and the checksum of the inputs that produced them.
struct SavedTensor {
  std::string name;
  std::vector<std::size_t> dims;
  std::vector<double> data;
  std::string sampled;  // "" (whole tensor) or which rows were kept
  std::string description;
};
struct OutputSet {
  std::string variant, dtype;
  ra::Shape shape;
  std::string inputs_checksum;
  std::vector<SavedTensor> tensors;
};
using OutputSink = std::function<void(const OutputSet&)>;

// FNV-1a (64 bit) over the inputs rounded to float32, in the order q, k, v,
// dout, d, gates. float32 because that is where every backend's inputs meet:
// float storage holds these values, double storage rounds to them (both are
// the same double N(0,1) draw), and half/bf16 storage is rounded from them.
// So the checksum tells "same seed, scale, shape and generator" across
// backends and dtypes, and differs for anything else.
struct InputChecksum {
  std::uint64_t h = 0xcbf29ce484222325ull;
  void add(double x) {
    const float f = float(x);
    std::uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    for (int i = 0; i < 4; ++i) {
      h ^= (bits >> (8 * i)) & 0xffu;
      h *= 0x100000001b3ull;
    }
  }
  template <class Vec>
  void add_all(const Vec& v) {
    for (const auto& x : v) add(double(x));
  }
  std::string str() const {
    char buf[32];
    std::snprintf(buf, sizeof buf, "fnv1a64:%016llx", static_cast<unsigned long long>(h));
    return buf;
  }
};

// Keeps a tensor whole if it has at most `max_elems` elements (0: no limit);
// else every stride-th row of its [rows, inner] view, rows being the leading
// dims flattened (B*H*T for q-like tensors). The stride is odd so the kept
// rows cycle through every position within a power-of-two tile instead of
// always hitting a tile's first row.
SavedTensor keep(std::string name, std::vector<std::size_t> dims, std::vector<double> data,
                 std::size_t inner, std::size_t max_elems, std::string description) {
  SavedTensor t{std::move(name), std::move(dims), {}, "", std::move(description)};
  if (max_elems == 0 || data.size() <= max_elems) {
    t.data = std::move(data);
    return t;
  }
  const std::size_t rows = data.size() / inner;
  const std::size_t want_rows = std::max<std::size_t>(1, max_elems / inner);
  std::size_t stride = (rows + want_rows - 1) / want_rows;
  stride |= 1;
  for (std::size_t r = 0; r < rows; r += stride)
    t.data.insert(t.data.end(), data.begin() + r * inner, data.begin() + (r + 1) * inner);
  t.sampled = "every " + std::to_string(stride) + "th of " + std::to_string(rows) +
              " rows (leading dims flattened), from row 0";
  t.dims = {t.data.size() / inner, inner};
  return t;
}

// The tensors of one pass, as host float64 vectors in the kernels' layout.
struct HostOutputs {
  std::vector<double> o, lse, dq, dk, dv, dd, dgates;
};

OutputSet make_output_set(const std::string& variant, const std::string& dtype, const ra::Shape& s,
                          int gate_batch, bool backward, bool ra_variant, HostOutputs h,
                          const std::string& checksum, std::size_t max_elems) {
  const std::size_t B = s.B, H = s.H, T = s.T, D = s.D;
  OutputSet out{variant, dtype, s, checksum, {}};
  auto add = [&](const char* name, std::vector<double>& x, std::vector<std::size_t> dims,
                 std::size_t inner, const char* what) {
    out.tensors.push_back(keep(name, std::move(dims), std::move(x), inner, max_elems, what));
  };
  add("o", h.o, {B, H, T, D}, D, "attention output O [B,H,T,D]");
  add("lse", h.lse, {B, H, T}, 1, "row log-sum-exp of the logits [B,H,T] (saved for backward)");
  if (backward) {
    add("dq", h.dq, {B, H, T, D}, D, "dL/dQ [B,H,T,D] for upstream gradient dout = N(0,1)");
    add("dk", h.dk, {B, H, T, D}, D, "dL/dK [B,H,T,D]");
    add("dv", h.dv, {B, H, T, D}, D, "dL/dV [B,H,T,D]");
    if (ra_variant) {
      add("dd", h.dd, {B, H, T}, 1, "dL/dd, gradient of the discoverability bias [B,H,T]");
      add("dgates", h.dgates, {std::size_t(gate_batch), H, 3}, 3,
          "dL/d(w_std, w_rec, w_disc) [Gb,H,3]");
    }
  }
  return out;
}

// A device view's elements, in its (LayoutRight) order, as host doubles.
template <class View>
std::vector<double> host_doubles(const View& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, v);
  using T = typename View::non_const_value_type;
  std::vector<double> out(h.span());
  for (std::size_t i = 0; i < out.size(); ++i) {
    if constexpr (std::is_same_v<T, double>)
      out[i] = h.data()[i];
    else
      out[i] = double(static_cast<float>(h.data()[i]));
  }
  return out;
}

struct Result {
  std::string variant, pass, dtype, tiles;
  ra::Shape shape;
  int window = -1;
  std::vector<double> ms;
  double flops = 0;
  double memory_mib = 0;  // device memory the problem holds (tensors + kernel workspace)
  double median() const {
    auto v = ms;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  }
  double min() const { return *std::min_element(ms.begin(), ms.end()); }
  double max() const { return *std::max_element(ms.begin(), ms.end()); }
};

std::string plan_str(const ra::kk::TilePlan& p) {
  if (p.br == 0) return "open-coded";
  std::ostringstream s;
  s << p.path << " " << p.br << "x" << p.bc << " team " << p.team_size << "x" << p.vector_length << " L"
    << p.scratch_level << " " << p.scratch_bytes / 1024 << "KiB";
  return s.str();
}

// One (variant, dtype) problem: tensors, the kernel object, and the timer.
template <class Scalar, class Exec>
struct Bench {
  ra::kk::AttentionTensors<Scalar, Exec> t;
  std::unique_ptr<ra::kk::Attention<Scalar, Exec>> attn;
  Exec exec;

  Bench(Variant v, const ra::Shape& s, const ra::kk::Options& opt, std::uint64_t seed,
        double scale) {
    attn = std::make_unique<ra::kk::Attention<Scalar, Exec>>(v, s, opt, exec);
    t = ra::kk::AttentionTensors<Scalar, Exec>::allocate(s, opt.gate_batch);
    ra::fill_normal(exec, t.q, seed + 1, scale);
    ra::fill_normal(exec, t.k, seed + 2, scale);
    ra::fill_normal(exec, t.v, seed + 3, scale);
    ra::fill_normal(exec, t.dout, seed + 4);
    ra::fill_normal(exec, t.d, seed + 5);
    auto g = Kokkos::create_mirror_view(t.gates);
    for (int b = 0; b < opt.gate_batch; ++b)
      for (int h = 0; h < s.H; ++h) g(b, h, 0) = 0.5, g(b, h, 1) = 0.3, g(b, h, 2) = 0.2;
    Kokkos::deep_copy(t.gates, g);
    exec.fence();
  }

  // Device bytes of every tensor of the problem plus the kernel's workspace.
  std::size_t bytes() const {
    auto b = [](const auto& v) { return v.span() * sizeof(typename std::decay_t<decltype(v)>::value_type); };
    return b(t.q) + b(t.k) + b(t.v) + b(t.o) + b(t.dout) + b(t.dq) + b(t.dk) + b(t.dv) + b(t.gates) +
           b(t.d) + b(t.lse) + b(t.dd) + b(t.dgates) + attn->workspace_bytes();
  }

  void run(bool backward) {
    attn->forward(t);
    if (backward) attn->backward(t);
  }

  // "" if every output of the pass is finite, else which tensor is not.
  std::string nonfinite(bool backward) const {
    std::vector<std::pair<const char*, std::size_t>> counts = {
        {"o", ra::count_nonfinite(exec, t.o)}, {"lse", ra::count_nonfinite(exec, t.lse)}};
    if (backward) {
      counts.emplace_back("dq", ra::count_nonfinite(exec, t.dq));
      counts.emplace_back("dk", ra::count_nonfinite(exec, t.dk));
      counts.emplace_back("dv", ra::count_nonfinite(exec, t.dv));
    }
    for (auto [name, n] : counts)
      if (n) return std::to_string(n) + " non-finite values in '" + name + "'";
    return {};
  }
};

// After the timed loop: outputs of the last timed run that hold NaN/Inf
// (`bad` says which) are reported and get no row; else the row is written.
void finish(benchmark::State& state, const Result& res, const std::string& bad,
            const std::function<void(const Result&)>& on_done, int* failures) {
  if (!bad.empty()) {
    state.SkipWithError((res.variant + " " + res.pass + ": " + bad).c_str());
    std::fprintf(stderr, "ra-bench: error: %s %s %s: %s; no row written\n", res.variant.c_str(),
                 res.pass.c_str(), res.dtype.c_str(), bad.c_str());
    ++*failures;
    return;
  }
  state.counters["GFLOP/s"] = res.flops * 1e-9 / (res.median() * 1e-3);
  state.counters["median_ms"] = res.median();
  state.SetLabel(res.tiles);
  on_done(res);
}

// The outputs of one (variant, dtype, shape) are saved from one row only:
// the forward+backward one (every tensor) when fwdbwd is timed, else the
// forward one; with --tc-candidates, from the first candidate's row.
bool saves_outputs(const Config& cfg, const std::string& pass, int candidate) {
  const bool has_bwd =
      std::find(cfg.passes.begin(), cfg.passes.end(), "fwdbwd") != cfg.passes.end();
  const bool first = cfg.tc_candidates.empty() || candidate == cfg.tc_candidates.front();
  return cfg.save_outputs && first && (pass == "fwdbwd" || !has_bwd);
}

template <class Exec>
void register_all(const Config& cfg, const ra::Shape& s, std::vector<Result>& results,
                  const std::function<void(const Result&)>& on_done, const OutputSink& on_outputs,
                  int* failures) {
  std::vector<int> candidates = cfg.tc_candidates;
  if (candidates.empty()) candidates.push_back(-1);
  for (const std::string& dtype : cfg.dtypes)
    for (const std::string& vname : cfg.variants)
      for (const std::string& pass : cfg.passes)
        for (const int candidate : candidates) {
        const Variant v = ra::kk::parse_variant(vname);
        ra::kk::Options opt;
        opt.gate_batch = cfg.gate_batch == 1 ? 1 : s.B;
        opt.window = v == Variant::ra_window ? cfg.window : -1;
        opt.tile = cfg.tile;
        opt.portable = cfg.portable;
        opt.deterministic = !cfg.nondeterministic;
        opt.tf32 = dtype == "tf32";  // float storage, TF32 tensor-core forward
        // a candidate index selects the forward configuration in fwd rows and
        // the backward configuration (forward from the table) in fwdbwd rows
        (pass == "fwd" ? opt.tc_candidate : opt.tc_bwd_candidate) = candidate;
        Result r;
        r.variant = vname, r.pass = pass, r.dtype = dtype, r.shape = s, r.window = opt.window;
        const bool bwd = pass == "fwdbwd";
        r.flops = ra::kk::forward_flops(v, s, opt) + (bwd ? ra::kk::backward_flops(v, s, opt) : 0);
        results.push_back(r);
        const std::size_t idx = results.size() - 1;
        const bool save = saves_outputs(cfg, pass, candidate);
        auto body = [&cfg, &results, on_done, on_outputs, failures, idx, v, s, opt, bwd, save](
                        benchmark::State& state, auto tag) {
          using Scalar = decltype(tag);
          Result& res = results[idx];
          Bench<Scalar, Exec> bench(v, s, opt, cfg.seed, cfg.input_scale);
          res.tiles = plan_str(bwd ? bench.attn->backward_plan() : bench.attn->forward_plan());
          res.memory_mib = double(bench.bytes()) / (1 << 20);
          ra::DeviceTimer<Exec> timer(bench.exec);
          for (int i = 0; i < cfg.warmup; ++i) bench.run(bwd);
          for (auto _ : state) {
            const double ms = timer.time_ms([&] { bench.run(bwd); });
            res.ms.push_back(ms);
            state.SetIterationTime(ms * 1e-3);
          }
          const std::string bad = bench.nonfinite(bwd);
          finish(state, res, bad, on_done, failures);
          if (save && bad.empty()) {
            const auto& t = bench.t;
            InputChecksum sum;
            if constexpr (std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>) {
              // what the kernels read, read back from the device
              for (const auto* x : {&t.q, &t.k, &t.v, &t.dout}) sum.add_all(host_doubles(*x));
              sum.add_all(host_doubles(t.d));
            } else {
              // bf16 storage cannot give back the float32 values it was rounded
              // from: take them from the generator, as fill_normal drew them
              for (std::uint64_t k = 1; k <= 4; ++k)
                for (std::size_t i = 0; i < s.qkv_elems(); ++i)
                  sum.add(k == 4 ? ra::normal_at(cfg.seed + k, i)
                                 : cfg.input_scale * ra::normal_at(cfg.seed + k, i));
              sum.add_all(host_doubles(t.d));
            }
            sum.add_all(host_doubles(t.gates));
            HostOutputs h;
            h.o = host_doubles(t.o), h.lse = host_doubles(t.lse);
            if (bwd) {
              h.dq = host_doubles(t.dq), h.dk = host_doubles(t.dk), h.dv = host_doubles(t.dv);
              if (ra::kk::is_ra(v)) h.dd = host_doubles(t.dd), h.dgates = host_doubles(t.dgates);
            }
            on_outputs(make_output_set(res.variant, res.dtype, s, opt.gate_batch, bwd, ra::kk::is_ra(v),
                                       std::move(h), sum.str(), cfg.save_max));
          }
        };
        const std::string name = vname + "/" + pass + "/" + dtype + "/B" + std::to_string(s.B) +
                                 "_H" + std::to_string(s.H) + "_T" + std::to_string(s.T) + "_D" +
                                 std::to_string(s.D) +
                                 (candidate >= 0 ? "/tc" + std::to_string(candidate) : "");
        benchmark::internal::Benchmark* b;
        if (dtype == "float" || dtype == "tf32")
          b = benchmark::RegisterBenchmark(name.c_str(),
                                           [body](benchmark::State& st) { body(st, float{}); });
#if defined(RA_HAVE_BF16)
        else if (dtype == "bf16")
          b = benchmark::RegisterBenchmark(name.c_str(),
                                           [body](benchmark::State& st) { body(st, ra::bf16{}); });
#endif
        else
          b = benchmark::RegisterBenchmark(name.c_str(),
                                           [body](benchmark::State& st) { body(st, double{}); });
        b->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(cfg.reps);
      }
}

#if defined(RA_HAVE_VULKAN)
// --backend vulkan: the same benchmarks, table and run file on ra::vk::Attention.
// Each repetition is timed by the GPU's timestamp queries around its command
// buffer (forward, or forward + backward); uploads happen once, before timing.
// dtype "float" is fp32 storage, "half" fp16 storage (fp32 sums).
void register_all_vulkan(const Config& cfg, const ra::Shape& s,
                         const std::shared_ptr<ra::vk::Context>& ctx, std::vector<Result>& results,
                         const std::function<void(const Result&)>& on_done,
                         const OutputSink& on_outputs, int* failures) {
  namespace vk = ra::vk;
  for (const std::string& dtype : cfg.dtypes)
    for (const std::string& vname : cfg.variants)
      for (const std::string& pass : cfg.passes) {
        const vk::Variant v = vk::parse_variant(vname);
        vk::Options opt;
        opt.gate_batch = cfg.gate_batch == 1 ? 1 : s.B;
        opt.window = v == vk::Variant::ra_window ? cfg.window : -1;
        opt.tile = cfg.tile;
        opt.precision = dtype == "half" ? vk::Precision::fp16 : vk::Precision::fp32;
        if (cfg.portable) opt.forward_path = vk::ForwardPath::scalar;
        Result r;
        r.variant = vname, r.pass = pass, r.dtype = dtype, r.shape = s, r.window = opt.window;
        const bool bwd = pass == "fwdbwd";
        r.flops = vk::forward_flops(v, s, opt) + (bwd ? vk::backward_flops(v, s, opt) : 0);
        results.push_back(r);
        const std::size_t idx = results.size() - 1;
        const bool save = saves_outputs(cfg, pass, -1);
        auto body = [&cfg, &results, ctx, on_done, on_outputs, failures, idx, v, s, opt, bwd,
                     save, vname, dtype](benchmark::State& state) {
          Result& res = results[idx];
          vk::Attention attn(v, s, opt, ctx);
          const auto& plan = bwd ? attn.backward_plan() : attn.forward_plan();
          std::ostringstream tiles;
          tiles << "vulkan " << plan.path << (plan.note.empty() ? "" : " [" + plan.note + "]") << " "
                << plan.br << "x" << plan.bc << " wg " << plan.threads << " "
                << plan.shared_bytes / 1024 << "KiB";
          if (bwd)  // which forward produced the O and lse the backward read
            tiles << " after forward " << attn.forward_plan().path;
          res.tiles = tiles.str();
          // Inputs from the same counter-based RNG streams as the Kokkos path.
          auto t = vk::HostTensors::allocate(s, opt.gate_batch);
          auto fill = [](std::vector<float>& x, std::uint64_t seed, double sd) {
            for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(sd * ra::normal_at(seed, i));
          };
          fill(t.q, cfg.seed + 1, cfg.input_scale);
          fill(t.k, cfg.seed + 2, cfg.input_scale);
          fill(t.v, cfg.seed + 3, cfg.input_scale);
          fill(t.dout, cfg.seed + 4, 1.0);
          fill(t.d, cfg.seed + 5, 1.0);
          for (std::size_t i = 0; i < t.gates.size(); ++i)
            t.gates[i] = i % 3 == 0 ? 0.5f : i % 3 == 1 ? 0.3f : 0.2f;
          const std::size_t e4 = opt.precision == vk::Precision::fp16 ? 2 : 4;
          res.memory_mib = double(8 * s.qkv_elems() * e4 + 4 * s.row_elems() * 4 +
                                  attn.workspace_bytes()) / (1 << 20);
          // dout goes up too when the backward runs: without it the backward
          // read an uninitialised buffer (finite garbage, so no NaN check saw it).
          attn.upload(t, bwd);
          auto run = [&] {
            attn.run_forward();
            double ms = attn.last_gpu_ms();
            if (bwd) {
              attn.run_backward();
              ms += attn.last_gpu_ms();
            }
            return ms;
          };
          // Batched (default): the warm-up, then every timed repetition,
          // each set back to back in one submission
          // (Attention::time_repetitions); each: one submit-and-wait per run.
          // The warm-up runs --warmup times, then on until --vk-warmup-ms
          // of wall time have passed: from idle the H100's SM clock stayed
          // at 345 MHz through a whole batch of short kernels (v26: the
          // first row of a process at T=4096, median 5x its minimum; 300 ms
          // did not always do, 1000 ms did in every process tried).
          std::vector<double> batch;
          const auto warm_start = std::chrono::steady_clock::now();
          const auto warm_ms = [&] {
            return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - warm_start).count();
          };
          // Batched: --warmup repetitions per submission; each: one.
          const int step = cfg.vk_timing == "each" ? 1 : std::max(cfg.warmup, 1);
          for (int done = 0; done < cfg.warmup || warm_ms() < cfg.vk_warmup_ms; done += step) {
            if (cfg.vk_timing == "each") run();
            else attn.time_repetitions(step, bwd);
          }
          if (cfg.vk_timing != "each") batch = attn.time_repetitions(int(state.max_iterations), bwd);
          std::size_t rep = 0;
          for (auto _ : state) {
            const double ms = batch.empty() ? run() : batch[rep++];
            res.ms.push_back(ms);
            state.SetIterationTime(ms * 1e-3);
          }
          attn.download_forward(t);
          if (bwd) attn.download_backward(t);
          std::string bad;
          for (auto [name, x] : {std::pair<const char*, const std::vector<float>*>{"o", &t.o},
                                 {"lse", &t.lse}, {"dq", &t.dq}, {"dk", &t.dk}, {"dv", &t.dv}}) {
            if (!bwd && name[0] == 'd') continue;
            const auto n = std::count_if(x->begin(), x->end(), [](float e) { return !std::isfinite(e); });
            if (n && bad.empty()) bad = std::to_string(n) + " non-finite values in '" + name + "'";
          }
          finish(state, res, bad, on_done, failures);
          if (save && bad.empty()) {
            // The host tensors are the float32 values uploaded (half storage
            // rounds them on upload), so they are what the checksum hashes.
            InputChecksum sum;
            for (const auto* x : {&t.q, &t.k, &t.v, &t.dout, &t.d, &t.gates}) sum.add_all(*x);
            const bool ra_variant = vname.rfind("ra_", 0) == 0;
            auto wide = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
            HostOutputs h;
            h.o = wide(t.o), h.lse = wide(t.lse);
            if (bwd) {
              h.dq = wide(t.dq), h.dk = wide(t.dk), h.dv = wide(t.dv);
              if (ra_variant) h.dd = wide(t.dd), h.dgates = wide(t.dgates);
            }
            on_outputs(make_output_set(vname, dtype, s, opt.gate_batch, bwd, ra_variant, std::move(h),
                                       sum.str(), cfg.save_max));
          }
        };
        const std::string name = "vulkan/" + vname + "/" + pass + "/" + dtype + "/B" +
                                  std::to_string(s.B) + "_H" + std::to_string(s.H) + "_T" +
                                  std::to_string(s.T) + "_D" + std::to_string(s.D);
        benchmark::RegisterBenchmark(name.c_str(), body)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond)
            ->Iterations(cfg.reps);
      }
}
#endif

// The share of the GPU's peak a row reached: bf16 on the tensor-core path
// against the bf16 tensor peak, every other float-class row (fp32 math on
// CUDA cores, Vulkan's scalar kernels) against the fp32 peak; NaN where the
// peak is unknown (CPUs, double, other GPUs).
double peak_fraction(const Result& r, const ra::DeviceInfo& dev) {
  const double gflops = r.flops * 1e-9 / (r.median() * 1e-3);
  // sm_80/86/90 issue dense TF32 at half the bf16 rate
  const bool tensor = r.tiles.rfind("tensor-core", 0) == 0;
  const bool tf32 = r.tiles.rfind("tensor-core tf32", 0) == 0;
  const double peak = tf32     ? dev.peak_tflops_bf16 / 2
                      : tensor ? dev.peak_tflops_bf16
                      : r.dtype == "double" ? 0.0
                                            : dev.peak_tflops_fp32;
  return peak > 0 ? gflops * 1e-3 / peak : std::nan("");
}

void print_table(const std::vector<Result>& results, const ra::DeviceInfo& dev) {
  std::map<std::string, double> sdpa;  // pass/dtype -> sdpa_fused median
  for (const auto& r : results)
    if (r.variant == "sdpa_fused" && !r.ms.empty())
      sdpa[r.pass + r.dtype + std::to_string(r.shape.T)] = r.median();
  std::printf("\n%-11s %-7s %-6s %6s %10s %10s %10s %10s %6s %9s %9s  %s\n", "variant", "pass", "dtype",
              "T", "median_ms", "min_ms", "max_ms", "GFLOP/s", "%peak", "/sdpa_fu", "mem_MiB", "tiles");
  for (const auto& r : results) {
    if (r.ms.empty()) continue;
    const auto it = sdpa.find(r.pass + r.dtype + std::to_string(r.shape.T));
    char ratio[32] = "-";
    if (it != sdpa.end()) std::snprintf(ratio, sizeof ratio, "%.2fx", r.median() / it->second);
    const double frac = peak_fraction(r, dev);
    char peak[16] = "-";
    if (std::isfinite(frac)) std::snprintf(peak, sizeof peak, "%.1f", 100 * frac);
    std::printf("%-11s %-7s %-6s %6d %10.3f %10.3f %10.3f %10.2f %6s %9s %9.1f  %s\n", r.variant.c_str(),
                r.pass.c_str(), r.dtype.c_str(), r.shape.T, r.median(), r.min(), r.max(),
                r.flops * 1e-9 / (r.median() * 1e-3), peak, ratio, r.memory_mib, r.tiles.c_str());
  }
}

// The run file is created before the first benchmark (reserving its name)
// and gets one row, flushed, as each benchmark finishes: a run killed midway
// keeps every figure measured so far.
ra::RunWriter open_run(const std::string& path, const Config& cfg, const ra::Shape& s,
                       const ra::DeviceInfo& dev, const std::string& cmdline,
                       const std::string& json) {
  auto attrs = dev.attributes();
  attrs["program"] = "ra-bench";
  attrs["git_revision"] = RA_GIT_REVISION;
  attrs["build_type"] = RA_BUILD_TYPE;
  attrs["command_line"] = cmdline;
  attrs["benchmark_json"] = json;
  std::ostringstream c;
  std::string sweep;
  for (int T : cfg.T_sweep) sweep += (sweep.empty() ? "" : ",") + std::to_string(T);
  c << "{\"B\":" << s.B << ",\"H\":" << s.H << ",\"T\":" << s.T << ",\"D\":" << s.D
    << ",\"T_sweep\":[" << sweep << "]"
    << ",\"window\":" << cfg.window << ",\"gate_batch\":" << cfg.gate_batch
    << ",\"tile\":" << cfg.tile << ",\"portable\":" << (cfg.portable ? "true" : "false")
    << ",\"nondeterministic\":" << (cfg.nondeterministic ? "true" : "false")
    << ",\"warmup\":" << cfg.warmup << ",\"reps\":" << cfg.reps
    << ",\"seed\":" << cfg.seed << ",\"input_scale\":" << cfg.input_scale
    << ",\"serial\":" << (cfg.serial ? "true" : "false")
    << ",\"vk_timing\":\"" << (cfg.backend == "vulkan" ? cfg.vk_timing : "") << "\""
    << ",\"vk_warmup_ms\":" << (cfg.backend == "vulkan" ? cfg.vk_warmup_ms : 0)
    << ",\"save_outputs\":" << (cfg.save_outputs ? "true" : "false") << ",\"save_max\":" << cfg.save_max
    << ",\"gates_init\":[0.5,0.3,0.2],\"inputs\":\"N(0,1) counter-based\"}";
  attrs["config"] = c.str();
  std::string dtypes;
  for (const auto& d : cfg.dtypes) dtypes += (dtypes.empty() ? "" : ",") + d;
  attrs["precision"] = dtypes;

  using Col = ra::Column;
  using Ty = ra::Column::Type;
  auto w = ra::RunWriter::create(path, attrs);
  w.create_table(
      "bench",
      {Col{"variant", Ty::String, "", "attention variant (ra::kk::Variant)"},
       Col{"pass", Ty::String, "", "fwd = forward; fwdbwd = forward + backward"},
       Col{"dtype", Ty::String, "", "storage type: float, double (math in it), bf16 (fp32 math), tf32 (float storage, TF32 tensor-core forward)"},
       Col{"B", Ty::Int64, "", "batch"}, Col{"H", Ty::Int64, "", "heads"},
       Col{"T", Ty::Int64, "tokens", "sequence length"}, Col{"D", Ty::Int64, "", "head dim"},
       Col{"window", Ty::Int64, "tokens", "reciprocity window (-1: none)"},
       Col{"median_ms", Ty::Float64, "ms", "median over repetitions"},
       Col{"min_ms", Ty::Float64, "ms", "fastest repetition"},
       Col{"max_ms", Ty::Float64, "ms", "slowest repetition"},
       Col{"reps", Ty::Int64, "", "timed repetitions (after warm-up)"},
       Col{"flops", Ty::Float64, "FLOP", "useful FLOPs per repetition, counted as in RA.md"},
       Col{"gflops", Ty::Float64, "GFLOP/s", "flops / median"},
       Col{"tiles", Ty::String, "", "path that ran (tensor-core bf16 / portable [why] / open-coded) and its tiling plan"},
       Col{"backend", Ty::String, "", "Kokkos execution space"},
       Col{"device", Ty::String, "", "device name"},
       Col{"memory_mib", Ty::Float64, "MiB",
           "device memory the problem holds: inputs, outputs, gradients and the kernel's "
           "workspace (open-coded: its T x T buffers; fused: none of size T x T)"},
       Col{"peak_fraction", Ty::Float64, "",
           "gflops / the device's dense peak: bf16 tensor-core rows against the bf16 tensor peak, other "
           "float rows against the fp32 CUDA-core peak (attributes peak_tflops_*); NaN where unknown"}},
      "one row per (variant, pass, dtype), appended as each benchmark finishes");
  return w;
}

void append_result(ra::RunWriter& w, const Result& r, const ra::DeviceInfo& dev) {
  w.append_row("bench",
               {r.variant, r.pass, r.dtype, std::int64_t(r.shape.B), std::int64_t(r.shape.H),
                std::int64_t(r.shape.T), std::int64_t(r.shape.D), std::int64_t(r.window),
                r.median(), r.min(), r.max(), std::int64_t(r.ms.size()), r.flops,
                r.flops * 1e-9 / (r.median() * 1e-3), r.tiles, dev.backend, dev.device_name,
                r.memory_mib, peak_fraction(r, dev)});
}

// Exec: the Kokkos execution space of the kokkos backend (--serial picks
// Kokkos::Serial, else the build's default: OpenMP on the host preset).
template <class Exec>
int bench_main(Config cfg, const std::string& cmdline) {
  const bool vulkan = cfg.backend == "vulkan";
#if defined(RA_HAVE_VULKAN)
  std::shared_ptr<ra::vk::Context> vk_ctx;
  if (vulkan) {
    ra::vk::ContextOptions o;
    o.device = cfg.vk_device;
    vk_ctx = std::make_shared<ra::vk::Context>(o);
  }
  const bool gpu = vulkan ? vk_ctx->info().type != VK_PHYSICAL_DEVICE_TYPE_CPU
                          : !std::is_same_v<typename Exec::memory_space, Kokkos::HostSpace>;
#else
  if (vulkan)
    throw std::invalid_argument("--backend vulkan: this build has no Vulkan backend "
                                "(RA_ENABLE_VULKAN=OFF: Vulkan or glslc not found at configure time)");
  const bool gpu = !std::is_same_v<typename Exec::memory_space, Kokkos::HostSpace>;
#endif
  for (const auto& dtype : cfg.dtypes)
    if (vulkan ? dtype != "float" && dtype != "half" : dtype == "half")
      throw std::invalid_argument("--dtypes " + dtype + ": the " + cfg.backend +
                                  " backend takes " + (vulkan ? "float, half" : "float, double, bf16, tf32"));
  // Seeds' shape on a GPU; on a CPU something that finishes in under a minute.
  ra::Shape s = gpu ? ra::Shape{8, 12, 1024, 64} : ra::Shape{2, 4, 256, 64};
  if (cfg.B) s.B = cfg.B;
  if (cfg.H) s.H = cfg.H;
  if (cfg.T) s.T = cfg.T;
  if (cfg.D) s.D = cfg.D;
  s.validate("ra-bench");
  std::vector<ra::Shape> shapes;  // one per sequence length of --T-sweep, else just s
  for (int T : cfg.T_sweep) shapes.push_back(ra::Shape{s.B, s.H, T, s.D});
  if (shapes.empty()) shapes.push_back(s);
  if (cfg.reps == 0) cfg.reps = gpu ? 50 : 5;
  if (cfg.variants.empty()) {
#if defined(RA_HAVE_VULKAN)
    if (vulkan)
      for (ra::vk::Variant v : ra::vk::all_variants()) cfg.variants.push_back(ra::vk::variant_name(v));
#endif
    if (!vulkan)
      for (Variant v : ra::kk::all_variants()) cfg.variants.push_back(ra::kk::variant_name(v));
  }
  // Fail before any file is written if a variant cannot run this shape.
  for (int c : cfg.tc_candidates)
    for (const auto& pass : cfg.passes)
      if (pass == "fwdbwd" && c >= ra::kk::kBackwardCandidates)
        throw std::invalid_argument("--tc-candidates " + std::to_string(c) +
                                    ": fwdbwd rows time backward candidates, of which there are " +
                                    std::to_string(ra::kk::kBackwardCandidates));
  if (!cfg.tc_candidates.empty())
    for (const auto& dtype : cfg.dtypes)
      for (const auto& name : cfg.variants)
        if (dtype != "bf16" || !ra::kk::is_fused(ra::kk::parse_variant(name)))
          throw std::invalid_argument("--tc-candidates times the bf16 tensor-core forward: use "
                                      "--dtypes bf16 and fused variants only (got " + dtype +
                                      " " + name + ")");
  for (const auto& dtype : cfg.dtypes) {
#if !defined(RA_HAVE_BF16)
    if (dtype == "bf16")
      throw std::invalid_argument(
          "--dtypes bf16: this build's Kokkos has no bf16 type (bf16 needs a CUDA build)");
#endif
    if (dtype == "tf32" && !gpu)
      throw std::invalid_argument("--dtypes tf32: TF32 is a tensor-core precision of CUDA builds");
    for (const auto& name : cfg.variants)
      if ((dtype == "bf16" || dtype == "tf32") && !ra::kk::is_fused(ra::kk::parse_variant(name)))
        throw std::invalid_argument("--dtypes " + dtype + ": variant " + name +
                                    " is open-coded; " + dtype + " runs the fused variants only");
  }
#if defined(RA_HAVE_VULKAN)
  if (vulkan) {
    if (!cfg.tc_candidates.empty())
      throw std::invalid_argument("--tc-candidates is a Kokkos CUDA option, not a Vulkan one");
    // Every (variant, dtype, shape) is checked against the device's limits up front.
    for (const auto& name : cfg.variants)
      for (const auto& dtype : cfg.dtypes)
        for (const ra::Shape& sh : shapes) {
          const auto v = ra::vk::parse_variant(name);
          ra::vk::Options opt;
          opt.gate_batch = cfg.gate_batch == 1 ? 1 : s.B;
          opt.window = v == ra::vk::Variant::ra_window ? cfg.window : -1;
          opt.tile = cfg.tile;
          opt.precision = dtype == "half" ? ra::vk::Precision::fp16 : ra::vk::Precision::fp32;
          if (cfg.portable) opt.forward_path = ra::vk::ForwardPath::scalar;
          ra::vk::Attention probe(v, sh, opt, vk_ctx);
        }
  }
#endif
  for (const auto& name : cfg.variants) {
    if (vulkan) break;
    const Variant v = ra::kk::parse_variant(name);
    ra::kk::Options opt;
    opt.gate_batch = cfg.gate_batch == 1 ? 1 : s.B;
    opt.window = v == Variant::ra_window ? cfg.window : -1;
    opt.tile = cfg.tile;
    for (const ra::Shape& sh : shapes) ra::kk::check_supported(v, sh, opt);
  }

  // Output paths: never overwrite a previous run.
  std::string stem = cfg.out;
  if (stem.empty()) {
    stem = ra::unique_run_path(cfg.out_dir, "ra-bench");
    stem = stem.substr(0, stem.size() - 3);  // drop ".h5"
  } else if (std::filesystem::exists(stem + ".h5") || std::filesystem::exists(stem + ".json")) {
    throw std::runtime_error("output " + stem + ".h5/.json already exists; refusing to overwrite");
  }
  if (auto parent = std::filesystem::path(stem).parent_path(); !parent.empty())
    std::filesystem::create_directories(parent);

  ra::DeviceInfo dev = ra::device_info<Exec>();
#if defined(RA_HAVE_VULKAN)
  if (vulkan) {
    const auto& vi = vk_ctx->info();
    dev.backend = "vulkan";
    dev.device_name = vi.name + " (" + vi.type_name() + ", Vulkan " + vi.api_string() + ", " +
                      vi.driver_name + " " + vi.driver_info + ")";
    dev.compute_capability = "n/a";
  }
#endif
  std::printf("ra-bench: %s on %s (%s), %s, %d warm-up + %d timed reps each\n", s.str().c_str(),
              dev.device_name.c_str(), dev.backend.c_str(), RA_GIT_REVISION, cfg.warmup, cfg.reps);

  std::vector<Result> results;
  results.reserve(cfg.variants.size() * cfg.passes.size() * cfg.dtypes.size() * shapes.size());
  ra::RunWriter run = open_run(stem + ".h5", cfg, s, dev, cmdline, stem + ".json");
  const std::size_t total = cfg.variants.size() * cfg.passes.size() * cfg.dtypes.size() *
                            std::max<std::size_t>(1, cfg.tc_candidates.size()) * shapes.size();
  std::size_t done = 0;
  int failures = 0;
  auto on_done = [&, total](const Result& r) {
          append_result(run, r, dev);
          // Progress on stderr (unbuffered), after the row is safely in the file.
          std::fprintf(stderr, "ra-bench: [%zu/%zu] %s %s %s T=%d: median %.3f ms, saved to %s\n",
                       ++done, total, r.variant.c_str(), r.pass.c_str(), r.dtype.c_str(), r.shape.T,
                       r.median(), run.path().c_str());
  };
  // --save-outputs: /outputs/<variant>/<dtype>/B.._H.._T.._D../<tensor>,
  // written as each benchmark finishes (like its row).
  std::size_t saved_bytes = 0;
  auto on_outputs = [&](const OutputSet& o) {
    const std::string group = "outputs/" + o.variant + "/" + o.dtype + "/B" + std::to_string(o.shape.B) +
                              "_H" + std::to_string(o.shape.H) + "_T" + std::to_string(o.shape.T) +
                              "_D" + std::to_string(o.shape.D);
    for (const SavedTensor& t : o.tensors) {
      std::map<std::string, std::string> attrs = {
          {"inputs_checksum", o.inputs_checksum},
          {"inputs", "q, k, v = " + std::to_string(cfg.input_scale) + " * N(0,1), dout, d = N(0,1), seed " +
                         std::to_string(cfg.seed) + " (counter-based); gates 0.5, 0.3, 0.2"},
          {"dtype", o.dtype},
          {"backend", dev.backend},
          {"device", dev.device_name},
          {"sampled_rows", t.sampled.empty() ? "all" : t.sampled}};
      run.write_array(group + "/" + t.name, t.dims, t.data, "", t.description, attrs);
      saved_bytes += t.data.size() * sizeof(double);
    }
  };
  for (const ra::Shape& sh : shapes) {
#if defined(RA_HAVE_VULKAN)
    if (vulkan) {
      register_all_vulkan(cfg, sh, vk_ctx, results, on_done, on_outputs, &failures);
      continue;
    }
#endif
    register_all<Exec>(cfg, sh, results, on_done, on_outputs, &failures);
  }

  std::vector<std::string> args = {"ra-bench", "--benchmark_out=" + stem + ".json",
                                   "--benchmark_out_format=json"};
  for (const auto& f : cfg.benchmark_flags) args.push_back(f);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  int argc = int(argv.size());
  benchmark::Initialize(&argc, argv.data());
  if (benchmark::ReportUnrecognizedArguments(argc, argv.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  print_table(results, dev);
  if (cfg.save_outputs)
    std::printf("\nwrote %s.h5 (table /bench, outputs under /outputs: %.1f MiB) and %s.json\n",
                stem.c_str(), double(saved_bytes) / (1 << 20), stem.c_str());
  else
    std::printf("\nwrote %s.h5 (table /bench) and %s.json\n", stem.c_str(), stem.c_str());
  if (failures) {
    std::fprintf(stderr,
                 "ra-bench: error: %d benchmark(s) produced non-finite output (see above)\n",
                 failures);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{
      "ra-bench: time SDPA and Reciprocal Attention kernels (forward and forward+backward)\n"
      "and write the figures to an HDF5 run file and Google Benchmark JSON.",
      "ra-bench"};
  app.option_defaults()->always_capture_default();
  app.add_option("--B", cfg.B, "batch (default: 8 on GPU, 2 on CPU)")->check(ra::cli::at_least(1));
  app.add_option("--H", cfg.H, "heads (default: 12 on GPU, 4 on CPU)")->check(ra::cli::at_least(1));
  app.add_option("--T-sweep", cfg.T_sweep,
                 "run every benchmark at each of these sequence lengths, one run file (scaling "
                 "runs, e.g. 1024,2048,4096,8192,16384); overrides --T")
      ->delimiter(',')
      ->check(ra::cli::at_least(1));
  app.add_option("--T", cfg.T, "sequence length (default: 1024 on GPU, 256 on CPU)")
      ->check(ra::cli::at_least(1));
  app.add_option("--D", cfg.D, "head dim (default: 64)")->check(ra::cli::at_least(1));
  std::vector<std::string> names;
  for (Variant v : ra::kk::all_variants()) names.push_back(ra::kk::variant_name(v));
  app.add_option("--variants", cfg.variants, "variants to time (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember(names));
  app.add_option("--passes", cfg.passes, "fwd and/or fwdbwd")
      ->delimiter(',')
      ->check(CLI::IsMember({"fwd", "fwdbwd"}));
  app.add_option("--dtypes", cfg.dtypes,
                 "float, double, bf16 (bf16 storage, fp32 math: CUDA builds only) and/or tf32 "
                 "(float storage, TF32 tensor-core forward -- the backward is the float one: "
                 "CUDA builds only); Vulkan: float and/or half (fp16 storage, fp32 math)")
      ->delimiter(',')
      ->check(CLI::IsMember({"float", "double", "bf16", "tf32", "half"}));
  app.add_option("--backend", cfg.backend,
                 "kokkos (this build's default execution space) or vulkan (backends/vulkan)")
      ->check(CLI::IsMember({"kokkos", "vulkan"}));
  app.add_option("--vk-device", cfg.vk_device,
                 "Vulkan device: index or part of its name (default: $RA_VK_DEVICE, else the "
                 "best GPU, else lavapipe)");
  app.add_option("--vk-timing", cfg.vk_timing,
                 "vulkan backend: batched (default: the warm-up, then all timed repetitions, each "
                 "set recorded back to back into one command buffer with a timestamp between "
                 "repetitions, so the GPU never waits for the host) or each (one submit-and-wait per "
                 "repetition, as before 2026-11-23; the same medians on an H100)")
      ->check(CLI::IsMember({"batched", "each"}));
  app.add_option("--vk-warmup-ms", cfg.vk_warmup_ms,
                 "vulkan backend: after --warmup runs, keep warming up until this many "
                 "milliseconds of wall time have passed (default 1000): from idle the GPU's clock "
                 "may not ramp up within a short batch (H100, 2026-11-23: a process's first row "
                 "ran at 345 MHz, 5x slower)")
      ->check(CLI::Range(0.0, 60000.0));
  app.add_flag("--serial", cfg.serial,
               "kokkos backend: run on Kokkos::Serial instead of the build's default execution "
               "space (OpenMP on the host preset), e.g. to compare the two with ra-compare");
  app.add_flag("--save-outputs", cfg.save_outputs,
               "also write every output tensor (O, lse; after backward dQ, dK, dV and, for RA "
               "variants, dd, dgates) as float64 under /outputs/<variant>/<dtype>/<shape>/ in the "
               "run file, with a checksum of the inputs; compare files with scripts/ra-compare");
  app.add_option("--save-max", cfg.save_max,
                 "--save-outputs: a tensor with more elements keeps every n-th row (n odd) to stay "
                 "at about this many; 0 keeps everything (large at GPU shapes: 48 MiB per tensor "
                 "at B=8 H=12 T=1024 D=64)");
  app.add_flag("--portable", cfg.portable,
               "run the portable kernels even where a tensor-core path exists (Vulkan: the "
               "scalar forward instead of the register-tiled or cooperative-matrix one; "
               "RA_VK_FORWARD=scalar|tiled|coopmat picks one)");
  app.add_flag("--nondeterministic", cfg.nondeterministic,
               "Options::deterministic = false for every row: bf16 on CUDA runs the single-pass "
               "backward (one key-owned kernel, dQ added into an fp32 workspace by atomics; "
               "'fused-atomic' in the tiles column) where it has a kernel (head dims <= 64, no "
               "--tc-candidates), else says why not there; other paths are deterministic anyway");
  app.add_option("--tc-candidates", cfg.tc_candidates,
                 "bf16 on CUDA: time these compiled tensor-core configurations instead of the "
                 "traits table's, one row each: forward ones (0.." +
                     std::to_string(ra::kk::kForwardCandidates - 1) +
                     ") in fwd rows, backward ones (0.." +
                     std::to_string(ra::kk::kBackwardCandidates - 1) +
                     ") in fwdbwd rows; head dims 33..64")
      ->delimiter(',')
      ->check(CLI::Range(0, std::max(ra::kk::kForwardCandidates, ra::kk::kBackwardCandidates) - 1));
  app.add_option("--window", cfg.window, "reciprocity window of ra_window (tokens)")
      ->check(ra::cli::at_least(0));
  app.add_option("--gate-batch", cfg.gate_batch, "1: gates per head; B: per (batch, head)")
      ->check(ra::cli::at_least(1));
  app.add_option("--tile", cfg.tile, "fused tile br = bc: 0 = per-GPU table, or 8/16/32/64")
      ->check(CLI::IsMember({0, 8, 16, 32, 64}));
  app.add_option("--warmup", cfg.warmup, "untimed runs before timing")->check(ra::cli::at_least(0));
  app.add_option("--reps", cfg.reps, "timed repetitions (default: 50 on GPU, 5 on CPU)")
      ->check(ra::cli::at_least(1));
  app.add_option("--seed", cfg.seed, "seed of the input tensors");
  app.add_option("--input-scale", cfg.input_scale,
                 "standard deviation of q, k, v (large values probe overflow)")
      ->check(CLI::PositiveNumber);
  app.add_option("--out-dir", cfg.out_dir, "folder for the run files (a fresh name is picked)");
  app.add_option("--out", cfg.out,
                 "explicit path stem for <stem>.h5 and <stem>.json (must not exist)");
  app.add_option("--benchmark-flag", cfg.benchmark_flags,
                 "pass a flag to Google Benchmark, e.g. --benchmark-flag=--benchmark_filter=ra_");
  app.footer("Kokkos flags (--kokkos-num-threads=N, --kokkos-device-id=N) are accepted too.");
  app.allow_extras();  // Kokkos consumes its own --kokkos-* flags

  std::string cmdline;
  for (int i = 0; i < argc; ++i) cmdline += (i ? " " : "") + std::string(argv[i]);
  // Parse first (so --help and bad flags never need a GPU), then start Kokkos
  // with its own --kokkos-* flags.
  return ra::cli::run(app, argc, argv, [&] {
    for (const auto& extra : app.remaining())
      if (extra.rfind("--kokkos-", 0) != 0)
        throw CLI::ValidationError("unknown argument '" + extra + "' (see --help)");
    if (cfg.gate_batch != 1 && cfg.B && cfg.gate_batch != cfg.B)
      throw std::invalid_argument("--gate-batch " + std::to_string(cfg.gate_batch) +
                                  " must be 1 or equal to --B");
    if (cfg.serial && cfg.backend != "kokkos")
      throw std::invalid_argument("--serial picks a Kokkos execution space; it does not apply to --backend " +
                                  cfg.backend);
    Kokkos::ScopeGuard kokkos(argc, argv);
    if (cfg.serial) {
#if defined(KOKKOS_ENABLE_SERIAL)
      return bench_main<Kokkos::Serial>(cfg, cmdline);
#else
      throw std::invalid_argument("--serial: this build's Kokkos has no Serial execution space");
#endif
    }
    return bench_main<Kokkos::DefaultExecutionSpace>(cfg, cmdline);
  });
}
