#!/usr/bin/env python3
"""PyTorch GPT-2 training-step yardstick for ra-train, run on the GPU machine
in the same call as ra-train (docs/perf.md puts the two side by side).

A plain GPT-2 (pre-LayerNorm blocks, GELU(tanh) MLP 4x, tied LM head, vocab
padded to 50304) written here, trained on random tokens with AdamW (fused
where PyTorch offers it) for --steps timed steps after --warmup, each step =
zero_grad + forward + cross-entropy + backward + clip + AdamW, timed with CUDA
events; prints the median ms per step and tokens/s. Attention: PyTorch's own
causal SDPA, or a plain open-coded RA (full S, both triangles, per-head gates
and a learned discoverability table -- what the seeds prototyped).
Precision: fp32 (TF32 off, like-for-like with our float32 kernels), tf32
(fp32 with TF32 matmuls) or bf16 autocast (fp32 master weights).
"""
import argparse
import json
import math
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--attention", default="sdpa,ra", help="comma list of sdpa, ra")
    ap.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, tf32, bf16")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="")
    a = ap.parse_args()

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    if not torch.cuda.is_available():
        sys.exit("torch_gpt2_yardstick: no CUDA device visible to PyTorch")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    C, H, T = a.width, a.heads, a.T
    Dh = C // H

    class Attention(nn.Module):
        def __init__(self, ra):
            super().__init__()
            self.ra = ra
            self.qkv = nn.Linear(C, 3 * C)
            self.proj = nn.Linear(C, C)
            if ra:
                self.gates = nn.Parameter(torch.tensor([0.5, 0.3, 0.2]).repeat(H, 1))
                self.disc = nn.Parameter(torch.zeros(H, T))
                self.register_buffer("mask", torch.ones(T, T, dtype=torch.bool).tril())

        def forward(self, x):
            B = x.shape[0]
            q, k, v = self.qkv(x).split(C, dim=2)
            q, k, v = (t.view(B, T, H, Dh).transpose(1, 2) for t in (q, k, v))
            if self.ra:
                s = (q @ k.transpose(-1, -2)) / math.sqrt(Dh)
                g = self.gates.view(1, H, 3, 1, 1)
                logits = g[:, :, 0] * s + g[:, :, 1] * s.transpose(-1, -2) + g[:, :, 2] * self.disc.view(1, H, 1, T)
                y = torch.softmax(logits.masked_fill(~self.mask, float("-inf")), dim=-1) @ v
            else:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.proj(y.transpose(1, 2).reshape(B, T, C))

    class Block(nn.Module):
        def __init__(self, ra):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.attn = Attention(ra)
            self.fc, self.fc_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self, ra):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(a.vocab, C), nn.Embedding(T, C)
            self.blocks = nn.ModuleList(Block(ra) for _ in range(a.layers))
            self.ln_f = nn.LayerNorm(C)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
            for b in self.blocks:
                x = b(x)
            logits = self.ln_f(x) @ self.wte.weight.t()
            return F.cross_entropy(logits.view(-1, a.vocab).float(), targets.view(-1))

    rows = []
    for attn in a.attention.split(","):
        for prec in a.precisions.split(","):
            torch.manual_seed(0)
            torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"  # fp32 storage, TF32 tensor-core GEMMs
            model = GPT(attn == "ra").to(dev)
            opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=True)
            idx = torch.randint(0, 50257, (a.B, T), device=dev)
            tgt = torch.randint(0, 50257, (a.B, T), device=dev)

            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=prec == "bf16"):
                    loss = model(idx, tgt)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()

            for _ in range(a.warmup):
                step()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(a.steps):
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                step()
                e.record()
                e.synchronize()
                times.append(s.elapsed_time(e))
            med = statistics.median(times)
            rows.append({"attention": attn, "precision": prec, "B": a.B, "T": T, "median_ms": med,
                         "min_ms": min(times), "max_ms": max(times), "tokens_per_s": a.B * T / (med * 1e-3),
                         "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30, "steps": a.steps})
            del model, opt
            torch.cuda.empty_cache()

    info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "model": f"GPT-2 L{a.layers} H{a.heads} C{C} T{T} V{a.vocab}"}
    print(f"torch GPT-2 step on {info['device']} (torch {info['torch']}), {info['model']}, B={a.B}, "
          f"{a.warmup} warm-up + {a.steps} timed steps, CUDA events, median")
    print(f"{'attention':<10} {'precision':<9} {'ms/step':>9} {'tokens/s':>10} {'peak GiB':>9}")
    for r in rows:
        print(f"{r['attention']:<10} {r['precision']:<9} {r['median_ms']:>9.1f} {r['tokens_per_s']:>10.0f} "
              f"{r['peak_mem_gib']:>9.1f}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
