"""Independent check of the CPU reference GPT-2 (test/reference/gpt2_cpu.h) against PyTorch in float64,
through the PyTorch peer's own model code (dev/bench/torch_gpt2.py), so it also checks that peer.

Run from the repository root, where PyTorch is installed (the device machine, or a CPU install):
    python3 dev/torch_reference_check.py
It builds dev/ref_dump.c with gcc into build/torch_check/, which for each case below writes the model
(llm.c model file, v3 fp32 and v5 bf16), the batch (a token shard of B*T+1 tokens) and the C results
(reference.bin: loss, every parameter gradient, and the parameters after two AdamW steps; the format is
at the top of dev/ref_dump.c). PyTorch loads the same files, recomputes in float64 and compares.
Ends with test/testing.py's RESULT line; every test is skipped when torch or gcc is missing.
The seed is $TEST_SEED, else the clock, printed first so that a failure can be repeated.

Tolerances (the C side is fp32, eps32 = 2^-23 = 1.19e-7; PyTorch float64 is exact by comparison):
- loss: |loss_c - loss_t| <= 16 eps32 * loss_t.
- gradients, per llm.c tensor: max |g_c - g_t| <= GRAD_TOL * max |g_t| (GRAD_TOL = 1e-5, ~84 eps32: a
  few hundred fp32 roundings along the backward chain at these sizes); the padded rows wte[V..Vp) and
  the wpe rows t >= T must have exactly zero gradient on both sides.
- AdamW, applied by torch.optim.AdamW (the peer's parameter groups, clip_grad_norm_) to the C gradients:
  |p_c - p_t| <= 16 eps32 * (|p_t| + lr) per element after each of two steps (fp32 rounding of the
  parameter and of the update, whose size is about lr).
- bf16 model file: the v5 parameters equal the v3 ones rounded to bf16 (nearest even) bit for bit.
"""
import os
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "test"))
sys.path.insert(0, os.path.join(REPO, "dev", "bench"))
import testing  # noqa: E402

try:
    import torch
    import torch_gpt2
except ImportError as e:
    torch = None
    IMPORT_ERROR = str(e)

BUILD_DIR = os.path.join(REPO, "build", "torch_check")
REF_DUMP = os.path.join(BUILD_DIR, "ref_dump")
REFERENCE_MAGIC = 20261125
EPS32 = 2.0 ** -23
GRAD_TOL = 32 * EPS32
LOSS_TOL = 16 * EPS32
ADAM_TOL = 16 * EPS32

# ref_dump flags of each case: the defaults (L=2 NH=4 C=48 V=211 Vp=256 maxT=32, B=3 T=20: T < maxT and
# odd V) and one with T = maxT, more layers, 2 heads of 16 and a single batch row.
CASES = {"default": [], "t_full": ["-L", "3", "--heads", "2", "-C", "32", "-V", "97", "--vp", "128",
                                   "--max-seq-len", "24", "-b", "1", "-t", "24"]}

SEED = int(os.environ.get("TEST_SEED", str(int(time.time()))))
print(f"torch_reference_check: TEST_SEED={SEED}")
_built = {}  # case name -> directory of its files, once ref_dump has run


def require_tools():
    if torch is None:
        raise testing.Skip(f"PyTorch is not importable here ({IMPORT_ERROR}); run on the device machine")
    if shutil.which("gcc") is None:
        raise testing.Skip("gcc not found: cannot build dev/ref_dump.c")


def case_dir(name):
    """Builds ref_dump (once) and runs it for case `name`; returns the directory of its four files."""
    if name in _built:
        return _built[name]
    if not _built:
        os.makedirs(BUILD_DIR, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-std=gnu11", "-fopenmp", "-Wall", "-Wextra", "-Wno-unused-function", "-I.",
                        "dev/ref_dump.c", "-o", REF_DUMP, "-lm"], cwd=REPO, check=True)
    out = os.path.join(BUILD_DIR, name)
    run = subprocess.run([REF_DUMP, "--out", out, "--seed", str(SEED)] + CASES[name], cwd=REPO,
                         capture_output=True, text=True)
    print(run.stdout.strip())
    if run.returncode != 0:
        raise RuntimeError(f"ref_dump failed for case {name}: {run.stderr.strip()}")
    _built[name] = out
    return out


def read_reference(path, num_parameters):
    """reference.bin -> (B, T, scalars dict, grads, params after step 1, params after step 2), fp32 arrays."""
    with open(path, "rb") as f:
        header = np.fromfile(f, dtype="<i4", count=256)
        assert header[0] == REFERENCE_MAGIC and header[1] == 1, f"'{path}': bad header {header[:2]}"
        assert header[4] == num_parameters, f"'{path}': {header[4]} parameters, the model file has {num_parameters}"
        names = ["loss", "norm", "lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip"]
        scalars = dict(zip(names, (float(x) for x in np.fromfile(f, dtype="<f4", count=8))))
        arrays = [np.fromfile(f, dtype="<f4", count=num_parameters) for _ in range(3)]
        assert f.read(1) == b"", f"'{path}': trailing bytes"
    assert all(a.size == num_parameters for a in arrays), f"'{path}': truncated"
    return int(header[2]), int(header[3]), scalars, arrays


def split_llmc(cfg, flat):
    """A flat llm.c-order array -> list of the 16 tensors in their shapes."""
    out, offset = [], 0
    for _, shape in cfg.tensor_shapes():
        n = int(np.prod(shape))
        out.append(flat[offset:offset + n].reshape(shape))
        offset += n
    return out


