"""Tests for dev/data/prepare.py (needs ../shared/data: the GPT-2 files and tinyshakespeare; skipped
without it). Runs the script on tinyshakespeare and on small random inputs it writes itself, and
checks the shards against an encoding built independently with tiktoken's own loader."""
import array
import base64
import json
import lzma
import os
import random
import shutil
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


def run_prepare(*args, ok=True):
    r = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)
    if ok and r.returncode != 0:
        raise AssertionError(f"prepare.py {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r


def expect_failure(args, *phrases):
    r = run_prepare(*args, ok=False)
    assert r.returncode != 0, f"prepare.py {' '.join(args)} succeeded on bad input"
    for p in phrases:
        assert p in r.stderr, f"prepare.py {' '.join(args)}: message lacks {p!r}:\n{r.stderr}"
    assert "Traceback" not in r.stderr, f"a traceback instead of a message:\n{r.stderr}"


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


def main():
    print(f"test_prepare: TEST_SEED={SEED}")
    for t in (test_tinyshakespeare, test_tokenizer_routes_agree, test_text_directory, test_endoftext_separated_xz,
              test_bad_arguments, test_bad_inputs):
        testing.run(t)
    shutil.rmtree(TMP, ignore_errors=True)
    testing.finish()


if __name__ == "__main__":
    main()
