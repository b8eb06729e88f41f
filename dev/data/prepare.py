#!/usr/bin/env python3
"""Tokenize raw text with GPT-2 BPE into llm.c-compatible token shards.

Outputs, in --out:
  <name>_val.bin, <name>_train.bin     one shard per split when it fits --shard-size tokens, else
  <name>_val_000000.bin, ...           numbered shards of near-equal size (each <= --shard-size),
  <name>_train_000000.bin, ...         so that no shard is a tiny remainder
  gpt2_tokenizer.bin                   the vocabulary, for decoding in C (dataloader/tokenizer.h)
  <name>.prepare.json                  what was run and what it wrote; a re-run with the same
                                       inputs, tokenizer and settings finds it and skips the work
Shard: 256 int32 little-endian header ([0]=20240520, [1]=1, [2]=token count), then uint16 tokens.
Tokenizer file: 256 uint32 header ([0]=20240328, [1]=2, [2]=vocab size, [3]=EOT id), then for every
id: one uint8 byte length and the token's raw bytes.

Documents: every document is preceded by the end-of-text token (EOT, id 50256 for GPT-2). A text is
cut into documents by --split:
  eot    at lines that are exactly <|endoftext|> (the line is dropped, EOT is emitted instead; the
         literal string anywhere else is ordinary text)
  blank  at blank lines ("\\n\\n"), each section keeping its "\\n\\n" like llm.c's tinyshakespeare
  file   each input file is one document
  auto   (default) eot when the file has such a separator line, else blank
Empty documents are skipped. Files of a directory are read in sorted path order.

Split: the validation set is the first --val-tokens tokens of the stream; by default that is
max(32768, 1% of all tokens): 32768 for small inputs like tinyshakespeare (as llm.c), 1% for large
corpora. The training set is the rest.

Tokenizer (--tokenizer): a directory with encoder.json + vocab.bpe (preferred when both forms are
there: they are OpenAI's original files and are checked against each other), or a directory holding
one .tiktoken file (r50k_base.tiktoken preferred when there are several), or a .tiktoken file.
For a .tiktoken file the EOT id is the largest rank + 1. Without --tokenizer, tiktoken's "gpt2"
encoding is used (downloaded by tiktoken). Without --input, tinyshakespeare is downloaded into --out.
"""
import argparse
import array
import base64
import glob
import hashlib
import json
import lzma
import os
import re
import sys
import time
import urllib.request

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
TOKENIZER_MAGIC = 20240328
TOKENIZER_VERSION = 2
HEADER_WORDS = 256
EOT_TEXT = "<|endoftext|>"
DEFAULT_VAL_TOKENS = 32768
MAX_TOKEN_ID = 65535  # shards store uint16
TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
# A line that is exactly <|endoftext|> (LF or CRLF ending, or the end of the text).
EOT_LINE = re.compile(r"^<\|endoftext\|>\r?$\n?", re.MULTILINE)


class PrepareError(Exception):
    """A problem with the user's input, flags or files; printed as one line, exit status 1."""


# ---------------------------------------------------------------------------------------------
# tokenizer

def gpt2_unicode_to_byte():
    """GPT-2's encoder.json spells token bytes as printable characters: the bytes '!'..'~',
    0xA1..0xAC and 0xAE..0xFF stand for themselves, every other byte b (in increasing order) is
    written as chr(256 + its index among those others). Returns the inverse map char -> byte."""
    kept = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    table = {chr(b): b for b in kept}
    others = [b for b in range(256) if b not in kept]
    for i, b in enumerate(others):
        table[chr(256 + i)] = b
    return table


def read_text_file(path, what):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise PrepareError(f"cannot read {what} '{path}': {e.strerror}")
    except UnicodeDecodeError as e:
        raise PrepareError(f"{what} '{path}' is not UTF-8 text (byte {e.start})")