def load_case(name):
    """Model (float64, CPU) with the case's parameters, its config, the reference results and the batch."""
    out = case_dir(name)
    cfg, version, tensors = torch_gpt2.read_model_file(os.path.join(out, "model.bin"))
    assert version == 3
    B, T, scalars, arrays = read_reference(os.path.join(out, "reference.bin"), cfg.num_parameters())
    model = torch_gpt2.GPT(cfg).double()
    model.load_llmc(tensors)
    loader = torch_gpt2.ShardLoader(os.path.join(out, "tokens.bin"), B, T, cfg.vocab_size)
    inputs, targets = loader.next_batch()
    return cfg, model, tensors, (B, T, scalars, arrays), inputs, targets


def check_loss_and_gradients(name):
    cfg, model, _, (B, T, scalars, arrays), inputs, targets = load_case(name)
    loss = model(inputs, targets)
    loss.backward()
    loss_t, loss_c = loss.item(), scalars["loss"]
    print(f"  [{name}] loss C {loss_c:.7f} torch {loss_t:.10f}, rel diff {abs(loss_c - loss_t) / loss_t:.2e} "
          f"(bound {LOSS_TOL:.2e})")
    assert abs(loss_c - loss_t) <= LOSS_TOL * loss_t, "loss differs"
    grads_c = split_llmc(cfg, arrays[0])
    failures = []
    for tname, g_t, g_c in zip(torch_gpt2.TENSOR_NAMES, model.llmc_gradients(), grads_c):
        g_t = g_t.numpy()
        scale = np.abs(g_t).max()
        err = np.abs(g_c - g_t).max() / scale if scale > 0 else np.abs(g_c).max()
        print(f"  [{name}] {tname:9s} max|g| {scale:.3e}  max err / max|g| {err:.2e}")
        if not err <= GRAD_TOL:
            failures.append(f"{tname} ({err:.2e})")
    assert not failures, f"gradients beyond {GRAD_TOL:.1e}: {', '.join(failures)}"
    # Rows that must get nothing: padded vocabulary rows and positions never used.
    wte_c, wpe_c = grads_c[0], grads_c[1]
    wte_t, wpe_t = (g.numpy() for g in model.llmc_gradients()[:2])
    assert not wte_c[cfg.vocab_size:].any() and not wte_t[cfg.vocab_size:].any(), "padded wte rows got gradient"
    assert not wpe_c[T:].any() and not wpe_t[T:].any(), "wpe rows t >= T got gradient"
    assert wte_t[: cfg.vocab_size].any() and wpe_t[:T].all(), "the used rows must get gradient"


def check_adamw(name):
    cfg, model, tensors, (B, T, s, arrays), _, _ = load_case(name)
    grads, expected = arrays[0], arrays[1:]
    optimizer = torch_gpt2.configure_optimizer(model, s["lr"], s["weight_decay"], s["beta1"], s["beta2"], s["eps"],
                                               fused=False)
    for step, want in enumerate(expected, start=1):
        for parts, g in zip(model.llmc_views(), split_llmc(cfg, grads)):
            g = torch.from_numpy(g.astype(np.float64))
            for layer, p in enumerate(parts):
                p.grad = (g if len(parts) == 1 else g[layer]).clone()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), s["grad_clip"])
        assert abs(norm.item() - s["norm"]) <= 4 * EPS32 * s["norm"], f"gradient norm {norm.item()} vs C {s['norm']}"
        optimizer.step()
        got = np.concatenate([torch.cat([p.detach().reshape(-1) for p in parts]).numpy()
                              for parts in model.llmc_views()])
        # llmc_views lists per-layer parts in layer order, so the concatenation is llm.c's flat order
        err = np.abs(want - got) / (np.abs(got) + s["lr"])
        worst = int(np.argmax(err))
        print(f"  [{name}] AdamW step {step}: max |p_c - p_t| / (|p_t| + lr) = {err[worst]:.2e} "
              f"(bound {ADAM_TOL:.2e}), largest update {np.abs(got - np.concatenate([t.reshape(-1) for t in tensors])).max():.2e}")
        assert err[worst] <= ADAM_TOL, f"AdamW step {step}: parameter {worst} C {want[worst]} torch {got[worst]}"


def test_loss_and_gradients():
    require_tools()
    for name in CASES:
        check_loss_and_gradients(name)


def test_adamw_steps():
    require_tools()
    for name in CASES:
        check_adamw(name)


def test_bf16_model_file():
    require_tools()
    out = case_dir("default")
    _, _, fp32 = torch_gpt2.read_model_file(os.path.join(out, "model.bin"))
    cfg, version, bf16 = torch_gpt2.read_model_file(os.path.join(out, "model_bf16.bin"))
    assert version == 5
    for name, a, b in zip(torch_gpt2.TENSOR_NAMES, fp32, bf16):
        rounded = torch.from_numpy(np.ascontiguousarray(a)).to(torch.bfloat16).float().numpy()
        assert np.array_equal(rounded.view(np.uint32), np.ascontiguousarray(b).view(np.uint32)), \
            f"{name}: v5 parameters differ from the v3 ones rounded to bf16"


def test_model_file_errors():
    require_tools()
    out = case_dir("default")
    data = open(os.path.join(out, "model.bin"), "rb").read()
    bad = os.path.join(BUILD_DIR, "truncated.bin")
    with open(bad, "wb") as f:
        f.write(data[:-4])
    try:
        torch_gpt2.read_model_file(bad)
    except ValueError as e:
        assert "truncated" in str(e) and bad in str(e), str(e)
    else:
        raise AssertionError("a truncated model file was accepted")


if __name__ == "__main__":
    for test in (test_loss_and_gradients, test_adamw_steps, test_bf16_model_file, test_model_file_errors):
        testing.run(test)
    testing.finish()
