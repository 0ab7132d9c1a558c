// HDF5 run store (see ra/run_store.hpp). Uses the HDF5 C API directly; every
// HDF5 call is checked and failures become C++ exceptions carrying the text of
// HDF5's error stack (automatic printing of that stack is turned off).
#include "ra/run_store.hpp"

#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace fs = std::filesystem;

namespace ra {
namespace {

constexpr hsize_t kChunkRows = 256;

// ---------------------------------------------------------------------------
// Error handling

void quiet_hdf5() {
  // Cheap; done on every entry point so nothing (another library, a user of
  // H5Eset_auto) can turn the stderr dump back on behind our back.
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

herr_t collect_error(unsigned /*n*/, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::vector<std::string>*>(data);
  std::string text = err->desc ? err->desc : "";
  if (text.empty()) {
    char buf[256];
    if (H5Eget_msg(err->min_num, nullptr, buf, sizeof buf) > 0) text = buf;
  }
  if (!text.empty() && (out->empty() || out->back() != text)) out->push_back(text);
  return 0;
}

// Text of the current HDF5 error stack (outermost first), then clears it.
std::string hdf5_error_text() {
  std::vector<std::string> parts;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &parts);
  H5Eclear2(H5E_DEFAULT);
  if (parts.empty()) return "unknown HDF5 error";
  std::string joined;
  for (const auto& p : parts) {
    if (!joined.empty()) joined += ": ";
    joined += p;
  }
  return joined;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + " (HDF5: " + hdf5_error_text() + ")");
}

void check(herr_t status, const std::string& what) {
  if (status < 0) fail(what);
}

// ---------------------------------------------------------------------------
// RAII for hid_t

class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), closer_(o.closer_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      closer_ = o.closer_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes; returns the closer's status (errors are cleared, not thrown).
  herr_t reset() {
    herr_t status = 0;
    if (id_ >= 0 && closer_) {
      status = closer_(id_);
      if (status < 0) H5Eclear2(H5E_DEFAULT);
    }
    id_ = H5I_INVALID_HID;
    return status;
  }
  // Closes and throws on failure (used where a failed close matters: files).
  void close_or_throw(const std::string& what) {
    if (id_ < 0 || !closer_) return;
    hid_t id = std::exchange(id_, H5I_INVALID_HID);
    check(closer_(id), what);
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

Handle checked(hid_t id, Handle::Closer closer, const std::string& what) {
  if (id < 0) fail(what);
  return Handle(id, closer);
}

Handle vlen_utf8_type() {
  Handle t = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy(H5T_C_S1)");
  check(H5Tset_size(t.get(), H5T_VARIABLE), "H5Tset_size(H5T_VARIABLE)");
  check(H5Tset_cset(t.get(), H5T_CSET_UTF8), "H5Tset_cset(UTF8)");
  return t;
}

// Memory type for reading variable-length strings stored as `file_type`
// (same character set, so UTF-8 stays UTF-8).
Handle vlen_string_type_like(hid_t file_type, const std::string& what) {
  Handle mtype = checked(H5Tcopy(H5T_C_S1), H5Tclose, what);
  check(H5Tset_size(mtype.get(), H5T_VARIABLE), what);
  check(H5Tset_cset(mtype.get(), H5Tget_cset(file_type)), what);
  return mtype;
}

Handle scalar_space() { return checked(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate(scalar)"); }

// File access properties shared by writer and reader: file locking on where
// the file system supports it (ignored where it does not, e.g. some NFS).
Handle file_access_plist() {
  Handle fapl = checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate(FILE_ACCESS)");
  // Default (earliest) file format: superblock v0, no "open for write"
  // consistency flag that a crash would leave set.
  check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_EARLIEST, H5F_LIBVER_LATEST),
        "H5Pset_libver_bounds");
#if H5_VERSION_GE(1, 10, 7)
  check(H5Pset_file_locking(fapl.get(), true, true), "H5Pset_file_locking");
#endif
  return fapl;
}

// ---------------------------------------------------------------------------
// Attributes

void write_string_attribute(hid_t loc, const std::string& name, const std::string& value,
                            const std::string& where) {
  const std::string what = where + ": writing attribute '" + name + "'";
  htri_t exists = H5Aexists(loc, name.c_str());
  if (exists < 0) fail(what);
  if (exists > 0) check(H5Adelete(loc, name.c_str()), what);
  Handle type = vlen_utf8_type();
  Handle space = scalar_space();
  Handle attr = checked(H5Acreate2(loc, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                        H5Aclose, what);
  const char* p = value.c_str();
  check(H5Awrite(attr.get(), type.get(), &p), what);
}

void write_double_attribute(hid_t loc, const std::string& name, double value, const std::string& where) {
  const std::string what = where + ": writing attribute '" + name + "'";
  htri_t exists = H5Aexists(loc, name.c_str());
  if (exists < 0) fail(what);
  if (exists > 0) check(H5Adelete(loc, name.c_str()), what);
  Handle space = scalar_space();
  Handle attr = checked(H5Acreate2(loc, name.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                        H5Aclose, what);
  check(H5Awrite(attr.get(), H5T_NATIVE_DOUBLE, &value), what);
}

// Creates a scalar int64 attribute (value 0) that is later updated in place.
Handle create_counter_attribute(hid_t loc, const char* name, const std::string& what) {
  Handle space = scalar_space();
  Handle attr = checked(H5Acreate2(loc, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                        what + ": creating attribute '" + name + "'");
  const std::int64_t zero = 0;
  check(H5Awrite(attr.get(), H5T_NATIVE_INT64, &zero), what + ": writing attribute '" + name + "'");
  return attr;
}

void write_counter(const Handle& attr, hsize_t value, const std::string& what) {
  const auto v = static_cast<std::int64_t>(value);
  check(H5Awrite(attr.get(), H5T_NATIVE_INT64, &v), what);
}

std::string format_double(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  return std::string(buf, res.ptr);
}

void reclaim_vlen(hid_t type, hid_t space, void* buf) {
#if H5_VERSION_GE(1, 12, 0)
  H5Treclaim(type, space, H5P_DEFAULT, buf);
#else
  H5Dvlen_reclaim(type, space, H5P_DEFAULT, buf);
#endif
}

// Strings of a fixed-length string buffer: each element `size` bytes, padded.
std::vector<std::string> split_fixed(const std::vector<char>& buf, size_t size, size_t n) {
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const char* s = buf.data() + i * size;
    size_t len = 0;
    while (len < size && s[len] != '\0') ++len;
    while (len > 0 && s[len - 1] == ' ') --len;  // H5T_STR_SPACEPAD
    out.emplace_back(s, len);
  }
  return out;
}

// Reads an attribute (any string, integer or float type, scalar or 1-D) as
// text; nullopt-like empty vector return + false if the type is unsupported.
bool read_attribute_text(hid_t attr, std::string& out, const std::string& what) {
  Handle ftype = checked(H5Aget_type(attr), H5Tclose, what);
  Handle space = checked(H5Aget_space(attr), H5Sclose, what);
  hssize_t npoints = H5Sget_simple_extent_npoints(space.get());
  if (npoints < 0) fail(what);
  const auto n = static_cast<size_t>(npoints);
  std::vector<std::string> items;
  switch (H5Tget_class(ftype.get())) {
    case H5T_STRING: {
      htri_t is_var = H5Tis_variable_str(ftype.get());
      if (is_var < 0) fail(what);
      if (is_var) {
        Handle mtype = vlen_string_type_like(ftype.get(), what);
        std::vector<char*> ptrs(n, nullptr);
        check(H5Aread(attr, mtype.get(), ptrs.data()), what);
        for (char* p : ptrs) items.emplace_back(p ? p : "");
        reclaim_vlen(mtype.get(), space.get(), ptrs.data());
      } else {
        size_t size = H5Tget_size(ftype.get());
        if (size == 0) fail(what);
        std::vector<char> buf(size * n);
        check(H5Aread(attr, ftype.get(), buf.data()), what);
        items = split_fixed(buf, size, n);
      }
      break;
    }
    case H5T_INTEGER: {
      if (H5Tget_sign(ftype.get()) == H5T_SGN_NONE) {
        std::vector<unsigned long long> v(n);
        check(H5Aread(attr, H5T_NATIVE_ULLONG, v.data()), what);
        for (auto x : v) items.push_back(std::to_string(x));
      } else {
        std::vector<long long> v(n);
        check(H5Aread(attr, H5T_NATIVE_LLONG, v.data()), what);
        for (auto x : v) items.push_back(std::to_string(x));
      }
      break;
    }
    case H5T_FLOAT: {
      std::vector<double> v(n);
      check(H5Aread(attr, H5T_NATIVE_DOUBLE, v.data()), what);
      for (auto x : v) items.push_back(format_double(x));
      break;
    }
    default:
      return false;
  }
  out.clear();
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ",";
    out += items[i];
  }
  return true;
}

herr_t collect_attr_name(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}

herr_t collect_link_name(hid_t, const char* name, const H5L_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}

// ---------------------------------------------------------------------------
// Names, time

void validate_name(const std::string& name, const std::string& kind) {
  if (name.empty()) throw std::invalid_argument(kind + " name must not be empty");
  if (name.find('/') != std::string::npos || name == "." || name == "..")
    throw std::invalid_argument(kind + " name '" + name + "' must not contain '/' or be '.'/'..'");
}

std::string utc_now(const char* format) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  size_t len = std::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf, len);
}

bool path_exists(const std::string& path) {
  std::error_code ec;
  auto st = fs::symlink_status(path, ec);  // a dangling symlink still blocks O_EXCL
  if (ec && ec != std::errc::no_such_file_or_directory) return true;  // unknown: be safe
  return fs::exists(st);
}

const char* type_name(Column::Type t) {
  switch (t) {
    case Column::Type::Float64: return "float64";
    case Column::Type::Int64: return "int64";
    case Column::Type::String: return "string";
  }
  return "?";
}

const char* value_type_name(const RunWriter::Value& v) {
  switch (v.index()) {
    case 0: return "float64";
    case 1: return "int64";
    default: return "string";
  }
}

bool matches(Column::Type t, const RunWriter::Value& v) {
  switch (t) {
    case Column::Type::Float64: return std::holds_alternative<double>(v);
    case Column::Type::Int64: return std::holds_alternative<std::int64_t>(v);
    case Column::Type::String: return std::holds_alternative<std::string>(v);
  }
  return false;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

// Creates an empty extendible 1-D chunked dataset.
Handle create_extendible(hid_t loc, const std::string& name, hid_t file_type, const void* fill_native,
                         hid_t fill_type, const std::string& what) {
  hsize_t dims[1] = {0};
  hsize_t maxdims[1] = {H5S_UNLIMITED};
  Handle space = checked(H5Screate_simple(1, dims, maxdims), H5Sclose, what);
  Handle dcpl = checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, what);
  hsize_t chunk[1] = {kChunkRows};
  check(H5Pset_chunk(dcpl.get(), 1, chunk), what);
  if (fill_native) check(H5Pset_fill_value(dcpl.get(), fill_type, fill_native), what);
  return checked(H5Dcreate2(loc, name.c_str(), file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                 H5Dclose, what);
}

// Writes `count` elements at [offset, offset+count), growing the extent to
// offset+count. Idempotent for a given offset (a failed, retried append
// overwrites rather than duplicates).
void write_at(hid_t dset, hsize_t offset, hsize_t count, hid_t mem_type, const void* data,
              const std::string& what) {
  hsize_t new_size[1] = {offset + count};
  check(H5Dset_extent(dset, new_size), what);
  Handle fspace = checked(H5Dget_space(dset), H5Sclose, what);
  hsize_t start[1] = {offset};
  hsize_t cnt[1] = {count};
  check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, cnt, nullptr), what);
  Handle mspace = checked(H5Screate_simple(1, cnt, nullptr), H5Sclose, what);
  check(H5Dwrite(dset, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, data), what);
}

}  // namespace

