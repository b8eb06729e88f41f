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
encoding is used (downloaded by tiktoken). Without --input, tinyshakespeare is downloaded into --out
(and kept there for later runs).

Errors: a problem with the flags, the inputs, the tokenizer or the outputs ends the run with one line
"prepare.py: error: ..." and exit status 1. The inputs, the tokenizer and --out are checked before
anything is created, and --out is created only when the text is tokenized. The outputs of a run are
written under temporary names (<file>.tmp) and put in place only when all of them were written; a run
that fails removes its temporary files (and the --out directories it created), so --out is left as it
was: earlier outputs are neither deleted nor overwritten.
"""
import argparse
import array
import base64
import glob
import hashlib
import http.client
import importlib
import json
import lzma
import os
import re
import stat
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


def require(module):
    """Imports a package of dev/requirements.txt, or says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise PrepareError(f"the Python package '{module.split('.')[0]}' cannot be imported ({e}); install the "
                           f"packages of dev/requirements.txt (pip install -r dev/requirements.txt, or "
                           f"bash scripts/setup.sh)")


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
    try:
        os.listdir(path)
    except OSError as e:
        raise PrepareError(f"--tokenizer '{path}': cannot read the directory: {e.strerror}")
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
    tiktoken = require("tiktoken")
    if kind == "tiktoken-gpt2":
        try:
            enc = tiktoken.get_encoding("gpt2")
        except Exception as e:  # a failed download surfaces as requests', urllib3's or tiktoken's own errors
            raise PrepareError(f"tiktoken cannot load its 'gpt2' encoding (downloaded on first use): "
                               f"{type(e).__name__}: {str(e)[:300]}; give --tokenizer DIR with encoder.json + "
                               f"vocab.bpe (or a .tiktoken file) to use local files")
    else:
        r50k_pat_str = require("tiktoken_ext.openai_public").r50k_pat_str  # GPT-2's pre-tokenizer pattern
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


def tokenizer_bin(enc):
    """The chunks of gpt2_tokenizer.bin for this encoding."""
    header = array.array("I", [0] * HEADER_WORDS)
    header[0], header[1], header[2], header[3] = TOKENIZER_MAGIC, TOKENIZER_VERSION, enc.n_vocab, enc.eot_token
    if sys.byteorder == "big":
        header.byteswap()
    body = bytearray()
    for i in range(enc.n_vocab):
        token = enc.decode_single_token_bytes(i)
        if not 1 <= len(token) <= 255:
            raise PrepareError(f"token {i} is {len(token)} bytes long; gpt2_tokenizer.bin stores 1..255")
        body.append(len(token))
        body += token
    return [header.tobytes(), bytes(body)]


# ---------------------------------------------------------------------------------------------
# input text

def input_files(path):
    """The input files, each checked to be a readable file."""
    if not os.path.exists(path):
        raise PrepareError(f"--input '{path}': no such file or directory")
    if os.path.isfile(path):
        files = [path]
    elif not os.path.isdir(path):
        raise PrepareError(f"--input '{path}': neither a regular file nor a directory")
    else:
        def unreadable(e):
            raise PrepareError(f"--input '{path}': cannot read the directory '{e.filename}': {e.strerror}")
        files = sorted(os.path.join(root, f) for root, _, names in os.walk(path, onerror=unreadable) for f in names
                       if f.endswith(".txt") or f.endswith(".xz"))
        if not files:
            raise PrepareError(f"--input '{path}': no .txt or .xz files in this directory (searched recursively)")
    for f in files:
        try:
            if not stat.S_ISREG(os.stat(f).st_mode):
                raise PrepareError(f"input '{f}' is not a regular file")
            with open(f, "rb"):
                pass
        except OSError as e:
            raise PrepareError(f"cannot read input '{f}': {e.strerror}")
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
    except EOFError:
        raise PrepareError(f"input '{path}' is truncated or corrupt: its .xz data ends before the end of the "
                           f"compressed stream")
    except lzma.LZMAError as e:
        raise PrepareError(f"input '{path}' is not a valid .xz file (corrupt, or not .xz data): {e}")
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
    """The path of tinyshakespeare in out_dir, downloaded (and out_dir created) when it is not there yet."""
    path = os.path.join(out_dir, "tinyshakespeare_input.txt")
    if not os.path.exists(path):
        if not quiet:
            print(f"downloading {TINYSHAKESPEARE_URL}")
        try:
            with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=60) as r:
                data = r.read()
        except (OSError, http.client.HTTPException) as e:
            raise PrepareError(f"download of {TINYSHAKESPEARE_URL} failed: {e}")
        make_out_dir(out_dir)
        write_atomically(path, [data])
    return path


