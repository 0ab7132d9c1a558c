// One argument-parsing style for every ra-kokkos binary (CLI11 underneath):
//   * --help on every binary, generated from the declared options;
//   * validation errors name the option and the bad value and exit with 2;
//   * any exception escaping the program body is printed as
//     "<program>: error: <what>" with exit code 1, never a bare abort.
#pragma once

#include <CLI/CLI.hpp>

#include <exception>
#include <functional>
#include <iostream>
#include <string>

namespace ra::cli {

// Parses argv into `app` and runs `body`; returns the process exit code.
inline int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << app.get_name() << ": error: " << e.what() << "\n"
              << "Run '" << app.get_name() << " --help' for the options.\n";
    return 2;
  }
  try {
    return body();
  } catch (const std::exception& e) {
    std::cerr << app.get_name() << ": error: " << e.what() << "\n";
    return 1;
  }
}

// Validator: a positive integer ("--T 0" -> "--T: 0 is not >= 1").
inline CLI::Validator at_least(long lo) {
  return CLI::Validator(
      [lo](std::string& s) -> std::string {
        try {
          std::size_t pos = 0;
          const long v = std::stol(s, &pos);
          if (pos != s.size()) return "'" + s + "' is not an integer";
          if (v < lo) return s + " is not >= " + std::to_string(lo);
        } catch (const std::exception&) {
          return "'" + s + "' is not an integer";
        }
        return {};
      },
      ">=" + std::to_string(lo));
}

}  // namespace ra::cli
