#!/usr/bin/python3
"""ra-sweep and ra-report end to end (plain unittest; ctest label "sweep").

A tiny GPT-2 (2 layers, 32 wide, vocab 64, T=16) on shards written here, so
a run takes a fraction of a second: spec expansion (names, axes, seeds),
bad specs and their messages, a sweep stopped half-way and resumed with a
failing run among the others, the Slurm script as text (and run as one
array task), and the report on the sweep, also with runs from two devices
and with mismatched configs.

    RA_TRAIN_BIN=build/host/experiments/ra-train python3 tests/test_sweep.py
"""
import array
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
sys.path.insert(0, SCRIPTS)
import ra_spec  # noqa: E402

RA_TRAIN = os.path.abspath(os.environ.get("RA_TRAIN_BIN", os.path.join(ROOT, "build", "host", "experiments", "ra-train")))
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMP_PROC_BIND="false")


def read(path):
    with open(path) as f:
        return f.read()


def write_shard(path, n, seed):
    # llm.c layout: 256 int32 header (magic, version, token count), uint16 tokens.
    header = array.array("i", [0] * 256)
    header[0], header[1], header[2] = 20240520, 1, n
    x, toks = seed, array.array("H")
    for i in range(n):
        x = (1103515245 * x + 12345) % 2**31
        toks.append((i % 13 * 3 + (x >> 16) % 2) % 64)  # a pattern to learn, with noise
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(toks.tobytes())


def sweep(*args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(SCRIPTS, "ra-sweep"), *args, "--ra-train", RA_TRAIN],
                          capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)


def report(*args):
    return subprocess.run([sys.executable, os.path.join(SCRIPTS, "ra-report"), *args],
                          capture_output=True, text=True, env=ENV, timeout=300)


