// Runs one of the project's binaries as a user would, for the command-line
// tests: its exit code and everything it printed (stdout and stderr).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace ra::testing {

struct Outcome {
  int exit_code;       // -1 if the process did not exit normally (a signal)
  std::string output;  // stdout and stderr
};

inline Outcome run_command(const std::string& binary, const std::string& args) {
  const std::string command = "'" + binary + "' " + args + " 2>&1";
  std::FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + command);
  std::string output;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace ra::testing
