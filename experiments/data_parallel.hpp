// Data-parallel training for ra-train: one process per GPU, gradients
// averaged over the ranks with NCCL after every backward pass.
//
// Ranks come from the environment, so the same binary runs under any
// launcher:
//   RA_RANK / RA_WORLD_SIZE / RA_LOCAL_RANK   scripts/launch-dp.sh (one node)
//   SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID   srun
//   OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK    mpirun (Open MPI)
// Nothing of MPI is linked: the ranks meet through a file. Rank 0 writes
// NCCL's unique id to <rendezvous dir>/nccl-id-<job> (atomically: temporary
// file, then rename) and the others wait for it, so all a cluster needs is
// a directory every rank sees (the run's output folder by default) and a job
// key that differs between jobs (SLURM_JOB_ID.SLURM_STEP_ID, or RA_JOB_ID,
// which launch-dp.sh sets). Each rank uses GPU local_rank: Kokkos maps it
// from SLURM_LOCALID / OMPI_COMM_WORLD_LOCAL_RANK, launch-dp.sh sets
// KOKKOS_DEVICE_ID.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace ra::train {

struct Ranks {
  int rank = 0, world = 1, local_rank = 0;
  std::string job;  // the rendezvous key; empty when world == 1
  // Reads the variables above (the first family present wins). Throws
  // std::invalid_argument for malformed or inconsistent values.
  static Ranks from_environment();
};

// NCCL communicator over all ranks (CUDA builds with NCCL). A world of one
// needs none of it: every call is then a no-op. Elsewhere, constructing a
// world > 1 throws, naming what is missing.
class Collective {
 public:
  // Blocks until every rank arrived (timeout_s: how long a rank waits for
  // rank 0's id file before giving up with a message naming the file).
  Collective(const Ranks& ranks, const std::string& rendezvous_dir, double timeout_s = 300);
  ~Collective();
  Collective(const Collective&) = delete;
  Collective& operator=(const Collective&) = delete;

  const Ranks& ranks() const { return ranks_; }
  bool is_root() const { return ranks_.rank == 0; }
  // data[0, n) = mean over ranks, in place, on the CUDA stream `stream`.
  void average(float* data, std::size_t n, void* stream);
  // The mean of a host value over the ranks (synchronous).
  double average(double value);
  // Rank 0's flag on every rank (synchronous): one decision for all, e.g.
  // when a wall-clock budget ends.
  bool broadcast(bool flag);

  struct Impl;

 private:
  Ranks ranks_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ra::train
