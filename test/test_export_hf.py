"""Tests for dev/export_hf.py (model file <-> Hugging Face folder), CPU only, standard library only.

Small random models of both families come from dev/model_tool.c (built here with gcc into
build/test_export_hf/; every test is skipped without gcc), in fp32 (version 3) and bf16 (version 5). Checked:
export then import reproduces the model file byte for byte; the safetensors file, read by this test's own
parser, holds exactly the expected tensor names, shapes and dtypes, and every element equals the model file's
element it comes from (the mapping is spelled out here element by element, independently of export_hf.py's
row-slice code: Conv1D transposes, the q/k/v and gate/up splits, the dropped padded rows); config.json has the
expected fields, its floats are the header's float32 values exactly; dtype conversions round as the C writer
does; the CPU-reference logits of an imported model equal the original's; malformed inputs are refused with
one error line naming the file (and tensor), exit status 1, and nothing left behind.
The seed of the random models is $TEST_SEED, else the clock, printed first.
"""
import array
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testing  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "dev", "export_hf.py")
BUILD = os.path.join(ROOT, "build", "test_export_hf")
TOOL = os.path.join(BUILD, "model_tool")
SEED = int(os.environ.get("TEST_SEED", time.time_ns() % 2**31))
print(f"test_export_hf: TEST_SEED={SEED}")

# Small configurations: odd V with padding, GQA (NKV < NH), theta and eps that are not short decimals in float32.
GPT2 = dict(maxT=16, V=97, Vp=128, L=2, NH=4, C=32)
LLAMA = dict(maxT=16, V=97, Vp=128, L=2, NH=4, NKV=2, C=32, F=48, theta="12345.678", eps="1e-5")
_state = {}


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


# ----------------------------------------------------------------------------
# Building and running

def setup():
    """Builds model_tool once and makes a scratch folder; skips without gcc."""
    testing.build_c_tool("dev/model_tool.c", TOOL)
    if "tmp" not in _state:
        _state["tmp"] = tempfile.mkdtemp(prefix="run_", dir=BUILD)
    return _state["tmp"]


def tmp_path(name):
    return os.path.join(setup(), name)


def tool(*args):
    r = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, f"model_tool {' '.join(map(str, args))} failed:\n{r.stderr}"
    return r


def init_args(family):
    if family == "gpt2":
        c = GPT2
        return ["gpt2", c["maxT"], c["V"], c["Vp"], c["L"], c["NH"], c["C"]]
    c = LLAMA
    return ["llama", c["maxT"], c["V"], c["Vp"], c["L"], c["NH"], c["NKV"], c["C"], c["F"], c["theta"], c["eps"]]


def model_file(family, version, seed_offset=0):
    """A random model file of the family (cached by arguments)."""
    key = (family, version, seed_offset)
    if key not in _state:
        path = tmp_path(f"{family}_v{version}_{seed_offset}.bin")
        tool("init", "--seed", SEED + seed_offset, "--version", version, *init_args(family), path)
        _state[key] = path
    return _state[key]


