// ra-inspect: print an ra-kokkos run file (any program's) as text -- its
// attributes, then every table as aligned columns (or CSV), then every
// series' length and last value. Built on ra::RunReader, so it needs neither
// Python nor the HDF5 command-line tools.
#include <ra/cli.hpp>
#include <ra/run_store.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Options {
  std::vector<std::string> files;
  bool csv = false;
  bool attributes_only = false;
};

// Every column of a table rendered as strings, whatever its HDF5 type.
std::vector<std::string> column_text(const ra::RunReader& r, const std::string& path) {
  std::vector<std::string> out;
  // The store records each column's type; try the readers in turn otherwise.
  try {
    for (const auto& s : r.read_str(path)) out.push_back(s);
    return out;
  } catch (const std::exception&) {
  }
  try {
    for (auto v : r.read_i64(path)) out.push_back(std::to_string(v));
    return out;
  } catch (const std::exception&) {
  }
  for (double v : r.read_f64(path)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    out.push_back(buf);
  }
  return out;
}

void print_table(const ra::RunReader& r, const std::string& table, bool csv) {
  const auto cols = r.columns(table);
  std::vector<std::vector<std::string>> data;
  std::vector<std::string> header;
  for (const auto& c : cols) {
    data.push_back(column_text(r, table + "/" + c));
    const std::string u = r.units(table + "/" + c);
    header.push_back(u.empty() ? c : c + " [" + u + "]");
  }
  const std::size_t rows = r.rows(table);
  std::cout << "\ntable /" << table << " (" << rows << " rows): " << r.description(table) << "\n";
  if (csv) {
    for (std::size_t c = 0; c < cols.size(); ++c) std::cout << (c ? "," : "") << header[c];
    std::cout << "\n";
    for (std::size_t i = 0; i < rows; ++i) {
      for (std::size_t c = 0; c < cols.size(); ++c) std::cout << (c ? "," : "") << data[c][i];
      std::cout << "\n";
    }
    return;
  }
  std::vector<std::size_t> width(cols.size());
  for (std::size_t c = 0; c < cols.size(); ++c) {
    width[c] = header[c].size();
    for (std::size_t i = 0; i < rows; ++i) width[c] = std::max(width[c], data[c][i].size());
  }
  auto line = [&](auto cell) {
    for (std::size_t c = 0; c < cols.size(); ++c) {
      const std::string s = cell(c);
      std::cout << (c ? "  " : "") << s << std::string(width[c] - s.size(), ' ');
    }
    std::cout << "\n";
  };
  line([&](std::size_t c) { return header[c]; });
  for (std::size_t i = 0; i < rows; ++i) line([&](std::size_t c) { return data[c][i]; });
}

int inspect(const Options& opt) {
  for (const auto& f : opt.files) {
    ra::RunReader r(f);
    std::cout << "== " << f << (r.recovered() ? "  (read from a repaired copy: the writer was killed)" : "")
              << "\n";
    for (const auto& [k, v] : r.attributes()) std::cout << "  " << k << " = " << v << "\n";
    if (opt.attributes_only) continue;
    for (const auto& t : r.tables()) print_table(r, t, opt.csv);
    for (const auto& s : r.series()) {
      const auto v = r.read_f64(s);
      std::cout << "\nseries /" << s << " [" << r.units(s) << "]: " << v.size() << " values";
      if (!v.empty()) std::cout << ", last " << v.back();
      std::cout << "\n";
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"ra-inspect: print ra-kokkos HDF5 run files (attributes, tables, series).",
               "ra-inspect"};
  app.add_option("files", opt.files, "run files (.h5)")->required()->check(CLI::ExistingFile);
  app.add_flag("--csv", opt.csv, "print tables as CSV");
  app.add_flag("--attributes", opt.attributes_only, "print only the attributes");
  return ra::cli::run(app, argc, argv, [&] { return inspect(opt); });
}