def load_gpt2_files(encoder_path, merges_path):
    """Mergeable ranks and EOT id from OpenAI's encoder.json (token -> id) and vocab.bpe (merges in
    priority order). tiktoken needs rank == merge priority, so the two files are checked to agree:
    the 256 single bytes take ids 0..255 and merge i produces the token with id 256 + i."""
    decode = gpt2_unicode_to_byte()
    try:
        encoder = json.loads(read_text_file(encoder_path, "tokenizer file"))
    except json.JSONDecodeError as e:
        raise PrepareError(f"tokenizer file '{encoder_path}' is not valid JSON: {e}")
    if not isinstance(encoder, dict):
        raise PrepareError(f"tokenizer file '{encoder_path}' is not a JSON object of token -> id")
    if EOT_TEXT not in encoder:
        raise PrepareError(f"tokenizer file '{encoder_path}' has no {EOT_TEXT} entry")
    eot_id = encoder.pop(EOT_TEXT)
    if not isinstance(eot_id, int) or eot_id < 0:
        raise PrepareError(f"tokenizer file '{encoder_path}': {EOT_TEXT} has id {eot_id!r}")
    ranks = {}
    for key, rank in encoder.items():
        try:
            token = bytes(decode[c] for c in key)
        except KeyError:
            raise PrepareError(f"tokenizer file '{encoder_path}': token {key!r} uses a character "
                               f"outside GPT-2's byte alphabet")
        if not isinstance(rank, int) or rank < 0:
            raise PrepareError(f"tokenizer file '{encoder_path}': token {key!r} has id {rank!r}")
        ranks[token] = rank
    lines = read_text_file(merges_path, "tokenizer file").split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    merges = [line for line in lines if line]
    for b in range(256):
        if ranks.get(bytes([b]), 256) >= 256:
            raise PrepareError(f"tokenizer file '{encoder_path}' does not give byte {b} an id below 256")
    for i, line in enumerate(merges):
        parts = line.split(" ")
        if len(parts) != 2:
            raise PrepareError(f"tokenizer file '{merges_path}': merge {i + 1} is not two tokens: {line!r}")
        try:
            merged = bytes(decode[c] for c in parts[0] + parts[1])
        except KeyError:
            raise PrepareError(f"tokenizer file '{merges_path}': merge {i + 1} uses a character "
                               f"outside GPT-2's byte alphabet")
        if ranks.get(merged) != 256 + i:
            raise PrepareError(f"tokenizer files disagree: merge {i + 1} of '{merges_path}' makes a "
                               f"token whose id in '{encoder_path}' is {ranks.get(merged)}, not {256 + i}")
    if len(ranks) != 256 + len(merges):
        raise PrepareError(f"tokenizer files disagree: '{encoder_path}' has {len(ranks)} ordinary tokens, "
                           f"'{merges_path}' makes {256 + len(merges)}")
    return ranks, eot_id


def load_tiktoken_file(path):
    """Mergeable ranks from a .tiktoken file (lines 'base64(token bytes) rank'); EOT is max rank + 1."""
    try:
        with open(path, "rb") as f:
            contents = f.read()
    except OSError as e:
        raise PrepareError(f"cannot read tokenizer file '{path}': {e.strerror}")
    ranks = {}
    for number, line in enumerate(contents.splitlines(), start=1):
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            ranks[base64.b64decode(parts[0], validate=True)] = int(parts[1])
        except ValueError:
            raise PrepareError(f"tokenizer file '{path}', line {number}: expected 'base64 rank', got {line[:60]!r}")
    if not ranks:
        raise PrepareError(f"tokenizer file '{path}' has no tokens")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise PrepareError(f"tokenizer file '{path}' lacks single-byte tokens (first: byte {missing[0]}), "
                           f"so it cannot encode every text")
    return ranks, max(ranks.values()) + 1


def resolve_tokenizer(path):
    """The tokenizer files to use: ("gpt2-files", [encoder.json, vocab.bpe]), ("tiktoken", [file]),
    or ("tiktoken-gpt2", []) for tiktoken's own download when no path is given."""
    if path is None:
        return "tiktoken-gpt2", []
    if os.path.isfile(path):
        if not path.endswith(".tiktoken"):
            raise PrepareError(f"--tokenizer '{path}': a file must be a .tiktoken file "
                               f"(or give the directory holding encoder.json and vocab.bpe)")
        return "tiktoken", [path]
    if not os.path.isdir(path):
        raise PrepareError(f"--tokenizer '{path}': no such file or directory")
    encoder, merges = os.path.join(path, "encoder.json"), os.path.join(path, "vocab.bpe")
    if os.path.isfile(encoder) and os.path.isfile(merges):
        return "gpt2-files", [encoder, merges]
    found = sorted(glob.glob(os.path.join(glob.escape(path), "*.tiktoken")))
    preferred = [f for f in found if os.path.basename(f) == "r50k_base.tiktoken"]
    if preferred or len(found) == 1:
        return "tiktoken", (preferred or found)[:1]
    if len(found) > 1:
        raise PrepareError(f"--tokenizer '{path}': several .tiktoken files and no r50k_base.tiktoken; "
                           f"name the file")
    if os.path.isfile(encoder) != os.path.isfile(merges):
        have, lack = ("encoder.json", "vocab.bpe") if os.path.isfile(encoder) else ("vocab.bpe", "encoder.json")
        raise PrepareError(f"--tokenizer '{path}': has {have} but no {lack}")
    raise PrepareError(f"--tokenizer '{path}': holds neither encoder.json + vocab.bpe nor a .tiktoken file")


