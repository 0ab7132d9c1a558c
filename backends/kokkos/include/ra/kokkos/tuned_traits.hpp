// Tuned traits read at run time: which compiled tensor-core candidate each
// (GPU architecture, SDPA or RA, forward or backward) runs at head dim 64,
// overriding the table in kernel_traits.hpp without a rebuild.
//
// scripts/device-tune.sh (what the issue calls ra-tune) checks every
// candidate against the reference, times them all on the GPU at hand, and
// writes the winners in this format:
//
//   # ra-kokkos tuned traits v1        ('#' starts a comment)
//   # arch  kind  pass  candidate
//   sm_90   sdpa  fwd   2
//   sm_90   ra    bwd   3
//
// Point RA_TUNED_TRAITS at such a file and every ra::kk::Attention on a GPU
// of that architecture uses its entries (an Options::tc_candidate set by the
// caller still wins); TilePlan::path names the file. Entries for other
// architectures are ignored, so one file can hold every GPU of a cluster.
#pragma once

#include <iosfwd>
#include <map>
#include <string>
#include <tuple>

namespace ra::kk {

class TunedTraits {
 public:
  // Parses the format above; std::invalid_argument names the source, the line
  // and what is wrong (unknown kind or pass, a candidate that is not
  // compiled, an arch not written sm_<digits>, a duplicate entry).
  static TunedTraits parse(std::istream& in, const std::string& source);
  static TunedTraits load(const std::string& path);  // + a clear error for a missing file
  // The file named by RA_TUNED_TRAITS, read once per process (an empty set
  // when the variable is unset or empty). Throws like load() on a bad file.
  static const TunedTraits& from_environment();

  // The candidate for that entry, or -1 when the file has none.
  int candidate(const std::string& arch, bool ra, bool backward) const;
  bool empty() const { return entries_.empty(); }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::map<std::tuple<std::string, bool, bool>, int> entries_;
};

}  // namespace ra::kk
