// GPT-2 configuration: presets, validation, layer selection, parameter layout.
#include <ra/kokkos/attention.hpp>
#include <ra/model/config.hpp>

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace ra::model {

namespace {
std::invalid_argument config_error(const GPTConfig& cfg, const std::string& what) {
  return std::invalid_argument("GPT-2 config '" + cfg.name + "': " + what);
}

std::size_t align_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }
}  // namespace

int padded_vocab(int V) { return V <= 0 ? V : (V + 127) / 128 * 128; }

int GPTConfig::padded() const { return Vp > 0 ? Vp : padded_vocab(V); }

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = {"gpt2-124m", "gpt2-mini", "gpt2-tiny"};
  return names;
}

GPTConfig preset(const std::string& name) {
  GPTConfig c;
  c.name = name;
  c.V = 50257;  // GPT-2's BPE vocabulary
  c.Vp = padded_vocab(c.V);
  if (name == "gpt2-124m") {
    c.L = 12, c.H = 12, c.C = 768, c.T_max = 1024;
  } else if (name == "gpt2-mini") {
    c.L = 6, c.H = 6, c.C = 384, c.T_max = 512;
  } else if (name == "gpt2-tiny") {
    c.L = 4, c.H = 4, c.C = 128, c.T_max = 128;
  } else {
    std::string known;
    for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown GPT-2 preset '" + name + "' (known: " + known + ")");
  }
  return c;
}

DiscForm parse_disc_form(const std::string& name) {
  if (name == "table") return DiscForm::table;
  if (name == "content") return DiscForm::content;
  throw std::invalid_argument("unknown discoverability form '" + name +
                              "' (known: table, content)");
}

Anneal parse_anneal(const std::string& name) {
  if (name == "rec") return Anneal::rec;
  if (name == "rec_disc") return Anneal::rec_disc;
  throw std::invalid_argument("unknown annealing mode '" + name + "' (known: rec, rec_disc)");
}

std::string disc_form_name(DiscForm f) { return f == DiscForm::table ? "table" : "content"; }
std::string anneal_name(Anneal a) { return a == Anneal::rec ? "rec" : "rec_disc"; }

AttentionPrecision parse_attention_precision(const std::string& name) {
  if (name == "float") return AttentionPrecision::scalar;
  if (name == "bf16") return AttentionPrecision::bf16;
  throw std::invalid_argument("unknown attention precision '" + name + "' (known: float, bf16)");
}

std::string attention_precision_name(AttentionPrecision p) {
  return p == AttentionPrecision::bf16 ? "bf16" : "float";
}

MatmulPrecision parse_matmul_precision(const std::string& name) {
  if (name == "float" || name == "fp32") return MatmulPrecision::fp32;
  if (name == "tf32") return MatmulPrecision::tf32;
  if (name == "bf16") return MatmulPrecision::bf16;
  throw std::invalid_argument("unknown matmul precision '" + name + "' (known: float, tf32, bf16)");
}

std::string matmul_precision_name(MatmulPrecision p) {
  return p == MatmulPrecision::tf32 ? "tf32" : p == MatmulPrecision::bf16 ? "bf16" : "float";
}

bool build_has_bf16() {
#if defined(RA_HAVE_BF16)
  return true;
#else
  return false;
#endif
}

std::vector<int> parse_layer_list(const std::string& spec, int L) {
  std::vector<int> layers;
  if (spec.empty()) return layers;
  if (spec == "all") {
    for (int l = 0; l < L; ++l) layers.push_back(l);
    return layers;
  }
  auto bad = [&](const std::string& why) {
    return std::invalid_argument("layer list '" + spec + "': " + why +
                                 " (expected 'all' or 0-based layers like '4-8' or '0,2,5-7')");
  };
  auto number = [&](const std::string& s) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
      throw bad("'" + s + "' is not a layer number");
    const int n = std::stoi(s);
    if (n >= L)
      throw bad("layer " + s + " does not exist (the model has " + std::to_string(L) +
                " layers, 0.." + std::to_string(L - 1) + ")");
    return n;
  };
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto dash = item.find('-');
    const int lo = number(item.substr(0, dash));
    const int hi = dash == std::string::npos ? lo : number(item.substr(dash + 1));
    if (hi < lo) throw bad("range '" + item + "' runs backwards");
    for (int l = lo; l <= hi; ++l) layers.push_back(l);
  }
  if (!spec.empty() && spec.back() == ',') throw bad("trailing comma");
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  return layers;
}

std::vector<LayerAttention> layer_attention(const GPTConfig& cfg) {
  const auto& a = cfg.attn;
  const kk::Variant base = kk::parse_variant(a.variant);
  const kk::Variant listed = kk::parse_variant(a.ra_variant);
  const auto ra_layers = parse_layer_list(a.ra_layers, cfg.L);
  std::vector<LayerAttention> out(cfg.L);
  for (int l = 0; l < cfg.L; ++l) {
    const bool in_list = std::binary_search(ra_layers.begin(), ra_layers.end(), l);
    const kk::Variant v = in_list ? listed : base;
    out[l].variant = kk::variant_name(v);
    out[l].ra = kk::is_ra(v);
    out[l].fused = kk::is_fused(v);
    out[l].window = v == kk::Variant::ra_window ? a.window : -1;
  }
  return out;
}

