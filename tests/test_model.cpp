// The whole GPT-2 model (ra::model::GPT2) against the float64 reference model
// for every attention variant, finite differences of its loss, memorising a
// batch, deterministic initialisation, the annealed SDPA dispatch, training
// state round trips, and the messages bad configurations get.
#include "model_testing.hpp"

#include <ra/model/gpt2.hpp>
#include <ra/model/reference.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

using namespace ra;
using namespace ra::testing;
using model::GPT2;
using model::GPTConfig;

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Random parameters, larger than GPT-2's init so attention is far from
// uniform and every term matters (the padded wte rows too: their logits must
// be ignored). Returns them as float64.
template <class Model>
std::vector<double> randomize_params(Model& m, std::uint64_t seed) {
  using S = typename Model::Vec::non_const_value_type;
  auto st = m.save_state();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n01(0.0, 1.0);
  const double gate_base[3] = {0.5, 0.3, 0.2};
  for (const auto& t : m.layout().tensors)
    for (std::size_t i = 0; i < t.size; ++i) {
      double x;
      if (ends_with(t.name, "ln1.w") || ends_with(t.name, "ln2.w") || t.name == "lnf.w")
        x = 1.0 + 0.1 * n01(rng);
      else if (ends_with(t.name, "gates"))
        x = gate_base[i % 3] + 0.1 * n01(rng);
      else if (ends_with(t.name, "disc_table") || ends_with(t.name, "disc_u"))
        x = 0.5 * n01(rng);
      else
        x = 0.3 * n01(rng);
      st.params[t.offset + i] = S(x);
    }
  m.load_state(st);
  return std::vector<double>(st.params.begin(), st.params.end());
}

struct Errors {
  double loss = 0, grads = 0;  // relative to max(|ref|, 1) (loss; per gradient tensor)
  double grads_own = 0;        // per gradient tensor, relative to that tensor's max |ref|
  std::string worst;
};

// Loss and every parameter gradient of one forward/backward against the
// reference, relative to max(|ref|, 1) per tensor.
template <class Scalar, class E>
Errors compare_with_reference(GPT2<Scalar, E>& m, const std::vector<double>& params,
                              const std::vector<int>& in, const std::vector<int>& tg) {
  std::vector<double> ref_grads(m.layout().total, 0.0);
  const double ref_loss = model::ref::gpt2_forward_backward(m.config(), m.batch(), m.seq_len(), params,
                                                            in, tg, m.reciprocity_scale(), ref_grads);
  m.set_batch(in, tg);
  m.poison_activations();
  const double loss = m.forward();
  m.zero_grad();
  m.backward();
  const auto grads = download(m.grads());
  Errors e;
  e.loss = std::abs(loss - ref_loss) / std::max(std::abs(ref_loss), 1.0);
  for (const auto& t : m.layout().tensors) {
    const std::vector<double> got(grads.begin() + t.offset, grads.begin() + t.offset + t.size);
    const std::vector<double> want(ref_grads.begin() + t.offset, ref_grads.begin() + t.offset + t.size);
    const double err = max_rel_error(got, want);
    if (!(err <= e.grads)) e.grads = err, e.worst = t.name;
    double diff = 0, size = 0;
    for (std::size_t i = 0; i < t.size; ++i)
      diff = std::max(diff, std::abs(got[i] - want[i])), size = std::max(size, std::abs(want[i]));
    if (size > 0) e.grads_own = std::max(e.grads_own, diff / size);
  }
  // The alignment gaps between tensors carry no gradient.
  double gaps = 0;
  std::vector<bool> used(grads.size(), false);
  for (const auto& t : m.layout().tensors)
    for (std::size_t i = 0; i < t.size; ++i) used[t.offset + i] = true;
  for (std::size_t i = 0; i < grads.size(); ++i)
    if (!used[i]) gaps = std::max(gaps, std::abs(grads[i]));
  CHECK(gaps == 0.0);
  return e;
}

struct VariantCase {
  std::string label;
  GPTConfig cfg;
  double scale = 1.0;
};

std::vector<VariantCase> variant_cases() {
  std::vector<VariantCase> cases;
  for (const char* v : {"sdpa_open", "sdpa_fused", "ra_open", "ra_fused", "ra_window"})
    cases.push_back({v, small_config(v)});
  VariantCase hybrid{"hybrid sdpa_fused + ra_open in layer 1", small_config("sdpa_fused")};
  hybrid.cfg.attn.ra_layers = "1", hybrid.cfg.attn.ra_variant = "ra_open";
  cases.push_back(hybrid);
  VariantCase content{"ra_fused, content discoverability", small_config("ra_fused")};
  content.cfg.attn.disc = model::DiscForm::content;
  cases.push_back(content);
  VariantCase window_content{"ra_window, content discoverability", small_config("ra_window")};
  window_content.cfg.attn.disc = model::DiscForm::content;
  cases.push_back(window_content);
  VariantCase half{"ra_fused annealed to 0.5 (rec_disc)", small_config("ra_fused"), 0.5};
  cases.push_back(half);
  VariantCase half_rec{"ra_open annealed to 0.5 (rec)", small_config("ra_open"), 0.5};
  half_rec.cfg.attn.anneal = model::Anneal::rec;
  cases.push_back(half_rec);
  VariantCase zero{"ra_fused annealed to 0 (rec_disc: SDPA dispatch)", small_config("ra_fused"), 0.0};
  cases.push_back(zero);
  VariantCase zero_open{"ra_open annealed to 0 (rec_disc: SDPA dispatch), content",
                        small_config("ra_open"), 0.0};
  zero_open.cfg.attn.disc = model::DiscForm::content;
  cases.push_back(zero_open);
  return cases;
}

}  // namespace

