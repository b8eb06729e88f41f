"""Independent check of the CPU reference GPT-2 (test/reference/gpt2_cpu.h) against PyTorch in float64,
through the PyTorch peer's own model code (dev/bench/torch_gpt2.py), so it also checks that peer. This file
is also the check machinery of dev/torch_llama_reference_check.py (the same checks of the CPU reference
Llama through dev/bench/torch_llama.py): a model family is a Family below.

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
- gradients, per llm.c tensor: max |g_c - g_t| <= GRAD_TOL * max |g_t| (GRAD_TOL = 32 eps32 = 3.8e-6: each
  gradient element is a chain of fp32 dot products and sums of at most a few hundred terms (B*T = 60 rows,
  Vp = 256 logits, 4C = 192 channels), whose rounding errors add up like a random walk, a few eps32 each,
  through the L layers; measured 5.5 eps32 at worst); the padded rows wte[V..Vp) and the wpe rows t >= T
  must have exactly zero gradient on both sides.
- AdamW, applied by torch.optim.AdamW (the peer's parameter groups, clip_grad_norm_) to the C gradients:
  |p_c - p_t| <= 16 eps32 * (|p_t| + lr) per element after each of two steps (fp32 rounding of the
  parameter and of the update, whose size is about lr); the gradient norm within 4 eps32.
- bf16 model file: the v5 parameters equal the v3 ones rounded to bf16 (nearest even) bit for bit.
"""
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "test"))
sys.path.insert(0, os.path.join(REPO, "dev", "bench"))
import testing  # noqa: E402

try:  # numpy and PyTorch are on the device machine, not in CI: without them every test is skipped
    import numpy as np
    import torch
    import torch_gpt2
    IMPORT_ERROR = None
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
NORM_TOL = 4 * EPS32

SEED = int(os.environ.get("TEST_SEED", str(int(time.time()))))
_built = {}  # case directory name -> its directory, once ref_dump has run


class Family:
    """What the checks need of a model family.
    name: the prefix of its case directories; peer: its PyTorch peer module (read_model_file, configure_optimizer,
    ShardLoader through torch_gpt2); model_class(cfg): the peer's model (load_llmc, llmc_views, llmc_gradients,
    tensor_names, forward(inputs, targets) -> mean loss); cases: {case name: ref_dump flags} (the family flag
    included); gradient_rows(cfg, T): {tensor name: (n, all_rows)}: rows [n:] of that tensor must get exactly zero
    gradient on both sides, and rows [:n] some (every element of them when all_rows); variants: {label: function
    (model)} run before the loss and gradient check, each checked in turn (e.g. two attention paths)."""

    def __init__(self, name, peer, model_class, cases, gradient_rows, variants=None):
        self.name, self.peer, self.model_class = name, peer, model_class
        self.cases, self.gradient_rows = cases, gradient_rows
        self.variants = variants or {"": lambda model: None}


def require_tools(import_error=None):
    """Raises testing.Skip when PyTorch (or the peer module) or gcc is missing."""
    import_error = import_error or IMPORT_ERROR
    if import_error is not None:
        raise testing.Skip(f"PyTorch (or numpy) is not importable here ({import_error}); run on the device machine")
    if shutil.which("gcc") is None:
        raise testing.Skip("gcc not found: cannot build dev/ref_dump.c")


def case_dir(family, case):
    """Builds ref_dump (once) and runs it for a case of the family; returns the directory of its four files."""
    name = f"{family.name}_{case}"
    if name in _built:
        return _built[name]
    testing.build_c_tool("dev/ref_dump.c", REF_DUMP)
    out = os.path.join(BUILD_DIR, name)
    run = subprocess.run([REF_DUMP, "--out", out, "--seed", str(SEED)] + family.cases[case], cwd=REPO,
                         capture_output=True, text=True)
    print(run.stdout.strip())
    if run.returncode != 0:
        raise RuntimeError(f"ref_dump failed for case {name}: {run.stderr.strip()}")
    _built[name] = out
    return out


