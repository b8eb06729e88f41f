"""Loss parity of train_gpt with its PyTorch peer (dev/bench/torch_gpt2.py): same init, same tokens (issue 5).

What it does (on a GPU machine with PyTorch, from any directory; paths below are relative to the repo root):
  1. builds dev/ref_dump.c with gcc into <work>/ref_dump when missing and writes the d12 init of two seeds,
     A and B, as fp32 model files: exactly the parameters `train_gpt -e d12 --seed S` draws, so both programs
     import identical weights through the model-file format;
  2. for each seed, trains `./train_gpt -e <file> --shuffle 0` and `torch_gpt2.py --model <file>` on the same
     token shards with the same B, T, total batch, lr schedule (peak, warmup, final fraction), AdamW (betas,
     eps, weight decay) and grad clip; both read the shards sequentially (one rank, no shuffling), so step s
     of every run sees the same window of tokens;
  3. prints the step losses side by side and the statistics below, and writes into --out: losses.tsv (step,
     then one column per run), summary.txt (the printed table) and each run's stdout.

The noise, and the criterion. Every run sees the same batches in the same order, so the losses are compared
step by step (paired). The implementation gap is mean |C_S(s) - P_S(s)| over the last --last steps, for each
seed S (C = train_gpt, P = the peer). The noise is how much the loss of one program moves when only its
init changes: mean |C_A(s) - C_B(s)| over the same steps (and the same for the peer). Parity holds when,
for both seeds, the implementation gap is at most the C trainer's seed-to-seed difference: swapping the
implementation changes the loss no more than swapping the random init does. Also printed, for scale: the
step-to-step standard deviation of C_A over those steps (it mostly measures how the batches differ) and the
mean signed gap (a systematic offset would show there even when the mean |gap| passes).
Exit status 0 when parity holds, 1 when it does not or a run fails (its log's tail is printed).

    python3 dev/bench/loss_parity.py                       # d12, B=16 T=1024, 200 steps, seeds 1337 and 42
    python3 dev/bench/loss_parity.py --out $OUT --work /tmp/parity
    python3 dev/bench/loss_parity.py --compare-only --out DIR   # statistics again from DIR/losses.tsv

Needs ./train_gpt (make train_gpt) and the shards (make test-data); --work holds two 498 MB model files.
"""
import argparse
import glob
import math
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPORT_STEPS = [1, 2, 5, 10, 20, 50, 100, 150, 200, 250, 300]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="d12", help="GPT-2 preset whose init ref_dump writes (d12, d24, ...)")
    p.add_argument("--seeds", type=int, nargs=2, default=[1337, 42], metavar=("A", "B"), help="the two init seeds")
    p.add_argument("--data", default="build/data/tinyshakespeare/tiny_shakespeare_train.bin", help="glob of token shards")
    p.add_argument("-b", "--batch", type=int, default=16)
    p.add_argument("-t", "--seq-len", type=int, default=1024)
    p.add_argument("-d", "--total-batch", type=int, default=0, help="tokens per optimizer step (default B*T)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--final-lr-frac", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--compile", choices=["blocks", "full", "none"], default="blocks", help="the peer's torch.compile mode")
    p.add_argument("--last", type=int, default=20, help="steps at the end over which the losses are compared")
    p.add_argument("--train-gpt", default="./train_gpt", help="the C trainer binary")
    p.add_argument("--work", default="build/parity", help="directory for ref_dump, the init files and train_gpt's output")
    p.add_argument("--out", default=None, help="directory for losses.tsv, summary.txt and the logs (default --work)")
    p.add_argument("--compare-only", action="store_true", help="run nothing: the statistics of --out/losses.tsv")
    args = p.parse_args(argv)
    if args.total_batch == 0:
        args.total_batch = args.batch * args.seq_len
    if args.out is None:
        args.out = args.work
    if not 2 <= args.last <= args.steps:
        p.error(f"--last {args.last} must be in [2, --steps {args.steps}]")
    if args.seeds[0] == args.seeds[1]:
        p.error("--seeds: the two seeds must differ (their runs estimate the noise)")
    return args


def run_logged(cmd, log_path, what):
    """Runs cmd from the repo root with stdout and stderr into log_path; on failure prints the log's tail and exits 1."""
    print(f"[{what}] {' '.join(cmd)}", flush=True)
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        with open(log_path) as log:
            tail = log.readlines()[-15:]
        sys.exit(f"error: {what} failed with exit status {rc}; the end of {log_path}:\n{''.join(tail)}")


def build_ref_dump(work):
    """Path of the ref_dump binary in work, compiled with gcc when missing."""
    binary = os.path.join(work, "ref_dump")
    if not os.path.isfile(binary):
        if shutil.which("gcc") is None:
            sys.exit("error: gcc not found: cannot build dev/ref_dump.c")
        run_logged(["gcc", "-O2", "-std=gnu11", "-fopenmp", "-I.", "dev/ref_dump.c", "-o", binary, "-lm"],
                   os.path.join(work, "ref_dump_build.log"), "build ref_dump")
    return binary


def read_c_losses(log_txt):
    """Step losses of a train_gpt log.txt (core/logger.h: '# header', 'step loss lr ...', 'val step loss')."""
    losses = {}
    with open(log_txt) as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] not in ("#", "val"):
                losses[int(fields[0])] = float(fields[1])
    return losses