def build_encoding(kind, files):
    import tiktoken
    if kind == "tiktoken-gpt2":
        enc = tiktoken.get_encoding("gpt2")
    else:
        from tiktoken_ext.openai_public import r50k_pat_str  # GPT-2's pre-tokenizer pattern
        ranks, eot_id = load_gpt2_files(*files) if kind == "gpt2-files" else load_tiktoken_file(files[0])
        ids = sorted(list(ranks.values()) + [eot_id])
        if ids != list(range(len(ids))):
            raise PrepareError(f"tokenizer {files[0]}: ids are not 0..{len(ids) - 1} without gaps or repeats")
        if ids[-1] > MAX_TOKEN_ID:
            raise PrepareError(f"tokenizer {files[0]}: token id {ids[-1]} > {MAX_TOKEN_ID} does not fit "
                               f"the uint16 shards")
        enc = tiktoken.Encoding(name="gpt2-local", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                                special_tokens={EOT_TEXT: eot_id})
    if enc.n_vocab - 1 > MAX_TOKEN_ID:
        raise PrepareError(f"tokenizer has token ids up to {enc.n_vocab - 1} > {MAX_TOKEN_ID}, which do not "
                           f"fit the uint16 shards")
    return enc


def write_tokenizer_bin(enc, path):
    header = array.array("I", [0] * HEADER_WORDS)
    header[0], header[1], header[2], header[3] = TOKENIZER_MAGIC, TOKENIZER_VERSION, enc.n_vocab, enc.eot_token
    if sys.byteorder == "big":
        header.byteswap()
    body = bytearray()
    for i in range(enc.n_vocab):
        token = enc.decode_single_token_bytes(i)
        if not 1 <= len(token) <= 255:
            raise PrepareError(f"token {i} is {len(token)} bytes long; {path} stores 1..255")
        body.append(len(token))
        body += token
    write_atomically(path, [header.tobytes(), bytes(body)])


# ---------------------------------------------------------------------------------------------
# input text

def input_files(path):
    if not os.path.exists(path):
        raise PrepareError(f"--input '{path}': no such file or directory")
    if os.path.isfile(path):
        return [path]
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names
                   if f.endswith(".txt") or f.endswith(".xz"))
    if not files:
        raise PrepareError(f"--input '{path}': no .txt or .xz files in this directory (searched recursively)")
    return files


def read_input(path):
    """The text of one input file, exactly as stored (no newline translation); .xz is decompressed."""
    try:
        if path.endswith(".xz"):
            with lzma.open(path, "rt", encoding="utf-8", newline="") as f:
                return f.read()
        with open(path, "r", encoding="utf-8", newline="") as f:
            return f.read()
    except OSError as e:
        raise PrepareError(f"cannot read input '{path}': {e.strerror or e}")
    except lzma.LZMAError as e:
        raise PrepareError(f"input '{path}' is not a valid .xz file: {e}")
    except UnicodeDecodeError as e:
        raise PrepareError(f"input '{path}' is not UTF-8 text (byte {e.start} of the text)")


def split_documents(text, mode):
    if mode == "auto":
        mode = "eot" if EOT_LINE.search(text) else "blank"
    if mode == "eot":
        docs = EOT_LINE.split(text)
    elif mode == "blank":
        sections = text.split("\n\n")
        docs = [s + "\n\n" for s in sections[:-1]] + sections[-1:]
    else:
        docs = [text]
    return [d for d in docs if d]


def download_tinyshakespeare(out_dir, quiet):
    path = os.path.join(out_dir, "tinyshakespeare_input.txt")
    if not os.path.exists(path):
        if not quiet:
            print(f"downloading {TINYSHAKESPEARE_URL}")
        try:
            with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=60) as r:
                data = r.read()
        except OSError as e:
            raise PrepareError(f"download of {TINYSHAKESPEARE_URL} failed: {e}")
        write_atomically(path, [data])
    return path


