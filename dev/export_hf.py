#!/usr/bin/env python3
"""Hugging Face interoperability: a model file of train_gpt / train_llama <-> a Hugging Face folder.

    python3 dev/export_hf.py export MODEL_FILE OUT_DIR [--dtype f32|bf16] [--force] [--drop-padding]
    python3 dev/export_hf.py import HF_DIR MODEL_FILE [--version 3|5] [--padded-vocab N] [--force]

export writes OUT_DIR/config.json and OUT_DIR/model.safetensors: a GPT-2 model file (magic 20240326) as
GPT2LMHeadModel, a Llama model file (magic 20261208) as LlamaForCausalLM. Tensor data keep the file's
precision (version 3 -> F32, version 5 -> BF16) unless --dtype says otherwise (f32 -> bf16 rounds to
nearest even, as core/checkpoint.h; bf16 -> f32 is exact). import reads config.json and model.safetensors
(or a sharded model.safetensors.index.json) and writes the model file, version 3 (fp32, the default) or 5
(bf16). Export then import with the matching version reproduces the model file byte for byte.

Standard library only (no numpy, torch or safetensors): the safetensors format is written and read here.
A safetensors file is an 8-byte little-endian header length N, N bytes of JSON {name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the tensors' raw little-endian bytes,
offsets relative to the end of the header, contiguous from 0 to the end of the file. Written here: F32 or
BF16, the header padded with spaces so the data start at a multiple of 8, metadata {"format": "pt"}.

Tensor names (i = layer; "rows a:b" = rows of the per-layer slice of a model-file tensor; Conv1D = stored
transposed, [in, out], as Hugging Face's GPT-2 keeps them):
  GPT-2 (llm.c order)                 GPT2LMHeadModel
    wte [Vp, C] rows 0:V              transformer.wte.weight [V, C]   (lm_head.weight is tied to it, not stored)
    wpe [maxT, C]                     transformer.wpe.weight [maxT, C]
    ln1w, ln1b [L, C]                 transformer.h.i.ln_1.weight, .bias [C]
    qkvw [L, 3C, C]                   transformer.h.i.attn.c_attn.weight [C, 3C]  (Conv1D; q | k | v columns,
                                      head h at [h*HS, (h+1)*HS) of each: the split of GPT2Attention)
    qkvb [L, 3C]                      transformer.h.i.attn.c_attn.bias [3C]
    attprojw [L, C, C]                transformer.h.i.attn.c_proj.weight [C, C]  (Conv1D)
    attprojb [L, C]                   transformer.h.i.attn.c_proj.bias [C]
    ln2w, ln2b [L, C]                 transformer.h.i.ln_2.weight, .bias [C]
    fcw [L, 4C, C]                    transformer.h.i.mlp.c_fc.weight [C, 4C]  (Conv1D)
    fcb [L, 4C]                       transformer.h.i.mlp.c_fc.bias [4C]
    fcprojw [L, C, 4C]                transformer.h.i.mlp.c_proj.weight [4C, C]  (Conv1D)
    fcprojb [L, C]                    transformer.h.i.mlp.c_proj.bias [C]
    lnfw, lnfb [C]                    transformer.ln_f.weight, .bias [C]
  Llama (llama_model.h)               LlamaForCausalLM (HS = C / NH)
    wte [Vp, C] rows 0:V              model.embed_tokens.weight [V, C]
    attn_norm [L, C]                  model.layers.i.input_layernorm.weight [C]
    qkvw [L, (NH+2NKV)*HS, C]         rows 0:NH*HS -> model.layers.i.self_attn.q_proj.weight [NH*HS, C],
                                      rows NH*HS:(NH+NKV)*HS -> .k_proj.weight [NKV*HS, C],
                                      rows (NH+NKV)*HS:(NH+2NKV)*HS -> .v_proj.weight [NKV*HS, C]
                                      (no permutation: both sides use the rotate_half RoPE convention)
    attn_outw [L, C, C]               model.layers.i.self_attn.o_proj.weight [C, C]
    ffn_norm [L, C]                   model.layers.i.post_attention_layernorm.weight [C]
    gate_upw [L, 2F, C]               rows 0:F -> model.layers.i.mlp.gate_proj.weight [F, C],
                                      rows F:2F -> model.layers.i.mlp.up_proj.weight [F, C]
    downw [L, C, F]                   model.layers.i.mlp.down_proj.weight [C, F]
    final_norm [C]                    model.norm.weight [C]
    lm_head [Vp, C] rows 0:V          lm_head.weight [V, C]  (tie_word_embeddings false)

Padded vocabulary: Hugging Face has no padded rows, so wte (and Llama's lm_head) are exported with their
V real rows; config.json records Vp as "llmc_padded_vocab_size" and import restores rows V..Vp as zeros
(the trainers keep them zero). export refuses a file whose padded rows are not all zero bits (they would
be lost) unless --drop-padding. import takes Vp from --padded-vocab, else from config.json's
"llmc_padded_vocab_size", else V rounded up to a multiple of 128.

config.json: the architecture's fields from the header (GPT-2: vocab_size, n_positions = max_seq_len, n_embd,
n_layer, n_head, activation_function gelu_new (the tanh GELU of our kernels), layer_norm_epsilon 1e-5,
tie_word_embeddings true; Llama: vocab_size, hidden_size, intermediate_size, num_attention_heads,
num_key_value_heads, head_dim, num_hidden_layers, max_position_embeddings, rms_norm_eps, rope_theta (also as
rope_parameters {"rope_type": "default", "rope_theta"} for transformers 5), hidden_act silu, attention_bias and
mlp_bias false, tie_word_embeddings false), torch_dtype, and llmc_padded_vocab_size. The Llama header's
rope_theta and norm_eps are float32 bits; they are written as the JSON number of that float32's exact
value (repr of the float widened to double) and read back by rounding to float32, so they round-trip bit
for bit. import also accepts configs written by transformers (GPT-2 names without "transformer.", a tied
lm_head.weight equal to the embedding, a tied Llama without lm_head.weight) and refuses what our models
cannot represent (rope scaling, biases, other activations, an untied GPT-2 head, ...).

Errors: one line "export_hf.py: error: ..." naming the file (and tensor), exit status 1. Everything is
checked before anything is written; outputs are written under temporary names (<name>.tmp.<pid>) and
renamed into place at the end, and a failure removes them (and an OUT_DIR this run created). export refuses
an OUT_DIR that exists and is not empty, import an existing MODEL_FILE, unless --force.
"""
import argparse
import array
import json
import os
import re
import struct
import sys

