// ra-train end to end on a tiny model and tiny shards written here (no
// network data): --help, every bad input refused before work, the NaN stop,
// resume reproducing the uninterrupted curve bit for bit (Serial), and a
// SIGKILLed run leaving a readable run file and a loadable checkpoint.
#include "run_command.hpp"
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ra/data/shard.hpp>
#include <ra/run_store.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../experiments/train_checkpoint.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

using ra::testing::Outcome;
Outcome run_train(const std::string& args) { return ra::testing::run_command(RA_TRAIN_BIN, args); }
// ra-train with extra environment variables ("A=1 B=2").
Outcome run_train_env(const std::string& vars, const std::string& args) {
  return ra::testing::run_command("env", vars + " '" + RA_TRAIN_BIN + "' " + args);
}

// A fresh folder with a train and a val shard of a learnable pattern over a
// 64-token vocabulary.
struct Workdir {
  fs::path dir;
  Workdir() {
    char tmpl[] = "/tmp/ra-train-test-XXXXXX";
    dir = mkdtemp(tmpl);
    auto pattern = [](std::size_t n, std::size_t shift) {
      std::vector<std::uint16_t> t(n);
      for (std::size_t i = 0; i < n; ++i) t[i] = std::uint16_t((i * 7 + (i + shift) / 13) % 64);
      return t;
    };
    ra::data::write_shard((dir / "tiny_train.bin").string(), pattern(6000, 0));
    ra::data::write_shard((dir / "tiny_val.bin").string(), pattern(1500, 5));
  }
  ~Workdir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }
  // The tiny model and data every test trains.
  std::string args(const std::string& out) const {
    return "--model gpt2-tiny --layers 2 --heads 2 --width 32 --vocab 64 --max-context 16 --context 16 "
           "--batch 2 --val-batches 2 --warmup 2 --lr 3e-3 --quiet --kokkos-num-threads=1 --train " +
           path("tiny_train.bin") + " --val " + path("tiny_val.bin") + " --out " + path(out);
  }
};

}  // namespace

TEST_CASE("ra-train: --help lists the options", "[train]") {
  const auto help = run_train("--help");
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.output, Contains("--resume") && Contains("--time-budget") && Contains("--attention") &&
                              Contains("--ra-layers") && Contains("--checkpoint-every") && Contains("--eval-every"));
}

