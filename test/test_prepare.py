"""Tests for dev/data/prepare.py (needs ../shared/data: the GPT-2 files and tinyshakespeare; skipped
without it). Runs the script on tinyshakespeare and on small random inputs it writes itself, and
checks the shards against an encoding built independently with tiktoken's own loader."""
import array
import base64
import importlib.util
import json
import lzma
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testing  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "dev", "data", "prepare.py")
SHARED = os.path.join(ROOT, "..", "shared", "data")
GPT2_DIR = os.path.join(SHARED, "gpt2")
SHAKESPEARE = os.path.join(SHARED, "tinyshakespeare", "input.txt")
EOT = 50256
LLMC_START = [5962, 22307, 25, 198, 8421, 356, 5120, 597, 2252, 11, 3285, 502, 2740, 13]

os.makedirs(os.path.join(ROOT, "build", "tmp"), exist_ok=True)
TMP = tempfile.mkdtemp(prefix="test_prepare_", dir=os.path.join(ROOT, "build", "tmp"))
SEED = int(os.environ.get("TEST_SEED", time.time_ns() % 2**32))
rng = random.Random(SEED)
_reference = []


def need_shared_data():
    for p in (GPT2_DIR, SHAKESPEARE):
        if not os.path.exists(p):
            raise testing.Skip(f"{p} not found (the tests need ../shared/data)")


def reference_encoding():
    """GPT-2 built by tiktoken's own encoder.json/vocab.bpe loader (not the script's parser)."""
    if not _reference:
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
        from tiktoken_ext.openai_public import r50k_pat_str
        os.environ["TIKTOKEN_CACHE_DIR"] = ""  # read the local files, no cache
        ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(GPT2_DIR, "vocab.bpe"),
                                                os.path.join(GPT2_DIR, "encoder.json"))
        _reference.append(tiktoken.Encoding("ref", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                                            special_tokens={"<|endoftext|>": EOT}))
    return _reference[0]


def blank_line_sections(text):
    """llm.c's tinyshakespeare documents: cut at "\n\n", each section keeping it, empty ones dropped."""
    sections = text.split("\n\n")
    return [d for d in [s + "\n\n" for s in sections[:-1]] + sections[-1:] if d]


def expected_stream(docs):
    enc = reference_encoding()
    out = []
    for d in docs:
        out.append(EOT)
        out.extend(enc.encode_ordinary(d))
    return out


def file_size_limit(n):
    """preexec_fn for subprocess: files may grow to n bytes; with SIGXFSZ ignored, a write past that fails
    with EFBIG ("File too large"), as a write to a full disk fails with ENOSPC. It binds root too."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return limit


def run_prepare(*args, ok=True, preamble=None, env=None, max_file_bytes=None):
    """Runs prepare.py. preamble: Python code run first in the same process (to inject a fault), then the
    script as __main__; env: extra environment variables; max_file_bytes: see file_size_limit."""
    cmd = [sys.executable, SCRIPT, *args]
    if preamble is not None:
        cmd = [sys.executable, "-c", preamble + "\nimport runpy, sys\n"
               f"sys.argv = {[SCRIPT, *args]!r}\nrunpy.run_path({SCRIPT!r}, run_name='__main__')\n"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env=dict(os.environ, **env) if env else None,
                       preexec_fn=file_size_limit(max_file_bytes) if max_file_bytes is not None else None)
    if ok and r.returncode != 0:
        raise AssertionError(f"prepare.py {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r


def expect_failure(args, *phrases, **kwargs):
    r = run_prepare(*args, ok=False, **kwargs)
    assert r.returncode != 0, f"prepare.py {' '.join(args)} succeeded on bad input"
    for p in phrases:
        assert p in r.stderr, f"prepare.py {' '.join(args)}: message lacks {p!r}:\n{r.stderr}"
    assert "Traceback" not in r.stderr, f"a traceback instead of a message:\n{r.stderr}"
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("prepare.py: error: ") and \
        r.stderr.rstrip().endswith(errors[0]), f"not one error line at the end:\n{r.stderr}"
    return r


def deny_access(path):
    """Preamble for run_prepare: the directory `path` behaves as if unreadable (mode 000) to this process,
    also for root: listing it, and looking up or opening anything inside it, fail with EACCES."""
    return f"""