def read_reference(path, num_parameters):
    """reference.bin -> (B, T, scalars dict, [grads, params after step 1, params after step 2]), fp32 arrays."""
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


def split_tensors(cfg, flat):
    """A flat array in the model file's order -> list of the tensors in their shapes."""
    out, offset = [], 0
    for _, shape in cfg.tensor_shapes():
        n = int(np.prod(shape))
        out.append(flat[offset:offset + n].reshape(shape))
        offset += n
    return out


def load_case(family, case):
    """Model (float64, CPU) with the case's parameters, its config, the reference results and the batch."""
    out = case_dir(family, case)
    cfg, version, tensors = family.peer.read_model_file(os.path.join(out, "model.bin"))
    assert version == 3
    B, T, scalars, arrays = read_reference(os.path.join(out, "reference.bin"), cfg.num_parameters())
    model = family.model_class(cfg).double()
    model.load_llmc(tensors)
    loader = torch_gpt2.ShardLoader(os.path.join(out, "tokens.bin"), B, T, cfg.vocab_size)
    inputs, targets = loader.next_batch()
    return cfg, model, tensors, (B, T, scalars, arrays), inputs, targets


def check_loss_and_gradients(family, case):
    """The C loss and gradients of a case against the peer's float64 forward and backward, for every variant."""
    for variant, prepare in family.variants.items():
        label = f"{case}{'/' + variant if variant else ''}"
        cfg, model, _, (B, T, scalars, arrays), inputs, targets = load_case(family, case)
        prepare(model)
        loss = model(inputs, targets)
        loss.backward()
        loss_t, loss_c = loss.item(), scalars["loss"]
        print(f"  [{label}] loss C {loss_c:.7f} torch {loss_t:.10f}, rel diff {abs(loss_c - loss_t) / loss_t:.2e} "
              f"(bound {LOSS_TOL:.2e})")
        assert abs(loss_c - loss_t) <= LOSS_TOL * loss_t, f"[{label}] loss differs"
        grads_c = split_tensors(cfg, arrays[0])
        grads_t = [g.numpy() for g in model.llmc_gradients()]
        failures = []
        for tname, g_t, g_c in zip(model.tensor_names, grads_t, grads_c):
            scale = np.abs(g_t).max()
            err = np.abs(g_c - g_t).max() / scale if scale > 0 else np.abs(g_c).max()
            print(f"  [{label}] {tname:10s} max|g| {scale:.3e}  max err / max|g| {err:.2e}")
            if not err <= GRAD_TOL:
                failures.append(f"{tname} ({err:.2e})")
        assert not failures, f"[{label}] gradients beyond {GRAD_TOL:.1e}: {', '.join(failures)}"
        # Rows that must get nothing (padded vocabulary rows, positions never used) and rows that must get some.
        for tname, (n, all_rows) in family.gradient_rows(cfg, T).items():
            i = model.tensor_names.index(tname)
            assert not grads_c[i][n:].any() and not grads_t[i][n:].any(), f"[{label}] {tname} rows >= {n} got gradient"
            used = grads_t[i][:n].all() if all_rows else grads_t[i][:n].any()
            assert used, f"[{label}] {tname}: the used rows < {n} must get gradient"


