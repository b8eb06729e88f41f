"""PyTorch peer of train_gpt: the same GPT-2, trained on the same token shards, to compare losses and speed.

Architecture (as test/reference/gpt2_cpu.h and core/gpt2_model.h): token + position embedding, L pre-LN
blocks (LayerNorm eps 1e-5 -> qkv linear -> causal attention through F.scaled_dot_product_attention ->
projection -> residual; LayerNorm -> 4C linear -> tanh-GELU -> C linear -> residual), final LayerNorm, and
the classifier tied to the token embedding over the padded vocabulary Vp. The loss is the mean
cross-entropy over the first V logits only: the padded columns [V, Vp) are sliced off before the softmax,
so they get no probability and wte's padded rows get no gradient, as in the C code.

Training: fp32 parameters, bf16 autocast (--dtype bf16; the matmuls run in bf16, LayerNorm, softmax and
the loss in fp32), gradient accumulation up to --total-batch tokens per step, global-norm clipping, fused
AdamW (weight decay on the 2-D weights only: wte, wpe and the four linear weights, like is_matrix), the
learning-rate schedule of core/lr_schedule.h. torch.compile: by default (--compile blocks) each block and
the head are compiled (one graph serves every block, so compilation takes ~14 s instead of 25-55 s); on the
H100 this ran as fast as compiling the whole model (--compile full; dev/RESULTS.md). The C trainer keeps bf16 parameters with fp32
master weights; here autocast casts fp32 parameters per matmul, the usual PyTorch recipe.

Initial weights: --model d12|d24|d36|d48 draws GPT-2's init in PyTorch (same distributions as
gpt2_init_params, not the same numbers), or --model FILE loads an llm.c model file (version 3 fp32 or
5 bf16): `build/torch_check/ref_dump --init d12 --seed 1337 --out d12.bin` (dev/ref_dump.c) writes
exactly the parameters the C trainer draws from that seed, so both runs can start identically.

Data: --data PATTERN reads token shards (dev/data/README.md) like dataloader/dataloader.h with one rank
and no shuffling: shards in sorted name order, windows of B*T+1 tokens at multiples of B*T (inputs the
first B*T, targets the last B*T), each shard's tail unused, wrapping to the first shard after the last.
Compare with the C trainer run with --shuffle 0. --data random draws uniform tokens (benchmarks).

Throughput: ms per optimizer step between host clocks after a device synchronize, tokens/s = tokens per
step / time. FLOPs per token = 6*N + 6*L*T*C, N = every parameter of the model file (llm.c's count,
padded wte and wpe included): 6*N for the forward+backward of the weights, and the attention matmuls
(QK^T and AV: 4*T*C per token and layer forward, x3 for forward+backward, halved by the causal mask).
MFU = FLOPs per token * tokens/s / 989e12 (H100 SXM dense BF16 peak), as the C trainer reports.
The summary line averages the steps after the first --timing-skip (compilation and warm-up excluded).

dev/bench/torch_llama.py, the Llama peer, reuses this file's command line, data loaders, optimizer groups,
schedule, model-file reader and training loop (so both print the same step and summary lines).

Benchmarks (on the device):
    python3 dev/bench/torch_gpt2.py --model d12 -b 64 -t 1024 --steps 30
    python3 dev/bench/torch_gpt2.py --model d24 -b 32 -t 1024 --steps 30
"""
import argparse
import glob
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_FILE_MAGIC = 20240326
LLAMA_MODEL_FILE_MAGIC = 20261208  # llama_model.h's files, read by dev/bench/torch_llama.py
MODEL_FILE_HEADER_INTS = 256
SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_INTS = 256
PEAK_FLOPS = 989e12  # H100 SXM dense BF16
LAYERNORM_EPS = 1e-5
INIT_STD = 0.02

# name, layers, heads, channels (core/gpt2_model.h gpt2_config_preset)
PRESETS = {"d12": (12, 12, 768), "d24": (24, 16, 1024), "d36": (36, 20, 1280), "d48": (48, 25, 1600)}

