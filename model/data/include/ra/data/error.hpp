// One exception type for the data path, so callers (ra-data, the trainer) can
// tell bad data apart from other failures. Every message names the file or
// value at fault and the problem, in words a user can act on.
#pragma once

#include <stdexcept>
#include <string>

namespace ra::data {

class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace ra::data