PROG = "export_hf.py"
GPT2_MAGIC = 20240326
LLAMA_MAGIC = 20261208
VERSION_FP32 = 3
VERSION_BF16 = 5
HEADER_INTS = 256
HEADER_BYTES = 4 * HEADER_INTS
MAX_ELEMENTS = 1 << 40  # core/param_table.h's PARAM_TABLE_MAX_ELEMENTS
ST_MAX_HEADER = 100 * 1000 * 1000  # the safetensors library's limit on the JSON header
ST_ITEMSIZE = {"F32": 4, "BF16": 2}  # the dtypes read and written here
ST_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "I16": 16, "U16": 16,
           "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64, "C64": 64}
TORCH_DTYPE = {"F32": "float32", "BF16": "bfloat16"}
GPT2_ARCH = "GPT2LMHeadModel"
LLAMA_ARCH = "LlamaForCausalLM"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
PAD_MULTIPLE = 128  # default padding of the vocabulary on import (llm.c pads 50257 to 50304 = 393 * 128)
GPT2_BUFFER = re.compile(r"(transformer\.)?h\.[0-9]+\.attn\.(bias|masked_bias)")
EOT = 50256  # GPT-2's end-of-text token: the bos/eos id written when the vocabulary has it
COPY_CHUNK = 1 << 24  # bytes copied at a time
BIG_ENDIAN = sys.byteorder == "big"


class HFError(Exception):
    """An error reported as one line "export_hf.py: error: <message>" with exit status 1."""


# ----------------------------------------------------------------------------
# Floats and element conversions

def f32_from_bits(bits):
    """The float32 with these 32 bits, as a Python float (exact)."""
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


def f32_bits(value, what):
    """The bits of a Python number rounded to float32 (to nearest); HFError when it does not fit."""
    try:
        return struct.unpack("<I", struct.pack("<f", float(value)))[0]
    except (OverflowError, ValueError, TypeError):
        raise HFError(f"{what}: {value!r} is not a float32 number")


def _u32(data):
    a = array.array("I")
    a.frombytes(data)
    if BIG_ENDIAN:
        a.byteswap()
    return a


def _to_bytes(a):
    if BIG_ENDIAN:
        a = array.array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def f32_to_bf16(data):
    """Little-endian float32 bytes -> bfloat16 bytes, rounded to nearest even (NaN stays a quiet NaN with its
    sign): exactly kernels/formats.h's bf16_bits_from_float_rne, as the model-file writer uses. Pure Python:
    about 0.2 s per million values (20 s for GPT-2 124M)."""
    out = []
    step = 4 << 20
    for pos in range(0, len(data), step):
        a = array.array("H", [((u >> 16) | 0x40) if (u & 0x7FFFFFFF) > 0x7F800000 else
                              ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) for u in _u32(data[pos:pos + step])])
        out.append(_to_bytes(a))
    return b"".join(out)


def bf16_to_f32(data):
    """Little-endian bfloat16 bytes -> float32 bytes (exact: the bf16 bits are the float32's upper half)."""
    out = bytearray(2 * len(data))
    out[2::4] = data[0::2]
    out[3::4] = data[1::2]
    return bytes(out)


def convert(data, src, dst):
    """Element bytes from safetensors dtype src to dst (F32 or BF16)."""
    if src == dst:
        return data
    return f32_to_bf16(data) if dst == "BF16" else bf16_to_f32(data)


def transpose(data, rows, cols, itemsize):
    """Row-major [rows, cols] elements of itemsize bytes -> [cols, rows] (items are moved whole, so the byte
    order does not matter)."""
    if rows == 1 or cols == 1:
        return data
    a = array.array("I" if itemsize == 4 else "H")
    a.frombytes(data)
    out = array.array(a.typecode)
    for j in range(cols):
        out.extend(a[j::cols])
    return out.tobytes()


# ----------------------------------------------------------------------------
# Model configurations and parameter tables (gpt2_model.h, llama_model.h)

GPT2_FIELDS = (("max_seq_len", 2, 1 << 20), ("vocab_size", 3, 1 << 24), ("num_layers", 4, 4096),
               ("num_heads", 5, 1 << 16), ("channels", 6, 1 << 16), ("padded_vocab_size", 7, 1 << 24))
LLAMA_INT_FIELDS = GPT2_FIELDS + (("num_kv_heads", 8, 1 << 16), ("ffn_hidden", 9, 1 << 18))
LLAMA_MAX_ROPE_THETA_BITS = 0x5368D4A5  # 1e12f, llama_model.h's LLAMA_MAX_ROPE_THETA


class ModelConfig:
    """A model file's configuration: family ("gpt2" / "llama") and its fields (ints; Llama's rope_theta_bits
    and norm_eps_bits are the float32 bits of the header words 10 and 11)."""

    def __init__(self, family, **fields):
        self.family = family
        self.__dict__.update(fields)

    def header(self, version):
        h = [0] * HEADER_INTS
        h[0] = GPT2_MAGIC if self.family == "gpt2" else LLAMA_MAGIC
        h[1] = version
        for name, word, _ in (GPT2_FIELDS if self.family == "gpt2" else LLAMA_INT_FIELDS):
            h[word] = getattr(self, name)
        if self.family == "llama":
            h[10] = self.rope_theta_bits
            h[11] = self.norm_eps_bits
        return struct.pack("<256I", *[w & 0xFFFFFFFF for w in h])

    @property
    def arch(self):
        return GPT2_ARCH if self.family == "gpt2" else LLAMA_ARCH