# The per-layer tensors in llm.c's order: model-file name and the parameter of a Block holding layer l's slice.
LAYER_TENSORS = [("ln1w", "ln1.weight"), ("ln1b", "ln1.bias"), ("qkvw", "qkv.weight"), ("qkvb", "qkv.bias"),
                 ("attprojw", "attproj.weight"), ("attprojb", "attproj.bias"), ("ln2w", "ln2.weight"),
                 ("ln2b", "ln2.bias"), ("fcw", "fc.weight"), ("fcb", "fc.bias"), ("fcprojw", "fcproj.weight"),
                 ("fcprojb", "fcproj.bias")]
TENSOR_NAMES = ["wte", "wpe"] + [name for name, _ in LAYER_TENSORS] + ["lnfw", "lnfb"]


class GPTConfig:
    """GPT-2 configuration: the fields of an llm.c model header."""

    def __init__(self, max_seq_len, vocab_size, padded_vocab_size, num_layers, num_heads, channels):
        self.max_seq_len = max_seq_len
        self.vocab_size = vocab_size
        self.padded_vocab_size = padded_vocab_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.channels = channels

    @staticmethod
    def preset(name):
        if name not in PRESETS:
            raise ValueError(f"unknown GPT-2 model '{name}' (expected one of {', '.join(PRESETS)} or a model file)")
        layers, heads, channels = PRESETS[name]
        return GPTConfig(1024, 50257, 50304, layers, heads, channels)

    def tensor_shapes(self):
        """Shapes of the parameter tensors in llm.c's order (core/gpt2_model.h gpt2_param_layout)."""
        L, C, Vp, maxT = self.num_layers, self.channels, self.padded_vocab_size, self.max_seq_len
        per_layer = {"ln1w": (L, C), "ln1b": (L, C), "qkvw": (L, 3 * C, C), "qkvb": (L, 3 * C),
                     "attprojw": (L, C, C), "attprojb": (L, C), "ln2w": (L, C), "ln2b": (L, C),
                     "fcw": (L, 4 * C, C), "fcb": (L, 4 * C), "fcprojw": (L, C, 4 * C), "fcprojb": (L, C)}
        shapes = [("wte", (Vp, C)), ("wpe", (maxT, C))]
        shapes += [(name, per_layer[name]) for name, _ in LAYER_TENSORS]
        return shapes + [("lnfw", (C,)), ("lnfb", (C,))]

    def num_parameters(self):
        return sum(math.prod(shape) for _, shape in self.tensor_shapes())

    def describe(self):
        return (f"L={self.num_layers} NH={self.num_heads} C={self.channels} V={self.vocab_size} "
                f"Vp={self.padded_vocab_size} maxT={self.max_seq_len}")


def read_model_tensors(path, magic, family, config_from_header, other_families=()):
    """Reads a model file in llm.c's layout: 256 int32 header words, [0] = magic, [1] = version (3: fp32
    parameters, 5: bf16), then the parameters in the order of config.tensor_shapes(). config_from_header(header)
    returns the configuration of the header words (a numpy int32 array), raising ValueError(reason) when they
    are not a valid one. other_families: (magic, message) pairs naming another family's files. Returns (config,
    version, tensors): the tensors as float32 numpy arrays (bf16 widened exactly). Raises ValueError naming the file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(MODEL_FILE_HEADER_INTS * 4), dtype="<i4")
        if header.size != MODEL_FILE_HEADER_INTS:
            raise ValueError(f"'{path}': short read of the 1024-byte model header")
        for other_magic, message in other_families:
            if header[0] == other_magic:
                raise ValueError(f"'{path}': {message}")
        if header[0] != magic:
            raise ValueError(f"'{path}' is not a {family} model file: magic {header[0]}, expected {magic}")
        version = int(header[1])
        if version not in (3, 5):
            raise ValueError(f"'{path}': unsupported model file version {version} (3 = fp32, 5 = bf16)")
        try:
            cfg = config_from_header(header)
        except ValueError as e:
            raise ValueError(f"'{path}': bad {family} model header: {e}") from None
        n = cfg.num_parameters()
        expected = MODEL_FILE_HEADER_INTS * 4 + n * (4 if version == 3 else 2)
        if size != expected:
            raise ValueError(f"'{path}': file is {size} bytes but its header (version {version}, {n} parameters) "
                             f"needs exactly {expected} ({'truncated' if size < expected else 'trailing bytes'})")
        if version == 3:
            flat = np.fromfile(f, dtype="<f4", count=n)
        else:
            flat = (np.fromfile(f, dtype="<u2", count=n).astype(np.uint32) << 16).view(np.float32)
    tensors, offset = [], 0
    for _, shape in cfg.tensor_shapes():
        count = math.prod(shape)
        tensors.append(flat[offset:offset + count].reshape(shape))
        offset += count
    return cfg, version, tensors


def gpt2_config_from_header(header):
    """The GPTConfig of a GPT-2 model header (words 2..7), or ValueError."""
    cfg = GPTConfig(*(int(x) for x in (header[2], header[3], header[7], header[4], header[5], header[6])))
    if min(cfg.max_seq_len, cfg.vocab_size, cfg.num_layers, cfg.num_heads, cfg.channels) <= 0 \
            or cfg.padded_vocab_size < cfg.vocab_size or cfg.channels % cfg.num_heads != 0:
        raise ValueError(cfg.describe())
    return cfg


def read_model_file(path):
    """Reads an llm.c model file (version 3 fp32 or 5 bf16). Returns (config, version, tensors): the tensors
    as float32 numpy arrays in llm.c's order (bf16 widened exactly). Raises ValueError naming the file."""
    return read_model_tensors(path, MODEL_FILE_MAGIC, "GPT-2", gpt2_config_from_header, (
        (LLAMA_MODEL_FILE_MAGIC, "this is a Llama model file, not a GPT-2 one; use dev/bench/torch_llama.py"),))


