// HDF5 "run store": one self-describing HDF5 file per run, appended to while
// the run is in progress and safe against the process being killed.
//
// File layout (HDF5 default/earliest file format, HDF5 C API):
//   /                      root attributes: "schema" = "ra-kokkos-run/1",
//                          "created_utc" (ISO 8601), plus caller attributes
//                          (variable-length UTF-8 strings, or float64 scalars)
//   /<table>/              group; attributes "columns" (comma-joined column
//                          names, in order), "description", "rows" (int64:
//                          number of committed rows)
//   /<table>/<column>      1-D extendible chunked dataset (float64, int64 or
//                          variable-length UTF-8 string); attributes "units",
//                          "description", "type"
//   /<series>              1-D extendible chunked float64 dataset; attributes
//                          "units", "description", "length" (int64: number of
//                          committed values)
//   /<group>/.../<array>   N-d float64 dataset written once (write_array), e.g.
//                          an output tensor; attributes "units", "description",
//                          caller attributes, and "length" (int64: element
//                          count, written last, so a torn array reads empty)
//
// Crash safety: every append is committed in two phases -- write the data and
// H5Fflush, then advance the "rows"/"length" counter in place and H5Fflush
// again -- so a writer killed (even with SIGKILL) after append_row()/append()
// returned leaves a file that RunReader opens and that contains everything
// appended so far. A kill in the middle of an append can leave a torn element
// past the counter (an H5Fflush writes metadata in no particular order); the
// reader only returns committed elements. Such a kill can also leave objects
// written past the end-of-allocation mark stored in the superblock (which is
// written last); RunReader detects that and reads a repaired temporary copy
// (see recovered()). The file is created with the default (earliest) format,
// which has no "file is open for write" consistency flag that would have to
// be cleared (h5clear) after a crash. Flushing hands the data to the OS
// (survives the process dying); it does not fsync (an OS crash or power loss
// may still lose recent appends).
// Residual risk, only for a kill that lands inside an H5Fflush: Linux may stop
// a multi-page write at a page boundary on SIGKILL; if that write was a global
// heap collection (variable-length strings) grown in place, the strings in it
// cannot be read afterwards (numeric columns, rows() and attributes still
// can). Measured with a writer appending non-stop and killed at random: a
// few per thousand kills with 3000-byte strings, rarer with short ones; a real
// run spends far less of its time in flushes. Exercised by the hidden test
// "[.stress]" in tests/test_run_store.cpp.
//
// While a RunWriter has the file open, HDF5's file lock (flock) is held, so a
// RunReader opened on a live run fails with a clear error instead of reading
// half-written metadata; the lock is released by the OS when the writer exits
// or is killed.
//
// Not thread-safe (the serial HDF5 library is not): use from one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace ra {

// Schema identifier stored in the root attribute "schema".
inline constexpr const char* kRunSchema = "ra-kokkos-run/1";

struct Column {
  enum class Type { Float64, Int64, String };
  std::string name;
  Type type = Type::Float64;
  std::string units;
  std::string description;
};

class RunWriter {
 public:
  using Value = std::variant<double, std::int64_t, std::string>;

  // Creates `path` exclusively (parent directories are created as needed).
  // Throws std::runtime_error("run file <path> already exists; refusing to
  // overwrite ...") if it exists. Root attributes written at creation: every
  // key/value of `attributes` (strings), plus "schema" and "created_utc"
  // (reserved: passing either is std::invalid_argument, as in set_attribute).
  static RunWriter create(const std::string& path,
                          const std::map<std::string, std::string>& attributes);

  // Reopens an existing run file for appending (a resumed run): its tables
  // and series continue after their committed rows/values. A file left by a
  // writer killed mid-flush (longer than HDF5's end-of-allocation mark) gets
  // that mark raised in place first, so nothing already written is
  // overwritten by new allocations. Throws std::runtime_error naming the
  // path if it is missing, not a run file, or locked by a live writer.
  static RunWriter reopen(const std::string& path);

  RunWriter(RunWriter&&) noexcept;
  RunWriter& operator=(RunWriter&&) noexcept;
  RunWriter(const RunWriter&) = delete;
  RunWriter& operator=(const RunWriter&) = delete;
  ~RunWriter();  // flushes and closes the file (errors are swallowed)

  // Root attribute; writing an existing key replaces it (also across types).
  void set_attribute(const std::string& key, const std::string& value);
  void set_attribute(const std::string& key, double value);

  // A table: group /<name> with one extendible 1-D dataset per column
  // (chunks of 256 rows). Names must be non-empty and contain no '/' (and
  // column names no ','); column names must be unique. Throws
  // std::invalid_argument on bad names, std::runtime_error if <name> exists.
  void create_table(const std::string& name, const std::vector<Column>& columns,
                    const std::string& description);