class Fixture:
    """A temporary folder with tiny shards and a spec writer."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ra-sweep-test-")
        self.train = os.path.join(self.dir, "tiny_train_000000.bin")
        self.val = os.path.join(self.dir, "tiny_val_000000.bin")
        write_shard(self.train, 20000, 1)
        write_shard(self.val, 4000, 2)

    def base(self, steps=20):
        return textwrap.dedent(f"""\
            [base]
            model = "gpt2-tiny"
            layers = 2
            heads = 2
            width = 32
            vocab = 64
            max_context = 16
            context = 16
            batch = 2
            val_batches = 2
            warmup = 2
            lr = 3e-3
            steps = {steps}
            eval_every = 5
            checkpoint_every = 5
            train = "{self.train}"
            val = "{self.val}"
            """)

    def spec(self, name, text):
        path = os.path.join(self.dir, name + ".toml")
        with open(path, "w") as f:
            f.write(text)
        return path


def setUpModule():
    if not os.access(RA_TRAIN, os.X_OK):
        raise RuntimeError(f"ra-train not built at {RA_TRAIN} (set RA_TRAIN_BIN)")


class Expansion(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fx = Fixture()
        cls.opts = ra_spec.TrainOptions.from_binary(RA_TRAIN)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.fx.dir)

    def load(self, text):
        return ra_spec.load(self.fx.spec("x", text), self.opts)

    def test_anneal_floor(self):
        # The seeds' second annealing form, max(0.1, 1 - step/total).
        spec = self.load(self.fx.base() + textwrap.dedent("""
            [[setup]]
            name = "anneal"
            attention = "ra_fused"
            anneal = {start = 0, end = 20, floor = 0.1}
            """))
        a = spec.runs[0].args
        self.assertEqual(a[a.index("--anneal-floor") + 1], "0.1")

    def test_attention_list_comes_from_ra_train(self):
        self.assertEqual(set(self.opts.attentions), {"sdpa_open", "sdpa_fused", "ra_open", "ra_fused", "ra_window"})

    def test_names_axes_and_seeds(self):
        spec = self.load(self.fx.base(steps=40).replace('model = "gpt2-tiny"\n', "") + textwrap.dedent("""\
            [axes]
            seed = [1, 7]
            model = ["gpt2-tiny"]
            [[setup]]
            attention = ["sdpa_fused", "ra_fused"]
            [[setup]]
            name = "hybrid"
            attention = "ra_fused"
            ra_layers = ["1", "0,1"]
            [[setup]]
            attention = "ra_window"
            window = [4, 8]
            [[setup]]
            name = "anneal"
            attention = "ra_open"
            anneal = {start = 0, end = "50%", mode = "rec"}
            options = {disc = "content"}
            """))
        self.assertEqual([s["name"] for s in spec.setups],
                         ["sdpa_fused", "ra_fused", "hybrid-L1", "hybrid-L0_1", "ra_window-w4", "ra_window-w8", "anneal"])
        names = [r.name for r in spec.runs]
        self.assertEqual(len(names), 7 * 2)
        # Seed-major: every setup of seed 1 before seed 7; the model axis is named.
        self.assertEqual(names[:3], ["sdpa_fused-gpt2-tiny-s1", "ra_fused-gpt2-tiny-s1", "hybrid-L1-gpt2-tiny-s1"])
        self.assertEqual(names[7], "sdpa_fused-gpt2-tiny-s7")
        self.assertEqual([r.index for r in spec.runs], list(range(14)))
        by = {r.name: r.args for r in spec.runs}
        a = by["hybrid-L0_1-gpt2-tiny-s7"]
        self.assertEqual(a[a.index("--attention") + 1], "ra_fused")
        self.assertEqual(a[a.index("--ra-layers") + 1], "0,1")
        self.assertEqual(a[a.index("--seed") + 1], "7")
        self.assertEqual(a[a.index("--steps") + 1], "40")
        w = by["ra_window-w8-gpt2-tiny-s1"]
        self.assertEqual(w[w.index("--window") + 1], "8")
        an = by["anneal-gpt2-tiny-s1"]
        self.assertEqual(an[an.index("--anneal-start") + 1:an.index("--anneal-start") + 4], ["0", "--anneal-end", "20"])
        self.assertEqual(an[an.index("--anneal-mode") + 1], "rec")
        self.assertNotIn("--anneal-floor", an)
        self.assertEqual(an[an.index("--disc") + 1], "content")
        self.assertNotIn("--disc", by["sdpa_fused-gpt2-tiny-s1"])
        # Expanding twice gives the same names and commands (stable).
        again = ra_spec.load(spec.path, self.opts)
        self.assertEqual([r.as_dict() for r in again.runs], [r.as_dict() for r in spec.runs])

    def test_token_budget_becomes_steps(self):
        spec = self.load(self.fx.base().replace("steps = 20", "tokens = 1000") + '[[setup]]\nattention = "sdpa_fused"\n')
        self.assertEqual(spec.steps, 32)  # ceil(1000 / (2 x 16))
        self.assertEqual(spec.runs[0].name, "sdpa_fused-s1337")  # ra-train's default seed without a seed axis

    def test_set_replaces_base_options(self):
        spec = ra_spec.load(self.fx.spec("x", self.fx.base() + '[[setup]]\nattention = "sdpa_fused"\n'), self.opts,
                            ["lr=0.01", "train=/data/shards", "steps=7", "serial=true"])
        a = spec.runs[0].args
        self.assertEqual(a[a.index("--lr") + 1], "0.01")
        self.assertEqual(a[a.index("--train") + 1], "/data/shards")
        self.assertEqual(a[a.index("--steps") + 1], "7")
        self.assertIn("--serial", a)
        with self.assertRaisesRegex(ra_spec.SpecError, "give KEY=VALUE"):
            ra_spec.load(spec.path, self.opts, ["lr"])
        with self.assertRaisesRegex(ra_spec.SpecError, "base.colour: unknown key"):
            ra_spec.load(spec.path, self.opts, ["colour=red"])

    def test_the_committed_specs_expand(self):
        plan = ra_spec.load(os.path.join(ROOT, "specs", "seeds-plan.toml"), self.opts)
        self.assertEqual(len(plan.runs), 21)
        self.assertEqual([s["name"] for s in plan.setups],
                         ["sdpa_fused", "ra_fused", "sdpa_open", "ra_open", "hybrid", "anneal", "window"])
        by = {r.name: r.args for r in plan.runs}
        # The open-coded kernels are float-only: bf16 attention for the fused ones only.
        self.assertEqual(by["ra_open-s2"][by["ra_open-s2"].index("--attention-precision") + 1], "float")
        self.assertEqual(by["ra_fused-s2"][by["ra_fused-s2"].index("--attention-precision") + 1], "bf16")
        smoke = ra_spec.load(os.path.join(ROOT, "specs", "seeds-plan-smoke.toml"), self.opts)
        self.assertEqual([s["name"] for s in smoke.setups], [s["name"] for s in plan.setups])
        cpu = ra_spec.load(os.path.join(ROOT, "specs", "seeds-plan-cpu.toml"), self.opts)
        self.assertEqual(len(cpu.runs), 14)
        self.assertEqual(cpu.base["time-budget"] * len(cpu.runs) < 15 * 60, True)


class BadSpecs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fx = Fixture()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.fx.dir)

    def refused(self, text, *expected):
        r = sweep(self.fx.spec("bad", text), "--dry-run")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        for e in expected:
            self.assertIn(e, r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        return r.stderr

    def test_messages(self):
        ok = '[[setup]]\nattention = "sdpa_fused"\n'
        b = self.fx.base()
        self.refused(b + ok + "[plan]\nx = 1\n", "unknown key [plan]")
        self.refused(b + "learning_rate = 1e-3\n" + ok, "base.learning_rate: unknown key", "--learning-rate")
        self.refused(b + "eval = 3\n" + ok, "base.eval: unknown key", "did you mean eval-every")
        self.refused(b + '[[setup]]\nattention = "ra_flash"\n', "unknown attention 'ra_flash'",
                     "sdpa_open, sdpa_fused, ra_open, ra_fused, ra_window")
        self.refused(b + '[[setup]]\nattention = ["sdpa_fused", "ra_flash"]\n', "unknown attention 'ra_flash'")
        self.refused(b + "[axes]\nseed = []\n" + ok, "axes.seed: an axis with no values")
        self.refused(b + "[[setup]]\nattention = []\n", "setup.0.attention: an axis with no values")
        self.refused(b + '[[setup]]\nattention = "ra_window"\nwindow = []\n', "setup.0.window: an axis with no values")
        self.refused(b, "no [[setup]] tables")
        self.refused(b + ok + "[axes]\ncolour = [1]\n", "axes.colour: unknown key (known: model, seed; the attention setups")
        self.refused(b + '[[setup]]\nattention = "sdpa_fused"\nlayers = "1"\n', "setup.0.layers: unknown key")
        self.refused(b + 'out = "x.h5"\n' + ok, "base.out: not allowed")
        self.refused(b + "seed = 3\n" + ok, "base.seed: not allowed", "[axes] seed")
        self.refused(b.replace("batch = 2", 'batch = "two"') + ok, "--batch takes an integer")
        self.refused(b.replace('"gpt2-tiny"', '"gpt2-huge"') + ok, "unknown value 'gpt2-huge' for --model")
        self.refused(b + '[[setup]]\nattention = "ra_fused"\nwindow = 8\n', "window is ra_window's option")
        self.refused(b + '[[setup]]\nattention = "sdpa_fused"\nra_layers = "1"\n', "ra_layers needs an RA attention")
        self.refused(b + ok + ok, "two setups are both named 'sdpa_fused'")
        self.refused(b.replace("steps = 20", "") + ok, "[base] needs a budget")
        self.refused(b.replace("steps = 20", "time_budget = 10") +
                     '[[setup]]\nattention = "ra_fused"\nanneal = {start = 0, end = "50%"}\n', "share of the step budget")
        self.refused(b + ok + "[[setup\n", "not valid TOML")
        self.refused(b + '[[setup]]\nattention = "ra_fused"\nanneal = {start = 0, end = 10, floor = 1.5}\n',
                     "anneal.floor: the lowest scale is a number in [0, 1)")
        r = sweep(os.path.join(self.fx.dir, "missing.toml"), "--dry-run")
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read spec", r.stderr)


class Sweep(unittest.TestCase):
    """One tiny sweep: stopped half-way, a checkpoint lost, resumed, finished."""

    @classmethod
    def setUpClass(cls):
        cls.fx = fx = Fixture()
        cls.spec = fx.spec("tiny", '[sweep]\nname = "tiny"\ndescription = "test sweep"\n' + fx.base() + textwrap.dedent("""\
            [axes]
            seed = [1, 2]
            [[setup]]
            attention = ["sdpa_fused", "ra_fused"]
            [[setup]]
            name = "hybrid"
            attention = "ra_fused"
            ra_layers = "1"
            [[setup]]
            name = "broken"
            attention = "ra_fused"
            options = {train = "/nonexistent/shards"}
            """))
        cls.out = os.path.join(fx.dir, "out")
        cls.first = sweep(cls.spec, "--out-dir", cls.out, "--stop-at-step", "8", "--quiet")
        cls.states_after_stop = {r["name"]: r["state"] for r in json.loads(read(os.path.join(cls.out, "sweep-status.json")))["runs"]}
        # A run killed before its first checkpoint: a run file and no checkpoint.
        os.remove(os.path.join(cls.out, "runs", "ra_fused-s2.ckpt.h5"))
        cls.dry = sweep(cls.spec, "--out-dir", cls.out, "--dry-run")
        cls.second = sweep(cls.spec, "--out-dir", cls.out)
        cls.third = sweep(cls.spec, "--out-dir", cls.out, "--quiet")
        cls.status = json.loads(read(os.path.join(cls.out, "sweep-status.json")))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.fx.dir)

    def test_stopped_half_way(self):
        self.assertEqual(self.first.returncode, 1, self.first.stdout + self.first.stderr)
        self.assertEqual(self.states_after_stop, {
            "sdpa_fused-s1": "stopped", "ra_fused-s1": "stopped", "hybrid-s1": "stopped", "broken-s1": "failed",
            "sdpa_fused-s2": "stopped", "ra_fused-s2": "stopped", "hybrid-s2": "stopped", "broken-s2": "failed"})
        for line in ("sdpa_fused-s1 ", "ra_fused-s2 ", "broken-s1 "):
            self.assertIn(line, self.dry.stdout)
        self.assertRegex(self.dry.stdout, r"sdpa_fused-s1 +resumable")
        self.assertRegex(self.dry.stdout, r"ra_fused-s2 +restart")
        self.assertRegex(self.dry.stdout, r"broken-s1 +failed")

    def test_resumed_and_restarted(self):
        out = self.second.stdout
        self.assertEqual(self.second.returncode, 1, out + self.second.stderr)  # the broken runs stay failed
        self.assertIn("[1/8] sdpa_fused-s1: resuming from its checkpoint (step 8)", out)
        self.assertIn("[6/8] ra_fused-s2: interrupted before its first checkpoint; starting again", out)
        self.assertIn("broken-s1: failed earlier", out)
        self.assertIn("--retry-failed", out)
        self.assertIn("sdpa_fused-s1: step 20/20", out)  # ra-train's progress, shown
        import h5py
        for name in ("sdpa_fused-s1", "ra_fused-s1", "hybrid-s2", "ra_fused-s2"):
            with h5py.File(os.path.join(self.out, "runs", name + ".h5"), "r") as f:
                steps = list(f["train"]["step"][:int(f["train"].attrs["rows"])])
                val = list(f["val"]["step"][:int(f["val"].attrs["rows"])])
            self.assertEqual(steps, list(range(1, 21)), name)  # one curve: no step twice, none missing
            self.assertEqual(val[0], 0)
            self.assertEqual(val[-1], 20)
        with open(os.path.join(self.out, "logs", "sdpa_fused-s1.log")) as f:
            log = f.read()
        self.assertIn("--stop-at-step 8", log)
        self.assertIn("--resume", log)

    def test_finished_runs_are_skipped(self):
        self.assertEqual(self.third.returncode, 1)
        self.assertEqual(self.third.stdout.count("finished already, skipped"), 6, self.third.stdout)
        self.assertNotIn("starting", self.third.stdout)

    def test_a_failed_run_is_recorded_and_the_others_go_on(self):
        self.assertEqual(self.status["counts"], {"finished": 6, "failed": 2})
        broken = [r for r in self.status["runs"] if r["name"] == "broken-s1"][0]
        self.assertIn("training data", broken["message"])
        self.assertIn("/nonexistent/shards", broken["message"])
        self.assertIn("ra-sweep: failed: broken-s1, broken-s2", self.first.stderr)
        per_run = json.loads(read(os.path.join(self.out, "status", "broken-s2.json")))
        self.assertEqual(per_run["state"], "failed")
        self.assertNotEqual(per_run["exit_code"], 0)

    def test_changed_options_under_a_name_are_refused(self):
        changed = self.fx.spec("changed", read(self.spec).replace("lr = 3e-3", "lr = 1e-3"))
        r = sweep(changed, "--out-dir", self.out)
        self.assertEqual(r.returncode, 2)
        self.assertIn("already holds run sdpa_fused-s1 with other options", r.stderr)

    def test_slurm_script(self):
        out = os.path.join(self.fx.dir, "slurm")
        r = sweep(self.spec, "--out-dir", out, "--slurm", "--partition", "gpu", "--gpus-per-task", "1",
                  "--time", "0:30:00", "--account", "proj42", "--max-parallel", "4", "--constraint", "h100",
                  "--sbatch=--qos=long", "--prologue", "echo prologue ran", "--set", "lr=0.004")
        self.assertEqual(r.returncode, 0, r.stderr)
        path = os.path.join(out, "sweep.slurm")
        self.assertIn(f"sbatch {path}", r.stdout)
        text = read(path)
        for line in ("#!/bin/bash", "#SBATCH --array=0-7%4", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1",
                     "#SBATCH --time=0:30:00", "#SBATCH --account=proj42", "#SBATCH --ntasks=1",
                     f"#SBATCH --output={out}/logs/slurm-%A_%a.out", "#SBATCH --job-name=ra-sweep-tiny",
                     "#SBATCH --constraint=h100", "#SBATCH --qos=long", "echo prologue ran"):
            self.assertIn(line + "\n", text)
        self.assertIn(f"{out}/spec.toml --out-dir {out} --ra-train {RA_TRAIN}", text)
        self.assertIn('--set lr=0.004 --run-index "$SLURM_ARRAY_TASK_ID"', text)
        self.assertTrue(os.path.exists(os.path.join(out, "spec.toml")))
        self.assertEqual(subprocess.run(["bash", "-n", path]).returncode, 0)
        # As Slurm would run array task 2 (sbatch's directives are comments to bash).
        task = subprocess.run(["bash", path], env=dict(ENV, SLURM_ARRAY_TASK_ID="2"), capture_output=True, text=True,
                              timeout=120)
        self.assertEqual(task.returncode, 0, task.stdout + task.stderr)
        self.assertIn("[3/8] hybrid-s1: finished", task.stdout)
        self.assertIn("prologue ran", task.stdout)
        self.assertIn("--lr 0.004", read(os.path.join(out, "logs", "hybrid-s1.log")))
        self.assertEqual(sorted(os.listdir(os.path.join(out, "runs"))), ["hybrid-s1.ckpt.h5", "hybrid-s1.h5"])

    def test_slurm_data_parallel(self):
        # Two GPUs per task: each run trains on both through launch-dp.sh.
        out = os.path.join(self.fx.dir, "slurm-dp")
        r = sweep(self.spec, "--out-dir", out, "--slurm", "--gpus-per-task", "2", "--time", "0:30:00")
        self.assertEqual(r.returncode, 0, r.stderr)
        text = read(os.path.join(out, "sweep.slurm"))
        self.assertIn("#SBATCH --gpus-per-task=2\n", text)
        self.assertIn('--ranks 2 --run-index "$SLURM_ARRAY_TASK_ID"', text)
        r = sweep(self.spec, "--out-dir", out, "--slurm", "--gpus-per-task", "1", "--ranks", "2", "--time", "0:30:00")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--ranks 2 needs at least as many --gpus-per-task (got 1)", r.stderr)
        # No time budget in the spec: --time must be given.
        r = sweep(self.spec, "--out-dir", out, "--slurm")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--slurm needs --time", r.stderr)

    def test_report(self):
        rep = os.path.join(self.fx.dir, "report")
        r = report(self.out, "-o", rep)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        text = read(os.path.join(rep, "report.md"))
        for png in ("val_loss.png", "step_time.png", "gates.png"):
            with open(os.path.join(rep, png), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", png)
            self.assertIn(f"({png})", text)
        for needle in ("# Sweep report: tiny", "test sweep", "6 finished runs in 3 setups",
                       "- broken-s1: failed -- ra-train exit 1: ra-train: error: training data", "## Base config", "| lr | 0.003 |",
                       "| sdpa_fused | 1, 2 | 20 ± 0 | 640 ± 0 |", "## RA gates", "| hybrid | 1 | 0.500 -> ",
                       "## The plan's success criteria", "by wall-clock seconds",
                       "1. **ra_fused reaches a lower val loss than sdpa_fused after the same wall-clock time: ",
                       "2. **ra_fused reaches sdpa_fused's val loss in < 1/2.45 of the time: ",
                       "3. **ra_fused reaches a significantly better final loss: ",
                       "### Every other setup against sdpa_fused", "| hybrid |",
                       "## What this sweep can and cannot conclude", "It cannot conclude:",
                       "Anything about GPT-2 124M after an hour"):
            self.assertIn(needle, text)
        self.assertRegex(text, r"1\. \*\*ra_fused[^\n]*: (MET|NOT MET|INCONCLUSIVE)\.\*\* At [0-9.]+ s")

    def copy_sweep(self, name):
        dst = os.path.join(self.fx.dir, name)
        shutil.copytree(self.out, dst)
        return dst

    def test_report_refuses_wall_clock_across_devices(self):
        import h5py
        dst = self.copy_sweep("two-devices")
        with h5py.File(os.path.join(dst, "runs", "ra_fused-s2.h5"), "a") as f:
            f.attrs["device_name"] = "NVIDIA H200"
            f.attrs["kokkos_backend"] = "Cuda"
        r = report(dst)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("different devices: compared by tokens", r.stdout)
        text = read(os.path.join(dst, "report", "report.md"))
        self.assertIn("**The runs were recorded on different devices**", text)
        self.assertIn("NVIDIA H200 (Cuda", text)
        self.assertIn("by training tokens (the runs were recorded on different devices", text)
        self.assertIn("after the same number of tokens", text)
        self.assertNotIn("by wall-clock seconds", text)

    def test_report_refuses_mixed_base_configs(self):
        import h5py
        dst = self.copy_sweep("mixed")
        path = os.path.join(dst, "runs", "hybrid-s1.h5")
        with h5py.File(path, "a") as f:
            cfg = json.loads(f.attrs["config"])
            cfg["lr"] = 0.01
            f.attrs["config"] = json.dumps(cfg)
        r = report(dst)
        self.assertEqual(r.returncode, 2)
        self.assertIn("do not share a base config", r.stderr)
        self.assertIn("lr: ", r.stderr)
        self.assertIn("hybrid-s1 has 0.01", r.stderr)
        r = report(dst, "--allow-mixed-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = report(os.path.join(self.fx.dir))
        self.assertEqual(r.returncode, 2)
        self.assertIn("no run files", r.stderr)


class Signal(unittest.TestCase):
    """SIGTERM to ra-sweep mid-run (what Slurm sends at a time limit): the run
    is recorded as interrupted and the next call resumes it from its last
    checkpoint into one unbroken curve."""

    def test_sigterm_then_resume(self):
        import h5py
        import signal
        import time
        fx = Fixture()
        try:
            base = fx.base(steps=1500).replace("checkpoint_every = 5", "checkpoint_every = 100").replace(
                "eval_every = 5", "eval_every = 500")
            spec = fx.spec("long", base + '[axes]\nseed = [3]\n[[setup]]\nattention = "sdpa_fused"\n')
            out = os.path.join(fx.dir, "out")
            p = subprocess.Popen([sys.executable, os.path.join(SCRIPTS, "ra-sweep"), spec, "--out-dir", out,
                                  "--ra-train", RA_TRAIN, "--quiet"], env=ENV, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            ckpt = os.path.join(out, "runs", "sdpa_fused-s3.ckpt.h5")
            deadline = time.time() + 60
            while not os.path.exists(ckpt) and time.time() < deadline and p.poll() is None:
                time.sleep(0.05)
            self.assertTrue(os.path.exists(ckpt), "no checkpoint appeared")
            p.send_signal(signal.SIGTERM)
            stdout, stderr = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 130, stdout + stderr)
            self.assertIn("sdpa_fused-s3: interrupted", stdout)
            self.assertIn("run the same command again to resume", stderr)
            status = json.loads(read(os.path.join(out, "status", "sdpa_fused-s3.json")))
            self.assertEqual(status["state"], "interrupted")
            r = sweep(spec, "--out-dir", out, "--quiet")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            # ra-train itself checkpoints at the step where SIGTERM reached it
            # (not only every 100), so the resume starts there.
            self.assertRegex(r.stdout, r"sdpa_fused-s3: resuming from its checkpoint \(step [1-9][0-9]*\)")
            self.assertIn("sdpa_fused-s3: finished: 1500 steps", r.stdout)
            with h5py.File(os.path.join(out, "runs", "sdpa_fused-s3.h5"), "r") as f:
                steps = list(f["train"]["step"][:int(f["train"].attrs["rows"])])
            self.assertEqual(steps, list(range(1, 1501)))
        finally:
            shutil.rmtree(fx.dir)


if __name__ == "__main__":
    unittest.main(verbosity=2)
