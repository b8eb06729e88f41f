"""PyTorch peer of train_llama: the same Llama, trained on the same token shards, to compare losses and speed.

Architecture (as llama_model.h and test/reference/llama_cpu.h; Llama 3 style, no biases): token embedding
wte [Vp, C]; L pre-norm blocks (RMSNorm -> fused qkv linear -> RoPE on q and k -> causal grouped-query
attention through F.scaled_dot_product_attention -> output linear -> residual; RMSNorm -> fused gate|up
linear -> SwiGLU silu(gate) * up -> down linear -> residual); a final RMSNorm and an untied LM head lm_head
[Vp, C]. The loss is the mean cross-entropy over the first V logits only: the padded columns [V, Vp) are
sliced off before the softmax, so they get no probability and lm_head's padded rows get no gradient, as in
the C code. Layouts are the model file's: qkv rows are the NH query heads, then the NKV key heads, then the
NKV value heads (HS = C/NH rows each); gate_up rows are the F gate rows, then the F up rows.
- RMSNorm: x / sqrt(mean(x^2) + norm_eps) * gain (torch.nn.RMSNorm), in fp32 under autocast.
- RoPE, the Hugging Face rotate_half convention of llama_model.h: channel i < HS/2 of a head turns with
  channel i + HS/2 by the angle t * inv_freq[i] at position t, with exactly the C reference's table
  (layers_cpu.h cpu_rope_table): inv_freq[i] = (float)pow(theta, -2i/HS), angle = (float)t * inv_freq[i] (a
  float32 product), cos and sin evaluated in double and rounded to float32. The rotation runs in the
  table's precision (fp32 in training, float64 in the float64 check) and is cast back to q's dtype.
- Grouped-query attention: query head h reads KV head h / (NH/NKV). --gqa sdpa (default) passes the NKV
  key/value heads to scaled_dot_product_attention(..., enable_gqa=True) (PyTorch >= 2.5), served without
  expanding them by the flash backend (the one bf16 causal attention takes on an H100; the other fused
  backends have refused enable_gqa in some PyTorch versions); on CUDA a probe at start checks that a fused backend (flash,
  efficient or cuDNN, not the math one) accepts it at the run's dtype and otherwise falls back to --gqa
  repeat, saying so. --gqa repeat expands k and v to NH heads with repeat_interleave before SDPA (what
  PyTorch < 2.5 has to do). With NKV = NH both are plain multi-head SDPA.

Training: as dev/bench/torch_gpt2.py, whose command line, loaders, schedule and training loop this file
reuses: fp32 parameters, bf16 autocast, gradient accumulation to --total-batch, global-norm clipping, fused
AdamW with weight decay on the 2-D parameters only (wte, qkvw, attn_outw, gate_upw, downw, lm_head: the
table's decay flags; the norm gains are 1-D and not decayed), torch.compile of each block and the head
(--compile blocks, the default), of the whole model (full) or none.

Initial weights: --model l125m|l350m|l1b draws the Llama init of llama_model.h in PyTorch (same
distributions as the C table, not the same numbers: N(0, 0.02^2) weights, attn_out and down N(0, (0.02 /
sqrt(2L))^2), norm gains 1, padded rows of wte and lm_head 0), or --model FILE loads this project's Llama
model file (magic 20261208, version 3 fp32 or 5 bf16; header words [2] max_seq_len, [3] vocab_size,
[4] num_layers, [5] num_heads, [6] channels, [7] padded_vocab_size, [8] num_kv_heads, [9] ffn_hidden,
[10] rope_theta and [11] norm_eps as float32 bits, [12..255] 0; then the tensors wte, attn_norm, qkvw,
attn_outw, ffn_norm, gate_upw, downw, final_norm, lm_head). `build/torch_check/ref_dump --init l125m --seed
1337 --out l125m.bin` (dev/ref_dump.c) writes exactly the parameters the C trainer draws from that seed, so
both runs can start identically.

Throughput: ms per optimizer step between host clocks after a device synchronize, tokens/s = tokens per
step / time. FLOPs per token = 6*N + 6*L*T*C, N = every parameter of the model file (wte and the untied
lm_head both counted, padded rows included): 6*N for the forward+backward of the weights, and the attention
matmuls (QK^T and AV: 4*T*C per token and layer forward for the NH query heads whatever NKV is, x3 for
forward+backward, halved by the causal mask). MFU = FLOPs per token * tokens/s / 989e12 (H100 SXM dense BF16
peak). The summary line ("summary: N steps after K skipped: X ms/step, Y tok/s, MFU Z%, peak memory W GiB")
is torch_gpt2.py's, averaged over the steps after the first --timing-skip.

Benchmarks (on the device; shapes chosen to fit an 80 GB H100 by estimate, not yet run there):
    python3 dev/bench/torch_llama.py --model l125m -b 64 -t 1024 --steps 30
    python3 dev/bench/torch_llama.py --model l350m -b 32 -t 1024 --steps 30
    python3 dev/bench/torch_llama.py --model l1b -b 16 -t 1024 --steps 30
"""
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_gpt2  # noqa: E402  (the shared command line, loaders, optimizer and training loop)