def read_peer_losses(path):
    """Step losses of torch_gpt2.py --save-losses ('<step> <loss>' per line)."""
    with open(path) as f:
        return {int(step): float(loss) for step, loss in (line.split() for line in f if line.strip())}


def train_both(args, seed, ref_dump):
    """Writes the seed's init, trains train_gpt and the peer from it; returns (C losses, peer losses) as lists."""
    init = os.path.join(args.work, f"init_{args.preset}_seed{seed}.bin")
    run_logged([ref_dump, "--init", args.preset, "--seed", str(seed), "--out", init],
               os.path.join(args.work, f"ref_dump_seed{seed}.log"), f"init seed {seed}")
    c_dir = os.path.join(args.work, f"train_gpt_seed{seed}")
    os.makedirs(c_dir, exist_ok=True)
    hyper = [str(x) for x in (args.batch, args.seq_len, args.total_batch, args.steps, args.lr, args.warmup,
                              args.final_lr_frac, args.weight_decay, args.beta1, args.beta2, args.eps, args.grad_clip)]
    c_flags = ["-b", "-t", "-d", "-x", "-l", "-u", "-q", "-c", "--beta1", "--beta2", "--eps", "--grad-clip"]
    p_flags = ["-b", "-t", "-d", "--steps", "--lr", "--warmup", "--final-lr-frac", "--weight-decay", "--beta1",
               "--beta2", "--eps", "--grad-clip"]
    c_cmd = [args.train_gpt, "-e", init, "-i", args.data, "-j", "", "-o", c_dir, "--shuffle", "0",
             "-v", "0", "-s", "0", "-n", "0"] + [x for pair in zip(c_flags, hyper) for x in pair]
    run_logged(c_cmd, os.path.join(args.out, f"train_gpt_seed{seed}.log"), f"train_gpt seed {seed}")
    peer_losses_path = os.path.join(args.work, f"torch_seed{seed}.losses")
    p_cmd = [sys.executable, "dev/bench/torch_gpt2.py", "--model", init, "--data", args.data,
             "--compile", args.compile, "--save-losses", peer_losses_path] + [x for pair in zip(p_flags, hyper) for x in pair]
    run_logged(p_cmd, os.path.join(args.out, f"torch_seed{seed}.log"), f"torch peer seed {seed}")
    c, peer = read_c_losses(os.path.join(c_dir, "log.txt")), read_peer_losses(peer_losses_path)
    expected = list(range(1, args.steps + 1))
    for name, losses in (("train_gpt", c), ("torch peer", peer)):
        if sorted(losses) != expected:
            sys.exit(f"error: {name} seed {seed} logged steps {min(losses, default=0)}..{max(losses, default=0)} "
                     f"({len(losses)} of them), expected 1..{args.steps}")
    return [c[s] for s in expected], [peer[s] for s in expected]


def write_losses(path, seeds, runs):
    """losses.tsv: step, then C_A, P_A, C_B, P_B."""
    a, b = seeds
    with open(path, "w") as f:
        f.write(f"step\tC_{a}\tP_{a}\tC_{b}\tP_{b}\n")
        for i, row in enumerate(zip(*runs)):
            f.write(f"{i + 1}\t" + "\t".join(f"{x:.6f}" for x in row) + "\n")


def read_losses(path):
    """(seeds, runs) from losses.tsv: runs = [C_A, P_A, C_B, P_B], each a list of step losses."""
    with open(path) as f:
        header = f.readline().split()
        rows = [[float(x) for x in line.split()[1:]] for line in f if line.strip()]
    if len(header) != 5 or len(rows) < 2 or any(len(r) != 4 for r in rows):
        sys.exit(f"error: '{path}' is not a losses.tsv of this script (step, C_A, P_A, C_B, P_B)")
    seeds = [int(header[1].split("_")[1]), int(header[3].split("_")[1])]
    return seeds, [list(col) for col in zip(*rows)]


