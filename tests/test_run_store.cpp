// Tests for the HDF5 run store (core/run_store.cpp): round trip, refusal to
// overwrite, survival of a SIGKILLed writer, error messages, unique names.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <hdf5.h>

#include "ra/run_store.hpp"

namespace fs = std::filesystem;
using ra::Column;
using ra::RunReader;
using ra::RunWriter;

namespace {

// A fresh directory under /tmp, removed (with its contents) at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char templ[] = "/tmp/ra_run_store_XXXXXX";
    if (!mkdtemp(templ)) throw std::runtime_error("mkdtemp failed");
    path = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<Column> bench_columns() {
  return {
      {"kernel", Column::Type::String, "", "kernel name"},
      {"seq_len", Column::Type::Int64, "tokens", "sequence length T"},
      {"median_ms", Column::Type::Float64, "ms", "median wall time"},
  };
}

std::string kernel_name(int i) { return "kernel-" + std::to_string(i) + (i % 3 == 0 ? "-\xCE\xB1\xCE\xB2" : ""); }

// Reads one byte per marker from fd, waiting at most `timeout_ms` for each.
// Returns the number of 'R' markers read; stops early on 'E' or EOF.
int wait_markers(int fd, int want, int timeout_ms, bool& child_error) {
  int got = 0;
  child_error = false;
  while (got < want) {
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (c == 'E') {
      child_error = true;
      break;
    }
    if (c == 'R') ++got;
  }
  return got;
}

void write_marker(int fd, char c) {
  while (write(fd, &c, 1) < 0 && errno == EINTR) {
  }
}

// Child body: create a run, append rows forever (or `rows` rows, then sleep),
// writing an 'R' marker after each append returned. Never returns.
// `pad` extra characters per string make the global heap grow faster.
[[noreturn]] void child_writer(const std::string& path, int rows, int fd, std::size_t pad = 0) {
  try {
    auto w = RunWriter::create(path, {{"who", "child"}});
    w.create_table("bench", bench_columns(), "child table");
    w.create_series("loss", "nats", "loss curve");
    for (int i = 0; rows < 0 || i < rows; ++i) {
      w.append_row("bench", {kernel_name(i) + std::string(pad, '.'), std::int64_t{i} * i, 0.5 * i});
      w.append("loss", 1.0 / (i + 1));
      write_marker(fd, 'R');
    }
    for (;;) pause();  // stay alive with the file open until killed
  } catch (...) {
    write_marker(fd, 'E');
    _exit(2);
  }
}

// Forks a child_writer; returns its pid and (in marker_fd) the pipe's read end.
pid_t spawn_writer(const std::string& path, int rows, std::size_t pad, int& marker_fd) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    child_writer(path, rows, fds[1], pad);
  }
  close(fds[1]);
  marker_fd = fds[0];
  return pid;
}

// Checks that a file left by child_writer holds between `min_rows` and
// `max_rows` complete, correct rows; returns the row count.
std::size_t check_child_file(const std::string& path, std::size_t min_rows, std::size_t max_rows,
                             std::size_t pad = 0) {
  RunReader r(path);
  CHECK(r.attribute("who") == "child");
  CHECK(r.attribute("schema") == ra::kRunSchema);
  const std::size_t n = r.rows("bench");
  CHECK(n >= min_rows);
  CHECK(n <= max_rows);
  auto kernel = r.read_str("bench/kernel");
  auto seq = r.read_i64("bench/seq_len");
  auto ms = r.read_f64("bench/median_ms");
  REQUIRE(kernel.size() == n);  // read_* return committed rows only
  REQUIRE(seq.size() == n);
  REQUIRE(ms.size() == n);
  for (std::size_t i = 0; i < n; ++i) {
    INFO("row " << i);
    CHECK(kernel[i] == kernel_name(static_cast<int>(i)) + std::string(pad, '.'));
    CHECK(seq[i] == static_cast<std::int64_t>(i) * static_cast<std::int64_t>(i));
    CHECK(ms[i] == 0.5 * static_cast<double>(i));
  }
  auto loss = r.read_f64("loss");
  CHECK(loss.size() + 1 >= n);  // the series is appended after the row
  CHECK(loss.size() <= n);
  for (std::size_t i = 0; i < loss.size(); ++i) CHECK(loss[i] == 1.0 / static_cast<double>(i + 1));
  return n;
}

