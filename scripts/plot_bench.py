#!/usr/bin/python3
"""Bar chart of an ra-bench run file: median ms per variant, forward and
forward+backward, with each bar's ratio to sdpa_fused written on it.

    scripts/plot_bench.py runs/ra-bench-....h5 [-o out.png]

Needs h5py and matplotlib (Debian: scripts/install-deps.sh --plots).
"""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="ra-bench HDF5 run file")
    ap.add_argument("-o", "--out", help="PNG to write (default: <run>.png)")
    a = ap.parse_args()
    try:
        import h5py
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        sys.exit(f"plot_bench: {e}; install with: scripts/install-deps.sh --plots")

    try:
        f = h5py.File(a.run, "r")
    except OSError as e:
        sys.exit(f"plot_bench: cannot open {a.run}: {e}")
    if "bench" not in f:
        sys.exit(f"plot_bench: {a.run} has no /bench table (not an ra-bench run?)")
    t = f["bench"]
    n = int(t.attrs.get("rows", len(t["variant"])))
    col = lambda c: [x.decode() if isinstance(x, bytes) else x for x in t[c][:n]]
    variant, pass_, dtype, med = col("variant"), col("pass"), col("dtype"), col("median_ms")
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}

    groups = sorted({(p, d) for p, d in zip(pass_, dtype)})
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.5), squeeze=False)
    for ax, (p, d) in zip(axes[0], groups):
        rows = [(v, m) for v, pp, dd, m in zip(variant, pass_, dtype, med) if pp == p and dd == d]
        base = next((m for v, m in rows if v == "sdpa_fused"), None)
        names = [v for v, _ in rows]
        vals = [m for _, m in rows]
        bars = ax.bar(names, vals, color=["#4c72b0" if v.startswith("sdpa") else "#dd8452" for v in names])
        for b, v in zip(bars, vals):
            label = f"{v:.2f} ms" + (f"\n{v / base:.2f}x" if base else "")
            ax.annotate(label, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_title(f"{p}, {d}")
        ax.set_ylabel("median ms (lower is better)")
        ax.tick_params(axis="x", rotation=30)
    cfg = attrs.get("config", "")
    fig.suptitle(f"ra-bench on {attrs.get('device_name', '?')} ({attrs.get('kokkos_backend', '?')}), "
                 f"git {attrs.get('git_revision', '?')}\n{cfg}", fontsize=8)
    fig.tight_layout()
    out = a.out or a.run.rsplit(".h5", 1)[0] + ".png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
