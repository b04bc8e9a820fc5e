"""sdpa_peer.py — the dense-attention peer of issue 4's first target: PyTorch
scaled_dot_product_attention, causal, bf16, on the GPU it runs on.

    python3 tools/bench/sdpa_peer.py [--seq 16384] [--heads 16] [--dim 192]

Times q, k, v of shape (1, heads, seq, dim) with CUDA events (warm-up, median
of several runs) and prints the time and the TFLOP/s of the causal work
(2 · 2 · seq² · heads · dim / 2). Which kernel PyTorch picks (flash, memory
efficient, math) is printed too."""
import argparse

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=16384)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, a.heads, a.seq, a.dim, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    f = torch.nn.functional.scaled_dot_product_attention
    backend = "default"
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            f(q, k, v, is_causal=True)
        backend = "flash"
    except Exception as e:  # flash not available for this shape: let PyTorch choose
        backend = f"default ({type(e).__name__})"
    for _ in range(3):
        f(q, k, v, is_causal=True)
    times = []
    for _ in range(a.iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        f(q, k, v, is_causal=True)
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    times.sort()
    ms = times[len(times) // 2]
    flops = 2 * 2 * a.seq * a.seq * a.heads * a.dim / 2
    print(f"sdpa causal seq {a.seq} heads {a.heads} dim {a.dim} ({backend}): {ms:.3f} ms, "
          f"{flops / ms / 1e9:.1f} TFLOP/s")


if __name__ == "__main__":
    main()