def run(*args, ok=True, preamble=None):
    """Runs export_hf.py; with preamble, that Python code first in the same process (to inject a fault)."""
    cmd = [sys.executable, SCRIPT, *map(str, args)]
    if preamble is not None:
        cmd = [sys.executable, "-c", preamble + "\nimport runpy, sys\n"
               f"sys.argv = {[SCRIPT, *map(str, args)]!r}\nrunpy.run_path({SCRIPT!r}, run_name='__main__')\n"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    if ok:
        assert r.returncode == 0, f"export_hf.py {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}"
    return r


def expect_error(args, *phrases, preamble=None):
    """export_hf.py must fail with exit status 1 and exactly one line 'export_hf.py: error: ...' on stderr
    containing every phrase."""
    r = run(*args, ok=False, preamble=preamble)
    assert r.returncode == 1, f"export_hf.py {' '.join(map(str, args))}: exit {r.returncode}, expected 1:\n{r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("export_hf.py: error: "), f"not one error line:\n{r.stderr}"
    for p in phrases:
        assert str(p) in lines[0], f"message lacks {str(p)!r}: {lines[0]}"
    return lines[0]


def fresh_dir(name):
    """A path in the scratch folder that does not exist yet."""
    path = tmp_path(name)
    if os.path.lexists(path):
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return path


def export(model, name, *flags):
    out = fresh_dir(name)
    run("export", model, out, *flags)
    return out


def no_temporaries(folder):
    left = [f for f in os.listdir(folder) if ".tmp." in f]
    assert not left, f"temporary files left in {folder}: {left}"


# ----------------------------------------------------------------------------
# This test's own readers and writers

def read_model(path):
    """(header int32 list, element list of raw bits: uint32 for version 3, uint16 for version 5)."""
    data = open(path, "rb").read()
    header = list(struct.unpack("<256i", data[:1024]))
    bits = array.array("I" if header[1] == 3 else "H")
    bits.frombytes(data[1024:])
    if sys.byteorder == "big":
        bits.byteswap()
    return header, bits


def read_safetensors(path):
    """{name: (dtype, shape, raw bits list)} and the metadata; minimal, independent of export_hf.py."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    assert (8 + n) % 8 == 0, f"{path}: data start {8 + n} is not a multiple of 8"
    meta = header.pop("__metadata__", None)
    base, tensors, ends = 8 + n, {}, []
    for name, info in header.items():
        b, e = info["data_offsets"]
        bits = array.array("I" if info["dtype"] == "F32" else "H")
        bits.frombytes(data[base + b:base + e])
        if sys.byteorder == "big":
            bits.byteswap()
        tensors[name] = (info["dtype"], tuple(info["shape"]), bits)
        ends.append((b, e))
    ends.sort()
    assert ends[0][0] == 0 and all(ends[i][1] == ends[i + 1][0] for i in range(len(ends) - 1)) and \
        ends[-1][1] == len(data) - base, f"{path}: tensor data not contiguous"
    return tensors, meta


def write_safetensors(path, tensors, meta=None, pad=True):
    """tensors: [(name, dtype, shape, raw bytes)] in data order."""
    header, offset = {}, 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors))


def raw_tensors(path):
    """[(name, dtype, shape, raw bytes)] of a safetensors file in data order."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    items = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    return [(k, v["dtype"], v["shape"], data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in items]


def copy_folder(src, name):
    dst = fresh_dir(name)
    shutil.copytree(src, dst)
    return dst


def bf16_rne(u):
    """float32 bits -> bfloat16 bits, round to nearest even (the textbook rule, written out)."""
    if (u & 0x7FFFFFFF) > 0x7F800000:
        return (u >> 16) | 0x40
    upper, lower = u >> 16, u & 0xFFFF
    if lower > 0x8000 or (lower == 0x8000 and (upper & 1)):
        upper += 1
    return upper


# ----------------------------------------------------------------------------
# The expected Hugging Face tensors, element by element

def expected_tensors(family, header, bits):
    """{hf name: (shape, element bits)}, each element taken from the model file by its own index formula."""
    out = {}
    if family == "gpt2":
        maxT, V, L, NH, C, Vp = header[2:8]
        sizes = [("wte", Vp * C), ("wpe", maxT * C), ("ln1w", L * C), ("ln1b", L * C), ("qkvw", L * 3 * C * C),
                 ("qkvb", L * 3 * C), ("attprojw", L * C * C), ("attprojb", L * C), ("ln2w", L * C), ("ln2b", L * C),
                 ("fcw", L * 4 * C * C), ("fcb", L * 4 * C), ("fcprojw", L * 4 * C * C), ("fcprojb", L * C),
                 ("lnfw", C), ("lnfb", C)]
    else:
        maxT, V, L, NH, C, Vp, NKV, F = header[2:10]
        HS = C // NH
        Q = (NH + 2 * NKV) * HS
        sizes = [("wte", Vp * C), ("attn_norm", L * C), ("qkvw", L * Q * C), ("attn_outw", L * C * C),
                 ("ffn_norm", L * C), ("gate_upw", L * 2 * F * C), ("downw", L * C * F), ("final_norm", C),
                 ("lm_head", Vp * C)]
    off, o = {}, 0
    for name, n in sizes:
        off[name] = o
        o += n
    assert o == len(bits), f"model file holds {len(bits)} elements, the table {o}"

    def mat(shape, at):  # elements of a tensor of `shape`, at(index tuple) -> flat model-file index
        if len(shape) == 1:
            return shape, [bits[at((i,))] for i in range(shape[0])]
        return shape, [bits[at((i, j))] for i in range(shape[0]) for j in range(shape[1])]

    if family == "gpt2":
        out["transformer.wte.weight"] = mat((V, C), lambda ix: off["wte"] + ix[0] * C + ix[1])
        out["transformer.wpe.weight"] = mat((maxT, C), lambda ix: off["wpe"] + ix[0] * C + ix[1])
        for l in range(L):
            h = f"transformer.h.{l}."
            for hf, ours in (("ln_1.weight", "ln1w"), ("ln_1.bias", "ln1b"), ("ln_2.weight", "ln2w"),
                             ("ln_2.bias", "ln2b"), ("attn.c_proj.bias", "attprojb"), ("mlp.c_proj.bias", "fcprojb")):
                out[h + hf] = mat((C,), lambda ix, ours=ours, l=l: off[ours] + l * C + ix[0])
            out[h + "attn.c_attn.bias"] = mat((3 * C,), lambda ix, l=l: off["qkvb"] + l * 3 * C + ix[0])
            out[h + "mlp.c_fc.bias"] = mat((4 * C,), lambda ix, l=l: off["fcb"] + l * 4 * C + ix[0])
            # Conv1D: HF weight[i, o] (input i, output o) = our W[o, i]
            out[h + "attn.c_attn.weight"] = mat((C, 3 * C), lambda ix, l=l: off["qkvw"] + l * 3 * C * C + ix[1] * C + ix[0])
            out[h + "attn.c_proj.weight"] = mat((C, C), lambda ix, l=l: off["attprojw"] + l * C * C + ix[1] * C + ix[0])
            out[h + "mlp.c_fc.weight"] = mat((C, 4 * C), lambda ix, l=l: off["fcw"] + l * 4 * C * C + ix[1] * C + ix[0])
            out[h + "mlp.c_proj.weight"] = mat((4 * C, C), lambda ix, l=l: off["fcprojw"] + l * 4 * C * C + ix[1] * 4 * C + ix[0])
        out["transformer.ln_f.weight"] = mat((C,), lambda ix: off["lnfw"] + ix[0])
        out["transformer.ln_f.bias"] = mat((C,), lambda ix: off["lnfb"] + ix[0])
        return out
    out["model.embed_tokens.weight"] = mat((V, C), lambda ix: off["wte"] + ix[0] * C + ix[1])
    for l in range(L):
        m = f"model.layers.{l}."
        out[m + "input_layernorm.weight"] = mat((C,), lambda ix, l=l: off["attn_norm"] + l * C + ix[0])
        out[m + "post_attention_layernorm.weight"] = mat((C,), lambda ix, l=l: off["ffn_norm"] + l * C + ix[0])
        # qkvw rows: query head h at rows h*HS.., key head g at (NH + g)*HS.., value head g at (NH + NKV + g)*HS..
        for proj, first_head, heads in (("q_proj", 0, NH), ("k_proj", NH, NKV), ("v_proj", NH + NKV, NKV)):
            out[m + f"self_attn.{proj}.weight"] = mat(
                (heads * HS, C), lambda ix, l=l, first=first_head: off["qkvw"] + l * Q * C + (first * HS + ix[0]) * C + ix[1])
        out[m + "self_attn.o_proj.weight"] = mat((C, C), lambda ix, l=l: off["attn_outw"] + l * C * C + ix[0] * C + ix[1])
        out[m + "mlp.gate_proj.weight"] = mat((F, C), lambda ix, l=l: off["gate_upw"] + l * 2 * F * C + ix[0] * C + ix[1])
        out[m + "mlp.up_proj.weight"] = mat((F, C), lambda ix, l=l: off["gate_upw"] + l * 2 * F * C + (F + ix[0]) * C + ix[1])
        out[m + "mlp.down_proj.weight"] = mat((C, F), lambda ix, l=l: off["downw"] + l * C * F + ix[0] * F + ix[1])
    out["model.norm.weight"] = mat((C,), lambda ix: off["final_norm"] + ix[0])
    out["lm_head.weight"] = mat((V, C), lambda ix: off["lm_head"] + ix[0] * C + ix[1])
    return out


def check_contents(family, version):
    model = model_file(family, version)
    out = export(model, f"contents_{family}_{version}")
    header, bits = read_model(model)
    tensors, meta = read_safetensors(os.path.join(out, "model.safetensors"))
    assert meta == {"format": "pt"}, f"metadata {meta}"
    expected = expected_tensors(family, header, bits)
    assert set(tensors) == set(expected), \
        f"names differ: missing {sorted(set(expected) - set(tensors))}, extra {sorted(set(tensors) - set(expected))}"
    want_dtype = "F32" if version == 3 else "BF16"
    for name, (shape, elems) in expected.items():
        dtype, got_shape, got = tensors[name]
        assert dtype == want_dtype, f"{name}: dtype {dtype}, expected {want_dtype}"
        assert got_shape == shape, f"{name}: shape {got_shape}, expected {shape}"
        assert list(got) == elems, f"{name}: data differ from the model file's"
    # the mapping must not be the identity by accident: perturbed gains are not all 1, biases not all 0
    one = f32_bits(1.0) if version == 3 else f32_bits(1.0) >> 16
    gain = "transformer.h.1.ln_2.weight" if family == "gpt2" else "model.layers.1.post_attention_layernorm.weight"
    assert any(b != one for b in tensors[gain][2]), f"{gain} is all ones: model_tool did not perturb it"
    return out


# ----------------------------------------------------------------------------
# Tests

def test_roundtrip_bit_exact():
    for family in ("gpt2", "llama"):
        for version in (3, 5):
            model = model_file(family, version)
            out = export(model, f"rt_{family}_{version}")
            back = fresh_dir(f"rt_{family}_{version}.bin")
            run("import", out, back, "--version", version)
            assert open(back, "rb").read() == open(model, "rb").read(), f"{family} v{version}: import(export) differs"
            again = export(back, f"rt2_{family}_{version}")
            for f in ("model.safetensors", "config.json"):
                assert open(os.path.join(out, f), "rb").read() == open(os.path.join(again, f), "rb").read(), \
                    f"{family} v{version}: a second export differs in {f}"
            no_temporaries(out)


def test_safetensors_gpt2():
    for version in (3, 5):
        check_contents("gpt2", version)


def test_safetensors_llama():
    for version in (3, 5):
        check_contents("llama", version)


def test_config_json():
    out = export(model_file("gpt2", 3), "config_gpt2")
    c = json.load(open(os.path.join(out, "config.json")))
    want = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": GPT2["V"],
            "n_positions": GPT2["maxT"], "n_embd": GPT2["C"], "n_layer": GPT2["L"], "n_head": GPT2["NH"],
            "activation_function": "gelu_new", "tie_word_embeddings": True, "torch_dtype": "float32",
            "llmc_padded_vocab_size": GPT2["Vp"], "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False}
    for k, v in want.items():
        assert c.get(k) == v, f"gpt2 config.json: {k} is {c.get(k)!r}, expected {v!r}"
    assert c.get("n_inner") in (None, 4 * GPT2["C"]) and f32(c["layer_norm_epsilon"]) == f32(1e-5)

    out = export(model_file("llama", 5), "config_llama")
    c = json.load(open(os.path.join(out, "config.json")))
    L = LLAMA
    want = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": L["V"], "hidden_size": L["C"],
            "intermediate_size": L["F"], "num_hidden_layers": L["L"], "num_attention_heads": L["NH"],
            "num_key_value_heads": L["NKV"], "head_dim": L["C"] // L["NH"], "max_position_embeddings": L["maxT"],
            "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False,
            "torch_dtype": "bfloat16", "llmc_padded_vocab_size": L["Vp"]}
    for k, v in want.items():
        assert c.get(k) == v, f"llama config.json: {k} is {c.get(k)!r}, expected {v!r}"
    assert c.get("rope_scaling") is None, "rope_scaling must be absent"
    # the floats are the header's float32 values exactly (as doubles), so reading them back is bit-exact
    header, _ = read_model(model_file("llama", 5))
    theta = struct.unpack("<f", struct.pack("<i", header[10]))[0]
    eps = struct.unpack("<f", struct.pack("<i", header[11]))[0]
    assert theta == f32(float(L["theta"])) and eps == f32(float(L["eps"])), "model_tool header floats"
    assert c["rope_theta"] == theta and c["rms_norm_eps"] == eps, (c["rope_theta"], theta, c["rms_norm_eps"], eps)
    assert c["rope_parameters"] == {"rope_type": "default", "rope_theta": theta}, c["rope_parameters"]
    raw = open(os.path.join(out, "config.json")).read()
    assert repr(theta) in raw and repr(eps) in raw, "floats not written as the exact float32 value"


