#!/usr/bin/python3
"""Validation loss of ra-train runs against wall-clock time and against
training tokens, side by side in one PNG (one line per run file).

    scripts/compare_curves.py runs/a.h5 runs/b.h5 ... [-o curves.png]

Reads each run's /val table (step, seconds, tokens, loss) and labels it with
its attention setup from the run's "config" attribute. Only committed rows
are read (the "rows" counter), so files of killed runs plot too.
Needs h5py and matplotlib (Debian: scripts/install-deps.sh --plots).
"""
import argparse
import json
import sys


def committed(group, column):
    # The run store's crash-safe row counter: data past it may be torn.
    rows = int(group.attrs.get("rows", len(group[column])))
    return group[column][:rows]


def label_of(f, path):
    try:
        cfg = json.loads(f.attrs["config"])
    except (KeyError, ValueError):
        return path
    attn = cfg.get("attention", "?")
    if cfg.get("ra_layers") not in ("", "all", None) and attn.startswith("ra_"):
        attn += f" layers {cfg['ra_layers']}"
    return f"{attn} ({cfg.get('model', '?')})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="ra-train HDF5 run files")
    ap.add_argument("-o", "--out", default="curves.png", help="PNG to write (default: curves.png)")
    a = ap.parse_args()
    try:
        import h5py
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        sys.exit(f"compare_curves: {e}; install with: scripts/install-deps.sh --plots")

    fig, (by_time, by_tokens) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for path in a.runs:
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            sys.exit(f"compare_curves: cannot open {path}: {e}")
        if "val" not in f:
            sys.exit(f"compare_curves: {path} has no /val table (not an ra-train run file?)")
        val = f["val"]
        seconds, tokens, loss = (committed(val, c) for c in ("seconds", "tokens", "loss"))
        label = label_of(f, path)
        by_time.plot(seconds, loss, marker=".", label=label)
        by_tokens.plot(tokens, loss, marker=".", label=label)
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