// ===========================================================================
// RunWriter

struct RunWriter::Impl {
  struct ColumnState {
    std::string name;
    Column::Type type;
    Handle dset;
  };
  struct Table {
    std::vector<ColumnState> columns;
    Handle rows_attr;  // group attribute "rows": rows known to be complete
    hsize_t rows = 0;
  };
  struct Series {
    Handle dset;
    Handle length_attr;  // dataset attribute "length": values known complete
    hsize_t size = 0;
  };

  std::string path;
  Handle file;
  Handle str_type;
  std::map<std::string, Table> tables;
  std::map<std::string, Series> series;

  std::string where() const { return "run file " + path; }

  hid_t fid() const {
    if (!file.valid()) throw std::logic_error("RunWriter for " + path + " is closed");
    return file.get();
  }

  void flush() { check(H5Fflush(fid(), H5F_SCOPE_GLOBAL), where() + ": H5Fflush failed"); }

  void ensure_new_name(const std::string& name) {
    htri_t exists = H5Lexists(fid(), name.c_str(), H5P_DEFAULT);
    if (exists < 0) fail(where() + ": checking for '" + name + "'");
    if (exists > 0) throw std::runtime_error(where() + ": '" + name + "' already exists");
  }

  void close() {
    if (!file.valid()) return;
    // Flush first so a failure is reported while the file is still open.
    check(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), where() + ": final H5Fflush failed");
    tables.clear();  // close datasets before the file (default "weak" close)
    series.clear();
    str_type.reset();
    file.close_or_throw(where() + ": H5Fclose failed");
  }
};

