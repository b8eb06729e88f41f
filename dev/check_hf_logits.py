"""Loads exported models with Hugging Face transformers and compares their logits with ours.

Run from the repository root where torch and transformers are installed (the GPU machine; a CPU install works
too):
    python3 dev/check_hf_logits.py                       # small random GPT-2 and Llama models, fp32 and bf16 files
    python3 dev/check_hf_logits.py --model out/d12/model_00000200.bin     # a model file of yours instead
    python3 dev/check_hf_logits.py --trainer-logits 'CMD'                # also the trainer's GPU forward
For every model: dev/model_tool.c (built with gcc into build/check_hf_logits/) writes a random model (or --model
is used), dev/export_hf.py exports it to a Hugging Face folder, transformers loads that folder
(GPT2LMHeadModel / LlamaForCausalLM from config.json, torch.float32, eager attention, on --device, default cpu)
and runs random tokens (B x T, --batch/--seq, seeded by $TEST_SEED or the clock); model_tool's CPU reference
(test/reference/gpt2_cpu.h, llama_cpu.h) runs the same tokens, and the two [B*T, V] logits are compared:
    relative L2 error = ||ours - hf|| / ||hf||  <=  --tol (default 1e-4)
(both sides compute in float32 from identical weights: a bf16 file's weights are widened exactly on both; the
error is float32 rounding, ~1e-6, while any wrong tensor mapping gives errors of order 1e-2 to 1). The loading
must report no missing, unexpected or mismatched tensors. The random models use model_tool's --weight-scale 5
(weights N(0, 0.1^2)) so attention is far from uniform and mistakes in q, k or RoPE show.

--trainer-logits CMD: a shell command that runs the trainer's GPU forward; these placeholders are replaced (each
shell-quoted): {model} the model file, {tokens} the tokens file, {B}, {T}, {out} the file to write. Tokens file:
int32 little-endian, B*T values, row b = tokens [b*T, (b+1)*T). The command must write {out} as float32
little-endian [B*T, V]: row b*T + t = the logits of position t of sequence b over the real vocabulary V (the
padded columns V..Vp left out), exactly the format `model_tool logits` writes; exit status 2 means "this model
is not supported by the trainer" and counts the comparison as skipped (build/dev/model_logits, the trainer's
forward: --trainer-logits './build/dev/model_logits {model} {tokens} {B} {T} {out}', refuses Llama files so until
the Llama device model exists). Its logits are compared with Hugging Face's with --trainer-tol (default 2e-2: the
trainer computes in BF16, so this bound is looser; tune it if the BF16 error of a deeper model is larger) and, for
information, with the CPU reference's. The trainer comparison is a test of its own per model.

Each comparison is one test of test/testing.py: lines "ok/FAIL/skip NAME" and a final
"RESULT passed=P failed=F skipped=S"; everything is skipped (exit 0) when torch or transformers is missing.
"""
import argparse
import os
import random
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "test"))
import testing  # noqa: E402

try:
    import numpy as np
    import torch
    import transformers
    IMPORT_ERROR = None
except ImportError as e:
    IMPORT_ERROR = str(e)

BUILD = os.path.join(REPO, "build", "check_hf_logits")
TOOL = os.path.join(BUILD, "model_tool")
EXPORT = os.path.join(REPO, "dev", "export_hf.py")
GPT2_MAGIC, LLAMA_MAGIC = 20240326, 20261208
# model_tool init arguments of the random models: odd V with padding, GQA, a theta that is not a short decimal
RANDOM_MODELS = {
    "gpt2": ["gpt2", "64", "211", "256", "3", "4", "64"],
    "llama": ["llama", "64", "211", "256", "3", "4", "2", "64", "160", "10000.5", "1e-5"],
}


def parse_args():
    p = argparse.ArgumentParser(description="Compare Hugging Face transformers' logits of exported models with the "
                                            "CPU reference's (and optionally the trainer's). See the top of this file.")
    p.add_argument("--model", help="check this model file (GPT-2 or Llama, v3 or v5) instead of the random models")
    p.add_argument("--trainer-logits", metavar="CMD", help="command writing the trainer's GPU logits (placeholders "
                                                           "{model} {tokens} {B} {T} {out}; format at the top of this file)")
    p.add_argument("-b", "--batch", type=int, default=2, help="sequences (default 2)")
    p.add_argument("-t", "--seq", type=int, default=0, help="tokens per sequence (default: min(64, max_seq_len))")
    p.add_argument("--device", default="cpu", help="torch device for transformers (default cpu; on cuda, TF32 is "
                                                   "turned off)")
    p.add_argument("--tol", type=float, default=1e-4, help="bound of the relative L2 error HF vs CPU reference")
    p.add_argument("--trainer-tol", type=float, default=2e-2, help="bound of the relative L2 error HF vs trainer")
    p.add_argument("--keep", action="store_true", help="keep the work folder (models, exports, tokens, logits)")
    return p.parse_args()