def mean_abs_gap(x, y):
    return sum(abs(u - v) for u, v in zip(x, y)) / len(x)


def mean_signed_gap(x, y):
    return sum(u - v for u, v in zip(x, y)) / len(x)


def step_std(x):
    """Standard deviation (n - 1) of the values in x."""
    m = sum(x) / len(x)
    return math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1))


def compare(seeds, runs, last):
    """The comparison table and the verdict: (text, parity holds)."""
    c_a, p_a, c_b, p_b = runs
    steps = len(c_a)
    a, b = seeds
    lines = [f"step losses (C = train_gpt, P = torch peer; same init per seed, same tokens per step)",
             f"{'step':>6} | {'C_' + str(a):>10} {'P_' + str(a):>10} {'C-P':>9} | {'C_' + str(b):>10} {'P_' + str(b):>10} {'C-P':>9}"]
    for s in [s for s in REPORT_STEPS if s <= steps] + ([steps] if steps not in REPORT_STEPS else []):
        i = s - 1
        lines.append(f"{s:6d} | {c_a[i]:10.4f} {p_a[i]:10.4f} {c_a[i] - p_a[i]:+9.4f} | "
                     f"{c_b[i]:10.4f} {p_b[i]:10.4f} {c_b[i] - p_b[i]:+9.4f}")
    tail = slice(steps - last, steps)
    gap_a, gap_b = mean_abs_gap(c_a[tail], p_a[tail]), mean_abs_gap(c_b[tail], p_b[tail])
    seed_c, seed_p = mean_abs_gap(c_a[tail], c_b[tail]), mean_abs_gap(p_a[tail], p_b[tail])
    lines += [f"over steps {steps - last + 1}..{steps}:",
              f"  mean loss C, P:               seed {a}: {sum(c_a[tail]) / last:.4f}, {sum(p_a[tail]) / last:.4f}; "
              f"seed {b}: {sum(c_b[tail]) / last:.4f}, {sum(p_b[tail]) / last:.4f}",
              f"  implementation gap mean|C-P|: seed {a}: {gap_a:.4f}   seed {b}: {gap_b:.4f}",
              f"  mean signed gap C-P:          seed {a}: {mean_signed_gap(c_a[tail], p_a[tail]):+.4f}   "
              f"seed {b}: {mean_signed_gap(c_b[tail], p_b[tail]):+.4f}",
              f"  seed-to-seed mean|A-B|:       C: {seed_c:.4f}   P: {seed_p:.4f}",
              f"  step-to-step std of C_{a}:    {step_std(c_a[tail]):.4f}",
              f"  over all {steps} steps: mean|C-P| {mean_abs_gap(c_a, p_a):.4f} / {mean_abs_gap(c_b, p_b):.4f}, "
              f"mean|C_A-C_B| {mean_abs_gap(c_a, c_b):.4f}"]
    holds = max(gap_a, gap_b) <= seed_c
    lines.append(f"parity (implementation gap <= C seed-to-seed difference, both seeds): "
                 f"{'HOLDS' if holds else 'FAILS'} ({max(gap_a, gap_b):.4f} vs {seed_c:.4f})")
    return "\n".join(lines), holds


def main(argv):
    args = parse_args(argv)
    os.chdir(REPO)
    os.makedirs(args.out, exist_ok=True)
    losses_path = os.path.join(args.out, "losses.tsv")
    if args.compare_only:
        seeds, runs = read_losses(losses_path)
    else:
        if not os.path.isfile(args.train_gpt):
            sys.exit(f"error: --train-gpt '{args.train_gpt}' not found (make train_gpt)")
        if not glob.glob(args.data):
            sys.exit(f"error: --data '{args.data}' matches no file (make test-data)")
        os.makedirs(args.work, exist_ok=True)
        ref_dump = build_ref_dump(args.work)
        seeds, runs = args.seeds, []
        for seed in seeds:
            runs += train_both(args, seed, ref_dump)
        write_losses(losses_path, seeds, runs)
    if len(runs[0]) < args.last:
        sys.exit(f"error: --last {args.last} exceeds the {len(runs[0])} steps in {losses_path}")
    text, holds = compare(seeds, runs, args.last)
    print(text)
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(text + "\n")
    return 0 if holds else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