RunWriter::RunWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RunWriter::RunWriter(RunWriter&&) noexcept = default;
RunWriter& RunWriter::operator=(RunWriter&& o) noexcept {
  if (this != &o) {
    if (impl_) {
      try {
        impl_->close();
      } catch (...) {
      }
    }
    impl_ = std::move(o.impl_);
  }
  return *this;
}

RunWriter::~RunWriter() {
  if (!impl_) return;
  try {
    impl_->close();
  } catch (...) {
    // Destructors must not throw; everything appended was already flushed.
  }
}

RunWriter::Impl& RunWriter::state() const {
  if (!impl_) throw std::logic_error("RunWriter used after being moved from");
  quiet_hdf5();
  return *impl_;
}

RunWriter RunWriter::create(const std::string& path, const std::map<std::string, std::string>& attributes) {
  quiet_hdf5();
  if (path.empty()) throw std::invalid_argument("RunWriter::create: empty path");
  for (const auto& kv : attributes) {
    if (kv.first.empty()) throw std::invalid_argument("run attribute with an empty key");
    if (kv.first == "schema" || kv.first == "created_utc")
      throw std::invalid_argument("run attribute '" + kv.first + "' is reserved (written by the run store)");
  }
  const std::string exists_msg =
      "run file " + path + " already exists; refusing to overwrite (choose a new name, e.g. with unique_run_path)";
  if (path_exists(path)) throw std::runtime_error(exists_msg);

  fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) throw std::runtime_error("cannot create directory " + parent.string() + " for run file " + path + ": " +
                                     ec.message());
  }

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  Handle fapl = file_access_plist();
  // H5F_ACC_EXCL -> open(O_CREAT|O_EXCL): never truncates an existing file,
  // even if one appeared since the check above.
  hid_t fid = H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get());
  if (fid < 0) {
    std::string text = hdf5_error_text();
    if (path_exists(path)) throw std::runtime_error(exists_msg);
    throw std::runtime_error("cannot create run file " + path + " (HDF5: " + text + ")");
  }
  impl->file = Handle(fid, H5Fclose);

  try {
    impl->str_type = vlen_utf8_type();
    const std::string where = impl->where();
    write_string_attribute(fid, "schema", kRunSchema, where);
    write_string_attribute(fid, "created_utc", utc_now("%Y-%m-%dT%H:%M:%SZ"), where);
    for (const auto& kv : attributes) write_string_attribute(fid, kv.first, kv.second, where);
    impl->flush();
  } catch (...) {
    // We created the file exclusively, so it is ours to remove.
    impl->tables.clear();
    impl->str_type.reset();
    impl->file.reset();
    std::error_code ec;
    fs::remove(path, ec);
    throw;
  }
  return RunWriter(std::move(impl));
}