TEMPLATE_TEST_CASE("GPT-2 loss and every parameter gradient match the float64 reference",
                   "[model][gpt2]", float, double) {
  const int B = 2, T = 12;  // T < T_max = 16: the position and discoverability tables are read in part
  const double tol = model_tolerance<TestType>();
  double worst = 0;
  for (const auto& c : variant_cases()) {
    GPT2<TestType, Exec> m(c.cfg, B, T, 7);
    m.set_reciprocity_scale(c.scale);
    const auto params = randomize_params(m, 11);
    const auto in = random_tokens(B * T, c.cfg.V, 12), tg = random_tokens(B * T, c.cfg.V, 13);
    const Errors e = compare_with_reference(m, params, in, tg);
    INFO(c.label << " (" << precision_name<TestType>() << "): loss error " << e.loss
                 << ", worst gradient error " << e.grads << " in " << e.worst);
    CHECK(e.loss <= tol);
    CHECK(e.grads <= tol);
    // Also tensor by tensor at that tensor's own scale (gradients are ~1e-2).
    CHECK(e.grads_own <= 10 * tol);
    worst = std::max({worst, e.loss, e.grads});
    std::printf("model vs reference [%s] %-58s loss %.1e  grads %.1e (%s), own scale %.1e\n",
                precision_name<TestType>(), c.label.c_str(), e.loss, e.grads, e.worst.c_str(),
                e.grads_own);
  }
  std::printf("model vs reference [%s]: worst %.2e (tolerance %.0e)\n", precision_name<TestType>(), worst, tol);
}

TEST_CASE("GPT-2 gradients match finite differences of the loss", "[model][gpt2]") {
  for (const char* variant : {"ra_fused", "sdpa_open"}) {
    GPTConfig cfg = small_config(variant);
    cfg.attn.disc = model::DiscForm::content;
    const int B = 2, T = 8;
    GPT2<double, Exec> m(cfg, B, T, 3);
    randomize_params(m, 5);
    const auto in = random_tokens(B * T, cfg.V, 6), tg = random_tokens(B * T, cfg.V, 7);
    m.set_batch(in, tg);
    m.forward();
    m.zero_grad();
    m.backward();
    const auto grads = download(m.grads());
    auto state = m.save_state();
    auto loss_at = [&](std::size_t i, double x) {
      auto s = state;
      s.params[i] = x;
      m.load_state(s);
      return m.forward();
    };
    std::vector<std::pair<std::string, std::size_t>> probes = {
        {"wte", std::size_t(in[0]) * cfg.C + 3}, {"wpe", 5}, {"h0.qkv.w", 17}, {"h1.qkv.w", 700},
        {"h0.attn_proj.b", 2}, {"h1.fc.w", 123}, {"h0.fc_proj.w", 55}, {"h1.ln1.w", 4},
        {"h0.ln2.b", 9}, {"lnf.w", 1}};
    if (cfg.attn.variant == "ra_fused")
      for (std::size_t g : {0, 1, 2, 4}) probes.push_back({"h1.gates", g});
    if (cfg.attn.variant == "ra_fused") probes.push_back({"h0.disc_u", 3});
    double worst = 0;
    for (const auto& [name, k] : probes) {
      const std::size_t i = m.layout().at(name).offset + k;
      const double h = 1e-5, x = state.params[i];
      const double fd = (loss_at(i, x + h) - loss_at(i, x - h)) / (2 * h);
      const double err = std::abs(fd - grads[i]) / std::max(std::abs(grads[i]), 1e-3);
      INFO(variant << " " << name << "[" << k << "]: analytic " << grads[i] << ", finite difference " << fd);
      CHECK(err <= 1e-5);
      worst = std::max(worst, err);
    }
    std::printf("model finite differences [%s]: worst relative error %.2e over %zu parameters\n",
                variant, worst, probes.size());
  }
}

