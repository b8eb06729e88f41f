"""Independent check of the CPU reference Llama (test/reference/llama_cpu.h) against PyTorch in float64,
through the Llama peer's own model code (dev/bench/torch_llama.py), so it also checks that peer: RMSNorm,
RoPE (the rotate_half convention and the C table), grouped-query attention (both --gqa paths of the peer:
SDPA with enable_gqa=True and repeat_interleave), SwiGLU over the fused gate|up rows, the untied head, the
loss over the real vocabulary, the weight-decay groups, and the Llama model file's header and layout.

Run from the repository root, where PyTorch is installed (the device machine, or a CPU install):
    python3 dev/torch_llama_reference_check.py
The machinery is dev/torch_reference_check.py's (the GPT-2 check), with this family: dev/ref_dump.c
--family llama (built with gcc into build/torch_check/) writes, for each case below, a small random Llama
(llama_model.h's model file, v3 fp32 and v5 bf16; every parameter perturbed by N(0, 0.05^2) so the norm
gains are not 1 and the padded rows of wte and lm_head not 0), a batch (a token shard of B*T+1 tokens)
and the C results (reference.bin: loss, every parameter gradient, the parameters after two AdamW steps with
clipping active). PyTorch loads the same files, recomputes in float64 and compares.
Ends with test/testing.py's RESULT line; every test is skipped when torch or gcc is missing.
The seed is $TEST_SEED, else the clock, printed first so that a failure can be repeated.

Cases (ref_dump flags): the default L=2 C=64 NH=4 NKV=2 (HS=16, two query heads per KV head) F=96 V=211
Vp=256 maxT=32 B=3 T=20, rope_theta 10000, norm_eps 1e-5 (T < maxT, odd V); multi-query attention
(NKV=1, L=3, HS=8, T = maxT = 24, B=1, Llama 3's rope_theta 500000, norm_eps 1e-6); and multi-head
attention (NKV = NH = 2, HS=24, F=40, B=2, T=9).

Tolerances: dev/torch_reference_check.py's, derived the same way (the C side is fp32, eps32 = 2^-23;
PyTorch float64 is exact by comparison):
- loss: |loss_c - loss_t| <= 16 eps32 * loss_t (a sum of B*T fp32 log-softmax terms accumulated in double).
- gradients, per tensor: max |g_c - g_t| <= 32 eps32 * max |g_t|: each gradient element is a chain of fp32
  dot products and sums of at most a few hundred terms (B*T = 60 rows, Vp = 256 logits, 2F = 192 gate|up
  rows), through RMSNorm, RoPE (its float32 table is the same on both sides: the peer builds the C table
  exactly), attention and SwiGLU of each of the L layers; the rounding errors add up like a random walk
  of a few eps32 per operation (measured on a CPU PyTorch 2.11, seeds 1..6: 7.8 eps32 at worst, loss 0.5 eps32,
  AdamW 3.1 eps32). The padded rows wte[V..Vp) and lm_head[V..Vp) must have exactly zero
  gradient on both sides, and every element of lm_head[:V] some (the softmax reaches every real logit).
- AdamW (torch.optim.AdamW with the peer's decay groups, clip_grad_norm_, fed the C gradients): |p_c - p_t|
  <= 16 eps32 * (|p_t| + lr) per element after each of two steps; the gradient norm within 4 eps32.
- bf16 model file: the v5 parameters equal the v3 ones rounded to bf16 (nearest even) bit for bit.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference_check as check  # noqa: E402  (also puts test/ and dev/bench/ on the path)
import testing  # noqa: E402

try:
    import torch_llama
    LLAMA_IMPORT_ERROR = check.IMPORT_ERROR
except ImportError as e:
    torch_llama = None
    LLAMA_IMPORT_ERROR = str(e)

LLAMA_CASES = {
    "default": ["--family", "llama"],
    "mqa_t_full": ["--family", "llama", "-L", "3", "--heads", "4", "--kv-heads", "1", "-C", "32", "--ffn", "48",
                   "-V", "97", "--vp", "128", "--max-seq-len", "24", "-b", "1", "-t", "24",
                   "--rope-theta", "500000", "--norm-eps", "1e-6"],
    "mha": ["--family", "llama", "-L", "2", "--heads", "2", "--kv-heads", "2", "-C", "48", "--ffn", "40",
            "-V", "131", "--vp", "192", "--max-seq-len", "16", "-b", "2", "-t", "9"],
}


def llama_family():
    """Llama: the padded rows of wte and lm_head get nothing; every element of lm_head[:V] gets some. The loss
    and gradients are checked through both of the peer's grouped-query attention paths."""
    variants = {mode: (lambda model, mode=mode: model.set_gqa(mode)) for mode in torch_llama.GQA_MODES}
    return check.Family("llama", torch_llama, torch_llama.Llama, LLAMA_CASES,
                        lambda cfg, T: {"wte": (cfg.vocab_size, False), "lm_head": (cfg.vocab_size, True)}, variants)