def test_dtype_conversions():
    for family in ("gpt2", "llama"):
        fp32, bf16 = model_file(family, 3), model_file(family, 5)  # same seed: bf16 = C's rounding of fp32
        # fp32 file exported as BF16, imported as version 5 == the C writer's version 5 file
        out = export(fp32, f"conv_{family}_to_bf16", "--dtype", "bf16")
        tensors, _ = read_safetensors(os.path.join(out, "model.safetensors"))
        assert all(t[0] == "BF16" for t in tensors.values())
        back = fresh_dir(f"conv_{family}_bf16.bin")
        run("import", out, back, "--version", 5)
        assert open(back, "rb").read() == open(bf16, "rb").read(), f"{family}: f32 -> bf16 rounding differs from C's"
        # and the rule itself, element by element, on this test's own RNE
        _, b32 = read_model(fp32)
        _, b16 = read_model(bf16)
        assert [bf16_rne(u) for u in b32] == list(b16), "C's bf16 file is not RNE of its fp32 one (model_tool seed?)"
        # bf16 file exported as F32: exact widening; imported as version 5 gives the file back, as version 3 the
        # widened values
        out = export(bf16, f"conv_{family}_to_f32", "--dtype", "f32")
        tensors, _ = read_safetensors(os.path.join(out, "model.safetensors"))
        assert all(t[0] == "F32" and all((u & 0xFFFF) == 0 for u in t[2]) for t in tensors.values())
        back5, back3 = fresh_dir(f"conv_{family}_5.bin"), fresh_dir(f"conv_{family}_3.bin")
        run("import", out, back5, "--version", 5)
        assert open(back5, "rb").read() == open(bf16, "rb").read(), f"{family}: bf16 -> f32 -> bf16 is not exact"
        run("import", export(bf16, f"conv_{family}_bf16_native"), back3)  # BF16 tensors into a version 3 file
        h3, w3 = read_model(back3)
        assert h3[1] == 3 and list(w3) == [u << 16 for u in b16], f"{family}: BF16 -> version 3 widening differs"