// Trains model m on one fixed batch (B*T tokens, V = 64) with AdamW at lr
// 1e-2 until the loss drops below 0.1 or max_steps; what the memorise tests check.
struct Memorised {
  double first = 0, loss = 0, seconds = 0;
  int steps = 0;
};
template <class Model>
Memorised memorise_one_batch(Model& m, int max_steps) {
  const int N = m.batch() * m.seq_len(), V = m.config().V;
  m.set_batch(random_tokens(N, V, 2), random_tokens(N, V, 3));
  model::AdamWConfig hp;
  hp.lr = 1e-2, hp.weight_decay = 0.0;
  const auto t0 = std::chrono::steady_clock::now();
  Memorised r;
  r.loss = r.first = m.forward();
  for (; r.steps < max_steps && r.loss >= 0.1; ++r.steps) {
    m.zero_grad();
    m.backward();
    m.clip_grad_norm(1.0);
    m.step(hp);
    r.loss = m.forward();
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

TEST_CASE("GPT-2 memorises one batch with AdamW", "[model][gpt2][train]") {
  for (const char* variant : {"ra_fused", "sdpa_fused"}) {
    const GPTConfig cfg = small_config(variant);
    GPT2<float, Exec> m(cfg, 4, 16, 1);
    const Memorised r = memorise_one_batch(m, 400);
    std::printf("memorise [%s]: loss %.3f -> %.4f in %d AdamW steps, %.2f s\n", variant, r.first, r.loss,
                r.steps, r.seconds);
    CHECK(r.first > 3.5);  // ~ln(64) at init
    CHECK(r.loss < 0.1);
    CHECK(m.optimizer_steps() == r.steps);
  }
}

TEST_CASE("GPT-2 initialisation is deterministic and follows GPT-2's scheme", "[model][gpt2]") {
  GPTConfig cfg = small_config("ra_fused");
  cfg.attn.disc = model::DiscForm::content;
  GPT2<float, Kokkos::Serial> serial(cfg, 2, 8, 42);
  GPT2<float, Exec> parallel(cfg, 2, 8, 42);
  const auto a = serial.save_state().params, b = parallel.save_state().params;
  // Element i of a tensor depends only on (seed, name, i): bit-identical on
  // host spaces; a GPU's log/cos may differ from the host's in the last bit.
  if (std::is_same_v<Exec::memory_space, Kokkos::HostSpace>)
    CHECK(a == b);
  else
    CHECK(max_rel_error(std::vector<double>(b.begin(), b.end()), std::vector<double>(a.begin(), a.end())) <= 1e-6);
  GPT2<float, Kokkos::Serial> other(cfg, 2, 8, 43);
  CHECK(other.save_state().params != a);
  // An SDPA model from the same seed shares every common tensor.
  GPT2<float, Kokkos::Serial> sdpa(small_config("sdpa_fused"), 2, 8, 42);
  const auto c = sdpa.save_state().params;
  for (const auto& t : sdpa.layout().tensors) {
    const auto& u = serial.layout().at(t.name);
    CHECK(std::equal(c.begin() + t.offset, c.begin() + t.offset + t.size, a.begin() + u.offset));
  }

  const auto& L = serial.layout();
  auto stats = [&](const std::string& name) {
    const auto& t = L.at(name);
    double mean = 0, sq = 0;
    for (std::size_t i = 0; i < t.size; ++i) mean += a[t.offset + i] / t.size;
    for (std::size_t i = 0; i < t.size; ++i) sq += (a[t.offset + i] - mean) * (a[t.offset + i] - mean) / t.size;
    return std::make_pair(mean, std::sqrt(sq));
  };
  CHECK(std::abs(stats("h0.fc.w").second - 0.02) < 0.002);
  CHECK(std::abs(stats("h1.fc_proj.w").second - 0.02 / std::sqrt(2.0 * cfg.L)) < 0.001);
  CHECK(std::abs(stats("h0.attn_proj.w").second - 0.02 / std::sqrt(2.0 * cfg.L)) < 0.001);
  CHECK(stats("h0.ln1.w") == std::make_pair(1.0, 0.0));
  CHECK(stats("h1.fc.b") == std::make_pair(0.0, 0.0));
  const auto gates = serial.gate_means();
  CHECK(gates[1].w_std == Approx(0.5));
  CHECK(gates[1].w_rec == Approx(0.3));
  CHECK(gates[1].w_disc == Approx(0.2));
  const auto& wte = L.at("wte");
  for (std::size_t i = std::size_t(cfg.V) * cfg.C; i < wte.size; ++i) CHECK(a[wte.offset + i] == 0.0f);

  // Same loss on both spaces to rounding.
  const auto in = random_tokens(16, cfg.V, 1), tg = random_tokens(16, cfg.V, 2);
  serial.set_batch(in, tg), parallel.set_batch(in, tg);
  CHECK(std::abs(serial.forward() - parallel.forward()) < 1e-5);
}

TEST_CASE("An annealed RA layer at w_rec = 0 dispatches to SDPA, with the RA kernel's loss and "
          "gradients", "[model][gpt2][anneal]") {
  const int B = 2, T = 12;
  for (const char* variant : {"ra_fused", "ra_open", "ra_window"}) {
    const GPTConfig cfg = small_config(variant);
    GPT2<double, Exec> dispatched(cfg, B, T, 9);
    const auto params = randomize_params(dispatched, 10);
    dispatched.set_reciprocity_scale(0.0);
    const std::string sdpa = std::string(variant) == "ra_open" ? "sdpa_open" : "sdpa_fused";
    CHECK(dispatched.layer_kernels() == std::vector<std::string>{sdpa, sdpa});

    // The same model run by its RA kernel with gates (w_std, 0, 0): the
    // seeds' annealing (w_rec only) at scale 0, with w_disc set to 0.
    GPTConfig rec_cfg = cfg;
    rec_cfg.attn.anneal = model::Anneal::rec;
    GPT2<double, Exec> ra_kernel(rec_cfg, B, T, 9);
    auto st = dispatched.save_state();
    for (int l = 0; l < cfg.L; ++l) {
      const auto& g = ra_kernel.layout().at("h" + std::to_string(l) + ".gates");
      for (int h = 0; h < cfg.H; ++h) st.params[g.offset + 3 * h + kDisc] = 0.0;
    }
    ra_kernel.load_state(st);
    ra_kernel.set_reciprocity_scale(0.0);
    CHECK(ra_kernel.layer_kernels() == std::vector<std::string>{variant, variant});

    const auto in = random_tokens(B * T, cfg.V, 1), tg = random_tokens(B * T, cfg.V, 2);
    dispatched.set_batch(in, tg), ra_kernel.set_batch(in, tg);
    const double loss_sdpa = dispatched.forward(), loss_ra = ra_kernel.forward();
    dispatched.zero_grad(), ra_kernel.zero_grad();
    dispatched.backward(), ra_kernel.backward();
    INFO(variant << ": loss via SDPA " << loss_sdpa << ", via the RA kernel " << loss_ra);
    CHECK(std::abs(loss_sdpa - loss_ra) <= 1e-12 * std::abs(loss_ra));
    // Every gradient agrees except dw_disc: under rec_disc it is a * (...) = 0,
    // under rec the RA model still learns w_disc.
    auto g_sdpa = download(dispatched.grads()), g_ra = download(ra_kernel.grads());
    double worst = 0;
    for (int l = 0; l < cfg.L; ++l) {
      const auto& g = dispatched.layout().at("h" + std::to_string(l) + ".gates");
      for (int h = 0; h < cfg.H; ++h) {
        CHECK(g_sdpa[g.offset + 3 * h + kRec] == 0.0);
        CHECK(g_ra[g.offset + 3 * h + kRec] == 0.0);
        CHECK(g_sdpa[g.offset + 3 * h + kDisc] == 0.0);
        g_ra[g.offset + 3 * h + kDisc] = 0.0;
      }
      const auto& d = dispatched.layout().at("h" + std::to_string(l) + ".disc_table");
      for (std::size_t i = 0; i < d.size; ++i) CHECK(g_sdpa[d.offset + i] == 0.0);
    }
    for (std::size_t i = 0; i < g_ra.size(); ++i) worst = std::max(worst, std::abs(g_sdpa[i] - g_ra[i]));
    CHECK(worst <= 1e-12);
    std::printf("anneal [%s]: SDPA dispatch vs RA kernel at w_rec = 0: loss diff %.1e, grad diff %.1e\n",
                variant, std::abs(loss_sdpa - loss_ra), worst);

    dispatched.set_reciprocity_scale(0.25);
    CHECK(dispatched.layer_kernels() == std::vector<std::string>{variant, variant});

    // A scale set between forward and backward waits for the next forward.
    dispatched.forward();
    dispatched.zero_grad();
    dispatched.backward();
    const auto at_quarter = download(dispatched.grads());
    dispatched.forward();
    dispatched.set_reciprocity_scale(0.0);
    dispatched.zero_grad();
    dispatched.backward();
    CHECK(download(dispatched.grads()) == at_quarter);
  }
}

TEST_CASE("GPT-2 training state: save/load, gradient accumulation, clipping", "[model][gpt2]") {
  const GPTConfig cfg = small_config("ra_fused");
  const int B = 2, T = 8;
  GPT2<double, Exec> m(cfg, B, T, 1);
  const auto in = random_tokens(B * T, cfg.V, 1), tg = random_tokens(B * T, cfg.V, 2);
  m.set_batch(in, tg);
  m.forward();
  m.zero_grad();
  m.backward();
  const auto once = download(m.grads());
  m.forward();
  m.backward();  // accumulates a second copy
  const auto twice = download(m.grads());
  for (std::size_t i = 0; i < once.size(); ++i) CHECK(twice[i] == Approx(2 * once[i]).margin(1e-15));
  const double norm = m.grad_norm();
  CHECK(m.clip_grad_norm(norm / 4) == Approx(norm));
  CHECK(m.grad_norm() == Approx(norm / 4));
  CHECK(m.clip_grad_norm(1e9) == Approx(norm / 4));  // below the limit: unchanged
  model::AdamWConfig hp;
  m.step(hp), m.step(hp);
  const auto saved = m.save_state();
  CHECK(saved.step == 2);

  GPT2<double, Exec> copy(cfg, B, T, 99);
  copy.load_state(saved);
  CHECK(copy.optimizer_steps() == 2);
  CHECK(copy.save_state().params == saved.params);
  copy.set_batch(in, tg), m.set_batch(in, tg);
  CHECK(copy.forward() == m.forward());
  // Both continue identically (the moments came along).
  copy.zero_grad(), m.zero_grad();
  copy.backward(), m.backward();
  copy.step(hp), m.step(hp);
  CHECK(copy.save_state().params == m.save_state().params);

  GPT2<double, Exec> sdpa(small_config("sdpa_fused"), B, T, 1);
  CHECK_THROWS_WITH(sdpa.load_state(saved), Catch::Contains("GPT2::load_state: params has"));
  GPT2<double, Exec> fresh(cfg, B, T, 1);
  CHECK_THROWS_WITH(fresh.backward(), Catch::Contains("needs a forward() with targets"));
  CHECK_THROWS_WITH(fresh.forward(), Catch::Contains("call set_batch first"));
  fresh.set_batch(in, {});
  CHECK(std::isnan(fresh.forward()));  // logits only
  CHECK_THROWS_WITH(fresh.backward(), Catch::Contains("needs a forward() with targets"));
}

TEST_CASE("GPT-2 presets and bad configurations", "[model][config]") {
  const auto p124 = model::preset("gpt2-124m");
  const auto layout = model::param_layout(p124);
  std::size_t n = 0;
  for (const auto& t : layout.tensors) n += t.size;
  CHECK(n == 124475904);  // llm.c's count for GPT-2 124M with the padded vocabulary
  CHECK(p124.padded() == 50304);
  for (const auto& name : model::preset_names()) CHECK_NOTHROW(model::preset(name).validate());
  CHECK_THROWS_WITH(model::preset("gpt2-xl"), Catch::Contains("unknown GPT-2 preset 'gpt2-xl'"));
  CHECK(model::parse_layer_list("4-8", 12) == std::vector<int>{4, 5, 6, 7, 8});
  CHECK(model::parse_layer_list("0,2,5-6,2", 12) == std::vector<int>{0, 2, 5, 6});
  CHECK(model::parse_layer_list("all", 3) == std::vector<int>{0, 1, 2});
  GPTConfig hybrid = model::preset("gpt2-124m");
  hybrid.attn.ra_layers = "4-8";
  const auto layers = model::layer_attention(hybrid);
  CHECK(layers[3].variant == "sdpa_fused");
  CHECK(layers[4].variant == "ra_fused");
  CHECK(layers[8].ra);
  CHECK_FALSE(layers[9].ra);

  auto bad = [](const std::function<void(GPTConfig&)>& change) {
    GPTConfig c = small_config("ra_fused");
    change(c);
    return c;
  };
  const std::vector<std::pair<GPTConfig, std::string>> cases = {
      {bad([](GPTConfig& c) { c.C = 31; }), "width C = 31 is not divisible by H = 2 heads"},
      {bad([](GPTConfig& c) { c.L = 0; }), "L (layers) = 0 but must be >= 1"},
      {bad([](GPTConfig& c) { c.H = 1, c.C = 256; }), "fused kernels (D <= 128)"},
      {bad([](GPTConfig& c) { c.Vp = 60; }), "padded vocabulary Vp = 60 is smaller than V = 64"},
      {bad([](GPTConfig& c) { c.attn.variant = "flash"; }), "unknown attention variant 'flash'"},
      {bad([](GPTConfig& c) { c.attn.ra_layers = "1-5"; }), "layer 5 does not exist (the model has 2 layers"},
      {bad([](GPTConfig& c) { c.attn.ra_layers = "1-0"; }), "range '1-0' runs backwards"},
      {bad([](GPTConfig& c) { c.attn.ra_layers = "x"; }), "'x' is not a layer number"},
      {bad([](GPTConfig& c) { c.attn.window = 4; }), "window = 4 is set but no layer runs ra_window"},
      {bad([](GPTConfig& c) { c.attn.variant = "ra_window"; }), "ra_window needs a window >= 0"},
  };
  for (const auto& [cfg, message] : cases) {
    INFO("expected: " << message);
    CHECK_THROWS_WITH(cfg.validate(), Catch::Contains(message));
    CHECK_THROWS_WITH((GPT2<float, Exec>(cfg, 1, 4, 1)), Catch::Contains(message));
  }
  CHECK_THROWS_WITH(model::parse_disc_form("learned"), Catch::Contains("known: table, content"));
  CHECK_THROWS_WITH(model::parse_anneal("linear"), Catch::Contains("known: rec, rec_disc"));
  const GPTConfig ok = small_config("sdpa_fused");
  CHECK_THROWS_WITH((GPT2<float, Exec>(ok, 1, 17, 1)), Catch::Contains("1 <= T <= T_max = 16"));
  GPT2<float, Exec> m(ok, 1, 4, 1);
  CHECK_THROWS_WITH(m.set_batch({1, 2, 64, 3}, {1, 2, 3, 4}),
                    Catch::Contains("inputs[2] = 64 is outside the vocabulary [0, 64)"));
  CHECK_THROWS_WITH(m.set_batch({1, 2, 3}, {1, 2, 3}), Catch::Contains("inputs has 3 tokens, expected B*T = 4"));
  CHECK_THROWS_WITH(m.set_reciprocity_scale(1.5), Catch::Contains("outside [0, 1]"));
}

TEST_CASE("bf16 attention: names, description and who refuses it", "[model][config][bf16]") {
  using model::AttentionPrecision;
  CHECK(model::parse_attention_precision("float") == AttentionPrecision::scalar);
  CHECK(model::parse_attention_precision("bf16") == AttentionPrecision::bf16);
  CHECK(model::attention_precision_name(AttentionPrecision::bf16) == "bf16");
  CHECK_THROWS_WITH(model::parse_attention_precision("fp8"), Catch::Contains("known: float, bf16"));

  GPTConfig cfg = small_config("ra_fused");
  // A float-attention model describes itself as it always did (run files, checkpoints).
  CHECK(cfg.describe().find("attention_precision") == std::string::npos);
  cfg.attn.precision = AttentionPrecision::bf16;
  CHECK(cfg.describe().find("attention_precision=bf16") != std::string::npos);
#if defined(RA_HAVE_BF16)
  CHECK(model::build_has_bf16());
  CHECK_NOTHROW(cfg.validate());
  // Open-coded kernels are float-only in the model, in any layer.
  GPTConfig open = cfg;
  open.attn.variant = "sdpa_open";
  open.attn.ra_layers = "1", open.attn.ra_variant = "ra_fused";
  CHECK_THROWS_WITH(open.validate(), Catch::Contains("bf16 attention needs a fused variant") &&
                                         Catch::Contains("layer 0 runs sdpa_open"));
  GPTConfig hybrid_open = cfg;
  hybrid_open.attn.variant = "sdpa_fused";
  hybrid_open.attn.ra_layers = "1", hybrid_open.attn.ra_variant = "ra_open";
  CHECK_THROWS_WITH(hybrid_open.validate(), Catch::Contains("layer 1 runs ra_open"));
  CHECK_THROWS_WITH((GPT2<double, Exec>(cfg, 1, 4, 1)),
                    Catch::Contains("bf16 attention needs Scalar = float (this model is float64)"));
#else
  CHECK_FALSE(model::build_has_bf16());
  // The build is named before anything else: on a host build nothing else helps.
  for (const char* variant : {"sdpa_fused", "ra_fused", "ra_window", "sdpa_open"}) {
    GPTConfig c = small_config(variant);
    c.attn.precision = AttentionPrecision::bf16;
    INFO(variant);
    CHECK_THROWS_WITH(c.validate(), Catch::Contains("bf16 attention needs a CUDA build"));
    CHECK_THROWS_WITH((GPT2<float, Exec>(c, 1, 4, 1)), Catch::Contains("bf16 attention needs a CUDA build"));
  }
#endif
}

TEST_CASE("Matmul precision: names, description and who refuses it", "[model][config][matmul]") {
  using model::MatmulPrecision;
  CHECK(model::parse_matmul_precision("float") == MatmulPrecision::fp32);
  CHECK(model::parse_matmul_precision("tf32") == MatmulPrecision::tf32);
  CHECK(model::parse_matmul_precision("bf16") == MatmulPrecision::bf16);
  CHECK(model::matmul_precision_name(MatmulPrecision::tf32) == "tf32");
  CHECK_THROWS_WITH(model::parse_matmul_precision("fp16"), Catch::Contains("known: float, tf32, bf16"));
  GPTConfig cfg = small_config("ra_fused");
  CHECK(cfg.describe().find("matmul_precision") == std::string::npos);  // fp32 models read as before
  for (auto p : {MatmulPrecision::tf32, MatmulPrecision::bf16}) {
    GPTConfig c = cfg;
    c.matmul = p;
    INFO(model::matmul_precision_name(p));
    CHECK(c.describe().find("matmul_precision=" + model::matmul_precision_name(p)) != std::string::npos);
#if defined(KOKKOS_ENABLE_CUDA)
    CHECK_NOTHROW(c.validate());
    // Only the float model on the CUDA space has the cuBLAS path.
    CHECK_THROWS_WITH((GPT2<double, Kokkos::Cuda>(c, 1, 4, 1)), Catch::Contains("needs a float model on the CUDA"));
    CHECK_THROWS_WITH((GPT2<float, Kokkos::Serial>(c, 1, 4, 1)), Catch::Contains("needs a float model on the CUDA"));
#else
    CHECK_THROWS_WITH(c.validate(), Catch::Contains("needs a CUDA build"));
    CHECK_THROWS_WITH((GPT2<float, Exec>(c, 1, 4, 1)), Catch::Contains("needs a CUDA build"));
#endif
  }
}

#if defined(RA_HAVE_BF16) && defined(KOKKOS_ENABLE_CUDA)
// The float model with its attention in bf16 (attn.precision = bf16) against
// the float64 reference: q, k, v, o, dout, dq, dk, dv are rounded to bf16
// (8 mantissa bits, 2^-9 relative) on the way into and out of the attention.
// Tolerances: loss and every gradient tensor within 3e-2 of the reference,
// relative to max(|ref|, 1) as the float tests (the kernels' own bf16
// tolerance is 2e-2, and two layers compound it); and, because gradients are
// ~1e-2 so that scale alone would let a wrong gradient through, every gradient
// tensor within 10% of its own largest |ref|.
TEST_CASE("GPT-2 with bf16 attention matches the float64 reference on CUDA", "[model][gpt2][bf16]") {
  using Cuda = Kokkos::Cuda;
  const int B = 2, T = 12;
  const double tol = 3e-2, tol_own = 0.1;
  // The float tests' cases whose layers are all fused (bf16 refuses open-coded
  // kernels), and the hybrid with a fused RA layer.
  std::vector<VariantCase> cases;
  for (const auto& c : variant_cases()) {
    const auto layers = model::layer_attention(c.cfg);
    if (std::all_of(layers.begin(), layers.end(), [](const auto& la) { return la.fused; })) cases.push_back(c);
  }
  VariantCase hybrid{"hybrid sdpa_fused + ra_fused in layer 1", small_config("sdpa_fused")};
  hybrid.cfg.attn.ra_layers = "1", hybrid.cfg.attn.ra_variant = "ra_fused";
  cases.push_back(hybrid);
  double worst = 0;
  for (auto& c : cases) {
    c.cfg.attn.precision = model::AttentionPrecision::bf16;
    GPT2<float, Cuda> m(c.cfg, B, T, 7);
    m.set_reciprocity_scale(c.scale);
    if (c.scale == 0.0) CHECK(m.layer_kernels() == std::vector<std::string>{"sdpa_fused", "sdpa_fused"});
    const auto params = randomize_params(m, 11);
    const auto in = random_tokens(B * T, c.cfg.V, 12), tg = random_tokens(B * T, c.cfg.V, 13);
    const Errors e = compare_with_reference(m, params, in, tg);
    INFO(c.label << " (bf16 attention): loss error " << e.loss << ", worst gradient error " << e.grads
                 << " in " << e.worst << ", own scale " << e.grads_own);
    CHECK(e.loss <= tol);
    CHECK(e.grads <= tol);
    CHECK(e.grads_own <= tol_own);
    worst = std::max({worst, e.loss, e.grads});
    std::printf("model vs reference [bf16 attention] %-58s loss %.1e  grads %.1e (%s), own scale %.1e\n",
                c.label.c_str(), e.loss, e.grads, e.worst.c_str(), e.grads_own);
  }
  std::printf("model vs reference [bf16 attention]: worst %.2e (tolerance %.0e)\n", worst, tol);

  // The [B, H, T, D] tensors take half the bytes.
  GPTConfig f32 = small_config("ra_fused"), b16 = f32;
  b16.attn.precision = model::AttentionPrecision::bf16;
  CHECK(GPT2<float, Cuda>(b16, B, T, 1).activation_bytes() < GPT2<float, Cuda>(f32, B, T, 1).activation_bytes());
}

TEST_CASE("GPT-2 with bf16 attention memorises one batch on CUDA", "[model][gpt2][train][bf16]") {
  for (const char* variant : {"ra_fused", "sdpa_fused"}) {
    GPTConfig cfg = small_config(variant);
    cfg.attn.precision = model::AttentionPrecision::bf16;
    GPT2<float, Kokkos::Cuda> m(cfg, 4, 16, 1);
    // The float model needs < 400 steps; bf16 rounding gets some slack.
    const Memorised r = memorise_one_batch(m, 600);
    std::printf("memorise [%s, bf16 attention]: loss %.3f -> %.4f in %d AdamW steps\n", variant, r.first, r.loss,
                r.steps);
    CHECK(r.first > 3.5);  // ~ln(64) at init
    CHECK(r.loss < 0.1);
  }
}

// Matmul::gemm in tf32 and bf16 against a float64 product, every transpose
// combination the model uses, on sizes that are not multiples of anything.
// Inputs are rounded to bf16 first, so both tensor-core forms represent them
// exactly and any error beyond fp32 summation order is a layout mistake.
TEST_CASE("Matmul tf32 and bf16 GEMMs on CUDA match a float64 product", "[model][matmul]") {
  using Cuda = Kokkos::Cuda;
  using MM = model::Matmul<float, Cuda>;
  const int M = 37, N = 19, K = 45;
  struct Op {
    char ta, tb;
  };
  for (const Op op : {Op{'N', 'T'}, Op{'N', 'N'}, Op{'T', 'N'}}) {
    const int ar = op.ta == 'N' ? M : K, ac = op.ta == 'N' ? K : M;
    const int br = op.tb == 'N' ? K : N, bc = op.tb == 'N' ? N : K;
    auto host = [](int r, int c, std::uint64_t seed) {
      std::vector<float> x(std::size_t(r) * c);
      std::uint64_t st = seed;
      for (auto& v : x) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        v = float(bf16(float(double(st >> 11) / double(1ull << 53) * 2 - 1)));
      }
      return x;
    };
    const auto a = host(ar, ac, 1), b = host(br, bc, 2), c0 = host(M, N, 3);
    auto device = [](const std::vector<float>& x, int r, int c) {
      MM::Mat d("m", r, c);
      Kokkos::deep_copy(d, Kokkos::View<const float**, Kokkos::LayoutRight, Kokkos::HostSpace>(x.data(), r, c));
      return d;
    };
    const MM::Operand A{device(a, ar, ac), MM::Half("ah", ar, ac)}, B{device(b, br, bc), MM::Half("bh", br, bc)};
    MM::to_half(Cuda(), A.full, A.half);
    MM::to_half(Cuda(), B.full, B.half);
    for (auto p : {model::MatmulPrecision::fp32, model::MatmulPrecision::tf32, model::MatmulPrecision::bf16}) {
      const auto C = device(c0, M, N);
      MM::gemm(Cuda(), p, op.ta, op.tb, 0.5f, A, B, 2.0f, C);
      const auto got = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), C);
      double err = 0;
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
          double ref = 2.0 * c0[std::size_t(i) * N + j];
          for (int k = 0; k < K; ++k) {
            const double x = op.ta == 'N' ? a[std::size_t(i) * ac + k] : a[std::size_t(k) * ac + i];
            const double y = op.tb == 'N' ? b[std::size_t(k) * bc + j] : b[std::size_t(j) * bc + k];
            ref += 0.5 * x * y;
          }
          err = std::max(err, std::abs(got(i, j) - ref));
        }
      INFO(op.ta << op.tb << " " << model::matmul_precision_name(p) << ": max error " << err);
      CHECK(err < 1e-4);
    }
  }
}