# ---------------------------------------------------------------------------------------------
# tokenizing and writing

def tokenize(enc, files, split_mode, quiet):
    """All tokens of all files, each document preceded by EOT, as an array of uint16."""
    tqdm = require("tqdm").tqdm
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


def write_file(path, chunks, shown=None):
    """Writes and fsyncs path; when that fails, nothing of path is left (and PrepareError names `shown`)."""
    try:
        with open(path, "wb") as f:
            for c in chunks:
                f.write(c)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        try:
            os.remove(path)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise PrepareError(f"cannot write '{shown or path}': {e.strerror or e}")
        raise


def write_atomically(path, chunks):
    """path appears whole or not at all: written to path.tmp, then renamed; no .tmp is left on failure."""
    tmp = path + ".tmp"
    write_file(tmp, chunks, shown=path)
    try:
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise PrepareError(f"cannot write '{path}': {e.strerror}")


def make_out_dir(out_dir):
    """Creates out_dir and its missing parents; returns the directories it created, outermost first."""
    created, p = [], os.path.abspath(out_dir)
    while not os.path.isdir(p):
        created.insert(0, p)
        p = os.path.dirname(p)
    try:
        for d in created:
            os.mkdir(d)
    except OSError as e:
        remove_dirs(created)
        raise PrepareError(f"--out '{out_dir}': cannot create the directory: {e.strerror}")
    return created


def remove_dirs(dirs):
    """Removes those of dirs (outermost first) that exist and are empty."""
    for d in reversed(dirs):
        try:
            os.rmdir(d)
        except OSError:
            pass