template <typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

}  // namespace

TEST_CASE("run store: round trip of attributes, table and series", "[run_store]") {
  TempDir dir;
  const std::string path = dir.file("sub/dir/run.h5");  // parent dirs are created
  const int n = 300;                                     // > one 256-row chunk
  {
    auto w = RunWriter::create(path, {{"git_revision", "abc123"}, {"device", "H100 \xE2\x80\x94 80GB"}});
    CHECK(w.path() == path);
    w.set_attribute("note", "first");
    w.set_attribute("note", "second");  // overwrite allowed
    w.set_attribute("tolerance", 1e-12);
    w.set_attribute("ratio", 0.1);
    w.create_table("bench", bench_columns(), "benchmark results");
    for (int i = 0; i < n; ++i) w.append_row("bench", {kernel_name(i), std::int64_t{1} << (i % 40), 0.25 * i - 3.0});
    w.create_series("loss", "nats", "training loss");
    for (int i = 0; i < 10; ++i) w.append("loss", std::exp(-0.1 * i));
    w.append("loss", std::vector<double>{0.5, 0.25});
    w.create_table("empty", {{"x", Column::Type::Float64, "s", "nothing"}}, "no rows");
  }
  RunReader r(path);
  auto attrs = r.attributes();
  CHECK(attrs.at("schema") == "ra-kokkos-run/1");
  CHECK(attrs.at("git_revision") == "abc123");
  CHECK(attrs.at("device") == "H100 \xE2\x80\x94 80GB");
  CHECK(attrs.at("note") == "second");
  CHECK(attrs.at("tolerance") == "1e-12");
  CHECK(attrs.at("ratio") == "0.1");
  const std::string created = attrs.at("created_utc");
  CHECK(created.size() == 20);  // YYYY-mm-ddTHH:MM:SSZ
  CHECK(created[10] == 'T');
  CHECK(created.back() == 'Z');
  CHECK(r.attribute("git_revision") == "abc123");

  CHECK(r.tables() == std::vector<std::string>{"bench", "empty"});
  CHECK(r.series() == std::vector<std::string>{"loss"});
  CHECK(r.columns("bench") == std::vector<std::string>{"kernel", "seq_len", "median_ms"});
  CHECK(r.rows("bench") == static_cast<std::size_t>(n));
  CHECK(r.rows("empty") == 0);
  CHECK(r.read_f64("empty/x").empty());
  CHECK(r.description("bench") == "benchmark results");

  auto kernel = r.read_str("bench/kernel");
  auto seq = r.read_i64("bench/seq_len");
  auto ms = r.read_f64("bench/median_ms");
  REQUIRE(kernel.size() == static_cast<std::size_t>(n));
  REQUIRE(seq.size() == static_cast<std::size_t>(n));
  REQUIRE(ms.size() == static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    INFO("row " << i);
    CHECK(kernel[i] == kernel_name(i));
    CHECK(seq[i] == (std::int64_t{1} << (i % 40)));
    CHECK(ms[i] == 0.25 * i - 3.0);
  }
  // read_f64 converts integer columns.
  CHECK(r.read_f64("bench/seq_len")[3] == 8.0);

  for (const auto& c : bench_columns()) {
    CHECK(r.units("bench/" + c.name) == c.units);
    CHECK(r.description("bench/" + c.name) == c.description);
  }
  auto loss = r.read_f64("loss");
  REQUIRE(loss.size() == 12);
  for (int i = 0; i < 10; ++i) CHECK(loss[i] == std::exp(-0.1 * i));
  CHECK(loss[10] == 0.5);
  CHECK(loss[11] == 0.25);
  CHECK(r.units("loss") == "nats");
  CHECK(r.description("loss") == "training loss");
  CHECK(r.length("loss") == 12);
}

TEST_CASE("run store: the file uses the earliest format (superblock v0)", "[run_store]") {
  // Superblock v0 has no "file open for write" flag, so a crashed writer does
  // not leave a file that needs h5clear before it can be opened.
  TempDir dir;
  const std::string path = dir.file("run.h5");
  {
    auto w = RunWriter::create(path, {});
    w.create_table("t", {{"x", Column::Type::Float64, "", ""}}, "");
    w.append_row("t", {1.0});
  }
  const std::string bytes = slurp(path);
  REQUIRE(bytes.size() > 9);
  CHECK(bytes.compare(0, 8, "\x89HDF\r\n\x1a\n") == 0);
  CHECK(static_cast<int>(bytes[8]) == 0);  // superblock version
}