import builtins, errno, os
_denied = os.path.abspath({path!r})
def _guard(real, inside_only):
    def call(p=".", *a, **k):
        q = os.path.abspath(os.fsdecode(p)) if isinstance(p, (str, bytes, os.PathLike)) else ""
        if q.startswith(_denied + os.sep) or (q == _denied and not inside_only):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), p)
        return real(p, *a, **k)
    return call
os.listdir, os.scandir = _guard(os.listdir, False), _guard(os.scandir, False)
os.stat, builtins.open = _guard(os.stat, True), _guard(builtins.open, True)
"""


def tree(path):
    """{relative path: bytes} of every file under path, '/' for every directory; None when path is absent."""
    if not os.path.exists(path):
        return None
    found = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            found[os.path.relpath(os.path.join(root, d), path) + "/"] = None
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                found[os.path.relpath(os.path.join(root, f), path)] = fh.read()
    return found


def random_text(n_paragraphs):
    words = ["the", "cat", "sat", "on", "mat", "Über", "—", "!", "\n", "rain", "Spain", "plain"]
    return "\n\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(10, 40))) for _ in range(n_paragraphs))


def read_shard(path):
    with open(path, "rb") as f:
        data = f.read()
    header = array.array("i", data[:1024])
    tokens = array.array("H", data[1024:])
    if sys.byteorder == "big":
        header.byteswap()
        tokens.byteswap()
    assert header[0] == 20240520 and header[1] == 1, f"{path}: header {header[:3].tolist()}"
    assert header[2] == len(tokens), f"{path}: header count {header[2]}, file holds {len(tokens)} tokens"
    assert all(h == 0 for h in header[3:]), f"{path}: header words 3.. are not zero"
    return tokens.tolist()


def outputs(out_dir, name):
    return sorted(f for f in os.listdir(out_dir) if f.startswith(name + "_") and f.endswith(".bin"))


def read_tokenizer_bin(path):
    """The token byte strings of a gpt2_tokenizer.bin, header checked."""
    with open(path, "rb") as f:
        data = f.read()
    header = array.array("I", data[:1024])
    if sys.byteorder == "big":
        header.byteswap()
    assert header[0] == 20240328 and header[1] == 2, f"{path}: header {header[:4].tolist()}"
    tokens, at = [], 1024
    for _ in range(header[2]):
        n = data[at]
        tokens.append(data[at + 1: at + 1 + n])
        at += 1 + n
    assert at == len(data), f"{path}: {len(data) - at} bytes after the tokens"
    return header[2], header[3], tokens


def test_tinyshakespeare():
    need_shared_data()
    out = os.path.join(TMP, "ts")
    run_prepare("--input", SHAKESPEARE, "--name", "tiny_shakespeare", "--tokenizer", GPT2_DIR, "--out", out, "--quiet")
    assert outputs(out, "tiny_shakespeare") == ["tiny_shakespeare_train.bin", "tiny_shakespeare_val.bin"], os.listdir(out)
    val = read_shard(os.path.join(out, "tiny_shakespeare_val.bin"))
    train = read_shard(os.path.join(out, "tiny_shakespeare_train.bin"))
    assert val[:15] == [EOT] + LLMC_START, f"val starts {val[:15]}"
    assert len(val) == 32768, f"val has {len(val)} tokens"
    with open(os.path.join(out, "tiny_shakespeare.prepare.json")) as f:
        stamp = json.load(f)
    assert stamp["tokens"] == len(val) + len(train) and stamp["val_tokens"] == len(val), stamp
    # llm.c's procedure: sections at blank lines, each keeping its "\n\n", EOT before each
    with open(SHAKESPEARE, encoding="utf-8") as f:
        docs = blank_line_sections(f.read())
    assert val + train == expected_stream(docs), "the token stream differs from llm.c's tokenization"
    vocab, eot, tokens = read_tokenizer_bin(os.path.join(out, "gpt2_tokenizer.bin"))
    enc = reference_encoding()
    assert vocab == 50257 and eot == EOT and tokens[EOT] == b"<|endoftext|>", (vocab, eot, tokens[EOT])
    assert all(tokens[i] == enc.decode_single_token_bytes(i) for i in range(EOT)), "token bytes differ"
    # a second run with the same settings does nothing; --force redoes it
    before = os.path.getmtime(os.path.join(out, "tiny_shakespeare_train.bin"))
    r = run_prepare("--input", SHAKESPEARE, "--name", "tiny_shakespeare", "--tokenizer", GPT2_DIR, "--out", out)
    assert "up to date" in r.stdout and os.path.getmtime(os.path.join(out, "tiny_shakespeare_train.bin")) == before, r.stdout
    r = run_prepare("--input", SHAKESPEARE, "--name", "tiny_shakespeare", "--tokenizer", GPT2_DIR, "--out", out, "--force")
    assert "up to date" not in r.stdout and "338028" in r.stdout, r.stdout


def test_tokenizer_routes_agree():
    """encoder.json + vocab.bpe, a .tiktoken file, and a directory holding only the .tiktoken file
    give byte-identical shards and tokenizer files (on text with non-ASCII characters)."""
    need_shared_data()
    words = ["naïve", "café", "Æsir", "日本語", "emoji 🙂", "  spaces", "tab\there", "don't", "1234", "x"]
    text = "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(3000))
    src = os.path.join(TMP, "routes.txt")
    with open(src, "w", encoding="utf-8") as f:
        f.write(text)
    tk_only = os.path.join(TMP, "tiktoken_only")
    os.makedirs(tk_only, exist_ok=True)
    shutil.copy(os.path.join(GPT2_DIR, "r50k_base.tiktoken"), tk_only)
    routes = [GPT2_DIR, os.path.join(GPT2_DIR, "r50k_base.tiktoken"), tk_only]
    results = []
    for k, tok in enumerate(routes):
        out = os.path.join(TMP, f"route{k}")
        run_prepare("--input", src, "--tokenizer", tok, "--out", out, "--val-tokens", "100", "--quiet")
        files = outputs(out, "routes") + ["gpt2_tokenizer.bin"]
        results.append({f: open(os.path.join(out, f), "rb").read() for f in files})
    assert results[0] == results[1] == results[2], "tokenizer routes disagree"
    out = os.path.join(TMP, "route0")
    tokens = read_shard(os.path.join(out, "routes_val.bin")) + read_shard(os.path.join(out, "routes_train.bin"))
    assert tokens == expected_stream(blank_line_sections(text)), "tokens differ from the reference"


def test_text_directory():
    """A directory of .txt files (nested; other files ignored) is read in sorted path order, each
    file cut at blank lines; small --shard-size gives numbered shards of near-equal size."""
    need_shared_data()
    src = os.path.join(TMP, "corpus")
    files = {}
    for name in ["b.txt", "a.txt", "sub/c.txt", "sub/deeper/a.txt", "z.txt"]:
        paras = [" ".join(rng.choice(["the", "cat", "sat", "on", "mat", "Über", "—", "!", "\n"])
                          for _ in range(rng.randint(10, 40))) for _ in range(rng.randint(3, 6))]
        files[name] = "\n\n".join(paras)
    files["ignored.md"] = "must not be read"
    for name, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(src, name)), exist_ok=True)
        with open(os.path.join(src, name), "w", encoding="utf-8") as f:
            f.write(text)
    docs = []
    for name in sorted(n for n in files if n.endswith(".txt")):
        docs += blank_line_sections(files[name])
    expected = expected_stream(docs)
    out = os.path.join(TMP, "dirout")
    val_n, shard = rng.randint(1, 40), rng.randint(50, 120)
    run_prepare("--input", src, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", str(val_n),
                "--shard-size", str(shard), "--quiet")
    names = outputs(out, "corpus")
    train_files = [n for n in names if n.startswith("corpus_train_")]
    n_train = -(-(len(expected) - val_n) // shard)
    expected_names = [f"corpus_train_{k:06d}.bin" for k in range(n_train)] if n_train > 1 else ["corpus_train.bin"]
    assert names == expected_names + ["corpus_val.bin"], names
    parts = [read_shard(os.path.join(out, n)) for n in (train_files or ["corpus_train.bin"])]
    assert max(len(p) for p in parts) <= shard and max(len(p) for p in parts) - min(len(p) for p in parts) <= 1, \
        [len(p) for p in parts]
    val = read_shard(os.path.join(out, "corpus_val.bin"))
    assert len(val) == val_n and val + sum(parts, []) == expected, "directory tokens differ from the expected stream"
    # a rerun with one big shard removes the numbered shards of the earlier run
    run_prepare("--input", src, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", str(val_n), "--quiet")
    assert outputs(out, "corpus") == ["corpus_train.bin", "corpus_val.bin"], outputs(out, "corpus")
    # --split file: each file is one document
    run_prepare("--input", src, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", str(val_n), "--split", "file",
                "--quiet")
    tokens = read_shard(os.path.join(out, "corpus_val.bin")) + read_shard(os.path.join(out, "corpus_train.bin"))
    assert tokens == expected_stream([files[n] for n in sorted(n for n in files if n.endswith(".txt"))]), \
        "--split file: tokens differ from one document per file"


def test_endoftext_separated_xz():
    """Lines that are exactly <|endoftext|> separate documents and become token 50256; the literal
    string inside a line is ordinary text. Input is .xz compressed."""
    need_shared_data()
    docs = []
    for i in range(rng.randint(3, 8)):
        lines = [" ".join(rng.choice(["alpha", "beta", "Gamma", "δ", "end", "of", "text"])
                          for _ in range(rng.randint(1, 10))) for _ in range(rng.randint(1, 5))]
        if i == 1:
            lines.append("a line mentioning <|endoftext|> inline")
        docs.append("\n".join(lines) + "\n" + ("\n" if i % 2 else ""))  # some documents end in a blank line
    text = "".join(d + "<|endoftext|>\n" for d in docs[:-1]) + docs[-1]
    src = os.path.join(TMP, "books.txt.xz")
    with lzma.open(src, "wt", encoding="utf-8") as f:
        f.write(text)
    out = os.path.join(TMP, "xzout")
    run_prepare("--input", src, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", "3", "--quiet")
    assert outputs(out, "books") == ["books_train.bin", "books_val.bin"], outputs(out, "books")
    tokens = read_shard(os.path.join(out, "books_val.bin")) + read_shard(os.path.join(out, "books_train.bin"))
    assert tokens.count(EOT) == len(docs), f"{tokens.count(EOT)} EOT tokens for {len(docs)} documents"
    assert tokens == expected_stream(docs), "tokens differ from EOT + document for each document"
    enc = reference_encoding()
    assert "<|endoftext|>" in enc.decode(tokens[tokens.index(EOT, 1):]), "the inline literal was lost"


def test_bad_arguments():
    """Errors found before any text is tokenized; these need no shared data."""
    out = os.path.join(TMP, "bad")
    small = os.path.join(TMP, "small.txt")
    with open(small, "w") as f:
        f.write("just a few words\n")
    missing = os.path.join(TMP, "no_such_input.txt")
    expect_failure(["--input", missing, "--out", out], missing, "no such file")
    empty = os.path.join(TMP, "empty_dir")
    os.makedirs(empty, exist_ok=True)
    expect_failure(["--input", empty, "--out", out], empty, "no .txt or .xz files")
    expect_failure(["--input", small, "--out", out, "--shard-size", "0"], "--shard-size 0")
    expect_failure(["--input", small, "--out", out, "--val-tokens", "0"], "--val-tokens 0")
    expect_failure(["--input", small, "--out", out, "--name", "a/b"], "--name 'a/b'")
    nope = os.path.join(TMP, "nope")
    expect_failure(["--input", small, "--out", out, "--tokenizer", nope], nope, "no such file")
    expect_failure(["--input", small, "--out", out, "--tokenizer", small], small, "must be a .tiktoken file")
    expect_failure(["--input", small, "--out", out, "--tokenizer", empty], empty, "neither encoder.json + vocab.bpe")
    half = os.path.join(TMP, "half_gpt2")
    os.makedirs(half, exist_ok=True)
    with open(os.path.join(half, "encoder.json"), "w") as f:
        f.write("{}")
    expect_failure(["--input", small, "--out", out, "--tokenizer", half], half, "has encoder.json but no vocab.bpe")
    with open(os.path.join(half, "vocab.bpe"), "w") as f:
        f.write("#version: 0.2\n")
    with open(os.path.join(half, "encoder.json"), "w") as f:
        f.write('{"a": 0, ')
    expect_failure(["--input", small, "--out", out, "--tokenizer", half], "encoder.json", "not valid JSON")
    garbage = os.path.join(TMP, "garbage.tiktoken")
    with open(garbage, "w") as f:
        f.write("this is not a tiktoken file\n")
    expect_failure(["--input", small, "--out", out, "--tokenizer", garbage], garbage, "line 1")


def test_bad_inputs():
    """Errors in the text or a vocabulary too large for uint16, with the real GPT-2 files."""
    need_shared_data()
    out = os.path.join(TMP, "bad")
    latin1 = os.path.join(TMP, "latin1.txt")
    with open(latin1, "wb") as f:
        f.write("some text caf\u00e9\n".encode("latin-1"))
    expect_failure(["--input", latin1, "--out", out, "--tokenizer", GPT2_DIR], latin1, "not UTF-8")
    bad_xz = os.path.join(TMP, "broken.txt.xz")
    with open(bad_xz, "wb") as f:
        f.write(b"\xfd7zXZ\x00 this is not xz data")
    expect_failure(["--input", bad_xz, "--out", out, "--tokenizer", GPT2_DIR], bad_xz, "not a valid .xz")
    small = os.path.join(TMP, "small.txt")
    with open(small, "w") as f:
        f.write("just a few words\n")
    expect_failure(["--input", small, "--out", out, "--tokenizer", GPT2_DIR], "--val-tokens 32768", "leaves none")
    broken = os.path.join(TMP, "mismatched_gpt2")  # a vocab.bpe whose merges do not match encoder.json
    os.makedirs(broken, exist_ok=True)
    shutil.copy(os.path.join(GPT2_DIR, "encoder.json"), broken)
    with open(os.path.join(GPT2_DIR, "vocab.bpe"), encoding="utf-8") as f:
        merges = f.read().split("\n")
    merges[1], merges[2] = merges[2], merges[1]
    with open(os.path.join(broken, "vocab.bpe"), "w", encoding="utf-8") as f:
        f.write("\n".join(merges))
    expect_failure(["--input", small, "--out", out, "--tokenizer", broken], "tokenizer files disagree", "merge 1")
    # a vocabulary with an id above 65535 cannot be stored in uint16 shards
    big = os.path.join(TMP, "big.tiktoken")
    with open(os.path.join(GPT2_DIR, "r50k_base.tiktoken"), "rb") as f:
        lines = f.read().splitlines()
    with open(big, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
        for k in range(16000):
            f.write(base64.b64encode(b"\x00\x01zz" + str(k).encode()) + b" %d\n" % (len(lines) + k))
    expect_failure(["--input", small, "--out", out, "--tokenizer", big], "token id 66256", "> 65535")


def test_truncated_xz():
    """A cut-off .xz file ends in one error line naming it as truncated, and leaves nothing behind."""
    need_shared_data()
    data = lzma.compress(random_text(200).encode())
    src = os.path.join(TMP, "cut.txt.xz")
    with open(src, "wb") as f:
        f.write(data[: len(data) * 2 // 3])
    out = os.path.join(TMP, "cut_out")
    expect_failure(["--input", src, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", "10"], src,
                   "truncated or corrupt")
    assert tree(out) is None, f"a failed run left {out} behind: {tree(out)}"
    assert not any(f.endswith(".tmp") for f in os.listdir(TMP)), os.listdir(TMP)


def test_no_text_or_too_few_tokens():
    """Input without text is called that (not a --val-tokens problem); too little text is named with its
    counts. Nothing is created either way."""
    need_shared_data()
    out = os.path.join(TMP, "notext_out")
    empty = os.path.join(TMP, "empty.txt")
    open(empty, "w").close()
    only_eot = os.path.join(TMP, "only_eot.txt")
    with open(only_eot, "w") as f:
        f.write("<|endoftext|>\n<|endoftext|>\n")
    empty_xz = os.path.join(TMP, "empty.txt.xz")
    with lzma.open(empty_xz, "wt") as f:
        f.write("")
    empties = os.path.join(TMP, "empties")
    os.makedirs(os.path.join(empties, "sub"), exist_ok=True)
    for name in ("a.txt", "sub/b.txt"):
        open(os.path.join(empties, name), "w").close()
    for src in (empty, only_eot, empty_xz, empties):
        r = expect_failure(["--input", src, "--out", out, "--tokenizer", GPT2_DIR], src, "holds no text", "0 tokens")
        assert "--val-tokens" not in r.stderr, f"advice that cannot help:\n{r.stderr}"
        r = expect_failure(["--input", src, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", "1"], "holds no text")
    expect_failure(["--input", empties, "--out", out, "--tokenizer", GPT2_DIR], "(2 files)")
    small = os.path.join(TMP, "few.txt")
    with open(small, "w") as f:
        f.write("just a few words\n\nand more\n")
    n = len(expected_stream(blank_line_sections("just a few words\n\nand more\n")))
    expect_failure(["--input", small, "--out", out, "--tokenizer", GPT2_DIR], small, "too few tokens",
                   f"{n} tokens in 2 documents", "--val-tokens 32768, the default", f"--val-tokens below {n}")
    expect_failure(["--input", small, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", str(n)],
                   f"{n} tokens in 2 documents", f"(--val-tokens {n})")
    assert tree(out) is None, f"a failed run left {out} behind"
    run_prepare("--input", small, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", str(n - 1), "--quiet")
    assert read_shard(os.path.join(out, "few_train.bin")) == expected_stream(["and more\n"])[-1:]


def test_failure_creates_nothing():
    """Every input, the tokenizer and --out are checked before anything is created: a failed check leaves
    no new --out directory (nor its parents)."""
    out = os.path.join(TMP, "never", "made")

    def fails(args, *phrases, **kwargs):
        expect_failure(args, *phrases, **kwargs)
        assert tree(os.path.join(TMP, "never")) is None, f"prepare.py {' '.join(args)} failed and created --out"
    small = os.path.join(TMP, "small.txt")
    with open(small, "w") as f:
        f.write("just a few words\n")
    missing = os.path.join(TMP, "no_such_input.txt")
    fails(["--input", missing, "--out", out], missing, "no such file")
    fails(["--input", small, "--out", out, "--tokenizer", os.path.join(TMP, "nope")], "no such file")
    fails(["--input", small, "--out", os.path.join(small, "sub")], small, "is not a directory")
    fails(["--input", small, "--out", small], small, "exists and is not a directory")
    fails(["--input", small, "--out", out], "cannot be imported", "dev/requirements.txt",
          preamble="import sys; sys.modules['tiktoken'] = None")
    # downloads that fail (a proxy that refuses connections stands for no network)
    offline = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "",
               "NO_PROXY": "", "TIKTOKEN_CACHE_DIR": os.path.join(TMP, "empty_tiktoken_cache")}
    if importlib.util.find_spec("tiktoken") is not None:
        fails(["--input", small, "--out", out, "--val-tokens", "1"], "tiktoken cannot load", "--tokenizer",
              env=offline)
    if os.path.isdir(GPT2_DIR):
        fails(["--out", out, "--tokenizer", GPT2_DIR], "download of", "failed", env=offline)


def test_failed_write_leaves_out_dir_as_it_was():
    """A write that fails (file size limit, as on a full disk) removes the run's temporary files and
    leaves --out as it was: the earlier run's shards, tokenizer file and stamp untouched, no half set."""
    need_shared_data()
    text = random_text(60)
    src = os.path.join(TMP, "fulldisk.txt")
    with open(src, "w", encoding="utf-8") as f:
        f.write(text)
    out = os.path.join(TMP, "fulldisk_out")
    base = ["--input", src, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", "100", "--quiet"]
    run_prepare(*base, "--shard-size", "700")
    with open(os.path.join(out, "other.txt"), "w") as f:
        f.write("not ours")
    before = tree(out)
    assert len([f for f in before if f.startswith("fulldisk_train_")]) >= 2, sorted(before)
    # 600 bytes: the first shard (1 KiB header) fails; 20000: every shard fits, gpt2_tokenizer.bin does not
    for limit in (600, 20000):
        expect_failure(base + ["--shard-size", "300", "--force"], "cannot write", "File too large",
                       max_file_bytes=limit)
        assert tree(out) == before, f"limit {limit}: the failed run changed {out}: " \
            f"{sorted(set(tree(out)) ^ set(before))} added/removed, or contents changed"
    fresh = os.path.join(TMP, "fulldisk_new", "sub")
    expect_failure(base[:2] + ["--out", fresh] + base[4:], "cannot write", max_file_bytes=20000)
    assert tree(os.path.join(TMP, "fulldisk_new")) is None, "a failed run left its new --out behind"
    # without the limit the same run succeeds and replaces the earlier shards
    run_prepare(*base, "--shard-size", "300", "--force")
    after = tree(out)
    assert after["other.txt"] == b"not ours" and not any(f.endswith(".tmp") for f in after), sorted(after)
    names = outputs(out, "fulldisk")
    tokens = sum((read_shard(os.path.join(out, n)) for n in names if n.startswith("fulldisk_val")), []) + \
        sum((read_shard(os.path.join(out, n)) for n in names if n.startswith("fulldisk_train")), [])
    assert tokens == expected_stream(blank_line_sections(text)), "tokens differ after the successful run"
    assert all(len(read_shard(os.path.join(out, n))) <= 300 for n in names), names


def test_unreadable_and_odd_inputs():
    """Unreadable tokenizer and input directories, a dangling link among the inputs, a damaged stamp file
    and malformed --val-tokens give a message (or, for the stamp, a normal run), never a traceback."""
    need_shared_data()
    out = os.path.join(TMP, "odd_out")
    small = os.path.join(TMP, "small.txt")
    with open(small, "w") as f:
        f.write("just a few words\n")
    locked = os.path.join(TMP, "locked_gpt2")
    os.makedirs(locked, exist_ok=True)
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copyfile(os.path.join(GPT2_DIR, name), os.path.join(locked, name))
    expect_failure(["--input", small, "--out", out, "--tokenizer", locked, "--val-tokens", "1"], locked,
                   "cannot read the directory", "Permission denied", preamble=deny_access(locked))
    corpus = os.path.join(TMP, "odd_corpus")
    os.makedirs(os.path.join(corpus, "locked"), exist_ok=True)
    for name in ("a.txt", "locked/b.txt"):
        with open(os.path.join(corpus, name), "w") as f:
            f.write(random_text(3))
    expect_failure(["--input", corpus, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", "1"],
                   os.path.join(corpus, "locked"), "Permission denied",
                   preamble=deny_access(os.path.join(corpus, "locked")))
    dangling = os.path.join(corpus, "c.txt")
    os.symlink(os.path.join(TMP, "gone.txt"), dangling)
    expect_failure(["--input", corpus, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", "1"],
                   dangling, "cannot read input")
    os.remove(dangling)
    for bad in ("abc", "1.5", "-3"):
        expect_failure(["--input", small, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", bad], "--val-tokens")
    expect_failure(["--input", small, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", str(10**30)],
                   "too few tokens")
    assert tree(out) is None, "a failed run created --out"
    os.makedirs(out)
    for stamp in ("[]", '"x"', '{"settings": 1, "outputs": []}', "{"):
        with open(os.path.join(out, "small.prepare.json"), "w") as f:
            f.write(stamp)
        r = run_prepare("--input", small, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", "1")
        assert "up to date" not in r.stdout, r.stdout
    r = run_prepare("--input", small, "--out", out, "--tokenizer", GPT2_DIR, "--val-tokens", "1")
    assert "up to date" in r.stdout, r.stdout


def test_test_data_without_shared_data_is_a_skip():
    """`make test-data` without ../shared/data prepares nothing, and test/run_tests.sh counts it as
    skipped (not passed); a real failure of the target still counts as failed."""
    if shutil.which("make") is None:
        raise testing.Skip("make not found")
    runner = os.path.join(ROOT, "test", "run_tests.sh")
    for env, last in (({"SHARED_DATA": os.path.join(TMP, "no_shared_data")}, "0 passed, 0 failed, 1 skipped"),
                      ({"SHARED_DATA": os.path.join(TMP, "fake_shared"), "PYTHON": "false"}, "0 passed, 1 failed, 0 skipped")):
        os.makedirs(os.path.join(TMP, "fake_shared", "tinyshakespeare"), exist_ok=True)
        open(os.path.join(TMP, "fake_shared", "tinyshakespeare", "input.txt"), "w").close()
        r = subprocess.run(["bash", runner, "-c", "test-data"], capture_output=True, text=True, cwd=ROOT,
                           timeout=120, env=dict({k: v for k, v in os.environ.items()
                                                  if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}, **env))
        assert r.stdout.rstrip().splitlines()[-1] == last, f"{env}: expected '{last}':\n{r.stdout}{r.stderr}"


def test_write_atomically_cleans_up():
    """write_atomically (used for the downloaded input) leaves neither the file nor its .tmp when the write
    fails, and says which file it could not write."""
    target = os.path.join(TMP, "atomic", "file.bin")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(SCRIPT)!r}); import prepare\n"
            f"try:\n    prepare.write_atomically({target!r}, [b'x' * 5000, b'y' * 5000])\n"
            f"except prepare.PrepareError as e:\n    print('error:', e)\n")
    r = subprocess.run([sys.executable, "-B", "-c", code], capture_output=True, text=True, timeout=60,
                       preexec_fn=file_size_limit(4096))
    assert r.returncode == 0 and "cannot write" in r.stdout and target in r.stdout, r.stdout + r.stderr
    assert os.listdir(os.path.dirname(target)) == [], os.listdir(os.path.dirname(target))
    r = subprocess.run([sys.executable, "-B", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    assert os.listdir(os.path.dirname(target)) == ["file.bin"] and os.path.getsize(target) == 10000


def main():
    print(f"test_prepare: TEST_SEED={SEED}")
    for t in (test_tinyshakespeare, test_tokenizer_routes_agree, test_text_directory, test_endoftext_separated_xz,
              test_bad_arguments, test_bad_inputs, test_truncated_xz, test_no_text_or_too_few_tokens,
              test_failure_creates_nothing, test_failed_write_leaves_out_dir_as_it_was, test_unreadable_and_odd_inputs,
              test_write_atomically_cleans_up, test_test_data_without_shared_data_is_a_skip):
        testing.run(t)
    shutil.rmtree(TMP, ignore_errors=True)
    testing.finish()


if __name__ == "__main__":
    main()