RunWriter RunWriter::reopen(const std::string& path) {
  quiet_hdf5();
  const std::string prefix = "cannot reopen run file " + path + ": ";
  if (!path_exists(path)) throw std::runtime_error(prefix + "no such file");
  htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 <= 0) throw std::runtime_error(prefix + "not an HDF5 file");
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  Handle fapl = file_access_plist();
  hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.get());
  if (fid < 0) {
    std::string text = hdf5_error_text();
    if (text.find("lock") != std::string::npos) text += " -- probably still open by a running writer";
    throw std::runtime_error(prefix + "HDF5: " + text);
  }
  impl->file = Handle(fid, H5Fclose);
  impl->str_type = vlen_utf8_type();
  // See RunReader: a writer killed mid-flush can leave objects past the
  // stored end-of-allocation mark; new allocations would land on them.
  haddr_t eoa = 0;
  if (H5Fget_eoa(fid, &eoa) < 0) fail(prefix + "reading the end-of-allocation mark");
  std::error_code size_ec;
  const std::uintmax_t eof = fs::file_size(path, size_ec);
  if (!size_ec && eof > eoa)
    check(H5Fincrement_filesize(fid, 0), prefix + "raising the end-of-allocation mark");
  if (H5Aexists(fid, "schema") <= 0) throw std::runtime_error(prefix + "not a run file (no 'schema' attribute)");

  std::vector<std::string> names;
  check(H5Literate(fid, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_link_name, &names), prefix + "listing root");
  auto committed = [&](hid_t obj, const char* counter_name, const std::string& what, Handle& attr) {
    attr = checked(H5Aopen(obj, counter_name, H5P_DEFAULT), H5Aclose, what + ": opening '" + counter_name + "'");
    std::int64_t v = 0;
    check(H5Aread(attr.get(), H5T_NATIVE_INT64, &v), what + ": reading '" + counter_name + "'");
    return static_cast<hsize_t>(v < 0 ? 0 : v);
  };
  for (const auto& name : names) {
    const std::string what = prefix + "'" + name + "'";
    Handle obj = checked(H5Oopen(fid, name.c_str(), H5P_DEFAULT), H5Oclose, what);
    if (H5Iget_type(obj.get()) == H5I_GROUP && H5Aexists(obj.get(), "columns") > 0) {
      Impl::Table table;
      table.rows = committed(obj.get(), "rows", what, table.rows_attr);
      std::string cols;
      Handle cattr = checked(H5Aopen(obj.get(), "columns", H5P_DEFAULT), H5Aclose, what);
      read_attribute_text(cattr.get(), cols, what);
      std::stringstream list(cols);
      for (std::string col; std::getline(list, col, ',');) {
        const std::string cwhat = what + ", column '" + col + "'";
        Handle dset = checked(H5Dopen2(obj.get(), col.c_str(), H5P_DEFAULT), H5Dclose, cwhat);
        Handle type = checked(H5Dget_type(dset.get()), H5Tclose, cwhat);
        const H5T_class_t cls = H5Tget_class(type.get());
        const Column::Type ct = cls == H5T_STRING    ? Column::Type::String
                                : cls == H5T_INTEGER ? Column::Type::Int64
                                                     : Column::Type::Float64;
        table.columns.push_back(Impl::ColumnState{col, ct, std::move(dset)});
      }
      impl->tables.emplace(name, std::move(table));
    } else if (H5Iget_type(obj.get()) == H5I_DATASET && H5Aexists(obj.get(), "length") > 0) {
      Impl::Series ser;
      ser.size = committed(obj.get(), "length", what, ser.length_attr);
      ser.dset = checked(H5Dopen2(fid, name.c_str(), H5P_DEFAULT), H5Dclose, what);
      impl->series.emplace(name, std::move(ser));
    }
  }
  H5Eclear2(H5E_DEFAULT);
  return RunWriter(std::move(impl));
}

std::size_t RunWriter::rows(const std::string& table) const {
  Impl& s = state();
  auto it = s.tables.find(table);
  if (it == s.tables.end()) throw std::invalid_argument(s.where() + ": unknown table '" + table + "'");
  return it->second.rows;
}

void RunWriter::truncate_rows(const std::string& table, std::size_t rows) {
  Impl& s = state();
  auto it = s.tables.find(table);
  if (it == s.tables.end()) throw std::invalid_argument(s.where() + ": truncate_rows of unknown table '" + table + "'");
  Impl::Table& t = it->second;
  if (rows >= t.rows) return;
  write_counter(t.rows_attr, rows, s.where() + ": truncating table '" + table + "'");
  s.flush();
  t.rows = rows;
}

void RunWriter::set_attribute(const std::string& key, const std::string& value) {
  Impl& s = state();
  if (key.empty()) throw std::invalid_argument("run attribute with an empty key");
  if (key == "schema" || key == "created_utc")
    throw std::invalid_argument("run attribute '" + key + "' is reserved (written by the run store)");
  write_string_attribute(s.fid(), key, value, s.where());
  s.flush();
}

void RunWriter::set_attribute(const std::string& key, double value) {
  Impl& s = state();
  if (key.empty()) throw std::invalid_argument("run attribute with an empty key");
  if (key == "schema" || key == "created_utc")
    throw std::invalid_argument("run attribute '" + key + "' is reserved (written by the run store)");
  write_double_attribute(s.fid(), key, value, s.where());
  s.flush();
}