TEST_CASE("run store: refuses to overwrite an existing file", "[run_store]") {
  TempDir dir;
  const std::string path = dir.file("run.h5");
  {
    auto w = RunWriter::create(path, {{"generation", "1"}});
    w.create_table("t", {{"x", Column::Type::Int64, "", ""}}, "");
    w.append_row("t", {std::int64_t{42}});
  }
  const std::string before = slurp(path);
  const std::string msg = message_of([&] { RunWriter::create(path, {{"generation", "2"}}); });
  CHECK(msg.find("run file " + path + " already exists; refusing to overwrite") != std::string::npos);
  CHECK(slurp(path) == before);
  RunReader r(path);
  CHECK(r.attribute("generation") == "1");
  CHECK(r.read_i64("t/x") == std::vector<std::int64_t>{42});

  // A non-HDF5 file is not touched either.
  const std::string text = dir.file("notes.h5");
  { std::ofstream(text) << "precious"; }
  CHECK_THROWS_WITH(RunWriter::create(text, {}), Catch::Contains("already exists"));
  CHECK(slurp(text) == "precious");
}

TEST_CASE("run store: a SIGKILLed writer leaves every appended row readable", "[run_store]") {
  TempDir dir;
  const std::string path = dir.file("killed.h5");
  const int rows = 300;  // crosses a chunk boundary
  int marker_fd = -1;
  const pid_t pid = spawn_writer(path, rows, 0, marker_fd);
  bool child_error = false;
  const int got = wait_markers(marker_fd, rows, 20000, child_error);
  close(marker_fd);

  // While the writer is alive, a reader must fail cleanly (HDF5 file lock) or,
  // where locking is disabled, read without disturbing the writer.
  std::string live_msg;
  try {
    RunReader live(path);
  } catch (const std::exception& e) {
    live_msg = e.what();
  }
  if (!live_msg.empty()) CHECK(live_msg.find(path) != std::string::npos);

  kill(pid, SIGKILL);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  REQUIRE_FALSE(child_error);
  REQUIRE(got == rows);
  CHECK(check_child_file(path, rows, rows) == static_cast<std::size_t>(rows));
  CHECK_FALSE(RunReader(path).recovered());  // killed between flushes: nothing to repair
}

TEST_CASE("run store: readers ignore a torn row past the committed count", "[run_store]") {
  // Simulates what a kill in the middle of an append can leave: column
  // extents one past the "rows" counter, with fill values in the extra slot.
  TempDir dir;
  const std::string path = dir.file("torn.h5");
  {
    auto w = RunWriter::create(path, {});
    w.create_table("bench", bench_columns(), "");
    for (int i = 0; i < 3; ++i) w.append_row("bench", {kernel_name(i), std::int64_t{i}, 1.0 * i});
    w.create_series("loss", "", "");
    w.append("loss", 2.0);
  }
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(f >= 0);
  for (const char* name : {"bench/kernel", "bench/seq_len", "bench/median_ms", "loss"}) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    REQUIRE(d >= 0);
    hsize_t size[1] = {std::string(name) == "loss" ? hsize_t{2} : hsize_t{4}};
    REQUIRE(H5Dset_extent(d, size) >= 0);
    H5Dclose(d);
  }
  H5Fclose(f);

  RunReader r(path);
  CHECK(r.rows("bench") == 3);
  CHECK(r.read_str("bench/kernel") == std::vector<std::string>{kernel_name(0), kernel_name(1), kernel_name(2)});
  CHECK(r.read_i64("bench/seq_len") == std::vector<std::int64_t>{0, 1, 2});
  CHECK(r.read_f64("bench/median_ms") == std::vector<double>{0.0, 1.0, 2.0});
  CHECK(r.read_f64("loss") == std::vector<double>{2.0});
  CHECK(r.length("loss") == 1);
}