def test_rne_edge_cases():
    """Rounding ties, carries into the exponent, infinities and NaNs: export --dtype bf16 of a crafted file."""
    setup()
    header, bits = read_model(model_file("gpt2", 3))
    specials = [0x3F808000, 0x3F818000, 0x3F80FFFF, 0x3F807FFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000,
                0x7FC00001, 0xFF800001, 0x00000001, 0x80000000, 0x3FFF8000]
    for i, s in enumerate(specials):
        bits[GPT2["Vp"] * GPT2["C"] + i] = s  # the start of wpe
    path = fresh_dir("rne.bin")
    data = array.array("I", bits)
    if sys.byteorder == "big":
        data.byteswap()
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header) + data.tobytes())
    out = export(path, "rne_hf", "--dtype", "bf16")
    wpe = read_safetensors(os.path.join(out, "model.safetensors"))[0]["transformer.wpe.weight"][2]
    got = list(wpe[:len(specials)])
    want = [bf16_rne(s) for s in specials]
    assert got == want, f"bf16 rounding: got {[hex(g) for g in got]}, expected {[hex(w) for w in want]}"


def test_logits_of_imported_model():
    """The CPU reference gives identical logits for a model and its export -> import (and a [B*T, V] file)."""
    import random
    rng = random.Random(SEED)
    for family, V in (("gpt2", GPT2["V"]), ("llama", LLAMA["V"])):
        B, T = 2, 11
        tokens = tmp_path(f"tokens_{family}.bin")
        with open(tokens, "wb") as f:
            f.write(struct.pack(f"<{B * T}i", *[rng.randrange(V) for _ in range(B * T)]))
        model = model_file(family, 3)
        back = fresh_dir(f"logits_{family}.bin")
        run("import", export(model, f"logits_{family}"), back)
        a, b = tmp_path(f"logits_{family}_a.bin"), tmp_path(f"logits_{family}_b.bin")
        tool("logits", model, tokens, B, T, a)
        tool("logits", back, tokens, B, T, b)
        da, db = open(a, "rb").read(), open(b, "rb").read()
        assert len(da) == B * T * V * 4, f"{family}: logits file is {len(da)} bytes, expected {B * T * V * 4}"
        assert da == db, f"{family}: logits of the imported model differ"
        vals = struct.unpack(f"<{B * T * V}f", da)
        assert all(v == v and abs(v) < 1e4 for v in vals) and len(set(vals)) > V, f"{family}: implausible logits"