TEST_CASE("ra-train: bad input is refused before any work", "[train]") {
  Workdir w;
  const std::string base = w.args("run.h5") + " --steps 2";
  SECTION("missing shard") {
    const auto r = run_train(base + " --train " + w.path("nope_train.bin"));
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Contains("nope_train.bin"));
  }
  SECTION("corrupt shard") {
    std::ofstream(w.path("bad_train.bin")) << "this is not a shard";
    const auto r = run_train(base + " --train " + w.path("bad_train.bin"));
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Contains("bad_train.bin") && Contains("training data"));
  }
  SECTION("vocabulary mismatch") {
    ra::data::write_shard(w.path("big_train.bin"), std::vector<std::uint16_t>(2000, 100));
    const auto r = run_train(base + " --train " + w.path("big_train.bin"));
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Contains("big_train.bin") && Contains("100"));
  }
  SECTION("context longer than the model's") {
    const auto r = run_train(base + " --context 32");
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Contains("--context 32 is longer than the model's context T_max = 16"));
  }
  SECTION("unknown attention") {
    const auto r = run_train(base + " --attention ra_magic");
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.output, Contains("ra_magic"));
  }
  SECTION("tf32 and bf16 matmuls without a CUDA execution space") {
    // A host build refuses them in the model's config, a CUDA build with --serial in ra-train.
    for (const char* p : {"tf32", "bf16"}) {
      const auto r = run_train(base + " --serial --matmul-precision " + p);
      INFO(r.output);
      CHECK(r.exit_code == 1);
      CHECK_THAT(r.output, Contains(std::string("matmul precision ") + p + " needs a CUDA build") ||
                               Contains(std::string("--matmul-precision ") + p + " needs the CUDA execution space"));
    }
  }
  SECTION("data parallel: bad rank variables, and more than one rank where it cannot run") {
    const std::string one = base + " --serial";
    auto r = run_train_env("RA_WORLD_SIZE=2 RA_RANK=0", one);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Contains("set RA_JOB_ID to the same value for every rank"));
    r = run_train_env("RA_WORLD_SIZE=2 RA_RANK=2 RA_JOB_ID=t", one);
    CHECK_THAT(r.output, Contains("RA_RANK = 2 but the world has 2 ranks"));
    r = run_train_env("RA_WORLD_SIZE=two RA_RANK=0 RA_JOB_ID=t", one);
    CHECK_THAT(r.output, Contains("RA_WORLD_SIZE='two' is not a rank number"));
    r = run_train_env("RA_WORLD_SIZE=2 RA_RANK=0 RA_JOB_ID=t", one);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Contains("data parallel over 2 ranks needs a CUDA build with NCCL"));    // A one-rank run resumed by two ranks: refused before anything else.
    // (Its own Workdir: this test case checks that no run.h5 was written.)
    Workdir w1;
    REQUIRE(run_train(w1.args("one.h5") + " --steps 2 --serial").exit_code == 0);
    r = run_train_env("RA_WORLD_SIZE=2 RA_RANK=0 RA_JOB_ID=t", "--resume " + w1.path("one.h5") + " --steps 3");
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Contains("the run trained on 1 data-parallel rank(s) and this session has 2"));
  }
  SECTION("an annealing floor without annealing") {
    const auto r = run_train(base + " --attention ra_fused --anneal-floor 0.1");
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Contains("--anneal-floor 0.1") && Contains("needs annealing"));
  }
  SECTION("no stopping rule") {
    const auto r = run_train(w.args("run.h5"));
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Contains("--steps"));
  }
  CHECK_FALSE(fs::exists(w.path("run.h5")));
}

TEST_CASE("ra-train: a non-finite loss stops the run naming the step", "[train]") {
  Workdir w;
  const auto r = run_train(w.args("run.h5") + " --steps 10 --checkpoint-every 1 --inject-nan-at 3");
  CHECK(r.exit_code == 3);
  CHECK_THAT(r.output, Contains("non-finite loss at step 3") && Contains("checkpoint") && Contains("step 2"));
  ra::RunReader run(w.path("run.h5"));
  const auto loss = run.read_f64("train/loss");
  REQUIRE(loss.size() == 3);
  CHECK(std::isfinite(loss[1]));
  CHECK(std::isnan(loss[2]));
  CHECK(ra::train::read_checkpoint(w.path("run.ckpt.h5")).step == 2);
  CHECK(run.attribute("status") == "failed: non-finite loss at step 3");
}

TEST_CASE("ra-train: resume reproduces the uninterrupted curve bit for bit (Serial)", "[train]") {
  Workdir w;
  const std::string common = " --serial --steps 8 --eval-every 2 --attention ra_fused --ra-layers 1";
  const auto straight = run_train(w.args("straight.h5") + common);
  REQUIRE(straight.exit_code == 0);
  const auto first = run_train(w.args("split.h5") + common + " --stop-at-step 4");
  REQUIRE(first.exit_code == 0);
  CHECK_THAT(first.output, Contains("stopped at step 4"));
  CHECK(ra::RunReader(w.path("split.h5")).attribute("status") == "stopped");
  const auto second = run_train("--resume " + w.path("split.h5") + " --quiet --kokkos-num-threads=1");
  INFO(second.output);
  REQUIRE(second.exit_code == 0);

  ra::RunReader a(w.path("straight.h5")), b(w.path("split.h5"));
  for (const char* col : {"train/step", "train/tokens", "val/step", "gates/step", "gates/layer"})
    CHECK(a.read_i64(col) == b.read_i64(col));
  for (const char* col : {"train/loss", "train/lr", "train/grad_norm", "val/loss", "gates/w_rec", "gates/w_disc"}) {
    INFO(col);
    const auto x = a.read_f64(col), y = b.read_f64(col);
    REQUIRE(x.size() == y.size());
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(x[i] == y[i]);  // exact, not approximate
  }
  CHECK(a.rows("train") == 8);
  CHECK(a.attribute("status") == "finished");
  CHECK(b.attribute("status") == "finished");
  const auto loss = a.read_f64("val/loss");
  CHECK(loss.back() < loss.front());  // it learns
  // Every column carries its units and description.
  CHECK(a.units("train/seconds") == "s");
  CHECK(a.units("train/tokens_per_s") == "tokens/s");
}