// The float model with tf32 or bf16 matmuls (and with bf16 attention too)
// against the float64 reference. bf16 rounds every GEMM input (weights,
// activations, output gradients) to 8 mantissa bits; tf32 to 10. Same
// tolerances as the bf16-attention test above.
TEST_CASE("GPT-2 with tf32 and bf16 matmuls matches the float64 reference on CUDA", "[model][gpt2][matmul]") {
  using Cuda = Kokkos::Cuda;
  const int B = 2, T = 12;
  const double tol = 3e-2, tol_own = 0.1;
  struct Setup {
    const char* label;
    model::MatmulPrecision mm;
    bool bf16_attention;
  };
  double worst = 0;
  for (const Setup su : {Setup{"tf32 matmuls", model::MatmulPrecision::tf32, false},
                         Setup{"bf16 matmuls", model::MatmulPrecision::bf16, false},
                         Setup{"bf16 matmuls + bf16 attention", model::MatmulPrecision::bf16, true}}) {
    for (const char* variant : {"sdpa_fused", "ra_fused", "ra_window", "ra_open"}) {
      if (su.bf16_attention && std::string(variant) == "ra_open") continue;  // open-coded attention is float-only
      GPTConfig cfg = small_config(variant);
      cfg.matmul = su.mm;
      if (su.bf16_attention) cfg.attn.precision = model::AttentionPrecision::bf16;
      GPT2<float, Cuda> m(cfg, B, T, 7);
      const auto params = randomize_params(m, 11);
      const auto in = random_tokens(B * T, cfg.V, 12), tg = random_tokens(B * T, cfg.V, 13);
      const Errors e = compare_with_reference(m, params, in, tg);
      INFO(su.label << ", " << variant << ": loss error " << e.loss << ", worst gradient error " << e.grads << " in "
                    << e.worst << ", own scale " << e.grads_own);
      CHECK(e.loss <= tol);
      CHECK(e.grads <= tol);
      CHECK(e.grads_own <= tol_own);
      worst = std::max({worst, e.loss, e.grads});
      std::printf("model vs reference [%s] %-12s loss %.1e  grads %.1e (%s), own scale %.1e\n", su.label, variant,
                  e.loss, e.grads, e.worst.c_str(), e.grads_own);
    }
  }
  std::printf("model vs reference [tf32/bf16 matmuls]: worst %.2e (tolerance %.0e)\n", worst, tol);
}