def check_out_dir(out_dir):
    """Fails, creating nothing, when out_dir cannot be a directory that this process writes in."""
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise PrepareError(f"--out '{out_dir}': exists and is not a directory")
        parent = out_dir
    else:
        parent = os.path.dirname(os.path.abspath(out_dir))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise PrepareError(f"--out '{out_dir}': '{parent}' is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PrepareError(f"--out '{out_dir}': no permission to write in '{parent}'")


class Outputs:
    """The files of one run in out_dir: each written as <file>.tmp by add(), all put in place by commit(),
    or all temporary files removed by discard(), so a failed run leaves out_dir as it was."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.pending = []  # (temporary path, final path)
        self.sizes = {}  # file name -> size in bytes

    def add(self, fname, chunks):
        """Writes fname's temporary file."""
        path = os.path.join(self.out_dir, fname)
        self.pending.append((path + ".tmp", path))  # before writing: discard() also covers a write cut short
        write_file(path + ".tmp", chunks, shown=path)
        self.sizes[fname] = os.path.getsize(path + ".tmp")

    def discard(self):
        for tmp, _ in self.pending:
            try:
                os.remove(tmp)
            except OSError:
                pass
        self.pending = []

    def commit(self, obsolete):
        """Deletes the files `obsolete` (paths, in this order), then renames every temporary file to its
        name, in the order added (so the run's stamp, added last, appears last). Only deletions and renames
        are left to fail here, after all the data was written."""
        try:
            for path in obsolete:
                if os.path.lexists(path):
                    os.remove(path)
            while self.pending:
                tmp, path = self.pending[0]
                os.replace(tmp, path)
                self.pending.pop(0)
        except OSError as e:
            raise PrepareError(f"cannot put the outputs in place in '{self.out_dir}': {e.strerror} ({e.filename})")


def shard_names(name, split, n_tokens, shard_size):
    n_shards = -(-n_tokens // shard_size)
    if n_shards == 1:
        return [f"{name}_{split}.bin"]
    return [f"{name}_{split}_{k:06d}.bin" for k in range(n_shards)]


def write_split(outputs, name, split, tokens, shard_size):
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
        outputs.add(fname, [header.tobytes(), body.tobytes()])
        written.append((fname, hi - lo))
    return written


def old_shards(out_dir, name):
    """Shards of an earlier run under this name (deleted when the new ones are in place, so a glob never
    mixes two runs)."""
    own = re.compile(re.escape(name) + r"_(train|val)(_\d{6})?\.bin$")
    return [os.path.join(out_dir, f) for f in os.listdir(out_dir) if own.match(f)]


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
    if not isinstance(stamp, dict) or stamp.get("settings") != settings:
        return False
    outputs = stamp.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return False
    for fname, size in outputs.items():
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


def describe_input(input_path, files):
    if input_path is None or os.path.isfile(input_path):
        return f"input '{files[0]}'"
    return f"input '{input_path}' ({len(files)} file{'s' if len(files) != 1 else ''})"


def main(argv):
    t0 = time.time()
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else print
    # every check before anything is created
    check_out_dir(args.out)
    files = input_files(args.input) if args.input is not None else None
    tok_kind, tok_files = resolve_tokenizer(args.tokenizer)
    require("tiktoken")
    require("tqdm")
    if files is None:
        files = [download_tinyshakespeare(args.out, args.quiet)]
    name = args.name or default_name(args.input)
    settings = run_settings(args, files, tok_kind, tok_files)
    stamp_path = os.path.join(args.out, f"{name}.prepare.json")
    if not args.force and outputs_current(stamp_path, settings, args.out):
        say(f"{stamp_path}: outputs are up to date, nothing to do (--force to redo)")
        return

    enc = build_encoding(tok_kind, tok_files)
    say(f"tokenizer: {tok_kind} {' '.join(tok_files)} (vocab {enc.n_vocab}, EOT {enc.eot_token})")
    say(f"input: {len(files)} file(s), {sum(os.path.getsize(f) for f in files) / 1e6:.1f} MB on disk")
    tokens, n_docs = tokenize(enc, files, args.split, args.quiet)
    what = describe_input(args.input, files)
    if not tokens:
        raise PrepareError(f"{what} holds no text: 0 documents, 0 tokens (empty, or nothing but "
                           f"{EOT_TEXT} separator lines)")
    val_tokens = args.val_tokens if args.val_tokens is not None else max(DEFAULT_VAL_TOKENS, len(tokens) // 100)
    if val_tokens >= len(tokens):
        how = "" if args.val_tokens is not None else ", the default"
        raise PrepareError(f"{what} holds too few tokens: {len(tokens)} tokens in {n_docs} document"
                           f"{'s' if n_docs != 1 else ''}, and the validation split (--val-tokens {val_tokens}{how}) "
                           f"takes them all and leaves none for training; give more text, or --val-tokens below "
                           f"{len(tokens)}")

    created = make_out_dir(args.out)
    outputs = Outputs(args.out)
    try:
        written = write_split(outputs, name, "val", tokens[:val_tokens], args.shard_size)
        written += write_split(outputs, name, "train", tokens[val_tokens:], args.shard_size)
        outputs.add("gpt2_tokenizer.bin", tokenizer_bin(enc))
        stamp = {"settings": settings, "documents": n_docs, "tokens": len(tokens), "val_tokens": val_tokens,
                 "shards": dict(written), "outputs": dict(outputs.sizes)}
        outputs.add(os.path.basename(stamp_path), [json.dumps(stamp, indent=1).encode()])
        # the old stamp is deleted first, so that an interrupted commit is never taken for up to date
        outputs.commit([stamp_path] + old_shards(args.out, name))
    except BaseException:
        outputs.discard()
        remove_dirs(created)
        raise
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
