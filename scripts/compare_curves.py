#!/usr/bin/python3
"""Validation loss of ra-train runs against wall-clock time and against
training tokens, side by side in one PNG (one line per run file).

    scripts/compare_curves.py runs/a.h5 runs/b.h5 ... [-o curves.png]

Reads each run's /val table (step, seconds, tokens, loss) and labels it with
its attention setup from the run's "config" attribute. Only committed rows
are read (the "rows" counter), so files of killed runs plot too. Reading is
shared with ra-report (scripts/ra_runs.py); for a whole sweep, with means
over seeds and the plan's criteria, use scripts/ra-report.
Needs h5py and matplotlib (Debian: scripts/install-deps.sh installs them).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import ra_runs  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="ra-train HDF5 run files")
    ap.add_argument("-o", "--out", default="curves.png", help="PNG to write (default: curves.png)")
    a = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        sys.exit(f"compare_curves: {e}; install with: scripts/install-deps.sh")

    fig, (by_time, by_tokens) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for path in a.runs:
        try:
            run = ra_runs.Run(path)
        except ValueError as e:
            sys.exit(f"compare_curves: {e}")
        label = f"{run.label} ({run.config.get('model', '?')})" if run.config else path
        by_time.plot(run.val["seconds"], run.val["loss"], marker=".", label=label)
        by_tokens.plot(run.val["tokens"], run.val["loss"], marker=".", label=label)
    by_time.set_xlabel("wall-clock seconds")
    by_tokens.set_xlabel("training tokens")
    by_time.set_ylabel("validation loss (nats/token)")
    for ax in (by_time, by_tokens):
        ax.grid(alpha=0.3)
    by_time.legend()
    fig.suptitle("ra-train: validation loss")
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
