// ra-train checkpoints in HDF5 (format: train_checkpoint.hpp).
#include "train_checkpoint.hpp"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>

namespace ra::train {
namespace {

// Closes an HDF5 id when it goes out of scope.
struct Id {
  hid_t id;
  herr_t (*close)(hid_t);
  Id(hid_t i, herr_t (*c)(hid_t), const std::string& what) : id(i), close(c) {
    if (id < 0) throw std::runtime_error(what);
  }
  ~Id() {
    if (id >= 0) close(id);
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
};

void check(herr_t status, const std::string& what) {
  if (status < 0) throw std::runtime_error(what);
}

Id string_type() {
  Id t(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
  check(H5Tset_size(t.id, H5T_VARIABLE), "H5Tset_size");
  check(H5Tset_cset(t.id, H5T_CSET_UTF8), "H5Tset_cset");
  return Id(H5Tcopy(t.id), H5Tclose, "H5Tcopy");
}

void put_int(hid_t f, const std::string& name, std::int64_t v, const std::string& where) {
  Id space(H5Screate(H5S_SCALAR), H5Sclose, where);
  Id a(H5Acreate2(f, name.c_str(), H5T_STD_I64LE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
       where + ": writing attribute " + name);
  check(H5Awrite(a.id, H5T_NATIVE_INT64, &v), where + ": writing attribute " + name);
}

void put_double(hid_t f, const std::string& name, double v, const std::string& where) {
  Id space(H5Screate(H5S_SCALAR), H5Sclose, where);
  Id a(H5Acreate2(f, name.c_str(), H5T_IEEE_F64LE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
       where + ": writing attribute " + name);
  check(H5Awrite(a.id, H5T_NATIVE_DOUBLE, &v), where + ": writing attribute " + name);
}

void put_string(hid_t f, const std::string& name, const std::string& v, const std::string& where) {
  Id type = string_type();
  Id space(H5Screate(H5S_SCALAR), H5Sclose, where);
  Id a(H5Acreate2(f, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
       where + ": writing attribute " + name);
  const char* p = v.c_str();
  check(H5Awrite(a.id, type.id, &p), where + ": writing attribute " + name);
}

void put_floats(hid_t f, const std::string& name, const std::vector<float>& v, const std::string& where) {
  hsize_t n = v.size();
  Id space(H5Screate_simple(1, &n, nullptr), H5Sclose, where);
  Id d(H5Dcreate2(f, name.c_str(), H5T_IEEE_F32LE, space.id, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
       H5Dclose, where + ": creating " + name);
  check(H5Dwrite(d.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()),
        where + ": writing " + name);
}

void put_strings(hid_t f, const std::string& name, const std::vector<std::string>& v,
                 const std::string& where) {
  hsize_t n = v.size();
  Id type = string_type();
  Id space(H5Screate_simple(1, &n, nullptr), H5Sclose, where);
  Id d(H5Dcreate2(f, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
       where + ": creating " + name);
  std::vector<const char*> ptrs;
  for (const auto& s : v) ptrs.push_back(s.c_str());
  if (n) check(H5Dwrite(d.id, type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), where + ": writing " + name);
}

bool has_attr(hid_t f, const std::string& name) { return H5Aexists(f, name.c_str()) > 0; }

std::int64_t get_int(hid_t f, const std::string& name, const std::string& where) {
  if (!has_attr(f, name)) throw std::runtime_error(where + ": no attribute '" + name + "'");
  Id a(H5Aopen(f, name.c_str(), H5P_DEFAULT), H5Aclose, where + ": reading " + name);
  std::int64_t v = 0;
  check(H5Aread(a.id, H5T_NATIVE_INT64, &v), where + ": reading " + name);
  return v;
}

double get_double(hid_t f, const std::string& name, const std::string& where) {
  if (!has_attr(f, name)) throw std::runtime_error(where + ": no attribute '" + name + "'");
  Id a(H5Aopen(f, name.c_str(), H5P_DEFAULT), H5Aclose, where + ": reading " + name);
  double v = 0;
  check(H5Aread(a.id, H5T_NATIVE_DOUBLE, &v), where + ": reading " + name);
  return v;
}

std::string get_string(hid_t f, const std::string& name, const std::string& where) {
  if (!has_attr(f, name)) throw std::runtime_error(where + ": no attribute '" + name + "'");
  Id a(H5Aopen(f, name.c_str(), H5P_DEFAULT), H5Aclose, where + ": reading " + name);
  Id type = string_type();
  char* p = nullptr;
  check(H5Aread(a.id, type.id, &p), where + ": reading " + name + " (not a string?)");
  std::string out = p ? p : "";
  H5free_memory(p);
  return out;
}

hsize_t dataset_size(hid_t d, const std::string& where) {
  Id space(H5Dget_space(d), H5Sclose, where);
  const hssize_t n = H5Sget_simple_extent_npoints(space.id);
  if (n < 0) throw std::runtime_error(where);
  return hsize_t(n);
}

std::vector<float> get_floats(hid_t f, const std::string& name, const std::string& where) {
  if (H5Lexists(f, name.c_str(), H5P_DEFAULT) <= 0)
    throw std::runtime_error(where + ": no dataset '" + name + "'");
  Id d(H5Dopen2(f, name.c_str(), H5P_DEFAULT), H5Dclose, where + ": opening " + name);
  std::vector<float> v(dataset_size(d.id, where + ": " + name));
  if (!v.empty())
    check(H5Dread(d.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), where + ": reading " + name);
  return v;
}

std::vector<std::string> get_strings(hid_t f, const std::string& name, const std::string& where) {
  if (H5Lexists(f, name.c_str(), H5P_DEFAULT) <= 0)
    throw std::runtime_error(where + ": no dataset '" + name + "'");
  Id d(H5Dopen2(f, name.c_str(), H5P_DEFAULT), H5Dclose, where + ": opening " + name);
  Id type = string_type();
  std::vector<char*> ptrs(dataset_size(d.id, where + ": " + name), nullptr);
  if (!ptrs.empty())
    check(H5Dread(d.id, type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), where + ": reading " + name);
  std::vector<std::string> out;
  for (char* p : ptrs) {
    out.emplace_back(p ? p : "");
    H5free_memory(p);
  }
  return out;
}

// Makes the temporary file's bytes durable before the rename publishes it.
void fsync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

std::string checkpoint_path_for(const std::string& run_path) {
  const std::string ext = ".h5";
  const bool has_ext = run_path.size() > ext.size() && run_path.compare(run_path.size() - ext.size(), ext.size(), ext) == 0;
  return (has_ext ? run_path.substr(0, run_path.size() - ext.size()) : run_path) + ".ckpt.h5";
}

void write_checkpoint(const std::string& path, const Checkpoint& c) {
  const std::string tmp = path + ".tmp";
  const std::string where = "writing checkpoint " + tmp;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  {
    Id f(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, where + ": cannot create");
    put_string(f.id, "format", kCheckpointFormat, where);
    put_int(f.id, "step", c.step, where);
    put_int(f.id, "optimizer_steps", c.optimizer_steps, where);
    put_int(f.id, "tokens", c.tokens, where);
    put_double(f.id, "elapsed_seconds", c.elapsed_seconds, where);
    put_int(f.id, "loader_shard", std::int64_t(c.loader.shard), where);
    put_int(f.id, "loader_offset", std::int64_t(c.loader.offset), where);
    put_int(f.id, "loader_epoch", std::int64_t(c.loader.epoch), where);
    put_int(f.id, "data_parallel_ranks", c.ranks, where);
    for (const auto& [table, rows] : c.table_rows) put_int(f.id, "rows_" + table, rows, where);
    put_string(f.id, "config", c.config_json, where);
    put_string(f.id, "model", c.model, where);
    put_floats(f.id, "params", c.params, where);
    put_floats(f.id, "adam_m", c.adam_m, where);
    put_floats(f.id, "adam_v", c.adam_v, where);
    put_strings(f.id, "args", c.args, where);
    check(H5Fflush(f.id, H5F_SCOPE_GLOBAL), where + ": flush failed");
  }
  fsync_file(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("checkpoint: renaming " + tmp + " to " + path + " failed");
}

Checkpoint read_checkpoint(const std::string& path) {
  const std::string where = "checkpoint " + path;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  if (!std::filesystem::exists(path)) throw std::runtime_error(where + ": no such file");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw std::runtime_error(where + ": not an HDF5 file");
  Id f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, where + ": cannot open");
  if (!has_attr(f.id, "format") || get_string(f.id, "format", where) != kCheckpointFormat)
    throw std::runtime_error(where + ": not an ra-train checkpoint (format attribute is not " +
                             std::string(kCheckpointFormat) + ")");
  Checkpoint c;
  c.step = get_int(f.id, "step", where);
  c.optimizer_steps = get_int(f.id, "optimizer_steps", where);
  c.tokens = get_int(f.id, "tokens", where);
  c.elapsed_seconds = get_double(f.id, "elapsed_seconds", where);
  c.loader.shard = std::uint64_t(get_int(f.id, "loader_shard", where));
  c.loader.offset = std::uint64_t(get_int(f.id, "loader_offset", where));
  c.loader.epoch = std::uint64_t(get_int(f.id, "loader_epoch", where));
  // Checkpoints from before data parallelism have no attribute: one rank.
  c.ranks = has_attr(f.id, "data_parallel_ranks") ? get_int(f.id, "data_parallel_ranks", where) : 1;
  for (const char* table : {"train", "val", "gates"})
    if (has_attr(f.id, std::string("rows_") + table))
      c.table_rows[table] = get_int(f.id, std::string("rows_") + table, where);
  c.config_json = get_string(f.id, "config", where);
  c.model = get_string(f.id, "model", where);
  c.params = get_floats(f.id, "params", where);
  c.adam_m = get_floats(f.id, "adam_m", where);
  c.adam_v = get_floats(f.id, "adam_v", where);
  c.args = get_strings(f.id, "args", where);
  if (c.adam_m.size() != c.params.size() || c.adam_v.size() != c.params.size())
    throw std::runtime_error(where + ": params, adam_m and adam_v differ in size");
  return c;
}

}  // namespace ra::train
