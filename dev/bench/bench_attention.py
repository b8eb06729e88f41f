"""PyTorch peer for dev/cuda/attention.cu: causal scaled_dot_product_attention on the flash backend, bf16,
at the same shapes, read from the same qkv[B, T, 3, NH, HS] layout (strided views, no copies).

Run on the device (PyTorch with CUDA):  python3 dev/bench/bench_attention.py
Timing as in the harness: median of REPS runs, each after a 256 MiB memset that flushes the L2, between
CUDA events. FLOPs: forward 2*2*B*NH*T*T*HS/2 (causal), backward 2.5x forward. The backward time is
(forward + backward) - forward, both measured.
"""
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F

SHAPES = [(8, 1024, 12, 64), (2, 4096, 12, 64), (32, 1024, 16, 64), (8, 1024, 16, 128), (2, 4096, 16, 128)]  # B, T, NH, HS
REPS = 20


def median_ms(fn, flush):
    """Median milliseconds of fn() over REPS runs (after two warm-ups), flushing the L2 before each."""
    times = []
    for i in range(REPS + 2):
        flush.fill_(i & 0xFF)
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        if i >= 2:
            times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def main():
    torch.manual_seed(0)
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'peer':<8} {'B,T,NH,HS':<22} {'fwd ms':>10} {'TFLOP/s':>8} {'bwd ms':>10} {'TFLOP/s':>8} {'f+b ms':>10} {'TFLOP/s':>8}")
    for B, T, NH, HS in SHAPES:
        qkv = torch.randn(B, T, 3, NH, HS, device="cuda", dtype=torch.bfloat16)
        # q, k, v: [B, NH, T, HS] strided views into qkv, as leaves so that autograd adds no copies
        q, k, v = (qkv[:, :, i].transpose(1, 2).requires_grad_() for i in range(3))
        dout = torch.randn(B, T, NH, HS, device="cuda", dtype=torch.bfloat16).transpose(1, 2)

        def forward():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

        def forward_backward():
            torch.autograd.grad(forward(), (q, k, v), dout)

        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            with torch.no_grad():
                fwd = median_ms(forward, flush)
            fwd_bwd = median_ms(forward_backward, flush)
        fwd_flops = 4.0 * B * NH * T * T * HS / 2
        bwd_flops = 2.5 * fwd_flops
        bwd = fwd_bwd - fwd
        shape = f"{B},{T},{NH},{HS}"
        print(f"{'torch':<8} {shape:<22} {fwd:10.3f} {fwd_flops / fwd * 1e-9:8.1f} {bwd:10.3f} {bwd_flops / bwd * 1e-9:8.1f} "
              f"{fwd_bwd:10.3f} {(fwd_flops + bwd_flops) / fwd_bwd * 1e-9:8.1f}")


if __name__ == "__main__":
    main()
