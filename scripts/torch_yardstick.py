#!/usr/bin/env python3
"""PyTorch yardstick for ra-bench, run on the GPU machine in the same call.

Times torch.nn.functional.scaled_dot_product_attention (causal) and a plain
PyTorch RA (open-coded: full S, both triangles, autograd backward -- what the
seeds prototyped) at one shape, forward and forward+backward, with CUDA events
after warm-up, and prints medians. Writes JSON (--out) for docs/perf.md.
"""
import argparse
import json
import math
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--H", type=int, default=12)
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--D", type=int, default=64)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--variants", default="torch_sdpa,torch_ra_open",
                    help="torch_sdpa and/or torch_ra_open (the latter holds T x T tensors: drop it for long T)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--out", default="")
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F

    if not torch.cuda.is_available():
        sys.exit("torch_yardstick: no CUDA device visible to PyTorch")
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False  # like-for-like with our float32 kernels
    torch.backends.cudnn.allow_tf32 = False

    def time_ms(fn):
        for _ in range(a.warmup):
            fn()
        torch.cuda.synchronize()
        out = []
        for _ in range(a.reps):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            out.append(s.elapsed_time(e))
        return statistics.median(out), min(out), max(out)

    B, H, T, D = a.B, a.H, a.T, a.D
    scale = 1.0 / math.sqrt(D)
    mask = torch.ones(T, T, dtype=torch.bool, device=dev).tril()

    def ra_torch(q, k, v, gates, d):
        s = (q @ k.transpose(-1, -2)) * scale
        w = gates.view(1, H, 3, 1, 1)
        logits = w[:, :, 0] * s + w[:, :, 1] * s.transpose(-1, -2) + w[:, :, 2] * d.unsqueeze(-2)
        logits = logits.masked_fill(~mask, float("-inf"))
        return torch.softmax(logits, dim=-1) @ v

    rows = []
    for name in a.dtypes.split(","):
        dt = getattr(torch, name)
        g = torch.Generator(device=dev).manual_seed(0)
        mk = lambda *shape: torch.randn(*shape, device=dev, dtype=dt, generator=g).requires_grad_(True)
        q, k, v = mk(B, H, T, D), mk(B, H, T, D), mk(B, H, T, D)
        d = mk(B, H, T)
        gates = torch.tensor([0.5, 0.3, 0.2], device=dev, dtype=dt).repeat(H, 1).requires_grad_(True)
        do = torch.randn(B, H, T, D, device=dev, dtype=dt, generator=g)
        cases = {
            "torch_sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
            "torch_ra_open": lambda: ra_torch(q, k, v, gates, d),
        }
        for case, f in cases.items():
            if case not in a.variants.split(","):
                continue
            for pass_ in ("fwd", "fwdbwd"):
                if pass_ == "fwd":
                    def fn():
                        with torch.no_grad():
                            f()
                else:
                    def fn():
                        f().backward(do)
                med, lo, hi = time_ms(fn)
                rows.append(dict(variant=case, pass_=pass_, dtype=name, B=B, H=H, T=T, D=D,
                                 median_ms=med, min_ms=lo, max_ms=hi, reps=a.reps))
    info = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                cuda=torch.version.cuda, capability=".".join(map(str, torch.cuda.get_device_capability())))
    print(f"torch yardstick on {info['device']} (torch {info['torch']}), B={B} H={H} T={T} D={D}, "
          f"{a.warmup} warm-up + {a.reps} timed reps, CUDA events, median")
    print(f"{'variant':<14} {'pass':<7} {'dtype':<9} {'median_ms':>10} {'min_ms':>9} {'max_ms':>9}")
    for r in rows:
        print(f"{r['variant']:<14} {r['pass_']:<7} {r['dtype']:<9} {r['median_ms']:>10.3f} "
              f"{r['min_ms']:>9.3f} {r['max_ms']:>9.3f}")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(dict(info=info, rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
