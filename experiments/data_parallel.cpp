// ra-train's data parallelism (see data_parallel.hpp). The NCCL half is
// compiled only where CMake found NCCL next to CUDA (RA_HAVE_NCCL).
#include "data_parallel.hpp"

#include <chrono>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#if defined(RA_HAVE_NCCL)
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace ra::train {

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name) {
  const char* v = env(name);
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || x < 0 || x > 1 << 20)
    throw std::invalid_argument(std::string("data parallel: ") + name + "='" + v + "' is not a rank number");
  return int(x);
}

}  // namespace

Ranks Ranks::from_environment() {
  struct Family {
    const char *rank, *world, *local;
  };
  static const Family families[] = {
      {"RA_RANK", "RA_WORLD_SIZE", "RA_LOCAL_RANK"},
      {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
  };
  Ranks r;
  for (const auto& f : families) {
    if (!env(f.world)) continue;
    r.world = env_int(f.world);
    if (r.world <= 1) return Ranks{};  // e.g. a one-task Slurm job: nothing to share
    if (!env(f.rank))
      throw std::invalid_argument(std::string("data parallel: ") + f.world + " is set but " + f.rank + " is not");
    r.rank = env_int(f.rank);
    r.local_rank = env(f.local) ? env_int(f.local) : r.rank;
    if (r.rank >= r.world)
      throw std::invalid_argument(std::string("data parallel: ") + f.rank + " = " + std::to_string(r.rank) +
                                  " but the world has " + std::to_string(r.world) + " ranks");
    if (const char* job = env("RA_JOB_ID"))
      r.job = job;
    else if (const char* sj = env("SLURM_JOB_ID"))
      r.job = std::string(sj) + "." + (env("SLURM_STEP_ID") ? env("SLURM_STEP_ID") : "0");
    else if (const char* oj = env("OMPI_MCA_orte_hnp_uri"))
      r.job = std::to_string(std::hash<std::string>{}(oj));
    else
      throw std::invalid_argument("data parallel: no job key to meet under (set RA_JOB_ID to the same value for "
                                  "every rank of this run, e.g. scripts/launch-dp.sh does)");
    return r;
  }
  return r;
}

#if defined(RA_HAVE_NCCL)

struct Collective::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // for the small synchronous calls
  double* scalar = nullptr;       // device double for average(double)
  unsigned char* flag = nullptr;  // device byte for broadcast(bool)
};

namespace {

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess)
    throw std::runtime_error(std::string("data parallel: ") + what + " failed: " + ncclGetErrorString(r));
}
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("data parallel: ") + what + " failed: " + cudaGetErrorString(e));
}

}  // namespace

Collective::Collective(const Ranks& ranks, const std::string& rendezvous_dir, double timeout_s)
    : ranks_(ranks), impl_(std::make_unique<Impl>()) {
  if (ranks_.world <= 1) return;
  namespace fs = std::filesystem;
  const fs::path dir = rendezvous_dir.empty() ? fs::path(".") : fs::path(rendezvous_dir);
  const fs::path id_file = dir / ("nccl-id-" + ranks_.job);
  ncclUniqueId id;
  if (ranks_.rank == 0) {
    check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    fs::create_directories(dir);
    const fs::path tmp = id_file.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary);
      out.write(reinterpret_cast<const char*>(&id), sizeof id);
      if (!out) throw std::runtime_error("data parallel: cannot write " + tmp.string());
    }
    fs::rename(tmp, id_file);  // the others never see a half-written id
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      std::ifstream in(id_file, std::ios::binary);
      if (in && in.read(reinterpret_cast<char*>(&id), sizeof id)) break;
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s)
        throw std::runtime_error("data parallel: rank " + std::to_string(ranks_.rank) + " waited " +
                                 std::to_string(int(timeout_s)) + " s for rank 0's " + id_file.string() +
                                 " (is the directory shared by all ranks, and did rank 0 start?)");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  check(ncclCommInitRank(&impl_->comm, ranks_.world, id, ranks_.rank), "ncclCommInitRank");
  if (ranks_.rank == 0) {
    std::error_code ec;  // every rank holds the id now; a stale file must not meet a later job
    fs::remove(id_file, ec);
  }
  check(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaMalloc(&impl_->scalar, sizeof(double)), "cudaMalloc");
  check(cudaMalloc(&impl_->flag, 1), "cudaMalloc");
}

Collective::~Collective() {
  if (!impl_ || !impl_->comm) return;
  ncclCommDestroy(impl_->comm);
  cudaFree(impl_->scalar);
  cudaFree(impl_->flag);
  cudaStreamDestroy(impl_->stream);
}

void Collective::average(float* data, std::size_t n, void* stream) {
  if (ranks_.world <= 1) return;
  check(ncclAllReduce(data, data, n, ncclFloat32, ncclAvg, impl_->comm, static_cast<cudaStream_t>(stream)),
        "ncclAllReduce (gradients)");
}

double Collective::average(double value) {
  if (ranks_.world <= 1) return value;
  check(cudaMemcpyAsync(impl_->scalar, &value, sizeof value, cudaMemcpyHostToDevice, impl_->stream), "cudaMemcpy");
  check(ncclAllReduce(impl_->scalar, impl_->scalar, 1, ncclFloat64, ncclAvg, impl_->comm, impl_->stream),
        "ncclAllReduce (scalar)");
  check(cudaMemcpyAsync(&value, impl_->scalar, sizeof value, cudaMemcpyDeviceToHost, impl_->stream), "cudaMemcpy");
  check(cudaStreamSynchronize(impl_->stream), "cudaStreamSynchronize");
  return value;
}

bool Collective::broadcast(bool flag) {
  if (ranks_.world <= 1) return flag;
  unsigned char b = flag ? 1 : 0;
  check(cudaMemcpyAsync(impl_->flag, &b, 1, cudaMemcpyHostToDevice, impl_->stream), "cudaMemcpy");
  check(ncclBroadcast(impl_->flag, impl_->flag, 1, ncclUint8, 0, impl_->comm, impl_->stream), "ncclBroadcast");
  check(cudaMemcpyAsync(&b, impl_->flag, 1, cudaMemcpyDeviceToHost, impl_->stream), "cudaMemcpy");
  check(cudaStreamSynchronize(impl_->stream), "cudaStreamSynchronize");
  return b != 0;
}

#else  // no NCCL: a world of one only

struct Collective::Impl {};

Collective::Collective(const Ranks& ranks, const std::string&, double) : ranks_(ranks) {
  if (ranks_.world > 1)
    throw std::invalid_argument("data parallel over " + std::to_string(ranks_.world) +
                                " ranks needs a CUDA build with NCCL (this build has none); run one process");
}
Collective::~Collective() = default;
void Collective::average(float*, std::size_t, void*) {}
double Collective::average(double value) { return value; }
bool Collective::broadcast(bool flag) { return flag; }

#endif

}  // namespace ra::train