def test_model_tool_errors():
    setup()
    out = tmp_path("never.bin")
    for args, phrase in (
            (["init", "gpt2", 16, 97, 128, 2, 4, out], "expected 6 numbers"),
            (["init", "gpt2", 16, 97, 128, 2, 4, "32x", out], "init gpt2 C"),
            (["init", "gpt2", 16, 97, 64, 2, 4, 32, out], "padded_vocab_size 64 is smaller"),
            (["init", "mistral", 16, out], "unknown model family 'mistral'"),
            (["init", "--version", 4, *init_args("gpt2"), out], "expected 3 (fp32) or 5 (bf16)"),
            (["init", "llama", 16, 97, 128, 2, 4, 2, 32, 48, "nan", "1e-5", out], "ROPE_THETA"),
            (["logits", model_file("gpt2", 3), "/nonexistent/tokens", 1, 4, out], "/nonexistent/tokens"),
            (["logits", model_file("gpt2", 3), model_file("gpt2", 3), 1, 99, out], "max_seq_len"),
            (["logits", model_file("gpt2", 3), model_file("gpt2", 3), 1, 4], "expected MODEL_FILE"),
            (["frobnicate"], "unknown command")):
        r = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 1 and phrase in r.stderr, f"model_tool {args}: exit {r.returncode}:\n{r.stderr}"
        assert not os.path.exists(out)