def validate_config(cfg):
    """Checks a configuration as gpt2_config_validate / llama_config_validate do. Returns an error string or
    None."""
    fields = GPT2_FIELDS if cfg.family == "gpt2" else LLAMA_INT_FIELDS
    for name, _, hi in fields:
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= hi:
            return f"{name} {v} is outside 1..{hi}"
    if cfg.padded_vocab_size < cfg.vocab_size:
        return f"padded_vocab_size {cfg.padded_vocab_size} is smaller than vocab_size {cfg.vocab_size}"
    if cfg.family == "llama":
        theta, eps = f32_from_bits(cfg.rope_theta_bits), f32_from_bits(cfg.norm_eps_bits)
        if not (1.0 < theta <= f32_from_bits(LLAMA_MAX_ROPE_THETA_BITS)):
            return f"rope_theta {theta!r} is outside (1, 1e12]"
        if not (0.0 < eps < 1.0):
            return f"norm_eps {eps!r} is outside (0, 1)"
        if cfg.num_heads % cfg.num_kv_heads != 0:
            return f"num_heads {cfg.num_heads} must be a multiple of num_kv_heads {cfg.num_kv_heads}"
    if cfg.channels % cfg.num_heads != 0:
        return f"channels {cfg.channels} must be a multiple of num_heads {cfg.num_heads}"
    if cfg.family == "llama" and (cfg.channels // cfg.num_heads) % 2 != 0:
        return f"head size {cfg.channels // cfg.num_heads} must be even for RoPE"
    return None


def param_table(cfg):
    """The parameter tensors in model-file order: [(name, shape, per_layer)], as gpt2_param_table /
    llama_param_table."""
    Vp, L, C = cfg.padded_vocab_size, cfg.num_layers, cfg.channels
    if cfg.family == "gpt2":
        T = cfg.max_seq_len
        return [("wte", (Vp, C), False), ("wpe", (T, C), False),
                ("ln1w", (L, C), True), ("ln1b", (L, C), True),
                ("qkvw", (L, 3 * C, C), True), ("qkvb", (L, 3 * C), True),
                ("attprojw", (L, C, C), True), ("attprojb", (L, C), True),
                ("ln2w", (L, C), True), ("ln2b", (L, C), True),
                ("fcw", (L, 4 * C, C), True), ("fcb", (L, 4 * C), True),
                ("fcprojw", (L, C, 4 * C), True), ("fcprojb", (L, C), True),
                ("lnfw", (C,), False), ("lnfb", (C,), False)]
    HS, F = C // cfg.num_heads, cfg.ffn_hidden
    QKV = (cfg.num_heads + 2 * cfg.num_kv_heads) * HS
    return [("wte", (Vp, C), False), ("attn_norm", (L, C), True), ("qkvw", (L, QKV, C), True),
            ("attn_outw", (L, C, C), True), ("ffn_norm", (L, C), True), ("gate_upw", (L, 2 * F, C), True),
            ("downw", (L, C, F), True), ("final_norm", (C,), False), ("lm_head", (Vp, C), False)]


def prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


class Piece:
    """One Hugging Face tensor: rows [r0, r1) of layer `layer` (None: not per layer) of the model-file tensor
    `src`, stored as `hf_shape`, transposed (Conv1D) when `conv1d`."""

    def __init__(self, name, src, layer, r0, r1, hf_shape, conv1d=False):
        self.name, self.src, self.layer, self.r0, self.r1 = name, src, layer, r0, r1
        self.hf_shape, self.conv1d = tuple(hf_shape), conv1d


def hf_pieces(cfg):
    """The Hugging Face tensors of a configuration, in the order they are written, each mapped to a row range
    of a model-file tensor (the table at the top of this file)."""
    V, L, C = cfg.vocab_size, cfg.num_layers, cfg.channels
    P = []
    if cfg.family == "gpt2":
        P.append(Piece("transformer.wte.weight", "wte", None, 0, V, (V, C)))
        P.append(Piece("transformer.wpe.weight", "wpe", None, 0, cfg.max_seq_len, (cfg.max_seq_len, C)))
        for i in range(L):
            h = f"transformer.h.{i}."
            P += [Piece(h + "ln_1.weight", "ln1w", i, 0, C, (C,)), Piece(h + "ln_1.bias", "ln1b", i, 0, C, (C,)),
                  Piece(h + "attn.c_attn.weight", "qkvw", i, 0, 3 * C, (C, 3 * C), True),
                  Piece(h + "attn.c_attn.bias", "qkvb", i, 0, 3 * C, (3 * C,)),
                  Piece(h + "attn.c_proj.weight", "attprojw", i, 0, C, (C, C), True),
                  Piece(h + "attn.c_proj.bias", "attprojb", i, 0, C, (C,)),
                  Piece(h + "ln_2.weight", "ln2w", i, 0, C, (C,)), Piece(h + "ln_2.bias", "ln2b", i, 0, C, (C,)),
                  Piece(h + "mlp.c_fc.weight", "fcw", i, 0, 4 * C, (C, 4 * C), True),
                  Piece(h + "mlp.c_fc.bias", "fcb", i, 0, 4 * C, (4 * C,)),
                  Piece(h + "mlp.c_proj.weight", "fcprojw", i, 0, C, (4 * C, C), True),
                  Piece(h + "mlp.c_proj.bias", "fcprojb", i, 0, C, (C,))]
        P += [Piece("transformer.ln_f.weight", "lnfw", None, 0, C, (C,)),
              Piece("transformer.ln_f.bias", "lnfb", None, 0, C, (C,))]
        return P
    NH, NKV, F = cfg.num_heads, cfg.num_kv_heads, cfg.ffn_hidden
    HS = C // NH
    P.append(Piece("model.embed_tokens.weight", "wte", None, 0, V, (V, C)))
    for i in range(L):
        m = f"model.layers.{i}."
        q, k = NH * HS, (NH + NKV) * HS
        P += [Piece(m + "input_layernorm.weight", "attn_norm", i, 0, C, (C,)),
              Piece(m + "self_attn.q_proj.weight", "qkvw", i, 0, q, (NH * HS, C)),
              Piece(m + "self_attn.k_proj.weight", "qkvw", i, q, k, (NKV * HS, C)),
              Piece(m + "self_attn.v_proj.weight", "qkvw", i, k, k + NKV * HS, (NKV * HS, C)),
              Piece(m + "self_attn.o_proj.weight", "attn_outw", i, 0, C, (C, C)),
              Piece(m + "post_attention_layernorm.weight", "ffn_norm", i, 0, C, (C,)),
              Piece(m + "mlp.gate_proj.weight", "gate_upw", i, 0, F, (F, C)),
              Piece(m + "mlp.up_proj.weight", "gate_upw", i, F, 2 * F, (F, C)),
              Piece(m + "mlp.down_proj.weight", "downw", i, 0, C, (C, F))]
    P += [Piece("model.norm.weight", "final_norm", None, 0, C, (C,)),
          Piece("lm_head.weight", "lm_head", None, 0, V, (V, C))]
    return P


class Layout:
    """Where every tensor of a configuration lies in the model file: offsets (elements) of each table row,
    the per-layer slice size, and the row size (elements per row of a per-layer slice)."""

    def __init__(self, cfg):
        self.table = param_table(cfg)
        self.info = {}
        offset = 0
        for name, shape, per_layer in self.table:
            n = prod(shape)
            layer_shape = shape[1:] if per_layer else shape
            row = prod(layer_shape[1:]) if len(layer_shape) > 1 else 1
            self.info[name] = (offset, prod(layer_shape), row, layer_shape[0])
            offset += n
        self.num_parameters = offset

    def span(self, piece):
        """(first element, element count) of a piece's rows in the flat parameter buffer."""
        offset, layer_size, row, _ = self.info[piece.src]
        start = offset + (piece.layer or 0) * layer_size + piece.r0 * row
        return start, (piece.r1 - piece.r0) * row

    def row_size(self, src):
        return self.info[src][2]


# ----------------------------------------------------------------------------
# Model files

def read_model_header(path):
    """Reads and checks a model file's header and length. Returns (cfg, version)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise HFError(f"cannot read model file '{path}': {e.strerror}")
    if len(raw) < HEADER_BYTES:
        raise HFError(f"'{path}': truncated: {len(raw)} bytes, a model file starts with a {HEADER_BYTES}-byte header")
    h = struct.unpack("<256i", raw)
    if h[0] == GPT2_MAGIC:
        family, fields, reserved = "gpt2", GPT2_FIELDS, 8
    elif h[0] == LLAMA_MAGIC:
        family, fields, reserved = "llama", LLAMA_INT_FIELDS, 12
    else:
        raise HFError(f"'{path}' is not a model file: magic {h[0]}, expected {GPT2_MAGIC} (GPT-2) or {LLAMA_MAGIC} (Llama)")
    version = h[1]
    if version not in (VERSION_FP32, VERSION_BF16):
        raise HFError(f"'{path}': unsupported model file version {version} (3 = fp32, 5 = bf16)")
    cfg = ModelConfig(family, **{name: h[word] for name, word, _ in fields})
    if family == "llama":
        cfg.rope_theta_bits, cfg.norm_eps_bits = h[10] & 0xFFFFFFFF, h[11] & 0xFFFFFFFF
    for i in range(reserved, HEADER_INTS):
        if h[i] != 0:
            raise HFError(f"'{path}': bad {'GPT-2' if family == 'gpt2' else 'Llama'} model header: reserved word {i} "
                          f"is {h[i]}, not 0")
    why = validate_config(cfg)
    if why is not None:
        raise HFError(f"'{path}': bad {'GPT-2' if family == 'gpt2' else 'Llama'} model header: {why}")
    n = Layout(cfg).num_parameters
    if n > MAX_ELEMENTS:
        raise HFError(f"'{path}': the model has {n} parameters, more than {MAX_ELEMENTS}")
    expected = HEADER_BYTES + n * (4 if version == VERSION_FP32 else 2)
    if size != expected:
        raise HFError(f"'{path}': file is {size} bytes but its header (version {version}, {n} parameters) needs exactly "
                      f"{expected} ({'truncated' if size < expected else 'trailing bytes'})")
    return cfg, version


def read_exact(f, offset, nbytes, path, what):
    f.seek(offset)
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise HFError(f"'{path}': short read of {what}: wanted {nbytes} bytes at offset {offset}, got {len(data)}")
    return data


# ----------------------------------------------------------------------------
# safetensors

def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _no_constants(name):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text, path, what):
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except ValueError as e:  # json.JSONDecodeError is a ValueError; so are ours
        raise HFError(f"'{path}': {what} is not valid JSON: {e}")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class SafeTensors:
    """A safetensors file's header, checked in full on opening: tensors {name: (dtype, shape, begin, end)},
    offsets relative to data_start."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                head = f.read(8)
                if len(head) < 8:
                    raise HFError(f"'{path}': truncated: {size} bytes, a safetensors file starts with an 8-byte header length")
                (n,) = struct.unpack("<Q", head)
                if n > size - 8:
                    raise HFError(f"'{path}': header length {n} runs past the end of the file ({size} bytes)")
                if n > ST_MAX_HEADER:
                    raise HFError(f"'{path}': header length {n} is above the safetensors limit of {ST_MAX_HEADER} bytes")
                raw = f.read(n)
        except OSError as e:
            raise HFError(f"cannot read '{path}': {e.strerror}")
        if len(raw) != n:
            raise HFError(f"'{path}': short read of the {n}-byte header")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HFError(f"'{path}': the header is not UTF-8")
        if not text.startswith("{"):
            raise HFError(f"'{path}': the header does not start with '{{'")
        header = parse_json(text, path, "the header")
        if not isinstance(header, dict):
            raise HFError(f"'{path}': the header is not a JSON object")
        self.data_start = 8 + n
        self.data_size = size - self.data_start
        self.metadata = header.pop("__metadata__", None)
        if self.metadata is not None and not (isinstance(self.metadata, dict) and
                                              all(isinstance(v, str) for v in self.metadata.values())):
            raise HFError(f"'{path}': __metadata__ must be an object of strings")
        self.tensors = {}
        for name, info in header.items():
            where = f"'{path}': tensor '{name}'"
            if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
                raise HFError(f"{where}: needs exactly the keys dtype, shape, data_offsets")
            dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
            if dtype not in ST_BITS:
                raise HFError(f"{where}: unknown dtype {dtype!r}")
            if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
                raise HFError(f"{where}: shape {shape!r} is not a list of non-negative integers")
            if not (isinstance(offs, list) and len(offs) == 2 and all(_is_int(o) and o >= 0 for o in offs)
                    and offs[0] <= offs[1]):
                raise HFError(f"{where}: data_offsets {offs!r} is not [begin, end] with 0 <= begin <= end")
            bits = prod(shape) * ST_BITS[dtype]
            if bits % 8 != 0 or bits // 8 != offs[1] - offs[0]:
                raise HFError(f"{where}: data_offsets {offs} hold {offs[1] - offs[0]} bytes but {dtype} {shape} needs "
                              f"{bits / 8:g}")
            self.tensors[name] = (dtype, tuple(shape), offs[0], offs[1])
        end = 0
        for name, (_, _, b, e) in sorted(self.tensors.items(), key=lambda kv: (kv[1][2], kv[1][3])):
            if b != end:
                raise HFError(f"'{path}': tensor '{name}' starts at data offset {b}, expected {end} (the tensors' data "
                              f"must be contiguous, without gaps or overlaps)")
            end = e
        if end != self.data_size:
            raise HFError(f"'{path}': the tensors end at data offset {end} but the file holds {self.data_size} bytes of data "
                          f"({'truncated' if end > self.data_size else 'trailing bytes'})")

    def read(self, f, name):
        dtype, shape, b, e = self.tensors[name]
        return read_exact(f, self.data_start + b, e - b, self.path, f"tensor '{name}'")


def safetensors_header(entries, metadata):
    """The header bytes (length + JSON, space-padded so the data start at a multiple of 8) for entries
    [(name, dtype, shape)], data laid out in this order."""
    header, offset = {"__metadata__": metadata}, 0
    for name, dtype, shape in entries:
        n = prod(shape) * ST_ITEMSIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text


# ----------------------------------------------------------------------------
# Output files: temporary names, renamed at the end

class Outputs:
    """Files written under temporary names (<path>.tmp.<pid>) and renamed into place by commit(); discard()
    removes them (and the directories this run created)."""

    def __init__(self):
        self.pending = []  # (temporary path, final path)
        self.created_dirs = []

    def make_dir(self, path):
        """Creates path and its missing parents, remembering them for discard()."""
        missing, p = [], os.path.abspath(path)
        while not os.path.isdir(p):
            missing.insert(0, p)
            p = os.path.dirname(p)
        for d in missing:
            try:
                os.mkdir(d)
            except OSError as e:
                raise HFError(f"cannot create directory '{d}': {e.strerror}")
            self.created_dirs.append(d)

    def open(self, path):
        tmp = f"{path}.tmp.{os.getpid()}"
        self.pending.append((tmp, path))  # before opening: discard() also covers a failed open
        try:
            return open(tmp, "wb")
        except OSError as e:
            raise HFError(f"cannot write '{path}': creating '{tmp}' failed: {e.strerror}")

    @staticmethod
    def finish(f, path):
        """Flushes, syncs and closes a file from open()."""
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        except OSError as e:
            raise HFError(f"cannot write '{path}': {e.strerror}")

    def commit(self):
        """Renames every temporary file to its name. Files that existed are first moved aside and put back if a
        rename fails, and the files already renamed are removed then, so the outputs appear all or none."""
        done, backups = [], []
        try:
            for tmp, path in self.pending:
                if os.path.lexists(path):
                    bak = f"{path}.bak.{os.getpid()}"
                    os.replace(path, bak)
                    backups.append((bak, path))
            for tmp, path in self.pending:
                os.replace(tmp, path)
                done.append(path)
        except OSError as e:
            for path in done:
                try:
                    os.remove(path)
                except OSError:
                    pass
            for bak, path in backups:
                try:
                    os.replace(bak, path)
                except OSError:
                    pass
            raise HFError(f"cannot put {', '.join(repr(p) for _, p in self.pending)} in place: {e.strerror}")
        self.pending = []
        for bak, _ in backups:
            try:
                os.remove(bak)
            except OSError:
                pass
        for d in {os.path.dirname(os.path.abspath(p)) for p in done}:  # durable once the directory is on disk
            try:
                fd = os.open(d, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                pass
        self.created_dirs = []

    def discard(self):
        for tmp, _ in self.pending:
            try:
                os.remove(tmp)
            except OSError:
                pass
        self.pending = []
        for d in reversed(self.created_dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass
        self.created_dirs = []


def write_chunks(f, data, path):
    try:
        f.write(data)
    except OSError as e:
        raise HFError(f"cannot write '{path}': {e.strerror}")


# ----------------------------------------------------------------------------
# Export

def json_float32(bits):
    """The float32 with these bits as the double of the same value: JSON's repr of it reads back exactly."""
    return f32_from_bits(bits)


def hf_config(cfg, dtype):
    """config.json's dictionary for a model configuration and the safetensors dtype."""
    eot = EOT if cfg.vocab_size > EOT else None
    if cfg.family == "gpt2":
        return {
            "architectures": [GPT2_ARCH], "model_type": "gpt2",
            "vocab_size": cfg.vocab_size, "n_positions": cfg.max_seq_len, "n_embd": cfg.channels,
            "n_layer": cfg.num_layers, "n_head": cfg.num_heads, "n_inner": None,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": json_float32(f32_bits(1e-5, "layer_norm_epsilon")),  # CPU_LAYERNORM_EPS = 1e-5f
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "initializer_range": 0.02,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
            "tie_word_embeddings": True, "use_cache": True, "bos_token_id": eot, "eos_token_id": eot,
            "torch_dtype": TORCH_DTYPE[dtype], "llmc_padded_vocab_size": cfg.padded_vocab_size,
        }
    theta = json_float32(cfg.rope_theta_bits)
    return {
        "architectures": [LLAMA_ARCH], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.channels, "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.channels // cfg.num_heads,
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": json_float32(cfg.norm_eps_bits),
        "rope_theta": theta, "rope_parameters": {"rope_type": "default", "rope_theta": theta},
        "hidden_act": "silu", "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False,
        "tie_word_embeddings": False, "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": True,
        "bos_token_id": eot, "eos_token_id": eot,
        "torch_dtype": TORCH_DTYPE[dtype], "llmc_padded_vocab_size": cfg.padded_vocab_size,
    }


def padded_tensors(cfg):
    """The model-file tensors with padded vocabulary rows (rows V..Vp dropped on export)."""
    return ["wte"] if cfg.family == "gpt2" else ["wte", "lm_head"]


def check_out_dir(out_dir, force):
    if os.path.lexists(out_dir):
        if not os.path.isdir(out_dir):
            raise HFError(f"OUT_DIR '{out_dir}' exists and is not a directory")
        try:
            entries = os.listdir(out_dir)
        except OSError as e:
            raise HFError(f"OUT_DIR '{out_dir}': cannot list it: {e.strerror}")
        if entries and not force:
            raise HFError(f"OUT_DIR '{out_dir}' exists and is not empty ({len(entries)} entries); choose a new folder "
                          f"or pass --force to replace its {CONFIG_NAME} and {WEIGHTS_NAME}")
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise HFError(f"OUT_DIR '{out_dir}': no permission to write in it")


def export(model_path, out_dir, dtype=None, force=False, drop_padding=False):
    cfg, version = read_model_header(model_path)
    src_dtype = "F32" if version == VERSION_FP32 else "BF16"
    dst_dtype = dtype or src_dtype
    size = 4 if version == VERSION_FP32 else 2
    layout = Layout(cfg)
    pieces = hf_pieces(cfg)
    check_out_dir(out_dir, force)
    with open(model_path, "rb") as f:
        if cfg.vocab_size < cfg.padded_vocab_size and not drop_padding:
            for src in padded_tensors(cfg):
                offset, _, row, _ = layout.info[src]
                start = HEADER_BYTES + (offset + cfg.vocab_size * row) * size
                nbytes = (cfg.padded_vocab_size - cfg.vocab_size) * row * size
                for pos in range(0, nbytes, COPY_CHUNK):
                    chunk = read_exact(f, start + pos, min(COPY_CHUNK, nbytes - pos), model_path, f"{src}'s padded rows")
                    if chunk.count(0) != len(chunk):
                        raise HFError(f"'{model_path}': {src}'s padded vocabulary rows {cfg.vocab_size}..{cfg.padded_vocab_size} "
                                      f"are not all zero; Hugging Face's {cfg.arch} has no such rows, so export would lose "
                                      f"them (pass --drop-padding to drop them anyway)")
        outputs = Outputs()
        try:
            outputs.make_dir(out_dir)
            weights_path = os.path.join(out_dir, WEIGHTS_NAME)
            w = outputs.open(weights_path)
            with w:
                write_chunks(w, safetensors_header([(p.name, dst_dtype, p.hf_shape) for p in pieces], {"format": "pt"}),
                             weights_path)
                for p in pieces:
                    start, count = layout.span(p)
                    data = read_exact(f, HEADER_BYTES + start * size, count * size, model_path, f"tensor {p.src}")
                    if p.conv1d:  # our [out, in] -> Conv1D's [in, out]
                        data = transpose(data, p.r1 - p.r0, layout.row_size(p.src), size)
                    write_chunks(w, convert(data, src_dtype, dst_dtype), weights_path)
                outputs.finish(w, weights_path)
            config_path = os.path.join(out_dir, CONFIG_NAME)
            c = outputs.open(config_path)
            with c:
                write_chunks(c, (json.dumps(hf_config(cfg, dst_dtype), indent=2) + "\n").encode("utf-8"), config_path)
                outputs.finish(c, config_path)
            outputs.commit()
        except BaseException:
            outputs.discard()
            raise
    print(f"{PROG}: wrote {out_dir} ({cfg.arch}, {len(pieces)} tensors, {dst_dtype}, {layout.num_parameters} parameters "
          f"of {model_path})")


# ----------------------------------------------------------------------------
# Import

def load_config_json(hf_dir):
    path = os.path.join(hf_dir, CONFIG_NAME)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise HFError(f"cannot read '{path}': {e.strerror}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HFError(f"'{path}' is not UTF-8")
    conf = parse_json(text, path, "the configuration")
    if not isinstance(conf, dict):
        raise HFError(f"'{path}' is not a JSON object")
    return path, conf


class ConfigReader:
    """Typed access to config.json's fields with messages naming the file and the field."""

    def __init__(self, path, conf):
        self.path, self.conf = path, conf

    def error(self, msg):
        return HFError(f"'{self.path}': {msg}")

    def int(self, key, default=None, required=True):
        if key not in self.conf or self.conf[key] is None:
            if default is not None or not required:
                return default
            raise self.error(f"missing field '{key}'")
        v = self.conf[key]
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not _is_int(v):
            raise self.error(f"field '{key}' is {v!r}, not an integer")
        return v

    def float_bits(self, key, default):
        v = self.conf.get(key)
        if v is None:
            v = default
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(f"field '{key}' is {v!r}, not a number")
        return f32_bits(v, f"'{self.path}': field '{key}'")

    def expect(self, key, allowed, default):
        v = self.conf.get(key, default)
        if v not in allowed:
            raise self.error(f"field '{key}' is {v!r}; only {' or '.join(repr(a) for a in allowed)} can be represented "
                             f"in this project's model")
        return v


def config_from_hf(hf_dir, padded_vocab):
    """The model configuration of a Hugging Face folder's config.json (validated). Returns (cfg, tied, path)."""
    path, conf = load_config_json(hf_dir)
    r = ConfigReader(path, conf)
    arch = conf.get("architectures")
    if not (isinstance(arch, list) and len(arch) == 1 and isinstance(arch[0], str)):
        raise r.error(f"field 'architectures' is {arch!r}; expected [\"{GPT2_ARCH}\"] or [\"{LLAMA_ARCH}\"]")
    arch = arch[0]
    if arch not in (GPT2_ARCH, LLAMA_ARCH):
        raise r.error(f"architecture '{arch}' is not supported (expected {GPT2_ARCH} or {LLAMA_ARCH})")
    family = "gpt2" if arch == GPT2_ARCH else "llama"
    model_type = conf.get("model_type", family)
    if model_type != family:
        raise r.error(f"model_type '{model_type}' does not match the architecture {arch} (model_type '{family}')")
    V = r.int("vocab_size")
    if family == "gpt2":
        C = r.int("n_embd")
        cfg = ModelConfig("gpt2", max_seq_len=r.int("n_positions"), vocab_size=V, num_layers=r.int("n_layer"),
                          num_heads=r.int("n_head"), channels=C, padded_vocab_size=0)
        n_inner = r.int("n_inner", required=False)
        if n_inner is not None and n_inner != 4 * C:
            raise r.error(f"field 'n_inner' is {n_inner}; this project's GPT-2 has an MLP of 4 * n_embd = {4 * C}")
        r.expect("activation_function", ("gelu_new", "gelu_pytorch_tanh"), "gelu_new")
        if r.float_bits("layer_norm_epsilon", 1e-5) != f32_bits(1e-5, "1e-5"):
            raise r.error(f"field 'layer_norm_epsilon' is {conf.get('layer_norm_epsilon')!r}; this project's GPT-2 uses 1e-5")
        r.expect("scale_attn_weights", (True,), True)
        r.expect("scale_attn_by_inverse_layer_idx", (False,), False)
        r.expect("add_cross_attention", (False,), False)
        tied = r.expect("tie_word_embeddings", (True,), True)
    else:
        C, NH = r.int("hidden_size"), r.int("num_attention_heads")
        cfg = ModelConfig("llama", max_seq_len=r.int("max_position_embeddings"), vocab_size=V,
                          num_layers=r.int("num_hidden_layers"), num_heads=NH, channels=C, padded_vocab_size=0,
                          num_kv_heads=r.int("num_key_value_heads", default=NH), ffn_hidden=r.int("intermediate_size"))
        head_dim = r.int("head_dim", required=False)
        if head_dim is not None and head_dim * NH != C:
            raise r.error(f"field 'head_dim' is {head_dim}; this project's Llama needs hidden_size / num_attention_heads "
                          f"= {C} / {NH}")
        r.expect("hidden_act", ("silu",), "silu")
        r.expect("attention_bias", (False,), False)
        r.expect("mlp_bias", (False,), False)
        if conf.get("rope_scaling") is not None:
            raise r.error(f"field 'rope_scaling' is {conf['rope_scaling']!r}; this project's Llama has plain RoPE only")
        theta_bits = r.float_bits("rope_theta", 10000.0)  # LlamaConfig's default
        params = conf.get("rope_parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise r.error(f"field 'rope_parameters' is {params!r}, not an object")
            rope_type = params.get("rope_type", params.get("type", "default"))
            extra = set(params) - {"rope_type", "type", "rope_theta"}
            if rope_type != "default" or extra:
                raise r.error(f"field 'rope_parameters' is {params!r}; this project's Llama has plain RoPE only "
                              f"(rope_type 'default', no other parameters)")
            if "rope_theta" in params:
                b = ConfigReader(path, params).float_bits("rope_theta", 10000.0)
                if "rope_theta" in conf and b != theta_bits:
                    raise r.error(f"rope_theta {conf['rope_theta']!r} and rope_parameters.rope_theta "
                                  f"{params['rope_theta']!r} differ")
                theta_bits = b
        cfg.rope_theta_bits = theta_bits
        cfg.norm_eps_bits = r.float_bits("rms_norm_eps", 1e-6)  # LlamaConfig's default
        tied = r.expect("tie_word_embeddings", (True, False), False)
    if padded_vocab is not None and _is_int(V) and padded_vocab < V:
        raise HFError(f"--padded-vocab {padded_vocab} is smaller than vocab_size {V} of '{path}'")
    if padded_vocab is None:
        padded_vocab = r.int("llmc_padded_vocab_size", required=False)
        if padded_vocab is None and _is_int(V) and V > 0:
            padded_vocab = -(-V // PAD_MULTIPLE) * PAD_MULTIPLE
    cfg.padded_vocab_size = padded_vocab
    why = validate_config(cfg)
    if why is not None:
        raise r.error(f"cannot be this project's {'GPT-2' if family == 'gpt2' else 'Llama'}: {why}")
    n = Layout(cfg).num_parameters
    if n > MAX_ELEMENTS:
        raise r.error(f"the model has {n} parameters, more than {MAX_ELEMENTS}")
    return cfg, tied, path


def open_weights(hf_dir):
    """The folder's tensors: {name: SafeTensors file holding it}, from model.safetensors or a sharded index."""
    single = os.path.join(hf_dir, WEIGHTS_NAME)
    index_path = os.path.join(hf_dir, INDEX_NAME)
    if os.path.exists(single):
        st = SafeTensors(single)
        return {name: st for name in st.tensors}
    if not os.path.exists(index_path):
        raise HFError(f"'{hf_dir}' holds neither {WEIGHTS_NAME} nor {INDEX_NAME} (PyTorch .bin weights are not read: "
                      f"save the model with safetensors)")
    try:
        with open(index_path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise HFError(f"cannot read '{index_path}': {getattr(e, 'strerror', None) or e}")
    index = parse_json(text, index_path, "the index")
    wmap = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wmap, dict) or not all(isinstance(v, str) for v in wmap.values()):
        raise HFError(f"'{index_path}': needs a 'weight_map' object of tensor name -> shard file name")
    shards = {}
    for fname in sorted(set(wmap.values())):
        if os.path.basename(fname) != fname or fname in ("", ".", ".."):
            raise HFError(f"'{index_path}': shard '{fname}' is not a file name inside the folder")
        shards[fname] = SafeTensors(os.path.join(hf_dir, fname))
    found = {}
    for fname, st in shards.items():
        for name in st.tensors:
            if wmap.get(name) != fname:
                raise HFError(f"'{st.path}': tensor '{name}' is not listed for this shard in '{index_path}'")
            found[name] = st
    for name, fname in wmap.items():
        if name not in found:
            raise HFError(f"'{index_path}': tensor '{name}' is listed in shard '{fname}', which does not hold it")
    return found


def import_(hf_dir, model_path, version=VERSION_FP32, padded_vocab=None, force=False):
    if not os.path.isdir(hf_dir):
        raise HFError(f"HF_DIR '{hf_dir}' is not a directory")
    cfg, tied, config_path = config_from_hf(hf_dir, padded_vocab)
    tensors = open_weights(hf_dir)
    layout = Layout(cfg)
    pieces = hf_pieces(cfg)
    names = {p.name for p in pieces}
    # Names written by transformers that are not ours: GPT-2 without the "transformer." prefix, a tied head.
    aliases, twins = {}, []  # our name -> the folder's; [(head name, embedding name)] to compare
    if cfg.family == "gpt2":
        for n in [n for n in tensors if GPT2_BUFFER.fullmatch(n)]:
            del tensors[n]  # the causal-mask buffers that older GPT-2 checkpoints store: not parameters
        bare = [n for n in tensors if not n.startswith("transformer.") and n != "lm_head.weight"]
        if bare and all(("transformer." + n) in names for n in bare) and not any(n in tensors for n in names):
            aliases = {"transformer." + n: n for n in bare}
        if "lm_head.weight" in tensors:
            twins.append(("lm_head.weight", aliases.get("transformer.wte.weight", "transformer.wte.weight")))
    elif tied:
        if "lm_head.weight" in tensors:
            twins.append(("lm_head.weight", "model.embed_tokens.weight"))
        else:
            aliases["lm_head.weight"] = "model.embed_tokens.weight"
    used = set()
    for p in pieces:
        name = aliases.get(p.name, p.name)
        if name not in tensors:
            raise HFError(f"'{hf_dir}': tensor '{name}' of {cfg.arch} (from {CONFIG_NAME}) is missing from the weights "
                          f"({WEIGHTS_NAME} or its shards)")
        st = tensors[name]
        dtype, shape, _, _ = st.tensors[name]
        if shape != p.hf_shape:
            raise HFError(f"'{st.path}': tensor '{name}' has shape {list(shape)}, expected {list(p.hf_shape)} for the "
                          f"configuration in '{config_path}'")
        if dtype not in ST_ITEMSIZE:
            raise HFError(f"'{st.path}': tensor '{name}' has dtype {dtype}; only F32 and BF16 are read")
        used.add(name)
    for head, emb in twins:
        st = tensors[head]
        if st.tensors[head][0] not in ST_ITEMSIZE:
            raise HFError(f"'{st.path}': tensor '{head}' has dtype {st.tensors[head][0]}; only F32 and BF16 are read")
        if st.tensors[head][1] != tensors[emb].tensors[emb][1]:
            raise HFError(f"'{st.path}': tensor '{head}' has shape {list(st.tensors[head][1])}, expected "
                          f"{list(tensors[emb].tensors[emb][1])} (tied to '{emb}')")
        used.add(head)
    extra = sorted(set(tensors) - used)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise HFError(f"'{tensors[extra[0]].path}': unexpected tensor '{extra[0]}'{more}: not part of {cfg.arch} as "
                      f"this project maps it")
    if os.path.lexists(model_path) and not force:
        raise HFError(f"MODEL_FILE '{model_path}' exists; pass --force to replace it")
    parent = os.path.dirname(os.path.abspath(model_path))
    if not os.path.isdir(parent):
        raise HFError(f"cannot write '{model_path}': '{parent}' is not a directory")

    dst = "F32" if version == VERSION_FP32 else "BF16"
    size = ST_ITEMSIZE[dst]
    by_src = {}
    for p in pieces:
        by_src.setdefault(p.src, []).append(p)
    files = {}
    outputs = Outputs()
    try:
        for head, emb in twins:  # a tied head must be the embedding, bit for bit once in one precision
            a, b = tensors[head], tensors[emb]
            da, db = read_tensor(files, a, head, "F32"), read_tensor(files, b, emb, "F32")
            if da != db:
                raise HFError(f"'{a.path}': tensor '{head}' differs from '{emb}', but the model ties them "
                              f"(tie_word_embeddings)")
        out = outputs.open(model_path)
        with out:
            write_chunks(out, cfg.header(version), model_path)
            for src, shape, per_layer in layout.table:
                row = layout.row_size(src)
                for layer in range(shape[0] if per_layer else 1):
                    rows_done = 0
                    for p in by_src[src]:
                        if per_layer and p.layer != layer:
                            continue
                        assert p.r0 == rows_done
                        name = aliases.get(p.name, p.name)
                        data = read_tensor(files, tensors[name], name, dst)
                        if p.conv1d:  # Conv1D's [in, out] -> our [out, in]
                            data = transpose(data, row, p.r1 - p.r0, size)
                        write_chunks(out, data, model_path)
                        rows_done = p.r1
                    rows = (shape[1] if per_layer else shape[0])
                    if rows_done < rows:  # the padded vocabulary rows
                        zeros = (rows - rows_done) * row * size
                        for pos in range(0, zeros, COPY_CHUNK):
                            write_chunks(out, bytes(min(COPY_CHUNK, zeros - pos)), model_path)
            outputs.finish(out, model_path)
        outputs.commit()
    except BaseException:
        outputs.discard()
        raise
    finally:
        for f in files.values():
            f.close()
    print(f"{PROG}: wrote {model_path} ({'GPT-2' if cfg.family == 'gpt2' else 'Llama'} model file version {version}, "
          f"{layout.num_parameters} parameters, from {hf_dir})")


def read_tensor(files, st, name, dst):
    """A tensor's bytes converted to dtype dst; files caches the open shard files."""
    f = files.get(st.path)
    if f is None:
        try:
            f = files[st.path] = open(st.path, "rb")
        except OSError as e:
            raise HFError(f"cannot read '{st.path}': {e.strerror}")
    return convert(st.read(f, name), st.tensors[name][0], dst)


# ----------------------------------------------------------------------------
# Command line

class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise HFError(f"{message} (see {self.prog} -h)")


def parse_args(argv):
    p = Parser(prog=PROG, description="Converts train_gpt / train_llama model files to Hugging Face folders "
                                      "(GPT2LMHeadModel / LlamaForCausalLM, safetensors + config.json) and back. "
                                      "The tensor mapping and the formats are described at the top of dev/export_hf.py.")
    sub = p.add_subparsers(dest="command", metavar="{export,import}")
    sub.required = True
    e = sub.add_parser("export", help="model file -> Hugging Face folder",
                       description="Writes MODEL_FILE as OUT_DIR/config.json + OUT_DIR/model.safetensors.")
    e.add_argument("model_file", metavar="MODEL_FILE")
    e.add_argument("out_dir", metavar="OUT_DIR")
    e.add_argument("--dtype", choices=["f32", "bf16"],
                   help="tensor dtype in the safetensors file (default: the model file's: version 3 -> f32, 5 -> bf16)")
    e.add_argument("--force", action="store_true", help="write into an OUT_DIR that is not empty (replacing its "
                                                        "config.json and model.safetensors)")
    e.add_argument("--drop-padding", action="store_true",
                   help="export even when the padded vocabulary rows V..Vp are not zero (they are lost)")
    i = sub.add_parser("import", help="Hugging Face folder -> model file",
                       description="Writes the model in HF_DIR (config.json + model.safetensors or a sharded "
                                   "model.safetensors.index.json) as a train_gpt / train_llama model file.")
    i.add_argument("hf_dir", metavar="HF_DIR")
    i.add_argument("model_file", metavar="MODEL_FILE")
    i.add_argument("--version", type=int, choices=[3, 5], default=3,
                   help="model file version: 3 = fp32 (default), 5 = bf16 (rounded to nearest even)")
    i.add_argument("--padded-vocab", type=int, metavar="N",
                   help="rows of the embedding (and Llama's lm_head) in the model file, >= vocab_size (default: "
                        "config.json's llmc_padded_vocab_size, else vocab_size rounded up to a multiple of 128)")
    i.add_argument("--force", action="store_true", help="replace an existing MODEL_FILE")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    if args.command == "export":
        export(args.model_file, args.out_dir, {"f32": "F32", "bf16": "BF16", None: None}[args.dtype], args.force,
               args.drop_padding)
    else:
        import_(args.hf_dir, args.model_file, args.version, args.padded_vocab, args.force)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except HFError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        print(f"{PROG}: error: {e.strerror or e}{f' ({e.filename})' if e.filename else ''}", file=sys.stderr)
        sys.exit(1)
    except MemoryError:
        print(f"{PROG}: error: out of memory", file=sys.stderr)
        sys.exit(1)