ARGS = parse_args()
SEED = int(os.environ.get("TEST_SEED", time.time_ns() % 2**31))
print(f"check_hf_logits: TEST_SEED={SEED}")
_work = {}  # "dir": the work folder, "tool": model_tool built
_results = {}  # model name -> (model, tokens file, B, T, V, CPU logits, HF logits) of a passed comparison


def work_dir():
    if "dir" not in _work:
        os.makedirs(BUILD, exist_ok=True)
        _work["dir"] = tempfile.mkdtemp(prefix="run_", dir=BUILD)
    return _work["dir"]


def sh(cmd, what):
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, shell=isinstance(cmd, str))
    if r.returncode != 0:
        raise AssertionError(f"{what} failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")
    return r


def require():
    if IMPORT_ERROR is not None:
        raise testing.Skip(f"needs numpy, torch and transformers ({IMPORT_ERROR})")
    if "tool" not in _work:
        testing.build_c_tool("dev/model_tool.c", TOOL)
        _work["tool"] = True
        print(f"  torch {torch.__version__}, transformers {transformers.__version__}, device {ARGS.device}")


def read_header(path):
    with open(path, "rb") as f:
        h = struct.unpack("<256i", f.read(1024))
    if h[0] not in (GPT2_MAGIC, LLAMA_MAGIC):
        raise AssertionError(f"'{path}' is not a model file (magic {h[0]})")
    return h  # [0] magic, [1] version, [2] maxT, [3] V, ...


def read_logits(path, rows, V, who):
    size = os.path.getsize(path)
    if size != rows * V * 4:
        raise AssertionError(f"{who}: '{path}' is {size} bytes, expected B*T*V*4 = {rows}*{V}*4 = {rows * V * 4}")
    return np.fromfile(path, dtype="<f4").astype(np.float64).reshape(rows, V)


def hf_logits(folder, tokens, B, T):
    """Logits [B*T, V] of the exported folder by transformers, float32, eager attention."""
    if ARGS.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    cfg = transformers.AutoConfig.from_pretrained(folder)
    arch = cfg.architectures[0]
    cls = {"GPT2LMHeadModel": transformers.GPT2LMHeadModel, "LlamaForCausalLM": transformers.LlamaForCausalLM}[arch]
    kwargs = dict(attn_implementation="eager", output_loading_info=True)
    try:
        model, info = cls.from_pretrained(folder, dtype=torch.float32, **kwargs)
    except TypeError:  # transformers older than 4.56 names it torch_dtype
        model, info = cls.from_pretrained(folder, torch_dtype=torch.float32, **kwargs)
    problems = {k: [x for x in v if not (arch == "GPT2LMHeadModel" and k == "missing_keys" and x == "lm_head.weight")]
                for k, v in info.items() if v}  # GPT-2's head is tied, not stored: checked just below instead
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, f"transformers loaded {folder} with problems: {problems}"
    model = model.float().to(ARGS.device).eval()
    if arch == "GPT2LMHeadModel":  # the LM head must be the embedding (tied)
        assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr(), "lm_head is not tied to wte"
    ids = torch.tensor(tokens, dtype=torch.long, device=ARGS.device).view(B, T)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=False).logits
    return arch, out.double().cpu().numpy().reshape(B * T, -1)


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def check(name, model_path):
    require()
    h = read_header(model_path)
    maxT, V = h[2], h[3]
    B = ARGS.batch
    T = ARGS.seq or min(64, maxT)
    assert 1 <= T <= maxT and B >= 1, f"-t {T} must be in 1..max_seq_len {maxT}, -b {B} at least 1"
    d = os.path.join(work_dir(), name)
    os.makedirs(d, exist_ok=True)
    rng = random.Random(SEED)
    tokens = [rng.randrange(V) for _ in range(B * T)]
    tokens_path = os.path.join(d, "tokens.bin")
    with open(tokens_path, "wb") as f:
        f.write(struct.pack(f"<{B * T}i", *tokens))
    folder = os.path.join(d, "hf")
    sh([sys.executable, EXPORT, "export", model_path, folder], "export_hf.py export")
    ours_path = os.path.join(d, "logits_cpu.bin")
    sh([TOOL, "logits", model_path, tokens_path, str(B), str(T), ours_path], "model_tool logits")
    ours = read_logits(ours_path, B * T, V, "CPU reference")
    arch, hf = hf_logits(folder, tokens, B, T)
    assert hf.shape == ours.shape, f"transformers gave logits {hf.shape}, the CPU reference {ours.shape}"
    err, worst = rel_l2(ours, hf), float(np.abs(ours - hf).max())
    print(f"  [{name}] {arch} version {h[1]} B={B} T={T} V={V}: |hf| rms {np.sqrt((hf ** 2).mean()):.3f}, "
          f"CPU reference vs HF: relative L2 {err:.3e} (bound {ARGS.tol:.0e}), max |diff| {worst:.3e}, "
          f"argmax agreement {(ours.argmax(1) == hf.argmax(1)).mean():.4f}")
    assert err <= ARGS.tol, f"{name}: CPU reference vs transformers relative L2 error {err:.3e} > {ARGS.tol:.0e}"
    _results[name] = (model_path, tokens_path, B, T, V, ours, hf)


