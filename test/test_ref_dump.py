"""Tests for dev/ref_dump.c, the C side of the PyTorch float64 checks (dev/torch_reference_check.py for
GPT-2, dev/torch_llama_reference_check.py for Llama), CPU only, standard library only: those checks need
PyTorch and run on the device machine, so this one makes sure in CI that the tool builds and that what it
writes parses and is consistent.

ref_dump is built here with gcc (without warnings) into build/test_ref_dump/ (every test is skipped without
gcc) and run for small models of both families. Checked: model.bin is a valid model file of the family and
configuration asked for (read by dev/export_hf.py's reader, a third implementation of the header besides the
C loaders and the PyTorch peers; the Llama header's rope_theta and norm_eps words are the float32 bits of the
flags); model_bf16.bin holds the same parameters rounded to bf16 (nearest even); tokens.bin is a token shard
of B*T+1 ids below V; reference.bin has its header (B, T, the model's parameter count), the scalars the
checks assume (lr 1e-3, betas 0.9/0.95, eps 1e-8, weight decay 0.1, grad_clip = norm / 2), a finite loss
near ln V, gradients whose norm is the recorded one and that are exactly zero on the rows nothing reaches
(padded vocabulary rows, GPT-2's unused positions), and two AdamW steps of the size AdamW allows; the same
seed gives the same bytes; bad flags are refused with one line naming the flag.
The seed is $TEST_SEED, else the clock, printed first.
"""
import array
import math
import os
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testing  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "dev"))
import export_hf  # noqa: E402  (standard library only: the model-file reader and the bf16 rounding)

BUILD = os.path.join(ROOT, "build", "test_ref_dump")
TOOL = os.path.join(BUILD, "ref_dump")
SEED = int(os.environ.get("TEST_SEED", time.time_ns() % 2**31))
print(f"test_ref_dump: TEST_SEED={SEED}")
REFERENCE_MAGIC = 20261125
SHARD_MAGIC = 20240520
HEADER_BYTES = 1024

# name: (ref_dump flags, expected configuration fields, B, T)
CASES = {
    "gpt2": (["-L", "2", "--heads", "2", "-C", "16", "-V", "53", "--vp", "64", "--max-seq-len", "12", "-b", "2", "-t", "7"],
             dict(family="gpt2", max_seq_len=12, vocab_size=53, padded_vocab_size=64, num_layers=2, num_heads=2,
                  channels=16), 2, 7),
    "llama": (["--family", "llama"],  # ref_dump's Llama defaults
              dict(family="llama", max_seq_len=32, vocab_size=211, padded_vocab_size=256, num_layers=2, num_heads=4,
                   num_kv_heads=2, channels=64, ffn_hidden=96, rope_theta=10000.0, norm_eps=1e-5), 3, 20),
    "llama_mqa": (["--family", "llama", "-L", "1", "--heads", "4", "--kv-heads", "1", "-C", "16", "--ffn", "24",
                   "-V", "41", "--vp", "48", "--max-seq-len", "10", "-b", "1", "-t", "10", "--rope-theta", "500000",
                   "--norm-eps", "1e-6"],
                  dict(family="llama", max_seq_len=10, vocab_size=41, padded_vocab_size=48, num_layers=1, num_heads=4,
                       num_kv_heads=1, channels=16, ffn_hidden=24, rope_theta=500000.0, norm_eps=1e-6), 1, 10),
}


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def floats(data):
    a = array.array("f")
    a.frombytes(data)
    if sys.byteorder == "big":
        a.byteswap()
    return a


def build():
    """Builds ref_dump once; skips without gcc."""
    testing.build_c_tool("dev/ref_dump.c", TOOL)