// Starts ra-train in a child process (output discarded) and returns its pid,
// for the tests that signal a running training.
pid_t spawn_train(const std::string& args) {
  const std::string command = "exec '" RA_TRAIN_BIN "' " + args + " > /dev/null 2>&1";
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Waits (up to a minute) until the checkpoint at path holds step >= min_step.
void wait_for_checkpoint(const std::string& path, long min_step) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(path) && ra::train::read_checkpoint(path).step >= min_step) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

TEST_CASE("ra-train: a SIGKILLed run leaves a readable run file and a loadable checkpoint", "[train]") {
  Workdir w;
  const std::string run_path = w.path("killed.h5"), ckpt_path = w.path("killed.ckpt.h5");
  const pid_t pid = spawn_train(w.args("killed.h5") + " --serial --steps 100000 --eval-every 3 --checkpoint-every 2");
  REQUIRE(pid >= 0);
  // Wait for a couple of checkpoints, then kill without warning.
  wait_for_checkpoint(ckpt_path, 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(pid, SIGKILL);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);

  const auto ckpt = ra::train::read_checkpoint(ckpt_path);
  REQUIRE(ckpt.step >= 4);
  CHECK(ckpt.params.size() == ckpt.adam_m.size());
  // (A kill during a checkpoint write may leave "<ckpt>.tmp"; the real name
  // only ever holds a complete one, read above. The next write replaces it.)
  std::size_t rows_at_kill = 0;
  {
    ra::RunReader run(run_path);
    rows_at_kill = run.rows("train");
    CHECK(rows_at_kill >= std::size_t(ckpt.step));
    CHECK(run.attribute("status") == "running");  // what a killed run says
  }
  // Resuming drops what was logged after the checkpoint and continues it.
  const long target = ckpt.step + 3;
  const auto r = run_train("--resume " + run_path + " --steps " + std::to_string(target) +
                           " --quiet --kokkos-num-threads=1");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  ra::RunReader run(run_path);
  const auto steps = run.read_i64("train/step");
  REQUIRE(steps.size() == std::size_t(target));
  for (std::size_t i = 0; i < steps.size(); ++i) CHECK(steps[i] == std::int64_t(i + 1));
  CHECK(run.attribute("resumed_at_steps") == std::to_string(ckpt.step));
  CHECK(run.attribute("status") == "finished");
  const std::string device = run.attribute("device_name");
  CHECK(run.attribute("session_devices") == device + ";" + device);  // one entry per session
}