void RunWriter::create_table(const std::string& name, const std::vector<Column>& columns,
                             const std::string& description) {
  Impl& s = state();
  validate_name(name, "table");
  if (columns.empty()) throw std::invalid_argument("table '" + name + "' needs at least one column");
  std::vector<std::string> names;
  for (const auto& c : columns) {
    validate_name(c.name, "column");
    if (c.name.find(',') != std::string::npos)
      throw std::invalid_argument("column name '" + c.name + "' must not contain ','");
    if (std::find(names.begin(), names.end(), c.name) != names.end())
      throw std::invalid_argument("table '" + name + "': duplicate column '" + c.name + "'");
    names.push_back(c.name);
  }
  s.ensure_new_name(name);

  const std::string what = s.where() + ": creating table '" + name + "'";
  Handle group = checked(H5Gcreate2(s.fid(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, what);
  write_string_attribute(group.get(), "columns", join(names, ","), what);
  write_string_attribute(group.get(), "description", description, what);

  Impl::Table table;
  table.rows_attr = create_counter_attribute(group.get(), "rows", what);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const auto& c : columns) {
    const std::string cwhat = what + ", column '" + c.name + "'";
    Handle dset;
    switch (c.type) {
      case Column::Type::Float64:
        // NaN fill: a row that was never completely written reads as NaN.
        dset = create_extendible(group.get(), c.name, H5T_IEEE_F64LE, &nan, H5T_NATIVE_DOUBLE, cwhat);
        break;
      case Column::Type::Int64:
        dset = create_extendible(group.get(), c.name, H5T_STD_I64LE, nullptr, H5T_NATIVE_INT64, cwhat);
        break;
      case Column::Type::String:
        dset = create_extendible(group.get(), c.name, s.str_type.get(), nullptr, s.str_type.get(), cwhat);
        break;
    }
    write_string_attribute(dset.get(), "units", c.units, cwhat);
    write_string_attribute(dset.get(), "description", c.description, cwhat);
    write_string_attribute(dset.get(), "type", type_name(c.type), cwhat);
    table.columns.push_back(Impl::ColumnState{c.name, c.type, std::move(dset)});
  }
  s.tables.emplace(name, std::move(table));
  s.flush();
}

void RunWriter::append_row(const std::string& table, const std::vector<Value>& values) {
  Impl& s = state();
  auto it = s.tables.find(table);
  if (it == s.tables.end())
    throw std::invalid_argument(s.where() + ": append_row to unknown table '" + table + "'");
  Impl::Table& t = it->second;
  // Validate the whole row before writing anything.
  if (values.size() != t.columns.size()) {
    const std::string column = values.size() < t.columns.size() ? t.columns[values.size()].name
                                                                 : t.columns.back().name;
    throw std::invalid_argument("table '" + table + "': row has " + std::to_string(values.size()) +
                                " values but the table has " + std::to_string(t.columns.size()) +
                                " columns (" + (values.size() < t.columns.size() ? "missing column '"
                                                                                 : "extra value after column '") +
                                column + "')");
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const auto& c = t.columns[i];
    if (!matches(c.type, values[i]))
      throw std::invalid_argument("table '" + table + "', column '" + c.name + "': expected " +
                                  type_name(c.type) + " value, got " + value_type_name(values[i]));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const auto& c = t.columns[i];
    const std::string what = s.where() + ": appending to table '" + table + "', column '" + c.name + "'";
    switch (c.type) {
      case Column::Type::Float64:
        write_at(c.dset.get(), t.rows, 1, H5T_NATIVE_DOUBLE, &std::get<double>(values[i]), what);
        break;
      case Column::Type::Int64:
        write_at(c.dset.get(), t.rows, 1, H5T_NATIVE_INT64, &std::get<std::int64_t>(values[i]), what);
        break;
      case Column::Type::String: {
        const char* p = std::get<std::string>(values[i]).c_str();
        write_at(c.dset.get(), t.rows, 1, s.str_type.get(), &p, what);
        break;
      }
    }
  }
  // Two-phase commit. A single H5Fflush writes dirty metadata in no
  // particular order, so a kill in the middle of it can leave the new extent
  // on disk without the chunk index entry for the new data (the row then
  // reads as fill values). So: flush the data, and only then advance the
  // "rows" counter (an in-place 8-byte update) and flush again. Readers trust
  // only the counter; every row whose append returned is counted.
  s.flush();
  write_counter(t.rows_attr, t.rows + 1, s.where() + ": committing row of table '" + table + "'");
  s.flush();
  ++t.rows;
}

void RunWriter::create_series(const std::string& name, const std::string& units, const std::string& description) {
  Impl& s = state();
  validate_name(name, "series");
  s.ensure_new_name(name);
  const std::string what = s.where() + ": creating series '" + name + "'";
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Handle dset = create_extendible(s.fid(), name, H5T_IEEE_F64LE, &nan, H5T_NATIVE_DOUBLE, what);
  write_string_attribute(dset.get(), "units", units, what);
  write_string_attribute(dset.get(), "description", description, what);
  Handle length_attr = create_counter_attribute(dset.get(), "length", what);
  s.series.emplace(name, Impl::Series{std::move(dset), std::move(length_attr), 0});
  s.flush();
}

void RunWriter::append(const std::string& series, double value) {
  append(series, std::vector<double>{value});
}

void RunWriter::append(const std::string& series, const std::vector<double>& values) {
  Impl& s = state();
  auto it = s.series.find(series);
  if (it == s.series.end())
    throw std::invalid_argument(s.where() + ": append to unknown series '" + series + "'");
  if (values.empty()) return;
  Impl::Series& ser = it->second;
  write_at(ser.dset.get(), ser.size, values.size(), H5T_NATIVE_DOUBLE, values.data(),
           s.where() + ": appending to series '" + series + "'");
  s.flush();  // two-phase commit, as in append_row
  write_counter(ser.length_attr, ser.size + values.size(), s.where() + ": committing series '" + series + "'");
  s.flush();
  ser.size += values.size();
}

void RunWriter::write_array(const std::string& path, const std::vector<std::size_t>& dims,
                            const std::vector<double>& data, const std::string& units,
                            const std::string& description,
                            const std::map<std::string, std::string>& attributes) {
  Impl& s = state();
  // Split and validate the whole path before touching the file.
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t slash = path.find('/', start);
    parts.push_back(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  for (const auto& p : parts) validate_name(p, "array path '" + path + "': part");
  if (dims.empty()) throw std::invalid_argument("array '" + path + "' needs at least one dimension");
  size_t n = 1;
  for (size_t d : dims) {
    if (d == 0) throw std::invalid_argument("array '" + path + "' has a zero dimension");
    n *= d;
  }
  if (data.size() != n)
    throw std::invalid_argument("array '" + path + "': " + std::to_string(data.size()) +
                                " values for dims whose product is " + std::to_string(n));
  for (const auto& kv : attributes)
    if (kv.first.empty() || kv.first == "units" || kv.first == "description" || kv.first == "length")
      throw std::invalid_argument("array '" + path + "': attribute '" + kv.first +
                                  "' is empty or reserved (units, description, length)");

  const std::string what = s.where() + ": writing array '" + path + "'";
  // Parents one level at a time: H5Lexists on a path whose intermediate
  // group is missing fails on HDF5 1.10, so each prefix is checked only
  // once its parent is known to exist.
  std::string prefix;
  for (size_t i = 0; i < parts.size(); ++i) {
    prefix += (i ? "/" : "") + parts[i];
    const htri_t exists = H5Lexists(s.fid(), prefix.c_str(), H5P_DEFAULT);
    if (exists < 0) fail(what + ": checking for '" + prefix + "'");
    if (i + 1 == parts.size()) {
      if (exists > 0) throw std::runtime_error(s.where() + ": '" + path + "' already exists");
    } else if (exists == 0) {
      checked(H5Gcreate2(s.fid(), prefix.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
              what + ": creating group '" + prefix + "'");
    } else {
      Handle obj = checked(H5Oopen(s.fid(), prefix.c_str(), H5P_DEFAULT), H5Oclose, what);
      if (H5Iget_type(obj.get()) != H5I_GROUP)
        throw std::runtime_error(s.where() + ": '" + prefix + "' (in '" + path + "') is not a group");
    }
  }
  std::vector<hsize_t> hdims(dims.begin(), dims.end());
  Handle space = checked(H5Screate_simple(int(hdims.size()), hdims.data(), nullptr), H5Sclose, what);
  Handle dset = checked(H5Dcreate2(s.fid(), path.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT,
                                   H5P_DEFAULT, H5P_DEFAULT),
                        H5Dclose, what);
  check(H5Dwrite(dset.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), what);
  write_string_attribute(dset.get(), "units", units, what);
  write_string_attribute(dset.get(), "description", description, what);
  for (const auto& kv : attributes) write_string_attribute(dset.get(), kv.first, kv.second, what);
  // Two-phase commit as in append(): "length" is 0 until the data is flushed,
  // so a writer killed in between leaves an array that reads as empty.
  Handle length_attr = create_counter_attribute(dset.get(), "length", what);
  s.flush();
  write_counter(length_attr, n, what + ": committing");
  s.flush();
}

void RunWriter::flush() { state().flush(); }

void RunWriter::close() { state().close(); }

const std::string& RunWriter::path() const { return state().path; }

// ===========================================================================
// RunReader

struct RunReader::Impl {
  std::string path;
  Handle file;
  bool recovered = false;

  std::string where() const { return "run file " + path; }

  // Opens an object that must exist; `kind` is used in the error message.
  Handle open_object(const std::string& name, const char* kind) const {
    // H5Lexists fails (1.10) or returns 0 (1.12+) for a missing intermediate group.
    htri_t exists = name.empty() ? 0 : H5Lexists(file.get(), name.c_str(), H5P_DEFAULT);
    if (exists <= 0) {
      H5Eclear2(H5E_DEFAULT);
      throw std::runtime_error(where() + ": no " + kind + " '" + name + "'");
    }
    return checked(H5Oopen(file.get(), name.c_str(), H5P_DEFAULT), H5Oclose,
                   where() + ": opening '" + name + "'");
  }

  Handle open_dataset(const std::string& name) const {
    Handle obj = open_object(name, "dataset");
    if (H5Iget_type(obj.get()) != H5I_DATASET)
      throw std::runtime_error(where() + ": '" + name + "' is not a dataset");
    return obj;
  }

  Handle open_table(const std::string& name) const {
    Handle obj = open_object(name, "table");
    htri_t has_cols = H5Iget_type(obj.get()) == H5I_GROUP ? H5Aexists(obj.get(), "columns") : 0;
    if (has_cols <= 0) {
      H5Eclear2(H5E_DEFAULT);
      throw std::runtime_error(where() + ": '" + name + "' is not a table");
    }
    return obj;
  }

  std::string optional_string_attribute(hid_t obj, const char* name, const std::string& what) const {
    htri_t exists = H5Aexists(obj, name);
    if (exists < 0) fail(what);
    if (exists == 0) return "";
    Handle attr = checked(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, what);
    std::string text;
    if (!read_attribute_text(attr.get(), text, what))
      throw std::runtime_error(what + ": attribute '" + name + "' has an unsupported type");
    return text;
  }

  std::vector<std::string> root_links() const {
    std::vector<std::string> names;
    check(H5Literate(file.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_link_name, &names),
          where() + ": listing root");
    return names;
  }

  size_t extent(hid_t dset, const std::string& name) const {
    Handle space = checked(H5Dget_space(dset), H5Sclose, where() + ": dataspace of '" + name + "'");
    hssize_t n = H5Sget_simple_extent_npoints(space.get());
    if (n < 0) fail(where() + ": size of '" + name + "'");
    return static_cast<size_t>(n);
  }

  // Value of an integer attribute, if present.
  bool counter(hid_t obj, const char* name, size_t& value, const std::string& what) const {
    htri_t exists = H5Aexists(obj, name);
    if (exists < 0) fail(what);
    if (exists == 0) return false;
    Handle attr = checked(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, what);
    std::int64_t v = 0;
    check(H5Aread(attr.get(), H5T_NATIVE_INT64, &v), what);
    value = v < 0 ? 0 : static_cast<size_t>(v);
    return true;
  }

  // Number of elements of a dataset that were committed: its extent, capped
  // by the series' "length" attribute or, for a table column, the table's
  // "rows" attribute (a writer killed mid-append can leave a torn element
  // past the committed ones).
  size_t committed_length(hid_t dset, const std::string& name) const {
    const std::string what = where() + ": length of '" + name + "'";
    size_t n = extent(dset, name);
    size_t c = 0;
    if (counter(dset, "length", c, what)) n = std::min(n, c);
    const size_t slash = name.rfind('/');
    if (slash != std::string::npos && slash > 0) {
      Handle parent = checked(H5Oopen(file.get(), name.substr(0, slash).c_str(), H5P_DEFAULT), H5Oclose, what);
      if (H5Iget_type(parent.get()) == H5I_GROUP && counter(parent.get(), "rows", c, what)) n = std::min(n, c);
    }
    return n;
  }

  // Reads the first n elements of a 1-D (or scalar) dataset into buf;
  // returns the memory dataspace used (needed to reclaim vlen data).
  Handle read_prefix(hid_t dset, hid_t mem_type, size_t n, void* buf, const std::string& what) const {
    Handle fspace = checked(H5Dget_space(dset), H5Sclose, what);
    hsize_t count[1] = {n};
    Handle mspace = checked(H5Screate_simple(1, count, nullptr), H5Sclose, what);
    if (static_cast<size_t>(H5Sget_simple_extent_npoints(fspace.get())) != n) {
      if (H5Sget_simple_extent_ndims(fspace.get()) != 1) throw std::runtime_error(what + ": not a 1-D dataset");
      hsize_t start[1] = {0};
      check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), what);
    } else {
      check(H5Sselect_all(fspace.get()), what);
    }
    check(H5Dread(dset, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, buf), what);
    return mspace;
  }
};

RunReader::RunReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  quiet_hdf5();
  impl_->path = path;
  const std::string prefix = "cannot open run file " + path + ": ";
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (!fs::exists(st)) throw std::runtime_error(prefix + "no such file");
  if (fs::is_directory(st)) throw std::runtime_error(prefix + "is a directory");
  htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 < 0) fail(prefix + "unreadable");
  if (is_hdf5 == 0) throw std::runtime_error(prefix + "not an HDF5 file");

  Handle fapl = file_access_plist();
  hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (fid < 0) {
    std::string text = hdf5_error_text();
    std::string hint;
    if (text.find("lock") != std::string::npos)
      hint = " -- the file is locked, probably still open by a running writer";
    throw std::runtime_error(prefix + "HDF5: " + text + hint);
  }
  impl_->file = Handle(fid, H5Fclose);

  // After every H5Fflush/H5Fclose the file ends exactly at HDF5's
  // end-of-allocation mark (EOA, stored in the superblock). A file longer
  // than its EOA was left by a writer killed in the middle of a flush: the
  // superblock is written last, so objects written or grown in that flush
  // can lie beyond the stored EOA, and HDF5 refuses to read them -- this
  // includes a global heap collection grown in place, which would make
  // already committed strings unreadable ("actual_len exceeds EOA").
  // Recover by reading a temporary copy with the EOA raised to the file size
  // (what `h5clear --increment=0` does), leaving the run file untouched.
  // (H5Fincrement_filesize needs a SWMR-capable driver, so no in-memory copy.)
  haddr_t eoa = 0;
  if (H5Fget_eoa(fid, &eoa) < 0) fail(prefix + "reading the end-of-allocation mark");
  std::error_code size_ec;
  const std::uintmax_t eof = fs::file_size(path, size_ec);
  if (!size_ec && eof > eoa) {
    impl_->file.close_or_throw(prefix + "H5Fclose failed");
    std::string tmpl = (fs::temp_directory_path() / "ra-run-recovery-XXXXXX").string();
    int tmp_fd = mkstemp(tmpl.data());
    if (tmp_fd < 0)
      throw std::runtime_error(prefix + "cannot create a temporary copy to recover from an interrupted flush");
    ::close(tmp_fd);
    struct Unlink {
      std::string p;
      ~Unlink() { ::unlink(p.c_str()); }  // HDF5 keeps its descriptor open
    } unlink_copy{tmpl};
    std::error_code copy_ec;
    fs::copy_file(path, tmpl, fs::copy_options::overwrite_existing, copy_ec);
    if (copy_ec) throw std::runtime_error(prefix + "copying to " + tmpl + " failed: " + copy_ec.message());
    Handle copy_fapl = file_access_plist();
    hid_t copy = H5Fopen(tmpl.c_str(), H5F_ACC_RDWR, copy_fapl.get());
    if (copy < 0) fail(prefix + "opening a temporary copy to recover from an interrupted flush");
    impl_->file = Handle(copy, H5Fclose);
    check(H5Fincrement_filesize(copy, 0), prefix + "raising the end-of-allocation mark of the temporary copy");
    impl_->recovered = true;
    fid = copy;
  }

  htri_t has_schema = H5Aexists(fid, "schema");
  if (has_schema < 0) fail(prefix + "reading root attributes");
  if (has_schema == 0) throw std::runtime_error(prefix + "not a run file (no 'schema' attribute)");
  std::string schema = impl_->optional_string_attribute(fid, "schema", prefix + "reading 'schema'");
  const std::string family = "ra-kokkos-run/";
  if (schema.compare(0, family.size(), family) != 0)
    throw std::runtime_error(prefix + "not a run file (schema '" + schema + "', expected " + kRunSchema + ")");
}