MODEL_FILE_MAGIC = torch_gpt2.LLAMA_MODEL_FILE_MAGIC  # 20261208
INIT_STD = 0.02
# llama_model.h's bounds of the configuration fields
MAX_SEQ_LEN, MAX_VOCAB, MAX_LAYERS, MAX_CHANNELS, MAX_FFN, MAX_ROPE_THETA = 1 << 20, 1 << 24, 4096, 1 << 16, 1 << 18, 1e12

# name: layers, channels, heads, KV heads, FFN width (llama_model.h llama_config_preset); all with max_seq_len
# 1024, the GPT-2 vocabulary 50257 padded to 50304, rope_theta 500000 and norm_eps 1e-5
PRESETS = {"l125m": (12, 768, 12, 4, 2048), "l350m": (24, 1024, 16, 8, 2816), "l1b": (16, 2048, 32, 8, 8192)}

# The per-layer tensors in the model file's order: name and the parameter of a LlamaBlock holding layer l's slice.
LAYER_TENSORS = [("attn_norm", "attn_norm.weight"), ("qkvw", "qkv.weight"), ("attn_outw", "attn_out.weight"),
                 ("ffn_norm", "ffn_norm.weight"), ("gate_upw", "gate_up.weight"), ("downw", "down.weight")]
TENSOR_NAMES = ["wte"] + [name for name, _ in LAYER_TENSORS] + ["final_norm", "lm_head"]
GQA_MODES = ("sdpa", "repeat")