  // Appends one row. values.size() must equal the number of columns and each
  // value's alternative must match its column's type, else
  // std::invalid_argument naming the column (nothing is written in that case).
  // Unknown table: std::invalid_argument naming it. Flushes the file.
  void append_row(const std::string& table, const std::vector<Value>& values);

  // Lowers a table's committed row count to `rows` (no-op if it has no
  // more): later appends overwrite the rows past it. A resumed run uses it
  // to drop rows logged after the checkpoint it restarts from. Committed
  // like an append (one in-place counter update, flushed).
  void truncate_rows(const std::string& table, std::size_t rows);
  std::size_t rows(const std::string& table) const;

  // A series: extendible 1-D float64 dataset /<name> (e.g. a loss curve).
  void create_series(const std::string& name, const std::string& units,
                     const std::string& description);
  // Appends one value and flushes. Unknown series: std::invalid_argument.
  void append(const std::string& series, double value);
  void append(const std::string& series, const std::vector<double>& values);

  // An N-d float64 dataset at `path`, written once (not extendible), e.g. an
  // output tensor. `path` may name nested groups ("outputs/ra_fused/o"): the
  // missing ones are created. Each '/'-separated part follows the table-name
  // rules; data.size() must be the product of `dims` (no zero dims), else
  // std::invalid_argument. An existing path: std::runtime_error. `attributes`
  // are extra string attributes of the dataset ("units" and "description" are
  // written from the arguments; "length" is reserved). Committed like an
  // append: data flushed first, then its "length" attribute.
  void write_array(const std::string& path, const std::vector<std::size_t>& dims,
                   const std::vector<double>& data, const std::string& units,
                   const std::string& description,
                   const std::map<std::string, std::string>& attributes = {});

  void flush();
  // Flushes and closes now; further calls other than path() throw.
  void close();
  const std::string& path() const;

 private:
  struct Impl;
  explicit RunWriter(std::unique_ptr<Impl> impl);
  Impl& state() const;  // throws std::logic_error if moved-from
  std::unique_ptr<Impl> impl_;
};

class RunReader {
 public:
  // Opens read-only. Throws std::runtime_error naming the path and the reason
  // if it is missing, unreadable, not HDF5, locked by a live writer, or not a
  // run file (no "schema" root attribute).
  explicit RunReader(const std::string& path);
  RunReader(RunReader&&) noexcept;
  RunReader& operator=(RunReader&&) noexcept;
  RunReader(const RunReader&) = delete;
  RunReader& operator=(const RunReader&) = delete;
  ~RunReader();

  const std::string& path() const;
  // True if the file was left by a writer killed in the middle of a flush
  // (file longer than HDF5's end-of-allocation mark): it was then opened
  // from a temporary copy (under TMPDIR, unlinked at once) with that mark
  // raised; the run file itself is not modified.
  bool recovered() const;

  // Root attributes; string ones as-is, numeric ones converted to text
  // (float64 in shortest round-trip form).
  std::map<std::string, std::string> attributes() const;
  // Throws std::runtime_error naming the key if missing.
  std::string attribute(const std::string& key) const;

  std::vector<std::string> tables() const;  // root groups with "columns"
  std::vector<std::string> series() const;  // root datasets
  std::vector<std::string> columns(const std::string& table) const;
  std::string description(const std::string& object_path) const;  // "" if none
  // Committed rows of a table (its "rows" counter, capped by the shortest
  // column).
  std::size_t rows(const std::string& table) const;
  // Committed length of a dataset (what read_* returns).
  std::size_t length(const std::string& dataset_path) const;

  // dataset_path e.g. "bench/median_ms" or a series name; returns only the
  // committed elements. read_f64 also reads int64 datasets (converted);
  // read_i64 requires an integer dataset and read_str a string dataset (else
  // std::runtime_error). Unknown paths: std::runtime_error naming them.
  std::vector<double> read_f64(const std::string& dataset_path) const;
  std::vector<std::int64_t> read_i64(const std::string& dataset_path) const;
  std::vector<std::string> read_str(const std::string& dataset_path) const;
  std::string units(const std::string& dataset_path) const;  // "" if none
  // Extent of a dataset per dimension (an array written by write_array, or
  // {n} for a column or series: its full extent, committed or not).
  std::vector<std::size_t> dims(const std::string& dataset_path) const;

 private:
  struct Impl;
  const Impl& state() const;  // throws std::logic_error if moved-from
  // read_f64 / read_i64: the committed prefix converted to `mem_type` (an hid_t).
  template <class T>
  std::vector<T> read_numeric(const std::string& dataset_path, std::int64_t mem_type,
                              bool accept_float, const char* as) const;
  std::unique_ptr<Impl> impl_;
};

// A fresh file name "<dir>/<prefix>-YYYYmmdd-HHMMSS[-N].h5" (UTC) that does
// not exist yet (N = 1, 2, ... on collision). Does not create anything; the
// exclusive RunWriter::create catches any race.
std::string unique_run_path(const std::string& dir, const std::string& prefix);

}  // namespace ra