TEST_CASE("GPT-2 with bf16 matmuls and bf16 attention memorises one batch on CUDA", "[model][gpt2][train][matmul]") {
  GPTConfig cfg = small_config("ra_fused");
  cfg.matmul = model::MatmulPrecision::bf16;
  cfg.attn.precision = model::AttentionPrecision::bf16;
  GPT2<float, Kokkos::Cuda> m(cfg, 4, 16, 1);
  const Memorised r = memorise_one_batch(m, 600);
  std::printf("memorise [ra_fused, bf16 matmuls + attention]: loss %.3f -> %.4f in %d AdamW steps\n", r.first,
              r.loss, r.steps);
  CHECK(r.first > 3.5);
  CHECK(r.loss < 0.1);
}
#endif

// Not part of the suite (hidden tag): times training steps of the gpt2-tiny
// preset on this machine, by phase. Run: test_model "[.bench]".
TEST_CASE("gpt2-tiny training step timing", "[.][bench]") {
  const int B = 8, T = 128, steps = 3;
  for (const char* variant : {"sdpa_fused", "ra_fused", "ra_open"}) {
    GPTConfig cfg = model::preset("gpt2-tiny");
    cfg.attn.variant = variant;
    GPT2<float, Exec> m(cfg, B, T, 1);
    m.set_attention_timing(true);
    const auto in = random_tokens(B * T, cfg.V, 1), tg = random_tokens(B * T, cfg.V, 2);
    double fwd = 0, bwd = 0, opt = 0, loss = 0;
    auto ms = [](auto t0) {
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    };
    for (int s = 0; s <= steps; ++s) {
      if (s == 1) fwd = bwd = opt = 0, m.reset_attention_timing();  // step 0 warms up
      m.set_batch(in, tg);
      auto t0 = std::chrono::steady_clock::now();
      loss = m.forward();
      fwd += ms(t0);
      t0 = std::chrono::steady_clock::now();
      m.zero_grad();
      m.backward();
      Kokkos::fence();
      bwd += ms(t0);
      t0 = std::chrono::steady_clock::now();
      m.clip_grad_norm(1.0);
      m.step(model::AdamWConfig{});
      Kokkos::fence();
      opt += ms(t0);
    }
    std::printf("gpt2-tiny %-10s B=%d T=%d on %s (%d threads): step %.0f ms = forward %.0f + backward %.0f "
                "+ clip/AdamW %.0f; attention %.0f + %.0f ms; loss %.3f; params %.1f MB, activations %.1f MB\n",
                variant, B, T, Exec::name(), Exec().concurrency(), (fwd + bwd + opt) / steps,
                fwd / steps, bwd / steps, opt / steps, m.attention_forward_ms() / steps,
                m.attention_backward_ms() / steps, loss, m.parameter_bytes() / 1e6,
                m.activation_bytes() / 1e6);
  }
}