def f32(x):
    """x rounded to the nearest float32 (returned as a Python float, exactly that float32's value)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_from_bits(bits):
    """The float32 whose bits are the int32 header word `bits`, as a Python float (exact)."""
    return struct.unpack("<f", struct.pack("<i", int(bits)))[0]


class LlamaConfig:
    """Llama configuration: the fields of llama_model.h's LlamaConfig (rope_theta and norm_eps are float32
    values held exactly in Python floats)."""

    def __init__(self, max_seq_len, vocab_size, padded_vocab_size, num_layers, num_heads, num_kv_heads, channels,
                 ffn_hidden, rope_theta, norm_eps):
        self.max_seq_len = max_seq_len
        self.vocab_size = vocab_size
        self.padded_vocab_size = padded_vocab_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.channels = channels
        self.ffn_hidden = ffn_hidden
        self.rope_theta = rope_theta
        self.norm_eps = norm_eps

    @staticmethod
    def preset(name):
        if name not in PRESETS:
            raise ValueError(f"unknown Llama model '{name}' (expected one of {', '.join(PRESETS)} or a model file)")
        layers, channels, heads, kv_heads, ffn = PRESETS[name]
        return LlamaConfig(1024, 50257, 50304, layers, heads, kv_heads, channels, ffn, f32(500000.0), f32(1e-5))

    @property
    def head_size(self):
        return self.channels // self.num_heads

    def validate(self):
        """llama_model.h llama_config_validate: raises ValueError naming the field and the numbers."""
        fields = [("max_seq_len", self.max_seq_len, MAX_SEQ_LEN), ("vocab_size", self.vocab_size, MAX_VOCAB),
                  ("padded_vocab_size", self.padded_vocab_size, MAX_VOCAB), ("num_layers", self.num_layers, MAX_LAYERS),
                  ("num_heads", self.num_heads, MAX_CHANNELS), ("num_kv_heads", self.num_kv_heads, MAX_CHANNELS),
                  ("channels", self.channels, MAX_CHANNELS), ("ffn_hidden", self.ffn_hidden, MAX_FFN)]
        for name, value, bound in fields:
            if not 0 < value <= bound:
                raise ValueError(f"{name} {value} is outside 1..{bound}")
        if not 1.0 < self.rope_theta <= MAX_ROPE_THETA:
            raise ValueError(f"rope_theta {self.rope_theta:g} is outside (1, {MAX_ROPE_THETA:g}]")
        if not 0.0 < self.norm_eps < 1.0:
            raise ValueError(f"norm_eps {self.norm_eps:g} is outside (0, 1)")
        if self.padded_vocab_size < self.vocab_size:
            raise ValueError(f"padded_vocab_size {self.padded_vocab_size} is smaller than vocab_size {self.vocab_size}")
        if self.num_heads % self.num_kv_heads != 0:
            raise ValueError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {self.num_kv_heads}")
        if self.channels % self.num_heads != 0:
            raise ValueError(f"channels {self.channels} must be a multiple of num_heads {self.num_heads}")
        if self.head_size % 2 != 0:
            raise ValueError(f"head size {self.head_size} must be even for RoPE")

    def tensor_shapes(self):
        """Shapes of the parameter tensors in the model file's order (llama_model.h llama_param_table)."""
        L, C, Vp, F_ = self.num_layers, self.channels, self.padded_vocab_size, self.ffn_hidden
        QKV = (self.num_heads + 2 * self.num_kv_heads) * self.head_size
        per_layer = {"attn_norm": (L, C), "qkvw": (L, QKV, C), "attn_outw": (L, C, C), "ffn_norm": (L, C),
                     "gate_upw": (L, 2 * F_, C), "downw": (L, C, F_)}
        return [("wte", (Vp, C))] + [(name, per_layer[name]) for name, _ in LAYER_TENSORS] + \
            [("final_norm", (C,)), ("lm_head", (Vp, C))]

    def num_parameters(self):
        return sum(math.prod(shape) for _, shape in self.tensor_shapes())

    def describe(self):
        return (f"Llama L={self.num_layers} NH={self.num_heads} NKV={self.num_kv_heads} C={self.channels} "
                f"F={self.ffn_hidden} V={self.vocab_size} Vp={self.padded_vocab_size} maxT={self.max_seq_len} "
                f"rope_theta={self.rope_theta:.9g} norm_eps={self.norm_eps:.9g}")


def llama_config_from_header(header):
    """The LlamaConfig of a Llama model header (words 2..11; 12..255 must be 0), or ValueError."""
    nonzero = [i for i in range(12, len(header)) if header[i] != 0]
    if nonzero:
        raise ValueError(f"reserved word {nonzero[0]} is {int(header[nonzero[0]])}, not 0")
    cfg = LlamaConfig(int(header[2]), int(header[3]), int(header[7]), int(header[4]), int(header[5]), int(header[8]),
                      int(header[6]), int(header[9]), f32_from_bits(header[10]), f32_from_bits(header[11]))
    cfg.validate()
    return cfg