RunReader::RunReader(RunReader&&) noexcept = default;
RunReader& RunReader::operator=(RunReader&&) noexcept = default;
RunReader::~RunReader() = default;

const RunReader::Impl& RunReader::state() const {
  if (!impl_) throw std::logic_error("RunReader used after being moved from");
  quiet_hdf5();
  return *impl_;
}

const std::string& RunReader::path() const { return state().path; }

bool RunReader::recovered() const { return state().recovered; }

std::map<std::string, std::string> RunReader::attributes() const {
  const Impl& s = state();
  std::vector<std::string> names;
  hsize_t idx = 0;
  check(H5Aiterate2(s.file.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr_name, &names),
        s.where() + ": listing root attributes");
  std::map<std::string, std::string> out;
  for (const auto& name : names) {
    const std::string what = s.where() + ": reading attribute '" + name + "'";
    Handle attr = checked(H5Aopen(s.file.get(), name.c_str(), H5P_DEFAULT), H5Aclose, what);
    std::string text;
    if (read_attribute_text(attr.get(), text, what)) out.emplace(name, std::move(text));
  }
  return out;
}

std::string RunReader::attribute(const std::string& key) const {
  const Impl& s = state();
  htri_t exists = key.empty() ? 0 : H5Aexists(s.file.get(), key.c_str());
  if (exists < 0) fail(s.where() + ": looking up attribute '" + key + "'");
  if (exists == 0) throw std::runtime_error(s.where() + ": no attribute '" + key + "'");
  return s.optional_string_attribute(s.file.get(), key.c_str(), s.where() + ": reading attribute '" + key + "'");
}