def check_adamw(family, case):
    """Two AdamW steps of torch.optim.AdamW (the peer's groups, clipping) on the C gradients against C's."""
    cfg, model, tensors, (B, T, s, arrays), _, _ = load_case(family, case)
    grads, expected = arrays[0], arrays[1:]
    optimizer = family.peer.configure_optimizer(model, s["lr"], s["weight_decay"], s["beta1"], s["beta2"], s["eps"],
                                                fused=False)
    for step, want in enumerate(expected, start=1):
        for parts, g in zip(model.llmc_views(), split_tensors(cfg, grads)):
            g = torch.from_numpy(g.astype(np.float64))
            for layer, p in enumerate(parts):
                p.grad = (g if len(parts) == 1 else g[layer]).clone()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), s["grad_clip"])
        assert abs(norm.item() - s["norm"]) <= NORM_TOL * s["norm"], f"gradient norm {norm.item()} vs C {s['norm']}"
        optimizer.step()
        got = np.concatenate([torch.cat([p.detach().reshape(-1) for p in parts]).numpy()
                              for parts in model.llmc_views()])
        # llmc_views lists per-layer parts in layer order, so the concatenation is the model file's flat order
        err = np.abs(want - got) / (np.abs(got) + s["lr"])
        worst = int(np.argmax(err))
        print(f"  [{case}] AdamW step {step}: max |p_c - p_t| / (|p_t| + lr) = {err[worst]:.2e} "
              f"(bound {ADAM_TOL:.2e}), largest update {np.abs(got - np.concatenate([t.reshape(-1) for t in tensors])).max():.2e}")
        assert err[worst] <= ADAM_TOL, f"AdamW step {step}: parameter {worst} C {want[worst]} torch {got[worst]}"


def check_bf16_model_file(family, case):
    """The case's v5 (bf16) model file holds its v3 parameters rounded to nearest even, bit for bit."""
    out = case_dir(family, case)
    _, _, fp32 = family.peer.read_model_file(os.path.join(out, "model.bin"))
    cfg, version, bf16 = family.peer.read_model_file(os.path.join(out, "model_bf16.bin"))
    assert version == 5
    for (name, _), a, b in zip(cfg.tensor_shapes(), fp32, bf16):
        rounded = torch.from_numpy(np.ascontiguousarray(a)).to(torch.bfloat16).float().numpy()
        assert np.array_equal(rounded.view(np.uint32), np.ascontiguousarray(b).view(np.uint32)), \
            f"{name}: v5 parameters differ from the v3 ones rounded to bf16"


def check_model_file_errors(family, case):
    """The peer's reader refuses a truncated model file, naming it."""
    out = case_dir(family, case)
    data = open(os.path.join(out, "model.bin"), "rb").read()
    bad = os.path.join(BUILD_DIR, f"{family.name}_truncated.bin")
    with open(bad, "wb") as f:
        f.write(data[:-4])
    try:
        family.peer.read_model_file(bad)
    except ValueError as e:
        assert "truncated" in str(e) and bad in str(e), str(e)
    else:
        raise AssertionError("a truncated model file was accepted")


# ---------------------------------------------------------------------------------------------------------
# GPT-2

# ref_dump flags of each case: the defaults (L=2 NH=4 C=48 V=211 Vp=256 maxT=32, B=3 T=20: T < maxT and
# odd V) and one with T = maxT, more layers, 2 heads of 16 and a single batch row.
GPT2_CASES = {"default": [], "t_full": ["-L", "3", "--heads", "2", "-C", "32", "-V", "97", "--vp", "128",
                                        "--max-seq-len", "24", "-b", "1", "-t", "24"]}


def gpt2_family():
    """GPT-2: the padded wte rows and the wpe rows t >= T get nothing; every element of wpe[:T] gets some."""
    return Family("gpt2", torch_gpt2, torch_gpt2.GPT, GPT2_CASES,
                  lambda cfg, T: {"wte": (cfg.vocab_size, False), "wpe": (T, True)})


def test_loss_and_gradients():
    require_tools()
    family = gpt2_family()
    for case in family.cases:
        check_loss_and_gradients(family, case)


def test_adamw_steps():
    require_tools()
    family = gpt2_family()
    for case in family.cases:
        check_adamw(family, case)


def test_bf16_model_file():
    require_tools()
    check_bf16_model_file(gpt2_family(), "default")


def test_model_file_errors():
    require_tools()
    check_model_file_errors(gpt2_family(), "default")


if __name__ == "__main__":
    print(f"torch_reference_check: TEST_SEED={SEED}")
    for test in (test_loss_and_gradients, test_adamw_steps, test_bf16_model_file, test_model_file_errors):
        testing.run(test)
    testing.finish()