TEST_CASE("run store: a file longer than its end-of-allocation mark is read from a repaired copy", "[run_store]") {
  // A writer killed in the middle of an H5Fflush can leave data past the EOA
  // recorded in the superblock; a cleanly flushed file ends exactly at it.
  TempDir dir;
  const std::string path = dir.file("run.h5");
  {
    auto w = RunWriter::create(path, {{"k", "v"}});
    w.create_table("bench", bench_columns(), "");
    for (int i = 0; i < 5; ++i) w.append_row("bench", {kernel_name(i), std::int64_t{i}, 0.5 * i});
  }
  {
    RunReader clean(path);
    CHECK_FALSE(clean.recovered());
  }
  { std::ofstream(path, std::ios::binary | std::ios::app) << std::string(3000, '\x7f'); }
  const std::string before = slurp(path);
  {
    RunReader r(path);
    CHECK(r.recovered());
    CHECK(r.attribute("k") == "v");
    CHECK(r.rows("bench") == 5);
    CHECK(r.read_str("bench/kernel")[4] == kernel_name(4));
    CHECK(r.read_f64("bench/median_ms")[4] == 2.0);
  }
  CHECK(slurp(path) == before);  // the file itself is not modified
}

TEST_CASE("run store: SIGKILL at random moments during appends", "[run_store][.stress]") {
  // Hidden characterization test (run with "[.stress]"; RA_STRESS_ITERS and
  // RA_STRESS_PAD tune it). The child appends without pause, so kills land
  // inside appends and H5Fflush calls -- beyond what the API promises (only
  // rows whose append returned, and a kill between appends). Known residual
  // failure: Linux can stop a large pwrite at a page boundary on SIGKILL, and
  // if that write was a global heap collection grown in place, the strings
  // in it are unreadable ("exceeds EOA"); a few per thousand kills with
  // 3000-byte strings. That is counted, anything else fails the test.
  std::mt19937 rng(12345);
  const int iterations = std::getenv("RA_STRESS_ITERS") ? std::atoi(std::getenv("RA_STRESS_ITERS")) : 40;
  const std::size_t pad = std::getenv("RA_STRESS_PAD") ? std::strtoul(std::getenv("RA_STRESS_PAD"), nullptr, 10) : 500;
  int recovered = 0;
  int torn_heap = 0;
  for (int it = 0; it < iterations; ++it) {
    TempDir dir;
    const std::string path = dir.file("stress.h5");
    int marker_fd = -1;
    const pid_t pid = spawn_writer(path, -1, pad, marker_fd);
    const int want = std::uniform_int_distribution<int>(1, 600)(rng);
    bool child_error = false;
    const int got = wait_markers(marker_fd, want, 20000, child_error);
    std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 300)(rng)));
    kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    close(marker_fd);
    REQUIRE_FALSE(child_error);
    REQUIRE(got == want);
    INFO("iteration " << it << ": " << got << " rows acknowledged");
    bool heap_failure = false;
    try {
      RunReader r(path);
      if (r.recovered()) ++recovered;
      r.read_str("bench/kernel");
    } catch (const std::exception& e) {
      heap_failure = std::string(e.what()).find("global heap") != std::string::npos;
      if (heap_failure) {
        ++torn_heap;
        WARN("iteration " << it << ": " << e.what());
      }
    }
    if (!heap_failure) check_child_file(path, static_cast<std::size_t>(got), SIZE_MAX, pad);
  }
  WARN(iterations << " kills: " << recovered << " needed the end-of-allocation repair, " << torn_heap
                  << " left a torn global heap collection (string column unreadable)");
}