class LlmcTensors:
    """Mixin of the peers' models (GPT here, Llama in torch_llama.py): the model file's tensors, named by the
    class attribute tensor_names, as lists of the model's parameters given by llmc_views() (one parameter for a
    whole tensor, or one per layer for a per-layer tensor [L, ...])."""
    tensor_names = ()

    def llmc_views(self):
        raise NotImplementedError

    @torch.no_grad()
    def load_llmc(self, tensors):
        """Copies the model file's tensors (numpy or torch, the file's shapes and order) into the parameters."""
        for parts, value in zip(self.llmc_views(), tensors):
            value = torch.as_tensor(np.asarray(value))
            if len(parts) == 1:
                parts[0].copy_(value)
            else:
                for layer, p in enumerate(parts):
                    p.copy_(value[layer])

    def llmc_gradients(self):
        """The gradients as the model file's tensors (per-layer gradients stacked), after backward."""
        grads = []
        for name, parts in zip(self.tensor_names, self.llmc_views()):
            if any(p.grad is None for p in parts):
                raise RuntimeError(f"tensor {name} has no gradient: run backward first")
            grads.append(parts[0].grad if len(parts) == 1 else torch.stack([p.grad for p in parts]))
        return grads


class Block(nn.Module):
    """One pre-LN transformer block: x + attn(ln1(x)), then + mlp(ln2(x)). x [B, T, C]."""

    def __init__(self, cfg):
        super().__init__()
        C = cfg.channels
        self.num_heads = cfg.num_heads
        self.ln1 = nn.LayerNorm(C, eps=LAYERNORM_EPS)
        self.qkv = nn.Linear(C, 3 * C)
        self.attproj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C, eps=LAYERNORM_EPS)
        self.fc = nn.Linear(C, 4 * C)
        self.fcproj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        # qkv [B, T, 3C] holds q | k | v, head h at channels [h*hs, (h+1)*hs) of each: view as [3, B, NH, T, hs]
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, NH, T, hs]
        x = x + self.attproj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(LlmcTensors, nn.Module):
    """GPT-2 with the classifier tied to wte [Vp, C]; forward returns the mean loss over the first V logits."""
    tensor_names = TENSOR_NAMES

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Parameter(torch.empty(cfg.padded_vocab_size, cfg.channels))
        self.wpe = nn.Parameter(torch.empty(cfg.max_seq_len, cfg.channels))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.lnf = nn.LayerNorm(cfg.channels, eps=LAYERNORM_EPS)

    def forward(self, inputs, targets):
        """inputs, targets [B, T] token ids < V; returns the mean cross-entropy (a scalar)."""
        T = inputs.shape[1]
        x = F.embedding(inputs, self.wte) + self.wpe[:T]
        for block in self.blocks:
            x = block(x)
        return self.head_loss(x, targets)

    def head_loss(self, x, targets):
        """Final LayerNorm, tied classifier and the mean cross-entropy over the first V logits. x [B, T, C]."""
        logits = self.lnf(x) @ self.wte.t()  # [B, T, Vp]
        V = self.cfg.vocab_size
        return F.cross_entropy(logits[..., :V].reshape(-1, V), targets.reshape(-1))

    def llmc_views(self):
        """The 16 llm.c tensors as lists of this model's parameters: one for the whole tensor, or one per layer."""
        views = [[self.wte], [self.wpe]]
        views += [[block.get_parameter(path) for block in self.blocks] for _, path in LAYER_TENSORS]
        return views + [[self.lnf.weight], [self.lnf.bias]]

    @torch.no_grad()
    def init_gpt2(self, seed):
        """GPT-2 init as core/gpt2_model.h: N(0, 0.02) weights, N(0, 0.02/sqrt(2L)) for the projections into
        the residual stream (attproj, fcproj), zero biases, unit LN gains, zero padded rows wte[V..Vp)."""
        gen = torch.Generator().manual_seed(seed)
        resid_std = INIT_STD / math.sqrt(2 * self.cfg.num_layers)
        for name, p in self.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if name.endswith("weight") else 0.0)  # the 1-D weights are the LayerNorm gains
            else:
                std = resid_std if name.endswith(("attproj.weight", "fcproj.weight")) else INIT_STD
                p.copy_(torch.randn(p.shape, generator=gen) * std)
        self.wte[self.cfg.vocab_size:].zero_()