def test_refuses_malformed_safetensors():
    good = export(model_file("gpt2", 3), "bad_base")
    st = os.path.join(good, "model.safetensors")
    data = open(st, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    cases = {
        "truncated": (data[:-5], ["truncated"]),
        "short": (data[:5], ["truncated", "8-byte header length"]),
        "header_past_end": (struct.pack("<Q", len(data)) + data[8:], ["header length", "past the end"]),
        "not_json": (data[:8] + b"{" + b"x" * (n - 1) + data[8 + n:], ["not valid JSON"]),
        "trailing": (data + b"\0\0\0\0", ["trailing bytes"]),
    }
    for name, (content, phrases) in cases.items():
        folder = copy_folder(good, f"bad_{name}")
        with open(os.path.join(folder, "model.safetensors"), "wb") as f:
            f.write(content)
        out = fresh_dir(f"bad_{name}.bin")
        expect_error(["import", folder, out], os.path.join(folder, "model.safetensors"), *phrases)
        assert not os.path.exists(out), f"{name}: a model file was written"
        assert not [f for f in os.listdir(os.path.dirname(out)) if f.startswith(os.path.basename(out) + ".tmp")]

    tensors = raw_tensors(st)
    victim = "transformer.h.1.attn.c_attn.weight"

    def rewrite(name, items, meta={"format": "pt"}, **kw):
        folder = copy_folder(good, name)
        write_safetensors(os.path.join(folder, "model.safetensors"), items, meta, **kw)
        return folder

    def refuse(folder, *phrases):
        out = fresh_dir(os.path.basename(folder) + ".bin")
        expect_error(["import", folder, out], *phrases)
        assert not os.path.exists(out)

    folder = rewrite("bad_missing", [t for t in tensors if t[0] != victim])
    refuse(folder, victim, "missing", folder)
    folder = rewrite("bad_extra", tensors + [("transformer.h.0.attn.rotary.weight", "F32", [2], b"\0" * 8)])
    refuse(folder, "transformer.h.0.attn.rotary.weight", "unexpected", os.path.join(folder, "model.safetensors"))
    folder = rewrite("bad_shape", [(k, d, [s[1], s[0]] if k == victim else s, r) for k, d, s, r in tensors])
    refuse(folder, victim, "shape", "[96, 32]", "[32, 96]", os.path.join(folder, "model.safetensors"))
    folder = rewrite("bad_dtype", [(k, "F16", s, r[:len(r) // 2]) if k == victim else (k, d, s, r)
                                   for k, d, s, r in tensors])
    refuse(folder, victim, "F16", os.path.join(folder, "model.safetensors"))
    # offsets that overlap: declare one tensor's begin inside the previous one
    folder = copy_folder(good, "bad_overlap")
    header = json.loads(data[8:8 + n])
    header["transformer.wpe.weight"]["data_offsets"][0] -= 4
    header["transformer.wpe.weight"]["data_offsets"][1] -= 4
    text = json.dumps(header).encode()
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data[8 + n:])
    refuse(folder, "transformer", "contiguous", os.path.join(folder, "model.safetensors"))
    # duplicate keys in the header
    folder = copy_folder(good, "bad_duplicate")
    text = data[8:8 + n].rstrip()
    text = text[:-1] + b',"transformer.wpe.weight":' + json.dumps(header["transformer.wpe.weight"]).encode() + b"}"
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data[8 + n:])
    refuse(folder, "duplicate key", os.path.join(folder, "model.safetensors"))
    # an unpadded header (no spaces) is still valid safetensors and imports to the same file
    folder = rewrite("unpadded", tensors, None, pad=False)
    back = fresh_dir("unpadded.bin")
    run("import", folder, back)
    assert open(back, "rb").read() == open(model_file("gpt2", 3), "rb").read()


def test_refuses_bad_config():
    good = export(model_file("llama", 3), "cfg_base")

    def with_config(name, edit):
        folder = copy_folder(good, name)
        path = os.path.join(folder, "config.json")
        c = json.load(open(path))
        edit(c)
        with open(path, "w") as f:
            json.dump(c, f)
        return folder, path

    cases = [
        ("cfg_arch", lambda c: c.update(architectures=["MistralForCausalLM"]), ["MistralForCausalLM", "not supported"]),
        ("cfg_no_field", lambda c: c.pop("hidden_size"), ["missing field 'hidden_size'"]),
        ("cfg_rope_scaling", lambda c: c.update(rope_scaling={"rope_type": "llama3", "factor": 8.0}), ["rope_scaling"]),
        ("cfg_rope_params", lambda c: c.update(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4}), ["rope_parameters"]),
        ("cfg_act", lambda c: c.update(hidden_act="gelu"), ["hidden_act"]),
        ("cfg_bias", lambda c: c.update(attention_bias=True), ["attention_bias"]),
        ("cfg_heads", lambda c: c.update(num_key_value_heads=3), ["num_kv_heads 3"]),
        ("cfg_head_dim", lambda c: c.update(head_dim=16), ["head_dim"]),
        ("cfg_type", lambda c: c.update(num_hidden_layers="2"), ["num_hidden_layers", "not an integer"]),
        ("cfg_padded", lambda c: c.update(llmc_padded_vocab_size=50), ["padded_vocab_size 50 is smaller"]),
    ]
    for name, edit, phrases in cases:
        folder, path = with_config(name, edit)
        out = fresh_dir(f"{name}.bin")
        expect_error(["import", folder, out], path, *phrases)
        assert not os.path.exists(out)
    folder = copy_folder(good, "cfg_invalid_json")
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write("{\"architectures\": [\"LlamaForCausalLM\"], ")
    expect_error(["import", folder, fresh_dir("cfg_invalid_json.bin")], "config.json", "not valid JSON")
    folder = copy_folder(good, "cfg_none")
    os.remove(os.path.join(folder, "config.json"))
    expect_error(["import", folder, fresh_dir("cfg_none.bin")], os.path.join(folder, "config.json"))
    folder = copy_folder(good, "cfg_no_weights")
    os.remove(os.path.join(folder, "model.safetensors"))
    expect_error(["import", folder, fresh_dir("cfg_no_weights.bin")], folder, "model.safetensors")


def test_refuses_other_family_folder():
    """A Llama model's tensors under a GPT-2 config.json (and the reverse) are refused, naming a tensor."""
    llama = export(model_file("llama", 3), "fam_llama")
    gpt2 = export(model_file("gpt2", 3), "fam_gpt2")
    mixed = copy_folder(llama, "fam_llama_as_gpt2")
    shutil.copy(os.path.join(gpt2, "config.json"), os.path.join(mixed, "config.json"))
    out = fresh_dir("fam_mixed.bin")
    expect_error(["import", mixed, out], mixed, "transformer.wte.weight", "missing", "GPT2LMHeadModel")
    assert not os.path.exists(out)
    mixed = copy_folder(gpt2, "fam_gpt2_as_llama")
    shutil.copy(os.path.join(llama, "config.json"), os.path.join(mixed, "config.json"))
    expect_error(["import", mixed, out], mixed, "model.embed_tokens.weight", "missing", "LlamaForCausalLM")
    assert not os.path.exists(out)
    # same family, other shape: a GPT-2 folder whose config says more channels
    wide = copy_folder(gpt2, "fam_wide")
    c = json.load(open(os.path.join(wide, "config.json")))
    c["n_embd"] = 2 * GPT2["C"]
    json.dump(c, open(os.path.join(wide, "config.json"), "w"))
    expect_error(["import", wide, out], "transformer.wte.weight", "shape", os.path.join(wide, "model.safetensors"))