void GPTConfig::validate() const {
  const std::pair<const char*, int> sizes[] = {{"L (layers)", L},      {"H (heads)", H},
                                               {"C (width)", C},       {"T_max (context)", T_max},
                                               {"V (vocabulary)", V}};
  for (const auto& [what, n] : sizes)
    if (n < 1) throw config_error(*this, std::string(what) + " = " + std::to_string(n) + " but must be >= 1");
  if (C % H != 0)
    throw config_error(*this, "width C = " + std::to_string(C) + " is not divisible by H = " +
                                  std::to_string(H) + " heads");
  if (Vp != 0 && Vp < V)
    throw config_error(*this, "padded vocabulary Vp = " + std::to_string(Vp) +
                                  " is smaller than V = " + std::to_string(V));
  std::vector<LayerAttention> layers;
  try {
    layers = layer_attention(*this);
  } catch (const std::invalid_argument& e) {
    throw config_error(*this, e.what());
  }
  bool any_window = false;
  for (int l = 0; l < L; ++l) {
    kk::Options opt;
    opt.window = layers[l].window;
    opt.tile = attn.tile;
    try {
      kk::check_supported(kk::parse_variant(layers[l].variant), Shape{1, H, T_max, head_dim()}, opt);
    } catch (const std::invalid_argument& e) {
      throw config_error(*this, "layer " + std::to_string(l) + ": " + e.what());
    }
    any_window |= layers[l].variant == "ra_window";
  }
  if (attn.window >= 0 && !any_window)
    throw config_error(*this, "window = " + std::to_string(attn.window) +
                                  " is set but no layer runs ra_window");
  if (attn.precision == AttentionPrecision::bf16) {
    // The build first: on a host build nothing else would make bf16 work.
    if (!build_has_bf16())
      throw config_error(*this, "bf16 attention needs a CUDA build (this build has no bf16 type; "
                                "use attention precision float)");
    for (int l = 0; l < L; ++l)
      if (!layers[l].fused)
        throw config_error(*this, "bf16 attention needs a fused variant (sdpa_fused, ra_fused, ra_window) "
                                  "in every layer, but layer " + std::to_string(l) + " runs " +
                                  layers[l].variant + " (the open-coded kernels are float-only)");
  }
  // tf32 and bf16 products are cuBLAS calls: a CUDA build (which is also
  // what gives bf16 a type of its own). GPT2's constructor further checks
  // that the model runs on the CUDA execution space.
  if (matmul != MatmulPrecision::fp32 && !build_has_bf16())
    throw config_error(*this, "matmul precision " + matmul_precision_name(matmul) +
                                  " needs a CUDA build (tensor-core GEMMs through cuBLAS; use matmul precision float)");
}

std::string GPTConfig::describe() const {
  std::ostringstream s;
  s << "name=" << name << " L=" << L << " H=" << H << " C=" << C << " T_max=" << T_max
    << " V=" << V << " Vp=" << padded() << " attention=" << attn.variant
    << " ra_layers=" << (attn.ra_layers.empty() ? "none" : attn.ra_layers)
    << " ra_variant=" << attn.ra_variant << " window=" << attn.window
    << " disc=" << disc_form_name(attn.disc) << " anneal=" << anneal_name(attn.anneal)
    << " tile=" << attn.tile;
  // Only when not the default, so the description of a float-attention model
  // (stored in run files and checkpoints) reads as it always did.
  if (attn.precision != AttentionPrecision::scalar)
    s << " attention_precision=" << attention_precision_name(attn.precision);
  if (matmul != MatmulPrecision::fp32) s << " matmul_precision=" << matmul_precision_name(matmul);
  return s.str();
}

const ParamTensor& ParamLayout::at(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return t;
  throw std::out_of_range("GPT-2 parameter layout has no tensor '" + name + "'");
}

bool ParamLayout::has(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return true;
  return false;
}

ParamLayout param_layout(const GPTConfig& cfg) {
  cfg.validate();
  const auto layers = layer_attention(cfg);
  const int C = cfg.C, H = cfg.H;
  ParamLayout p;
  auto add = [&](const std::string& name, std::vector<int> shape, bool decay, int layer) {
    ParamTensor t;
    t.name = name, t.shape = std::move(shape), t.decay = decay, t.layer = layer;
    t.size = 1;
    for (int n : t.shape) t.size *= std::size_t(n);
    t.offset = p.total;
    p.total = align_up(p.total + t.size, ParamLayout::kAlign);
    p.tensors.push_back(std::move(t));
  };
  auto h = [](int l, const char* what) { return "h" + std::to_string(l) + "." + what; };
  // Weight-decayed 2-D weights first.
  add("wte", {cfg.padded(), C}, true, -1);
  add("wpe", {cfg.T_max, C}, true, -1);
  for (int l = 0; l < cfg.L; ++l) {
    add(h(l, "qkv.w"), {3 * C, C}, true, l);
    add(h(l, "attn_proj.w"), {C, C}, true, l);
    add(h(l, "fc.w"), {4 * C, C}, true, l);
    add(h(l, "fc_proj.w"), {C, 4 * C}, true, l);
  }
  p.n_decay = p.total;
  for (int l = 0; l < cfg.L; ++l) {
    add(h(l, "ln1.w"), {C}, false, l);
    add(h(l, "ln1.b"), {C}, false, l);
    add(h(l, "qkv.b"), {3 * C}, false, l);
    add(h(l, "attn_proj.b"), {C}, false, l);
    add(h(l, "ln2.w"), {C}, false, l);
    add(h(l, "ln2.b"), {C}, false, l);
    add(h(l, "fc.b"), {4 * C}, false, l);
    add(h(l, "fc_proj.b"), {C}, false, l);
    if (layers[l].ra) {
      add(h(l, "gates"), {H, 3}, false, l);
      if (cfg.attn.disc == DiscForm::table)
        add(h(l, "disc_table"), {H, cfg.T_max}, false, l);
      else
        add(h(l, "disc_u"), {H, cfg.head_dim()}, false, l);
    }
  }
  add("lnf.w", {C}, false, -1);
  add("lnf.b", {C}, false, -1);
  return p;
}

}  // namespace ra::model