def test_loss_and_gradients():
    check.require_tools(LLAMA_IMPORT_ERROR)
    family = llama_family()
    for case in family.cases:
        check.check_loss_and_gradients(family, case)


def test_adamw_steps():
    check.require_tools(LLAMA_IMPORT_ERROR)
    family = llama_family()
    for case in family.cases:
        check.check_adamw(family, case)


def test_bf16_model_file():
    check.require_tools(LLAMA_IMPORT_ERROR)
    check.check_bf16_model_file(llama_family(), "default")


def test_model_file_errors():
    check.require_tools(LLAMA_IMPORT_ERROR)
    check.check_model_file_errors(llama_family(), "default")


def test_rope_table():
    """RoPE at a preset's full length (the cases above reach only t < 24): the peer's table holds, at both
    halves of a head, the C formula's values (layers_cpu.h cpu_rope_table, recomputed here element by element
    for a few positions up to maxT - 1 and channel pairs), and apply_rope is layers_cpu.h's rotation exactly."""
    check.require_tools(LLAMA_IMPORT_ERROR)
    torch = check.torch
    cfg = torch_llama.LlamaConfig.preset("l125m")
    cos, sin = torch_llama.rope_tables(cfg.max_seq_len, cfg.head_size, cfg.rope_theta)
    HS, half = cfg.head_size, cfg.head_size // 2
    for t in (0, 1, 7, 100, cfg.max_seq_len - 1):
        for i in (0, 1, half // 2, half - 1):
            inv = torch_llama.f32(math.pow(cfg.rope_theta, -2.0 * i / HS))
            angle = torch_llama.f32(float(t) * inv)
            want_c, want_s = torch_llama.f32(math.cos(angle)), torch_llama.f32(math.sin(angle))
            for col in (i, i + half):
                assert cos[t, col].item() == want_c and sin[t, col].item() == want_s, (t, i, col)
    x = torch.randn(1, 2, 5, HS, dtype=torch.float64)
    y = torch_llama.apply_rope(x, cos[:5].double(), sin[:5].double())
    # out[i] = x[i] cos - x[i + HS/2] sin, out[i + HS/2] = x[i + HS/2] cos + x[i] sin (layers_cpu.h)
    c, s = cos[:5, :half].double(), sin[:5, :half].double()
    x1, x2 = x[..., :half], x[..., half:]
    assert torch.equal(y[..., :half], x1 * c - x2 * s) and torch.equal(y[..., half:], x2 * c + x1 * s)


if __name__ == "__main__":
    print(f"torch_llama_reference_check: TEST_SEED={check.SEED}")
    for test in (test_loss_and_gradients, test_adamw_steps, test_bf16_model_file, test_model_file_errors,
                 test_rope_table):
        testing.run(test)
    testing.finish()