def test_refuses_bad_model_files_and_outputs():
    model = model_file("gpt2", 3)
    data = open(model, "rb").read()
    cases = {
        "truncated": (data[:-4], ["truncated"]),
        "short_header": (data[:100], ["truncated"]),
        "magic": (struct.pack("<i", 1234) + data[4:], ["magic 1234"]),
        "version": (data[:4] + struct.pack("<i", 4) + data[8:], ["version 4"]),
        "reserved": (data[:40] + struct.pack("<i", 7) + data[44:], ["reserved word 10"]),
        "config": (data[:20] + struct.pack("<i", 5) + data[24:], ["channels 32 must be a multiple of num_heads 5"]),
    }
    for name, (content, phrases) in cases.items():
        path = fresh_dir(f"badmodel_{name}.bin")
        with open(path, "wb") as f:
            f.write(content)
        out = fresh_dir(f"badmodel_{name}_hf")
        expect_error(["export", path, out], path, *phrases)
        assert not os.path.exists(out), f"{name}: OUT_DIR was created"
    expect_error(["export", tmp_path("nonexistent.bin"), fresh_dir("x_hf")], "nonexistent.bin")
    # OUT_DIR not empty: refused without --force, and left as it was
    out = fresh_dir("nonempty_hf")
    os.makedirs(out)
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("keep me")
    expect_error(["export", model, out], out, "not empty", "--force")
    assert os.listdir(out) == ["notes.txt"]
    run("export", model, out, "--force")
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "notes.txt"]
    # OUT_DIR is a file
    expect_error(["export", model, model], "not a directory")
    # import over an existing model file: refused without --force
    back = fresh_dir("exists.bin")
    with open(back, "wb") as f:
        f.write(b"old")
    expect_error(["import", out, back], back, "exists", "--force")
    assert open(back, "rb").read() == b"old"
    run("import", out, back, "--force")
    assert open(back, "rb").read() == data


def test_padded_rows_must_be_zero():
    for family in ("gpt2", "llama"):
        header, bits = read_model(model_file(family, 3))
        C, V = header[6], header[3]
        row = V + 3  # a padded row of wte (for Llama also check lm_head, the last tensor)
        for where, index in (("wte", row * C + 5), ("lm_head", len(bits) - 2)) if family == "llama" else (("wte", row * C + 5),):
            b = array.array("I", bits)
            b[index] = f32_bits(0.5)
            path = fresh_dir(f"pad_{family}_{where}.bin")
            if sys.byteorder == "big":
                b.byteswap()
            with open(path, "wb") as f:
                f.write(struct.pack("<256i", *header) + b.tobytes())
            out = fresh_dir(f"pad_{family}_{where}_hf")
            expect_error(["export", path, out], path, where, "padded", "--drop-padding")
            assert not os.path.exists(out)
            run("export", path, out, "--drop-padding")
            back = fresh_dir(f"pad_{family}_{where}_back.bin")
            run("import", out, back)
            assert open(back, "rb").read() == open(model_file(family, 3), "rb").read(), "padded rows not restored as 0"


def test_failures_leave_nothing():
    """A failure while putting the files in place (injected) leaves no OUT_DIR, model file or temporary."""
    model = model_file("llama", 3)
    fail_second_rename = """
import os
_real, _calls = os.replace, []
def _replace(a, b):
    _calls.append(a)
    if len(_calls) == 2:
        raise OSError(28, "No space left on device", b)
    return _real(a, b)
os.replace = _replace
"""
    parent = fresh_dir("inject")
    os.makedirs(parent)
    out = os.path.join(parent, "new", "hf")
    expect_error(["export", model, out], "No space left on device", preamble=fail_second_rename)
    assert os.listdir(parent) == [], f"export left {os.listdir(parent)} behind"
    good = export(model, "inject_src")
    fail_fsync = "import os\ndef _fsync(fd):\n    raise OSError(5, 'Input/output error')\nos.fsync = _fsync\n"
    back = os.path.join(parent, "model.bin")
    expect_error(["import", good, back], back, "Input/output error", preamble=fail_fsync)
    assert os.listdir(parent) == [], f"import left {os.listdir(parent)} behind"
    # an interruption in the middle of the data (the 6th large read of the model file fails: after the header and
    # the padded-row checks, while model.safetensors is being written) also cleans up
    fail_read = """
import builtins, glob
_open = builtins.open
_reads = []
class _F:
    def __init__(self, f): self.f = f
    def __getattr__(self, k): return getattr(self.f, k)
    def __enter__(self): return self
    def __exit__(self, *a): return self.f.__exit__(*a)
    def read(self, n=-1):
        if n > 1024:
            _reads.append(n)
            if len(_reads) == 6:
                assert glob.glob(OUT + '/model.safetensors.tmp.*'), 'not in the middle of writing'
                raise OSError(5, 'Input/output error')
        return self.f.read(n)
def _open2(p, mode='r', *a, **k):
    f = _open(p, mode, *a, **k)
    return _F(f) if str(p).endswith('.bin') and 'r' in mode else f
builtins.open = _open2
"""
    expect_error(["export", model, out], "Input/output error", preamble=f"OUT = {out!r}\n" + fail_read)
    assert os.listdir(parent) == [], f"export left {os.listdir(parent)} behind"