def read_model_file(path):
    """Reads a Llama model file (version 3 fp32 or 5 bf16). Returns (config, version, tensors): the tensors as
    float32 numpy arrays in the file's order (bf16 widened exactly). Raises ValueError naming the file."""
    return torch_gpt2.read_model_tensors(path, MODEL_FILE_MAGIC, "Llama", llama_config_from_header, (
        (torch_gpt2.MODEL_FILE_MAGIC, "this is a GPT-2 model file, not a Llama one; use dev/bench/torch_gpt2.py"),))


def rope_tables(max_seq_len, head_size, theta):
    """cos, sin [max_seq_len, head_size] float32: the C reference's table (layers_cpu.h cpu_rope_table) for
    positions 0..max_seq_len-1, each row's HS/2 values repeated for the two halves of a head."""
    half = head_size // 2
    inv_freq = [f32(theta ** (-2.0 * i / head_size)) for i in range(half)]  # (float)pow((double)theta, -2i/HS)
    cos, sin = [], []
    for t in range(max_seq_len):
        angles = [f32(float(t) * f) for f in inv_freq]  # the float32 product (float)t * inv_freq[i]
        row_cos = [math.cos(a) for a in angles]  # evaluated in double, rounded to float32 by the tensor below
        row_sin = [math.sin(a) for a in angles]
        cos.append(row_cos + row_cos)
        sin.append(row_sin + row_sin)
    return torch.tensor(cos, dtype=torch.float64).float(), torch.tensor(sin, dtype=torch.float64).float()


def apply_rope(x, cos, sin):
    """x [B, H, T, HS] turned by RoPE (rotate_half): x * cos + rotate_half(x) * sin with rotate_half(x) =
    [-x[HS/2:], x[:HS/2]], in the tables' precision; cos, sin [T, HS]. Returns x's dtype."""
    half = x.shape[-1] // 2
    xf = x.to(cos.dtype)
    rotated = torch.cat((-xf[..., half:], xf[..., :half]), dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)


def sdpa_has_enable_gqa():
    """Whether this PyTorch's scaled_dot_product_attention takes enable_gqa (PyTorch >= 2.5)."""
    q = torch.zeros(1, 2, 1, 2)
    try:
        F.scaled_dot_product_attention(q, q[:, :1], q[:, :1], enable_gqa=True)
    except TypeError:
        return False
    return True


