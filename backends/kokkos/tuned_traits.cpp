// Reading tuned-traits files (see ra/kokkos/tuned_traits.hpp).
#include <ra/kokkos/kernel_traits.hpp>
#include <ra/kokkos/tuned_traits.hpp>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ra::kk {

TunedTraits TunedTraits::parse(std::istream& in, const std::string& source) {
  TunedTraits t;
  t.source_ = source;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (const auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    std::istringstream fields(line);
    std::string arch, kind, pass, extra;
    int candidate = -1;
    if (!(fields >> arch)) continue;  // blank or comment
    auto fail = [&](const std::string& what) {
      throw std::invalid_argument("tuned traits " + source + ", line " + std::to_string(number) + ": " + what +
                                  " (expected: sm_<arch> sdpa|ra fwd|bwd <candidate>)");
    };
    if (!(fields >> kind >> pass >> candidate)) fail("needs four fields");
    if (fields >> extra) fail("unexpected '" + extra + "' after the candidate");
    const bool arch_ok = arch.size() > 3 && arch.compare(0, 3, "sm_") == 0 &&
                         arch.find_first_not_of("0123456789", 3) == std::string::npos;
    if (!arch_ok) fail("architecture '" + arch + "' is not written sm_<digits> (e.g. sm_90)");
    if (kind != "sdpa" && kind != "ra") fail("kind '" + kind + "' is neither sdpa nor ra");
    if (pass != "fwd" && pass != "bwd") fail("pass '" + pass + "' is neither fwd nor bwd");
    const bool backward = pass == "bwd";
    const int n = backward ? kBackwardCandidates : kForwardCandidates;
    if (candidate < 0 || candidate >= n)
      fail("candidate " + std::to_string(candidate) + " is not compiled (" + pass + " has 0.." + std::to_string(n - 1) +
           ")");
    if (!t.entries_.emplace(std::make_tuple(arch, kind == "ra", backward), candidate).second)
      fail("a second entry for " + arch + " " + kind + " " + pass);
  }
  return t;
}

TunedTraits TunedTraits::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("tuned traits: cannot open '" + path + "' (RA_TUNED_TRAITS)");
  return parse(in, path);
}

const TunedTraits& TunedTraits::from_environment() {
  static const TunedTraits traits = [] {
    const char* path = std::getenv("RA_TUNED_TRAITS");
    return path && *path ? load(path) : TunedTraits{};
  }();
  return traits;
}

int TunedTraits::candidate(const std::string& arch, bool ra, bool backward) const {
  const auto it = entries_.find(std::make_tuple(arch, ra, backward));
  return it == entries_.end() ? -1 : it->second;
}

}  // namespace ra::kk