// Not part of the suite: GFLOP/s of the model's GEMMs (KokkosBlas::gemm) at
// gpt2-tiny's LM-head shape. Run: test_model "[.bench]".
TEST_CASE("LM-head GEMM throughput", "[.][bench]") {
  using Ops = model::Layers<float, Exec>;
  const int N = 1024, C = 128, Vp = 50304;
  Ops::Mat x("x", N, C), w("w", Vp, C), y("y", N, Vp), dx("dx", N, C), dw("dw", Vp, C);
  Ops::Vec work("work", 1);
  for (int rep = 0; rep < 2; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    Ops::linear_forward(Exec(), x, w, Ops::Vec(), y, Ops::Mat());
    Kokkos::fence();
    const double f = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    t0 = std::chrono::steady_clock::now();
    Ops::linear_backward(Exec(), y, x, w, dx, false, dw, Ops::Vec(), work);
    Kokkos::fence();
    const double b = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double flops = 2.0 * N * C * Vp;
    std::printf("LM-head GEMM [%d x %d] x [%d x %d]^T on %s: forward %.0f ms (%.1f GFLOP/s), backward %.0f ms "
                "(%.1f GFLOP/s)\n", N, C, Vp, C, Exec::name(), f * 1e3, flops / f / 1e9, b * 1e3,
                2 * flops / b / 1e9);
  }
}