def run_case(name, out=None):
    """Runs ref_dump for a case into build/test_ref_dump/<out or name>; returns the directory."""
    build()
    out = os.path.join(BUILD, out or name)
    r = subprocess.run([TOOL, "--out", out, "--seed", str(SEED)] + CASES[name][0], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, f"ref_dump {name} failed: {r.stderr}"
    assert r.stdout.startswith("ref_dump: "), r.stdout
    return out


def check_case(name):
    flags, want, B, T = CASES[name]
    out = run_case(name)
    # model.bin: the family's model file with the configuration asked for
    cfg, version = export_hf.read_model_header(os.path.join(out, "model.bin"))
    assert version == 3
    for field, value in want.items():
        if field in ("rope_theta", "norm_eps"):
            got = getattr(cfg, field + "_bits")
            assert got == f32_bits(value), f"{name}: {field} bits {got:#x}, expected float32({value}) {f32_bits(value):#x}"
        else:
            assert getattr(cfg, field) == value, f"{name}: {field} is {getattr(cfg, field)}, expected {value}"
    layout = export_hf.Layout(cfg)
    n = layout.num_parameters
    with open(os.path.join(out, "model.bin"), "rb") as f:
        params0_bytes = f.read()[HEADER_BYTES:]
    params0 = floats(params0_bytes)
    assert len(params0) == n and all(math.isfinite(x) for x in params0)
    # model_bf16.bin: the same parameters rounded to bf16
    cfg16, version16 = export_hf.read_model_header(os.path.join(out, "model_bf16.bin"))
    assert version16 == 5 and cfg16.__dict__ == cfg.__dict__
    with open(os.path.join(out, "model_bf16.bin"), "rb") as f:
        assert f.read()[HEADER_BYTES:] == export_hf.f32_to_bf16(params0_bytes), f"{name}: bf16 file is not the rounded fp32 one"
    # tokens.bin: a shard of B*T+1 ids < V
    with open(os.path.join(out, "tokens.bin"), "rb") as f:
        data = f.read()
    header = struct.unpack("<256i", data[:HEADER_BYTES])
    assert header[:3] == (SHARD_MAGIC, 1, B * T + 1) and not any(header[3:]), header[:4]
    assert len(data) == HEADER_BYTES + 2 * (B * T + 1)
    tokens = struct.unpack(f"<{B * T + 1}H", data[HEADER_BYTES:])
    assert max(tokens) < cfg.vocab_size
    # reference.bin
    with open(os.path.join(out, "reference.bin"), "rb") as f:
        data = f.read()
    assert len(data) == HEADER_BYTES + 8 * 4 + 3 * 4 * n, f"{name}: reference.bin is {len(data)} bytes"
    header = struct.unpack("<256i", data[:HEADER_BYTES])
    assert header[:5] == (REFERENCE_MAGIC, 1, B, T, n) and not any(header[5:]), header[:6]
    loss, norm, lr, beta1, beta2, eps, wd, clip = floats(data[HEADER_BYTES:HEADER_BYTES + 32])
    assert (lr, beta1, beta2, eps, wd) == tuple(floats(struct.pack("<5f", 1e-3, 0.9, 0.95, 1e-8, 0.1)))
    assert clip == 0.5 * norm and norm > 0, (clip, norm)
    assert math.isfinite(loss) and abs(loss - math.log(cfg.vocab_size)) < 2.0, f"{name}: loss {loss}, ln V {math.log(cfg.vocab_size)}"
    body = floats(data[HEADER_BYTES + 32:])
    grads, steps = body[:n], (body[n:2 * n], body[2 * n:])
    assert all(math.isfinite(g) for g in grads)
    norm_here = math.sqrt(math.fsum(g * g for g in grads))
    assert abs(norm_here - norm) <= 1e-6 * norm, f"{name}: gradient norm {norm_here} vs recorded {norm}"
    # Rows nothing reaches get exactly zero gradient: padded vocabulary rows (and GPT-2's positions >= T).
    zero_rows = {"wte": cfg.vocab_size, "wpe": T} if cfg.family == "gpt2" else {"wte": cfg.vocab_size, "lm_head": cfg.vocab_size}
    for tensor, first in zero_rows.items():
        offset, size, row, rows = layout.info[tensor]
        assert not any(grads[offset + first * row:offset + size]), f"{name}: {tensor} rows >= {first} got gradient"
        assert any(grads[offset:offset + first * row]), f"{name}: {tensor} rows < {first} got no gradient"
    # AdamW: step 1 moves a parameter by at most lr * (1 + wd |p|) (m_hat / sqrt(v_hat) = g / |g|), and the
    # clipped gradient moves nearly every parameter by about lr.
    before = params0
    for step, after in enumerate(steps, start=1):
        assert all(math.isfinite(p) for p in after)
        moves = [abs(a - b) for a, b in zip(after, before)]
        if step == 1:
            worst = max(m - lr * (1 + wd * abs(b)) for m, b in zip(moves, before))
            assert worst <= 1e-6, f"{name}: AdamW step 1 moved a parameter {worst} beyond lr (1 + wd |p|)"
        assert max(moves) > 0.5 * lr, f"{name}: AdamW step {step} moved nothing"
        before = after


def test_gpt2_files():
    check_case("gpt2")


def test_llama_files():
    check_case("llama")


def test_llama_mqa_files():
    check_case("llama_mqa")


def test_deterministic():
    """The same flags and seed write the same bytes (OpenMP threads do not change a result)."""
    a, b = run_case("llama"), run_case("llama", out="llama_again")
    for f in ("model.bin", "model_bf16.bin", "tokens.bin", "reference.bin"):
        with open(os.path.join(a, f), "rb") as fa, open(os.path.join(b, f), "rb") as fb:
            assert fa.read() == fb.read(), f"{f} differs between two runs with seed {SEED}"


def test_bad_flags():
    build()
    out = os.path.join(BUILD, "bad")
    for args, message in [(["--kv-heads", "2"], "flag --kv-heads is for --family llama only"),
                          (["--family", "bert"], "flag --family: expected gpt2 or llama, got 'bert'"),
                          (["--family", "llama", "--heads", "4", "--kv-heads", "3"], "num_kv_heads 3"),
                          (["--family", "llama", "-C", "12", "--heads", "4"], "must be even for RoPE"),
                          (["--family", "llama", "--rope-theta", "abc"], "flag --rope-theta: expected a finite float"),
                          (["--family", "llama", "-t", "40"], "flag -t: T=40 exceeds --max-seq-len 32")]:
        r = subprocess.run([TOOL, "--out", out] + args, cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert not os.path.exists(out), f"{args}: a refused run created {out}"
    r = subprocess.run([TOOL, "--init", "l2b", "--out", os.path.join(BUILD, "l2b.bin")], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 1 and "unknown Llama model 'l2b'" in r.stderr and "unknown GPT-2 model" in r.stderr, r.stderr


if __name__ == "__main__":
    for test in (test_gpt2_files, test_llama_files, test_llama_mqa_files, test_deterministic, test_bad_flags):
        testing.run(test)
    testing.finish()