TEST_CASE("run store: bad input gives exceptions naming the culprit", "[run_store]") {
  TempDir dir;

  SECTION("missing or non-run files") {
    const std::string missing = dir.file("nope.h5");
    CHECK_THROWS_WITH(RunReader(missing), Catch::Contains(missing));
    const std::string text = dir.file("text.h5");
    { std::ofstream(text) << "not hdf5"; }
    CHECK_THROWS_WITH(RunReader(text), Catch::Contains(text) && Catch::Contains("not an HDF5 file"));
    CHECK_THROWS_WITH(RunReader(dir.path), Catch::Contains(dir.path));
  }

  SECTION("rows of wrong arity or type, unknown names") {
    const std::string path = dir.file("run.h5");
    auto w = RunWriter::create(path, {});
    w.create_table("bench", bench_columns(), "");
    w.create_series("loss", "nats", "");
    CHECK_THROWS_AS(w.append_row("bench", {std::string("a"), std::int64_t{1}}), std::invalid_argument);
    CHECK_THROWS_WITH(w.append_row("bench", {std::string("a"), std::int64_t{1}}), Catch::Contains("median_ms"));
    CHECK_THROWS_WITH(w.append_row("bench", {std::string("a"), std::int64_t{1}, 1.0, 2.0}),
                      Catch::Contains("median_ms"));
    CHECK_THROWS_AS(w.append_row("bench", {std::string("a"), 1.0, 1.0}), std::invalid_argument);
    CHECK_THROWS_WITH(w.append_row("bench", {std::string("a"), 1.0, 1.0}), Catch::Contains("seq_len"));
    CHECK_THROWS_WITH(w.append_row("bench", {std::int64_t{3}, std::int64_t{1}, 1.0}), Catch::Contains("kernel"));
    CHECK_THROWS_WITH(w.append_row("bnech", {std::string("a"), std::int64_t{1}, 1.0}), Catch::Contains("bnech"));
    CHECK_THROWS_WITH(w.append("lsos", 1.0), Catch::Contains("lsos"));
    CHECK_THROWS_WITH(w.create_table("bench", bench_columns(), ""), Catch::Contains("already exists"));
    CHECK_THROWS_WITH(w.create_series("bench", "", ""), Catch::Contains("already exists"));
    CHECK_THROWS_AS(w.create_table("a/b", bench_columns(), ""), std::invalid_argument);
    CHECK_THROWS_AS(w.create_table("dup", {{"x", Column::Type::Float64, "", ""}, {"x", Column::Type::Int64, "", ""}}, ""),
                    std::invalid_argument);
    CHECK_THROWS_AS(w.set_attribute("schema", "x"), std::invalid_argument);
    w.append_row("bench", {std::string("ok"), std::int64_t{7}, 1.5});  // failures wrote nothing
    w.close();
    CHECK_THROWS_AS(w.append_row("bench", {std::string("ok"), std::int64_t{7}, 1.5}), std::logic_error);

    RunReader r(path);
    CHECK(r.rows("bench") == 1);
    CHECK(r.read_str("bench/kernel") == std::vector<std::string>{"ok"});
    CHECK_THROWS_WITH(r.rows("bnech"), Catch::Contains("bnech"));
    CHECK_THROWS_WITH(r.columns("nosuch"), Catch::Contains("nosuch"));
    CHECK_THROWS_WITH(r.read_f64("bench/nosuch"), Catch::Contains("bench/nosuch"));
    CHECK_THROWS_WITH(r.read_f64("nosuch/x"), Catch::Contains("nosuch/x"));
    CHECK_THROWS_WITH(r.read_i64("bench/median_ms"), Catch::Contains("bench/median_ms"));
    CHECK_THROWS_WITH(r.read_str("bench/seq_len"), Catch::Contains("bench/seq_len"));
    CHECK_THROWS_WITH(r.attribute("nokey"), Catch::Contains("nokey"));
    CHECK_THROWS_WITH(r.units("loss/x"), Catch::Contains("loss/x"));
  }

  SECTION("HDF5 files that are not run files") {
    const std::string truncated = dir.file("truncated.h5");
    { std::ofstream(truncated, std::ios::binary) << "\x89HDF\r\n\x1a\n"; }  // signature only
    CHECK_THROWS_WITH(RunReader(truncated), Catch::Contains(truncated));

    // A valid HDF5 file without the "schema" attribute, then one with a
    // foreign schema.
    const std::string plain = dir.file("plain.h5");
    hid_t f = H5Fcreate(plain.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(f >= 0);
    hid_t g = H5Gcreate2(f, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(g >= 0);
    H5Gclose(g);
    H5Fclose(f);
    CHECK_THROWS_WITH(RunReader(plain), Catch::Contains(plain) && Catch::Contains("not a run file"));

    const std::string foreign = dir.file("foreign.h5");
    f = H5Fcreate(foreign.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(f >= 0);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, 8);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(f, "schema", type, space, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(attr >= 0);
    H5Awrite(attr, type, "other/1\0");
    H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    H5Fclose(f);
    CHECK_THROWS_WITH(RunReader(foreign), Catch::Contains("not a run file") && Catch::Contains("other/1"));
  }
}

TEST_CASE("run store: N-d arrays in nested groups (write_array)", "[run_store]") {
  TempDir dir;
  const std::string path = dir.file("arrays.h5");
  std::vector<double> o(2 * 3 * 4);
  for (std::size_t i = 0; i < o.size(); ++i) o[i] = 0.5 * double(i) - 1.0;
  {
    auto w = RunWriter::create(path, {});
    w.create_table("bench", bench_columns(), "");
    w.write_array("outputs/ra_fused/float/o", {2, 3, 4}, o, "", "attention output",
                  {{"inputs_checksum", "fnv1a64:0123"}, {"dtype", "float"}});
    w.write_array("outputs/ra_fused/float/lse", {6}, {1, 2, 3, 4, 5, 6}, "nats", "log-sum-exp");
    w.write_array("outputs/sdpa_fused/float/o", {1}, {42.0}, "", "");  // sibling branch

    CHECK_THROWS_WITH(w.write_array("outputs/ra_fused/float/o", {1}, {1.0}, "", ""),
                      Catch::Contains("already exists"));
    CHECK_THROWS_AS(w.write_array("outputs/x", {2, 2}, {1, 2, 3}, "", ""), std::invalid_argument);
    CHECK_THROWS_WITH(w.write_array("outputs/x", {2, 2}, {1, 2, 3}, "", ""), Catch::Contains("outputs/x"));
    CHECK_THROWS_AS(w.write_array("outputs/x", {0}, {}, "", ""), std::invalid_argument);
    CHECK_THROWS_AS(w.write_array("outputs/x", {}, {}, "", ""), std::invalid_argument);
    CHECK_THROWS_AS(w.write_array("outputs//x", {1}, {1.0}, "", ""), std::invalid_argument);
    CHECK_THROWS_AS(w.write_array("/x", {1}, {1.0}, "", ""), std::invalid_argument);
    CHECK_THROWS_AS(w.write_array("outputs/..", {1}, {1.0}, "", ""), std::invalid_argument);
    CHECK_THROWS_AS(w.write_array("x", {1}, {1.0}, "", "", {{"length", "3"}}), std::invalid_argument);
    // a column is a dataset, not a group: no array can live under it
    CHECK_THROWS_WITH(w.write_array("bench/kernel/x", {1}, {1.0}, "", ""), Catch::Contains("not a group"));
  }
  RunReader r(path);
  CHECK(r.dims("outputs/ra_fused/float/o") == std::vector<std::size_t>{2, 3, 4});
  CHECK(r.read_f64("outputs/ra_fused/float/o") == o);
  CHECK(r.length("outputs/ra_fused/float/o") == o.size());
  CHECK(r.units("outputs/ra_fused/float/lse") == "nats");
  CHECK(r.description("outputs/ra_fused/float/o") == "attention output");
  CHECK(r.read_f64("outputs/ra_fused/float/lse") == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(r.read_f64("outputs/sdpa_fused/float/o") == std::vector<double>{42.0});
  CHECK(r.dims("bench/kernel") == std::vector<std::size_t>{0});
  CHECK(r.tables() == std::vector<std::string>{"bench"});  // "outputs" is a plain group
  CHECK_THROWS_WITH(r.dims("outputs/nosuch"), Catch::Contains("outputs/nosuch"));

  // Caller attributes are plain string attributes of the dataset.
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t a = H5Aopen_by_name(f, "outputs/ra_fused/float/o", "inputs_checksum", H5P_DEFAULT, H5P_DEFAULT);
  REQUIRE(a >= 0);
  hid_t t = H5Aget_type(a);
  char* text = nullptr;
  REQUIRE(H5Aread(a, t, &text) >= 0);
  CHECK(std::string(text) == "fnv1a64:0123");
  H5free_memory(text);
  H5Tclose(t);
  H5Aclose(a);
  H5Fclose(f);
}

TEST_CASE("run store: unique_run_path picks fresh names", "[run_store]") {
  TempDir dir;
  const std::string a = ra::unique_run_path(dir.path, "bench");
  CHECK(a.rfind(dir.path + "/bench-", 0) == 0);
  CHECK(a.size() >= 3);
  CHECK(a.substr(a.size() - 3) == ".h5");
  CHECK_FALSE(fs::exists(a));
  { auto w = RunWriter::create(a, {}); }
  const std::string b = ra::unique_run_path(dir.path, "bench");
  CHECK(b != a);
  CHECK_FALSE(fs::exists(b));
  { auto w = RunWriter::create(b, {}); }
  const std::string c = ra::unique_run_path(dir.path, "bench");
  CHECK(c != a);
  CHECK(c != b);
  CHECK_FALSE(fs::exists(c));
}