def test_sharded_and_transformers_variants():
    """A sharded folder (index + two shards), GPT-2 names without 'transformer.' with a tied lm_head.weight and
    the causal-mask buffers of old checkpoints, and a tied Llama without lm_head.weight all import to the
    same model file; a tied head that differs from the embedding is refused."""
    for family in ("gpt2", "llama"):
        model = model_file(family, 3)
        good = export(model, f"var_{family}")
        tensors = raw_tensors(os.path.join(good, "model.safetensors"))
        folder = copy_folder(good, f"var_{family}_sharded")
        os.remove(os.path.join(folder, "model.safetensors"))
        half = len(tensors) // 2
        names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        write_safetensors(os.path.join(folder, names[0]), tensors[:half], {"format": "pt"})
        write_safetensors(os.path.join(folder, names[1]), tensors[half:], {"format": "pt"})
        wmap = {t[0]: names[0] for t in tensors[:half]}
        wmap.update({t[0]: names[1] for t in tensors[half:]})
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f)
        back = fresh_dir(f"var_{family}_sharded.bin")
        run("import", folder, back)
        assert open(back, "rb").read() == open(model, "rb").read(), f"{family}: sharded import differs"
        # an index that puts a tensor in the wrong shard
        wmap[tensors[0][0]] = names[1]
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"weight_map": wmap}, f)
        expect_error(["import", folder, fresh_dir("var_bad_index.bin")], tensors[0][0], names[0])

    model = model_file("gpt2", 3)
    tensors = raw_tensors(os.path.join(export(model, "var_gpt2_src"), "model.safetensors"))
    wte = [t for t in tensors if t[0] == "transformer.wte.weight"][0]
    bare = [(k[len("transformer."):], d, s, r) for k, d, s, r in tensors]
    mask = [(f"h.{i}.attn.bias", "F32", [1, 1, 4, 4], b"\0" * 64) for i in range(GPT2["L"])]
    folder = copy_folder(export(model, "var_gpt2_src2"), "var_gpt2_bare")
    write_safetensors(os.path.join(folder, "model.safetensors"), bare + mask + [("lm_head.weight",) + wte[1:]])
    back = fresh_dir("var_gpt2_bare.bin")
    run("import", folder, back)
    assert open(back, "rb").read() == open(model, "rb").read(), "GPT-2 bare names + tied head: import differs"
    changed = bytearray(wte[3])
    changed[100] ^= 1
    write_safetensors(os.path.join(folder, "model.safetensors"), bare + [("lm_head.weight", wte[1], wte[2], bytes(changed))])
    expect_error(["import", folder, fresh_dir("var_gpt2_untied.bin")], "lm_head.weight", "differs", "tie")

    # tied Llama: lm_head == embedding, written without lm_head.weight
    header, bits = read_model(model_file("llama", 3))
    C, V, Vp = header[6], header[3], header[7]
    b = array.array("I", bits)
    b[len(b) - Vp * C:] = b[:Vp * C]  # lm_head := wte
    tied = fresh_dir("var_llama_tied.bin")
    if sys.byteorder == "big":
        b.byteswap()
    with open(tied, "wb") as f:
        f.write(struct.pack("<256i", *header) + b.tobytes())
    folder = export(tied, "var_llama_tied")
    path = os.path.join(folder, "model.safetensors")
    write_safetensors(path, [t for t in raw_tensors(path) if t[0] != "lm_head.weight"], {"format": "pt"})
    c = json.load(open(os.path.join(folder, "config.json")))
    c["tie_word_embeddings"] = True
    json.dump(c, open(os.path.join(folder, "config.json"), "w"))
    back = fresh_dir("var_llama_tied_back.bin")
    run("import", folder, back)
    assert open(back, "rb").read() == open(tied, "rb").read(), "tied Llama: import differs"
    c["tie_word_embeddings"] = False
    json.dump(c, open(os.path.join(folder, "config.json"), "w"))
    expect_error(["import", folder, fresh_dir("var_llama_untied.bin")], "lm_head.weight", "missing")


def test_command_line():
    r = run("-h")
    assert "export" in r.stdout and "import" in r.stdout
    r = run("export", "-h")
    assert "--dtype" in r.stdout and "--force" in r.stdout
    model = model_file("gpt2", 3)
    expect_error([], "required", "export,import")
    expect_error(["export", model], "OUT_DIR")
    expect_error(["export", model, fresh_dir("cli_hf"), "--dtype", "f16"], "--dtype", "f16")
    expect_error(["import", fresh_dir("cli_none"), fresh_dir("cli.bin"), "--version", "4"], "--version")
    expect_error(["import", fresh_dir("cli_none"), fresh_dir("cli.bin")], "cli_none", "not a directory")
    expect_error(["frobnicate"], "frobnicate")
    assert not os.path.exists(tmp_path("cli_hf"))


if __name__ == "__main__":
    for t in (test_roundtrip_bit_exact, test_safetensors_gpt2, test_safetensors_llama, test_config_json,
              test_dtype_conversions, test_rne_edge_cases, test_logits_of_imported_model, test_model_tool_errors,
              test_refuses_malformed_safetensors, test_refuses_bad_config, test_refuses_other_family_folder,
              test_refuses_bad_model_files_and_outputs, test_padded_rows_must_be_zero, test_failures_leave_nothing,
              test_sharded_and_transformers_variants, test_command_line):
        testing.run(t)
    if "tmp" in _state and testing._counts["failed"] == 0:
        shutil.rmtree(_state["tmp"], ignore_errors=True)
    testing.finish()