def configure_optimizer(model, lr, weight_decay, beta1, beta2, eps, fused):
    """AdamW with decoupled weight decay on the 2-D parameters only (wte, wpe and the linear weights)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(beta1, beta2), eps=eps, fused=fused)


def lr_at(step, lr, warmup, max_steps, final_frac):
    """Learning rate of optimizer step `step` (0-based): core/lr_schedule.h lr_schedule_at."""
    if step < warmup:
        return lr * (step + 1) / warmup
    min_lr = final_frac * lr
    if step >= max_steps or max_steps == warmup:
        return min_lr
    progress = (step - warmup) / (max_steps - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def flops_per_token(cfg, T):
    """6*N + 6*L*T*C (module docstring)."""
    return 6 * cfg.num_parameters() + 6 * cfg.num_layers * T * cfg.channels


def shard_token_count(path):
    """Token count N of a shard, its header and exact length checked. Raises ValueError naming the file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = np.fromfile(f, dtype="<i4", count=SHARD_HEADER_INTS)
    if header.size != SHARD_HEADER_INTS or header[0] != SHARD_MAGIC or header[1] != SHARD_VERSION:
        raise ValueError(f"'{path}' is not a token shard (expected header [{SHARD_MAGIC}, {SHARD_VERSION}, N, ...])")
    n = int(header[2])
    if size != SHARD_HEADER_INTS * 4 + 2 * n:
        raise ValueError(f"'{path}': header says {n} tokens, so {SHARD_HEADER_INTS * 4 + 2 * n} bytes, but the file is {size}")
    return n


def read_shard(path, vocab_size):
    """Tokens of one shard as an int64 numpy array, every id checked against vocab_size. Raises ValueError."""
    n = shard_token_count(path)
    tokens = np.fromfile(path, dtype="<u2", count=n, offset=SHARD_HEADER_INTS * 4).astype(np.int64)
    if n > 0 and tokens.max() >= vocab_size:
        bad = int(np.argmax(tokens >= vocab_size))
        raise ValueError(f"'{path}': token {int(tokens[bad])} at index {bad} is not below the vocabulary size {vocab_size}")
    return tokens