# ---------------------------------------------------------------------------------------------
# tokenizing and writing

def tokenize(enc, files, split_mode, quiet):
    """All tokens of all files, each document preceded by EOT, as an array of uint16."""
    from tqdm import tqdm
    tokens = array.array("H")
    n_docs = 0
    batch_chars = 8 << 20  # documents are encoded in batches of about this many characters
    threads = max(1, os.cpu_count() or 1)
    for path in files:
        docs = split_documents(read_input(path), split_mode)
        n_docs += len(docs)
        bar = tqdm(total=sum(len(d) for d in docs), unit="char", unit_scale=True, disable=quiet,
                   desc=os.path.basename(path), file=sys.stderr)
        start = 0
        while start < len(docs):
            end, size = start, 0
            while end < len(docs) and (end == start or size + len(docs[end]) <= batch_chars):
                size += len(docs[end])
                end += 1
            for doc_tokens in enc.encode_ordinary_batch(docs[start:end], num_threads=threads):
                tokens.append(enc.eot_token)
                tokens.extend(doc_tokens)
            bar.update(size)
            start = end
        bar.close()
    return tokens, n_docs


def write_atomically(path, chunks):
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            for c in chunks:
                f.write(c)
        os.replace(tmp, path)
    except OSError as e:
        raise PrepareError(f"cannot write '{path}': {e.strerror}")


def shard_names(name, split, n_tokens, shard_size):
    n_shards = -(-n_tokens // shard_size)
    if n_shards == 1:
        return [f"{name}_{split}.bin"]
    return [f"{name}_{split}_{k:06d}.bin" for k in range(n_shards)]


def write_split(out_dir, name, split, tokens, shard_size):
    """Writes the tokens as ceil(n / shard_size) shards of near-equal size; returns [(file, count)]."""
    names = shard_names(name, split, len(tokens), shard_size)
    written = []
    for k, fname in enumerate(names):
        lo, hi = k * len(tokens) // len(names), (k + 1) * len(tokens) // len(names)
        header = array.array("i", [0] * HEADER_WORDS)
        header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, hi - lo
        body = tokens[lo:hi]
        if sys.byteorder == "big":
            header.byteswap()
            body.byteswap()
        write_atomically(os.path.join(out_dir, fname), [header.tobytes(), body.tobytes()])
        written.append((fname, hi - lo))
    return written


def remove_old_shards(out_dir, name):
    """Deletes shards of an earlier run under this name, so a glob never mixes two runs."""
    own = re.compile(re.escape(name) + r"_(train|val)(_\d{6})?\.bin$")
    for f in os.listdir(out_dir):
        if own.match(f):
            os.remove(os.path.join(out_dir, f))


def file_signature(path):
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def run_settings(args, files, tok_kind, tok_files):
    """Everything the outputs depend on; equal settings and intact outputs mean nothing to redo."""
    with open(os.path.abspath(__file__), "rb") as f:
        script_hash = hashlib.sha256(f.read()).hexdigest()
    return {
        "script_sha256": script_hash,
        "inputs": [file_signature(f) for f in files],
        "tokenizer": [tok_kind] + [file_signature(f) for f in tok_files],
        "split": args.split,
        "val_tokens": args.val_tokens,
        "shard_size": args.shard_size,
    }


def outputs_current(stamp_path, settings, out_dir):
    try:
        with open(stamp_path) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return False
    if stamp.get("settings") != settings:
        return False
    for fname, size in stamp.get("outputs", {}).items():
        p = os.path.join(out_dir, fname)
        if not os.path.isfile(p) or os.path.getsize(p) != size:
            return False
    return True


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Tokenize text with GPT-2 BPE into llm.c token shards (<out>/<name>_{val,train}*.bin) "
                    "and write <out>/gpt2_tokenizer.bin. See the top of this file for the formats and rules.")
    p.add_argument("--input", help="a text file (.txt, or .xz compressed) or a directory searched recursively "
                                   "for .txt/.xz files; default: download tinyshakespeare")
    p.add_argument("--tokenizer", help="directory with encoder.json + vocab.bpe (preferred) or a .tiktoken "
                                       "file, or a .tiktoken file; default: tiktoken's gpt2 (downloads)")
    p.add_argument("--out", default="data", help="output directory (default: %(default)s)")
    p.add_argument("--name", help="shard name prefix (default: input file name without .txt/.xz, the "
                                  "directory's name, or tiny_shakespeare for the download)")
    p.add_argument("--val-tokens", type=int, help=f"validation tokens taken from the start (default: "
                                                  f"max({DEFAULT_VAL_TOKENS}, 1%% of all tokens))")
    p.add_argument("--shard-size", type=int, default=100_000_000,
                   help="most tokens per shard file (default: %(default)s)")
    p.add_argument("--split", choices=["auto", "eot", "blank", "file"], default="auto",
                   help="how text is cut into documents, each preceded by EOT (default: %(default)s: at lines "
                        "that are exactly <|endoftext|> when there are such lines, else at blank lines)")
    p.add_argument("--force", action="store_true", help="redo the work even when the outputs are up to date")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = p.parse_args(argv)
    if args.val_tokens is not None and args.val_tokens < 1:
        raise PrepareError(f"--val-tokens {args.val_tokens}: must be at least 1")
    if not 1 <= args.shard_size <= 2**31 - 1:
        raise PrepareError(f"--shard-size {args.shard_size}: must be in 1..{2**31 - 1} (int32 header count)")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9_.+-]+", args.name):
        raise PrepareError(f"--name '{args.name}': use letters, digits and _ . + - only")
    return args