def gqa_attention(q, k, v, mode):
    """Causal attention of q [B, NH, T, HS] over k, v [B, NKV, T, HS], query head h reading KV head
    h / (NH/NKV): mode 'sdpa' passes enable_gqa=True, 'repeat' expands k and v with repeat_interleave."""
    group = q.shape[1] // k.shape[1]
    if group == 1:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if mode == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class LlamaBlock(nn.Module):
    """One pre-norm block: x + attn_out(attention(rope(qkv(attn_norm(x))))), then + down(swiglu(gate_up(
    ffn_norm(x)))). x [B, T, C]; cos, sin [T, HS]."""

    def __init__(self, cfg, gqa="sdpa"):
        super().__init__()
        C, HS = cfg.channels, cfg.head_size
        self.num_heads, self.num_kv_heads, self.head_size = cfg.num_heads, cfg.num_kv_heads, HS
        self.gqa = gqa
        self.attn_norm = nn.RMSNorm(C, eps=cfg.norm_eps)
        self.qkv = nn.Linear(C, (cfg.num_heads + 2 * cfg.num_kv_heads) * HS, bias=False)
        self.attn_out = nn.Linear(C, C, bias=False)
        self.ffn_norm = nn.RMSNorm(C, eps=cfg.norm_eps)
        self.gate_up = nn.Linear(C, 2 * cfg.ffn_hidden, bias=False)
        self.down = nn.Linear(cfg.ffn_hidden, C, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        NH, NKV, HS = self.num_heads, self.num_kv_heads, self.head_size
        # qkv [B, T, (NH + 2 NKV) HS]: the query heads, then the key heads, then the value heads
        q, k, v = self.qkv(self.attn_norm(x)).split([NH * HS, NKV * HS, NKV * HS], dim=-1)
        q = apply_rope(q.view(B, T, NH, HS).transpose(1, 2), cos, sin)
        k = apply_rope(k.view(B, T, NKV, HS).transpose(1, 2), cos, sin)
        v = v.view(B, T, NKV, HS).transpose(1, 2)
        y = gqa_attention(q, k, v, self.gqa)  # [B, NH, T, HS]
        x = x + self.attn_out(y.transpose(1, 2).reshape(B, T, C))
        gate, up = self.gate_up(self.ffn_norm(x)).chunk(2, dim=-1)  # gate rows first, then the up rows
        return x + self.down(F.silu(gate) * up)


class Llama(torch_gpt2.LlmcTensors, nn.Module):
    """Llama with an untied LM head lm_head [Vp, C]; forward returns the mean loss over the first V logits."""
    tensor_names = TENSOR_NAMES

    def __init__(self, cfg, gqa="sdpa"):
        super().__init__()
        if gqa not in GQA_MODES:
            raise ValueError(f"gqa must be one of {GQA_MODES}, got '{gqa}'")
        cfg.validate()
        self.cfg = cfg
        self.wte = nn.Parameter(torch.empty(cfg.padded_vocab_size, cfg.channels))
        self.blocks = nn.ModuleList(LlamaBlock(cfg, gqa) for _ in range(cfg.num_layers))
        self.final_norm = nn.RMSNorm(cfg.channels, eps=cfg.norm_eps)
        self.lm_head = nn.Parameter(torch.empty(cfg.padded_vocab_size, cfg.channels))
        cos, sin = rope_tables(cfg.max_seq_len, cfg.head_size, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def set_gqa(self, mode):
        """Chooses how the blocks run grouped-query attention ('sdpa' or 'repeat'; see the module docstring)."""
        if mode not in GQA_MODES:
            raise ValueError(f"gqa must be one of {GQA_MODES}, got '{mode}'")
        for block in self.blocks:
            block.gqa = mode

    def forward(self, inputs, targets):
        """inputs, targets [B, T] token ids < V; returns the mean cross-entropy (a scalar)."""
        T = inputs.shape[1]
        x = F.embedding(inputs, self.wte)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head_loss(x, targets)

    def head_loss(self, x, targets):
        """Final RMSNorm, the untied LM head and the mean cross-entropy over the first V logits. x [B, T, C]."""
        logits = self.final_norm(x) @ self.lm_head.t()  # [B, T, Vp]
        V = self.cfg.vocab_size
        return F.cross_entropy(logits[..., :V].reshape(-1, V), targets.reshape(-1))

    def llmc_views(self):
        """The 9 model-file tensors as lists of this model's parameters: one for the whole tensor, or one per layer."""
        views = [[self.wte]]
        views += [[block.get_parameter(path) for block in self.blocks] for _, path in LAYER_TENSORS]
        return views + [[self.final_norm.weight], [self.lm_head]]

    @torch.no_grad()
    def init_llama(self, seed):
        """The init of llama_model.h's table: N(0, 0.02^2) weights, N(0, (0.02/sqrt(2L))^2) for the projections
        into the residual stream (attn_out, down), unit norm gains, zero padded rows wte[V..Vp), lm_head[V..Vp)."""
        gen = torch.Generator().manual_seed(seed)
        resid_std = INIT_STD / math.sqrt(2 * self.cfg.num_layers)
        for name, p in self.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0)  # the 1-D parameters are the RMSNorm gains
            else:
                std = resid_std if name.endswith(("attn_out.weight", "down.weight")) else INIT_STD
                p.copy_(torch.randn(p.shape, generator=gen) * std)
        self.wte[self.cfg.vocab_size:].zero_()
        self.lm_head[self.cfg.vocab_size:].zero_()


def configure_optimizer(model, lr, weight_decay, beta1, beta2, eps, fused):
    """torch_gpt2's groups: decay on the 2-D parameters (wte, qkvw, attn_outw, gate_upw, downw, lm_head: exactly
    the rows of llama_model.h's table with the decay flag), none on the 1-D norm gains."""
    return torch_gpt2.configure_optimizer(model, lr, weight_decay, beta1, beta2, eps, fused)


def fused_backend_accepts_gqa(cfg, device, dtype):
    """Whether a fused SDPA backend (flash, efficient or cuDNN; not the math one) runs causal attention with
    enable_gqa=True for this model's heads at `dtype` on the CUDA device (a small forward and backward)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    B, T, HS = 1, 128, cfg.head_size
    q = torch.randn(B, cfg.num_heads, T, HS, device=device, dtype=dtype, requires_grad=True)
    k = torch.randn(B, cfg.num_kv_heads, T, HS, device=device, dtype=dtype, requires_grad=True)
    v = torch.randn(B, cfg.num_kv_heads, T, HS, device=device, dtype=dtype, requires_grad=True)
    try:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]):
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).sum().backward()
    except RuntimeError:
        return False
    return True


def choose_gqa(args, cfg):
    """The --gqa mode to run, after the checks of the module docstring; prints what it chose and why."""
    if cfg.num_kv_heads == cfg.num_heads:
        print("attention: NKV = NH, plain multi-head SDPA")
        return args.gqa
    mode = args.gqa
    if mode == "sdpa" and not sdpa_has_enable_gqa():
        print("attention: this PyTorch's SDPA has no enable_gqa: --gqa repeat")
        mode = "repeat"
    elif mode == "sdpa" and torch.device(args.device).type == "cuda":
        dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
        if not fused_backend_accepts_gqa(cfg, args.device, dtype):
            print(f"attention: no fused SDPA backend takes enable_gqa at {dtype} here: --gqa repeat")
            mode = "repeat"
    group = cfg.num_heads // cfg.num_kv_heads
    print(f"attention: {cfg.num_heads} query heads over {cfg.num_kv_heads} KV heads, "
          + ("SDPA enable_gqa=True" if mode == "sdpa" else f"k, v repeat_interleave x{group} then SDPA"))
    return mode


def build_model(args):
    """The model on the device, initialized from the preset or loaded from the model file."""
    if args.model in PRESETS:
        cfg = LlamaConfig.preset(args.model)
        model = Llama(cfg)
        model.init_llama(args.seed)
        source = f"Llama init, seed {args.seed}"
    elif not os.path.isfile(args.model):
        raise ValueError(f"--model '{args.model}' is neither a preset ({', '.join(PRESETS)}) nor a model file")
    else:
        cfg, version, tensors = read_model_file(args.model)
        model = Llama(cfg)
        model.load_llmc(tensors)
        source = f"{args.model} (version {version})"
    if args.seq_len > cfg.max_seq_len:
        raise ValueError(f"-t {args.seq_len} exceeds the model's max_seq_len {cfg.max_seq_len}")
    model.set_gqa(choose_gqa(args, cfg))
    return cfg, model.to(args.device), source


def make_parser():
    p = torch_gpt2.make_parser(description=__doc__.split("\n")[0], model_default="l125m",
                               model_help="l125m|l350m|l1b (Llama init from --seed) or a Llama model file (llama_model.h)")
    p.add_argument("--gqa", choices=GQA_MODES, default="sdpa",
                   help="grouped-query attention: SDPA with enable_gqa=True (default), or k/v repeat_interleave then SDPA")
    return p


def main(argv):
    return torch_gpt2.main(argv, make_parser(), build_model)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