class ShardLoader:
    """Sequential windows of B*T+1 tokens over the shards matching a glob (one rank, no shuffling)."""

    def __init__(self, pattern, B, T, vocab_size):
        self.paths = sorted(glob.glob(pattern))
        if not self.paths:
            raise ValueError(f"--data: no file matches '{pattern}'")
        self.B, self.T, self.vocab_size = B, T, vocab_size
        windows = [(shard_token_count(p) - 1) // (B * T) for p in self.paths]
        if sum(windows) == 0:
            raise ValueError(f"--data: the shards matching '{pattern}' hold no window of B*T+1 = {B * T + 1} tokens")
        self.shard = -1
        self._next_shard()  # the first shard is read (and checked) now, the others when reached

    def _next_shard(self):
        self.shard = (self.shard + 1) % len(self.paths)
        self.tokens, self.window = read_shard(self.paths[self.shard], self.vocab_size), 0

    def next_batch(self):
        """(inputs, targets), each a [B, T] int64 CPU tensor."""
        BT = self.B * self.T
        while (self.window + 1) * BT + 1 > len(self.tokens):
            self._next_shard()
        w = torch.from_numpy(self.tokens[self.window * BT:(self.window + 1) * BT + 1])
        self.window += 1
        return w[:-1].view(self.B, self.T), w[1:].view(self.B, self.T)


class RandomTokens:
    """Uniform random windows (benchmarks): B*T+1 tokens per batch from a seeded generator."""

    def __init__(self, B, T, vocab_size, seed):
        self.B, self.T, self.vocab_size = B, T, vocab_size
        self.gen = torch.Generator().manual_seed(seed)

    def next_batch(self):
        w = torch.randint(0, self.vocab_size, (self.B * self.T + 1,), generator=self.gen)
        return w[:-1].view(self.B, self.T), w[1:].view(self.B, self.T)


def make_parser(description=__doc__.split("\n")[0], model_default="d12",
                model_help="d12|d24|d36|d48 (GPT-2 init from --seed) or an llm.c model file"):
    """The command line shared by the PyTorch peers (dev/bench/torch_llama.py adds its own flags to it)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default=model_default, help=model_help)
    p.add_argument("--data", default="random", help="glob of token shards, or 'random' (default)")
    p.add_argument("-b", "--batch", type=int, default=4, help="micro-batch size B")
    p.add_argument("-t", "--seq-len", type=int, default=1024, help="sequence length T")
    p.add_argument("-d", "--total-batch", type=int, default=0, help="tokens per optimizer step (default B*T)")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=0, help="linear warmup steps")
    p.add_argument("--final-lr-frac", type=float, default=1.0, help="final lr fraction, reached by cosine decay")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--grad-clip", type=float, default=1.0, help="global-norm clip (0 = off)")
    p.add_argument("--seed", type=int, default=1337, help="init (for a preset) and random tokens")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help="autocast dtype of the matmuls (fp32: TF32 matmuls)")
    p.add_argument("--compile", choices=["blocks", "full", "none"], default="blocks",
                   help="torch.compile each block and the head (blocks, compiles one block once), the whole model, or nothing")
    p.add_argument("--timing-skip", type=int, default=5, help="first steps left out of the summary (compilation)")
    p.add_argument("--save-losses", default=None, help="write '<step> <loss>' per line to this file")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def parse_args(argv, parser=None):
    """Parses and checks the command line (parser: make_parser()'s, or a peer's extension of it)."""
    p = parser if parser is not None else make_parser()
    args = p.parse_args(argv)
    checks = [(args.batch > 0, "-b must be positive"), (args.seq_len > 0, "-t must be positive"),
              (args.steps > 0, "--steps must be positive"), (args.lr > 0, "--lr must be positive"),
              (0 <= args.warmup <= args.steps, "--warmup must be in [0, --steps]"),
              (0.0 <= args.final_lr_frac <= 1.0, "--final-lr-frac must be in [0, 1]"),
              (args.grad_clip >= 0, "--grad-clip must be >= 0"), (args.timing_skip >= 0, "--timing-skip must be >= 0")]
    for ok, message in checks:
        if not ok:
            p.error(message)
    if args.total_batch == 0:
        args.total_batch = args.batch * args.seq_len
    if args.total_batch % (args.batch * args.seq_len) != 0:
        p.error(f"-d {args.total_batch} is not a multiple of B*T = {args.batch * args.seq_len}")
    return args


def build_model(args):
    """The model on the device, initialized from the preset or loaded from the model file."""
    if args.model in PRESETS:
        cfg = GPTConfig.preset(args.model)
        model = GPT(cfg)
        model.init_gpt2(args.seed)
        source = f"GPT-2 init, seed {args.seed}"
    elif not os.path.isfile(args.model):
        raise ValueError(f"--model '{args.model}' is neither a preset ({', '.join(PRESETS)}) nor a model file")
    else:
        cfg, version, tensors = read_model_file(args.model)
        model = GPT(cfg)
        model.load_llmc(tensors)
        source = f"{args.model} (version {version})"
    if args.seq_len > cfg.max_seq_len:
        raise ValueError(f"-t {args.seq_len} exceeds the model's max_seq_len {cfg.max_seq_len}")
    return cfg, model.to(args.device), source


def train(args, build=build_model):
    """Runs the steps and prints one line per step and the summary. build(args) -> (cfg, model on the device,
    source): the model has .blocks (compiled one by one with --compile blocks) and .head_loss, forward(inputs,
    targets) returns the mean loss; cfg has vocab_size, num_layers, channels, num_parameters() and describe()."""
    cfg, model, source = build(args)
    if args.data == "random":
        loader = RandomTokens(args.batch, args.seq_len, cfg.vocab_size, args.seed)
    else:
        loader = ShardLoader(args.data, args.batch, args.seq_len, cfg.vocab_size)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    on_gpu = device.type == "cuda"
    optimizer = configure_optimizer(model, args.lr, args.weight_decay, args.beta1, args.beta2, args.eps, fused=on_gpu)
    if args.compile == "full":
        step_model = torch.compile(model)
    else:
        if args.compile == "blocks":  # regional compilation: one graph for every block, one for the head
            for block in model.blocks:
                block.compile()
            model.head_loss = torch.compile(model.head_loss)
        step_model = model
    accum = args.total_batch // (args.batch * args.seq_len)
    autocast_dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    flops_step = flops_per_token(cfg, args.seq_len) * args.total_batch
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(device) if on_gpu else args.device}")
    print(f"model {cfg.describe()}, {cfg.num_parameters()} parameters, from {source}")
    print(f"B={args.batch} T={args.seq_len} accumulation {accum} -> {args.total_batch} tokens/step, data {args.data}, "
          f"autocast {args.dtype}, compile {args.compile}, fused AdamW {on_gpu}")
    print(f"FLOPs/token 6*N + 6*L*T*C = {flops_per_token(cfg, args.seq_len):.4e}; MFU against {PEAK_FLOPS:.3e} FLOP/s")
    losses, times = [], []
    for step in range(args.steps):
        if on_gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        for _ in range(accum):
            inputs, targets = loader.next_batch()
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=autocast_dtype, enabled=args.dtype == "bf16"):
                loss = step_model(inputs, targets)
            (loss / accum).backward()
            loss_sum += loss.detach()
        norm = nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip if args.grad_clip > 0 else float("inf"))
        lr = lr_at(step, args.lr, args.warmup, args.steps, args.final_lr_frac)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_loss = loss_sum.item() / accum
        if on_gpu:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        losses.append(step_loss)
        times.append(dt)
        tok_s = args.total_batch / dt
        print(f"step {step + 1:5d}/{args.steps} | loss {step_loss:.6f} | norm {norm.item():.4f} | lr {lr:.3e} | "
              f"{dt * 1e3:8.1f} ms | {tok_s:9.0f} tok/s | MFU {100 * flops_step / dt / PEAK_FLOPS:5.1f}%", flush=True)
    if args.save_losses:
        with open(args.save_losses, "w") as f:
            f.writelines(f"{i + 1} {l:.6f}\n" for i, l in enumerate(losses))
    timed = times[args.timing_skip:]
    if timed:
        mean = sum(timed) / len(timed)
        peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if on_gpu else 0.0
        print(f"summary: {len(timed)} steps after {args.timing_skip} skipped: {mean * 1e3:.1f} ms/step, "
              f"{args.total_batch / mean:.0f} tok/s, MFU {100 * flops_step / mean / PEAK_FLOPS:.1f}%, "
              f"peak memory {peak_mem:.1f} GiB")


def main(argv, parser=None, build=build_model):
    args = parse_args(argv, parser)
    try:
        train(args, build)
    except (ValueError, OSError) as e:  # bad model file, shard or flag combination: the message names it
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