def default_name(input_path):
    if input_path is None:
        return "tiny_shakespeare"
    base = os.path.basename(os.path.normpath(input_path))
    for suffix in (".xz", ".txt"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", base) or "data"


def main(argv):
    t0 = time.time()
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else print
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise PrepareError(f"--out '{args.out}': cannot create the directory: {e.strerror}")
    files = input_files(args.input) if args.input is not None else [download_tinyshakespeare(args.out, args.quiet)]
    name = args.name or default_name(args.input)
    tok_kind, tok_files = resolve_tokenizer(args.tokenizer)
    settings = run_settings(args, files, tok_kind, tok_files)
    stamp_path = os.path.join(args.out, f"{name}.prepare.json")
    if not args.force and outputs_current(stamp_path, settings, args.out):
        say(f"{stamp_path}: outputs are up to date, nothing to do (--force to redo)")
        return

    enc = build_encoding(tok_kind, tok_files)
    say(f"tokenizer: {tok_kind} {' '.join(tok_files)} (vocab {enc.n_vocab}, EOT {enc.eot_token})")
    say(f"input: {len(files)} file(s), {sum(os.path.getsize(f) for f in files) / 1e6:.1f} MB on disk")
    tokens, n_docs = tokenize(enc, files, args.split, args.quiet)
    val_tokens = args.val_tokens if args.val_tokens is not None else max(DEFAULT_VAL_TOKENS, len(tokens) // 100)
    if val_tokens >= len(tokens):
        raise PrepareError(f"the input gives {len(tokens)} tokens; --val-tokens {val_tokens} leaves none for "
                           f"training (give a smaller --val-tokens)")

    if os.path.exists(stamp_path):
        os.remove(stamp_path)
    remove_old_shards(args.out, name)
    written = write_split(args.out, name, "val", tokens[:val_tokens], args.shard_size)
    written += write_split(args.out, name, "train", tokens[val_tokens:], args.shard_size)
    write_tokenizer_bin(enc, os.path.join(args.out, "gpt2_tokenizer.bin"))
    outputs = {f: os.path.getsize(os.path.join(args.out, f)) for f, _ in written}
    outputs["gpt2_tokenizer.bin"] = os.path.getsize(os.path.join(args.out, "gpt2_tokenizer.bin"))
    stamp = {"settings": settings, "documents": n_docs, "tokens": len(tokens), "val_tokens": val_tokens,
             "shards": dict(written), "outputs": outputs}
    write_atomically(stamp_path, [json.dumps(stamp, indent=1).encode()])
    dt = time.time() - t0
    say(f"documents: {n_docs}, tokens: {len(tokens)} (val {val_tokens}, train {len(tokens) - val_tokens})")
    for fname, count in written:
        say(f"wrote {os.path.join(args.out, fname)} ({count} tokens)")
    say(f"wrote {os.path.join(args.out, 'gpt2_tokenizer.bin')}; {dt:.1f} s, {len(tokens) / max(dt, 1e-9) / 1e6:.2f} M tokens/s")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except PrepareError as e:
        print(f"prepare.py: error: {e}", file=sys.stderr)
        sys.exit(1)