TEST_CASE("ra-train: SIGTERM stops at the next step with a checkpoint, and --resume goes on", "[train]") {
  Workdir w;
  const std::string run_path = w.path("term.h5"), ckpt_path = w.path("term.ckpt.h5");
  const pid_t pid = spawn_train(w.args("term.h5") + " --serial --steps 100000 --eval-every 1000 --checkpoint-every 2");
  REQUIRE(pid >= 0);
  wait_for_checkpoint(ckpt_path, 2);
  kill(pid, SIGTERM);  // Slurm's time limit: ra-train finishes the step, checkpoints, exits 128 + 15
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 143);
  long stopped_at = 0;
  {
    ra::RunReader run(run_path);
    CHECK(run.attribute("status") == "stopped");
    stopped_at = long(run.rows("train"));
    CHECK(ra::train::read_checkpoint(ckpt_path).step == stopped_at);  // nothing after the checkpoint is lost
  }
  const auto r = run_train("--resume " + run_path + " --steps " + std::to_string(stopped_at + 2) +
                           " --quiet --kokkos-num-threads=1");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  ra::RunReader run(run_path);
  CHECK(run.rows("train") == std::size_t(stopped_at + 2));
  CHECK(run.attribute("status") == "finished");
}

TEST_CASE("ra-train: --resume refuses changing the model", "[train]") {
  Workdir w;
  REQUIRE(run_train(w.args("run.h5") + " --steps 2").exit_code == 0);
  const auto r = run_train("--resume " + w.path("run.h5") + " --steps 4 --batch 4");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.output, Contains("--batch cannot change on --resume"));
  const auto missing = run_train("--resume " + w.path("nothing.h5") + " --steps 4");
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.output, Contains("nothing.h5"));
}

TEST_CASE("ra-train: --resume to a step the run has reached says so and changes nothing", "[train]") {
  Workdir w;
  REQUIRE(run_train(w.args("done.h5") + " --steps 3").exit_code == 0);
  const auto size_before = fs::file_size(w.path("done.h5"));
  const auto ckpt_before = fs::last_write_time(w.path("done.ckpt.h5"));
  const auto r = run_train("--resume " + w.path("done.h5") + " --steps 2");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("already at step 3") && Contains("nothing to do"));
  CHECK_THAT(r.output, !Contains("nan"));
  CHECK(fs::file_size(w.path("done.h5")) == size_before);
  CHECK(fs::last_write_time(w.path("done.ckpt.h5")) == ckpt_before);
  ra::RunReader run(w.path("done.h5"));
  CHECK(run.rows("train") == 3);
  CHECK(run.attribute("status") == "finished");
}

TEST_CASE("ra-train: --time-budget stops on the wall clock with a final evaluation and checkpoint", "[train]") {
  Workdir w;
  const auto r = run_train(w.args("run.h5") + " --time-budget 1 --eval-every 1000");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  ra::RunReader run(w.path("run.h5"));
  const auto seconds = run.read_f64("train/seconds");
  REQUIRE(!seconds.empty());
  CHECK(seconds.back() >= 1.0);
  const auto val_steps = run.read_i64("val/step");
  REQUIRE(val_steps.size() == 2);  // the initial loss and the final one
  CHECK(val_steps.back() == std::int64_t(seconds.size()));
  CHECK(ra::train::read_checkpoint(w.path("run.ckpt.h5")).step == std::int64_t(seconds.size()));
}

TEST_CASE("ra-train: annealing with a floor stops fading at it (the seeds' max(0.1, 1 - step/total))", "[train]") {
  Workdir w;
  const auto r = run_train(w.args("floor.h5") + " --serial --steps 6 --attention ra_fused --anneal-start 0 "
                           "--anneal-end 4 --anneal-floor 0.25");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  ra::RunReader run(w.path("floor.h5"));
  const auto scale = run.read_f64("train/rec_scale");
  REQUIRE(scale.size() == 6);
  // Step s (0-based, before its update) runs at max(0.25, 1 - s/4).
  const double expected[] = {1.0, 0.75, 0.5, 0.25, 0.25, 0.25};
  for (int s = 0; s < 6; ++s) CHECK(scale[s] == Approx(expected[s]));
  // Never 0, so every layer keeps its RA kernel.
  const auto kernels = run.read_str("gates/kernel");
  for (const auto& k : kernels) CHECK(k == "ra_fused");
}