def check_trainer(name):
    """The trainer's logits (--trainer-logits) of the model that check(name) compared, against transformers'."""
    if name not in _results:
        raise testing.Skip("the transformers comparison of this model did not pass, so there is nothing to compare with")
    model_path, tokens_path, B, T, V, ours, hf = _results[name]
    trainer_path = os.path.join(work_dir(), name, "logits_trainer.bin")
    cmd = ARGS.trainer_logits.format(model=shlex.quote(model_path), tokens=shlex.quote(tokens_path), B=B, T=T,
                                     out=shlex.quote(trainer_path))
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=REPO)
    if r.returncode == 2:
        raise testing.Skip(f"the trainer does not support this model (exit 2): {r.stderr.strip()[-300:]}")
    assert r.returncode == 0, f"--trainer-logits command '{cmd}' failed (exit {r.returncode}):\n{r.stdout}{r.stderr}"
    trainer = read_logits(trainer_path, B * T, V, "--trainer-logits")
    err_t, err_c = rel_l2(trainer, hf), rel_l2(trainer, ours)
    print(f"  [{name}] trainer vs HF: relative L2 {err_t:.3e} (bound {ARGS.trainer_tol:.0e}), max |diff| "
          f"{float(np.abs(trainer - hf).max()):.3e}, argmax agreement {(trainer.argmax(1) == hf.argmax(1)).mean():.4f}; "
          f"trainer vs CPU reference: relative L2 {err_c:.3e}")
    assert err_t <= ARGS.trainer_tol, f"{name}: trainer vs transformers relative L2 error {err_t:.3e} > {ARGS.trainer_tol:.0e}"


def random_model(family, version):
    require()
    path = os.path.join(work_dir(), f"{family}_v{version}.bin")
    if not os.path.exists(path):
        sh([TOOL, "init", "--seed", str(SEED), "--version", str(version), "--weight-scale", "5",
            *RANDOM_MODELS[family], path], "model_tool init")
    return path


def make_tests(name, get_path):
    def test():
        check(name, get_path())
    test.__name__ = f"test_hf_logits_{name}"

    def test_trainer():
        require()
        check_trainer(name)
    test_trainer.__name__ = f"test_trainer_logits_{name}"
    return [test, test_trainer] if ARGS.trainer_logits else [test]


def main():
    if ARGS.model:
        model = os.path.abspath(ARGS.model)
        tests = make_tests(os.path.basename(model).replace(".", "_"), lambda: model)
    else:
        tests = [t for family in ("gpt2", "llama") for version in (3, 5)
                 for t in make_tests(f"{family}_v{version}", lambda f=family, v=version: random_model(f, v))]
    for t in tests:
        testing.run(t)
    if "dir" in _work:
        if ARGS.keep or testing._counts["failed"]:
            print(f"check_hf_logits: work files kept in {_work['dir']}")
        else:
            shutil.rmtree(_work["dir"], ignore_errors=True)
    testing.finish()


if __name__ == "__main__":
    main()