std::vector<std::string> RunReader::tables() const {
  const Impl& s = state();
  std::vector<std::string> out;
  for (const auto& name : s.root_links()) {
    Handle obj = checked(H5Oopen(s.file.get(), name.c_str(), H5P_DEFAULT), H5Oclose, s.where() + ": opening " + name);
    if (H5Iget_type(obj.get()) != H5I_GROUP) continue;
    htri_t has = H5Aexists(obj.get(), "columns");
    if (has < 0) fail(s.where() + ": inspecting '" + name + "'");
    if (has > 0) out.push_back(name);
  }
  return out;
}

std::vector<std::string> RunReader::series() const {
  const Impl& s = state();
  std::vector<std::string> out;
  for (const auto& name : s.root_links()) {
    Handle obj = checked(H5Oopen(s.file.get(), name.c_str(), H5P_DEFAULT), H5Oclose, s.where() + ": opening " + name);
    if (H5Iget_type(obj.get()) == H5I_DATASET) out.push_back(name);
  }
  return out;
}

std::vector<std::string> RunReader::columns(const std::string& table) const {
  const Impl& s = state();
  Handle group = s.open_table(table);
  std::string joined = s.optional_string_attribute(group.get(), "columns", s.where() + ": columns of '" + table + "'");
  std::vector<std::string> out;
  size_t start = 0;
  while (!joined.empty()) {
    size_t comma = joined.find(',', start);
    out.push_back(joined.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string RunReader::description(const std::string& object_path) const {
  const Impl& s = state();
  Handle obj = s.open_object(object_path, "object");
  return s.optional_string_attribute(obj.get(), "description",
                                     s.where() + ": description of '" + object_path + "'");
}

std::size_t RunReader::rows(const std::string& table) const {
  const Impl& s = state();
  auto cols = columns(table);
  if (cols.empty()) return 0;
  size_t n = std::numeric_limits<size_t>::max();
  for (const auto& c : cols) {
    const std::string p = table + "/" + c;
    Handle d = s.open_dataset(p);
    n = std::min(n, s.committed_length(d.get(), p));  // also applies "rows"
  }
  return n;
}

std::size_t RunReader::length(const std::string& dataset_path) const {
  const Impl& s = state();
  Handle d = s.open_dataset(dataset_path);
  return s.committed_length(d.get(), dataset_path);
}

// Integer columns read as float64 too, never the other way round.
template <class T>
std::vector<T> RunReader::read_numeric(const std::string& dataset_path, std::int64_t mem_type,
                                       bool accept_float, const char* as) const {
  const Impl& s = state();
  const std::string what = s.where() + ": reading '" + dataset_path + "'";
  Handle d = s.open_dataset(dataset_path);
  Handle ftype = checked(H5Dget_type(d.get()), H5Tclose, what);
  const H5T_class_t cls = H5Tget_class(ftype.get());
  if (cls != H5T_INTEGER && !(accept_float && cls == H5T_FLOAT))
    throw std::runtime_error(what + " as " + as + ": dataset is not " +
                             (accept_float ? "numeric" : "an integer dataset"));
  std::vector<T> out(s.committed_length(d.get(), dataset_path));
  if (!out.empty()) s.read_prefix(d.get(), mem_type, out.size(), out.data(), what);
  return out;
}

std::vector<double> RunReader::read_f64(const std::string& dataset_path) const {
  return read_numeric<double>(dataset_path, H5T_NATIVE_DOUBLE, true, "float64");
}

std::vector<std::int64_t> RunReader::read_i64(const std::string& dataset_path) const {
  return read_numeric<std::int64_t>(dataset_path, H5T_NATIVE_INT64, false, "int64");
}

std::vector<std::string> RunReader::read_str(const std::string& dataset_path) const {
  const Impl& s = state();
  const std::string what = s.where() + ": reading '" + dataset_path + "'";
  Handle d = s.open_dataset(dataset_path);
  Handle ftype = checked(H5Dget_type(d.get()), H5Tclose, what);
  if (H5Tget_class(ftype.get()) != H5T_STRING)
    throw std::runtime_error(what + " as string: dataset is not a string dataset");
  const size_t n = s.committed_length(d.get(), dataset_path);
  std::vector<std::string> out;
  if (n == 0) return out;
  htri_t is_var = H5Tis_variable_str(ftype.get());
  if (is_var < 0) fail(what);
  if (is_var) {
    Handle mtype = vlen_string_type_like(ftype.get(), what);
    std::vector<char*> ptrs(n, nullptr);
    Handle mspace = s.read_prefix(d.get(), mtype.get(), n, ptrs.data(), what);
    out.reserve(n);
    for (char* p : ptrs) out.emplace_back(p ? p : "");
    reclaim_vlen(mtype.get(), mspace.get(), ptrs.data());
  } else {
    size_t size = H5Tget_size(ftype.get());
    if (size == 0) fail(what);
    std::vector<char> buf(size * n);
    s.read_prefix(d.get(), ftype.get(), n, buf.data(), what);
    out = split_fixed(buf, size, n);
  }
  return out;
}

std::string RunReader::units(const std::string& dataset_path) const {
  const Impl& s = state();
  Handle d = s.open_dataset(dataset_path);
  return s.optional_string_attribute(d.get(), "units", s.where() + ": units of '" + dataset_path + "'");
}

std::vector<std::size_t> RunReader::dims(const std::string& dataset_path) const {
  const Impl& s = state();
  const std::string what = s.where() + ": dims of '" + dataset_path + "'";
  Handle d = s.open_dataset(dataset_path);
  Handle space = checked(H5Dget_space(d.get()), H5Sclose, what);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail(what);
  std::vector<hsize_t> h(size_t(rank), 0);
  if (rank > 0) check(H5Sget_simple_extent_dims(space.get(), h.data(), nullptr), what);
  return std::vector<std::size_t>(h.begin(), h.end());
}

// ===========================================================================

std::string unique_run_path(const std::string& dir, const std::string& prefix) {
  const std::string stem = prefix + "-" + utc_now("%Y%m%d-%H%M%S");
  const fs::path base = dir.empty() ? fs::path() : fs::path(dir);
  fs::path candidate = base / (stem + ".h5");
  for (int n = 1; path_exists(candidate.string()); ++n) candidate = base / (stem + "-" + std::to_string(n) + ".h5");
  return candidate.string();
}

}  // namespace ra
