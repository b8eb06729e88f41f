// Tests for dataloader/tokenizer.h: random tokenizer files decode back to their bytes, bad files
// are rejected with a message naming the file and the problem, printing escapes control bytes, and
// (after `make test-data`) decoding the tinyshakespeare val shard gives the start of the text.
// Random contents (seed printed; set TEST_SEED to repeat a run).
#define _GNU_SOURCE
#include <ftw.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dataloader/tokenizer.h"
#include "test/testing.h"
#include "test/testing_files.h"

#define ERR_SIZE 512
#define DATA_DIR "build/data/tinyshakespeare"
#define SHAKESPEARE_TEXT "../shared/data/tinyshakespeare/input.txt"

static char tmp_dir[256];
// A tokenizer file's parts, so tests can write valid and broken variants.
typedef struct {
    uint32_t header[TOKENIZER_HEADER_WORDS];
    unsigned char *body;  // length byte + bytes, per token
    size_t body_size;
    size_t *start;        // [vocab] offset of each token's length byte in body
} TokenizerFile;

// Random vocabulary of `vocab` tokens of 1..255 arbitrary bytes (0 bytes included).
static void make_tokenizer_file(TokenizerFile *tf, uint32_t vocab) {
    memset(tf->header, 0, sizeof(tf->header));
    tf->header[0] = TOKENIZER_MAGIC;
    tf->header[1] = TOKENIZER_VERSION;
    tf->header[2] = vocab;
    tf->header[3] = (uint32_t)testing_rand_int(0, (int)vocab - 1);
    tf->body = (unsigned char *)malloc_check((size_t)vocab * 256);
    tf->start = (size_t *)malloc_check(vocab * sizeof(size_t));
    tf->body_size = 0;
    for (uint32_t id = 0; id < vocab; id++) {
        int len = testing_rand_u64() % 8 == 0 ? 255 : testing_rand_int(1, 12);
        tf->start[id] = tf->body_size;
        tf->body[tf->body_size++] = (unsigned char)len;
        for (int i = 0; i < len; i++) tf->body[tf->body_size++] = (unsigned char)testing_rand_int(0, 255);
    }
}

static void write_tokenizer_file(const char *path, const TokenizerFile *tf, size_t body_bytes) {
    FILE *f = fopen_check(path, "wb");
    fwrite_check(tf->header, sizeof(uint32_t), TOKENIZER_HEADER_WORDS, f);
    if (body_bytes > 0) fwrite_check(tf->body, 1, body_bytes, f);
    fclose(f);
}

static void free_tokenizer_file(TokenizerFile *tf) {
    free(tf->body);
    free(tf->start);
}

static void test_random_vocab_roundtrip(void) {
    for (int trial = 0; trial < 5; trial++) {
        uint32_t vocab = (uint32_t)testing_rand_int(1, 3000);
        TokenizerFile tf;
        make_tokenizer_file(&tf, vocab);
        char path[300], err[ERR_SIZE];
        snprintf(path, sizeof(path), "%s/good_%d.bin", tmp_dir, trial);
        write_tokenizer_file(path, &tf, tf.body_size);
        Tokenizer t;
        int rc = tokenizer_init(&t, path, err, sizeof(err));
        CHECK(rc == 0, "init failed: %s", err);
        if (rc == 0) {
            CHECK(t.vocab_size == vocab && t.eot_token == tf.header[3], "vocab %u eot %u, expected %u %u", t.vocab_size,
                  t.eot_token, vocab, tf.header[3]);
            size_t wrong = 0;
            for (uint32_t id = 0; id < vocab; id++) {
                const char *bytes = tokenizer_decode(&t, id);
                size_t len = tf.body[tf.start[id]];
                if (bytes == NULL || tokenizer_token_length(&t, id) != len || memcmp(bytes, tf.body + tf.start[id] + 1, len) != 0 ||
                    bytes[len] != '\0')
                    wrong++;
            }
            CHECK(wrong == 0, "vocab %u: %zu tokens decode wrong", vocab, wrong);
            CHECK(tokenizer_decode(&t, vocab) == NULL && tokenizer_token_length(&t, vocab) == 0,
                  "id == vocab size decodes to something");
            tokenizer_free(&t);
        }
        free_tokenizer_file(&tf);
    }
}

// Writes a broken variant and expects init to fail naming the file and saying `problem`.
static void expect_error(const char *name, const TokenizerFile *tf, size_t body_bytes, const char *problem) {
    char path[300], err[ERR_SIZE] = "";
    snprintf(path, sizeof(path), "%s/%s.bin", tmp_dir, name);
    write_tokenizer_file(path, tf, body_bytes);
    Tokenizer t;
    int rc = tokenizer_init(&t, path, err, sizeof(err));
    CHECK(rc != 0, "%s: a bad file was accepted", name);
    CHECK(strstr(err, path) != NULL && strstr(err, problem) != NULL, "%s: expected '%s' about %s, got: %s", name, problem,
          path, err);
    CHECK(t.token_bytes == NULL && t.vocab_size == 0, "%s: the failed tokenizer is not empty", name);
    if (rc == 0) tokenizer_free(&t);
}

static void test_bad_files(void) {
    char path[300], err[ERR_SIZE] = "";
    snprintf(path, sizeof(path), "%s/missing.bin", tmp_dir);
    Tokenizer t;
    CHECK(tokenizer_init(&t, path, err, sizeof(err)) != 0 && strstr(err, path) != NULL && strstr(err, "cannot open") != NULL,
          "missing file: %s", err);
    CHECK(tokenizer_init(&t, tmp_dir, err, sizeof(err)) != 0 && strstr(err, tmp_dir) != NULL && strstr(err, "cannot read") != NULL,
          "directory: %s", err);

    uint32_t vocab = (uint32_t)testing_rand_int(2, 500);
    TokenizerFile tf;
    make_tokenizer_file(&tf, vocab);
    char expect[128];
    // header too short: write only part of it
    snprintf(path, sizeof(path), "%s/short.bin", tmp_dir);
    FILE *f = fopen_check(path, "wb");
    fwrite_check(tf.header, 1, 1000, f);
    fclose(f);
    CHECK(tokenizer_init(&t, path, err, sizeof(err)) != 0 && strstr(err, path) != NULL &&
              strstr(err, "shorter than the 1024-byte tokenizer header") != NULL, "short header: %s", err);

    tf.header[0] = 20240520;  // a shard's magic
    expect_error("magic", &tf, tf.body_size, "wrong magic number 20240520");
    tf.header[0] = TOKENIZER_MAGIC;
    tf.header[1] = 1;
    expect_error("version", &tf, tf.body_size, "unsupported tokenizer version 1");
    tf.header[1] = TOKENIZER_VERSION;
    tf.header[2] = 0;
    expect_error("vocab0", &tf, tf.body_size, "implausible vocab size 0");
    tf.header[2] = vocab;
    uint32_t eot = tf.header[3];
    tf.header[3] = vocab;
    snprintf(expect, sizeof(expect), "end-of-text id %u is not below the vocab size %u", vocab, vocab);
    expect_error("eot", &tf, tf.body_size, expect);
    tf.header[3] = eot;
    // cut inside the last token: between its length byte and its end
    uint32_t last = vocab - 1;
    snprintf(expect, sizeof(expect), "the file ends inside token %u of %u", last, vocab);
    expect_error("truncated", &tf, tf.start[last] + 1 + (size_t)testing_rand_int(0, tf.body[tf.start[last]] - 1), expect);
    // no bytes for a whole token
    snprintf(expect, sizeof(expect), "the file ends inside token %u of %u", last, vocab);
    expect_error("missing_token", &tf, tf.start[last], expect);
    // one more token than the header says
    tf.header[2] = vocab - 1;
    snprintf(expect, sizeof(expect), "%u trailing bytes after the %u tokens", (unsigned)(tf.body_size - tf.start[last]), vocab - 1);
    expect_error("trailing", &tf, tf.body_size, expect);
    tf.header[2] = vocab;
    // a header claiming far more tokens than the file can hold
    tf.header[2] = TOKENIZER_MAX_VOCAB;
    tf.header[3] = 0;
    snprintf(expect, sizeof(expect), "truncated: %zu bytes after the header cannot hold %u tokens", tf.body_size,
             TOKENIZER_MAX_VOCAB);
    expect_error("huge_vocab", &tf, tf.body_size, expect);
    tf.header[2] = vocab;
    tf.header[3] = eot;
    // a zero-length token
    uint32_t id = (uint32_t)testing_rand_int(0, (int)last);
    tf.body[tf.start[id]] = 0;
    snprintf(expect, sizeof(expect), "token %u has length 0", id);
    expect_error("empty_token", &tf, tf.body_size, expect);
    free_tokenizer_file(&tf);
}

// Reads what tokenizer_print_token wrote for each id into buf (0-terminated).
static void print_tokens(const Tokenizer *t, const uint32_t *ids, int n, char *buf, size_t size) {
    FILE *f = tmpfile();
    if (f == NULL) fatal("tmpfile failed");
    for (int i = 0; i < n; i++) tokenizer_print_token(f, t, ids[i]);
    rewind(f);
    size_t got = fread(buf, 1, size - 1, f);
    buf[got] = '\0';
    fclose(f);
}

static void test_print_token(void) {
    // tokens: "\x01", "a\nb", "\xe2\x82" + "\xac" (the euro sign split in two), "\t\x7f\x1b[", "\r"
    static const unsigned char body[] = {1, 0x01, 3, 'a', '\n', 'b', 2, 0xe2, 0x82, 1, 0xac, 4, '\t', 0x7f, 0x1b, '[', 1, '\r'};
    TokenizerFile tf;
    memset(tf.header, 0, sizeof(tf.header));
    tf.header[0] = TOKENIZER_MAGIC;
    tf.header[1] = TOKENIZER_VERSION;
    tf.header[2] = 6;
    tf.header[3] = 0;
    tf.body = (unsigned char *)body;
    char path[300], err[ERR_SIZE], out[256];
    snprintf(path, sizeof(path), "%s/print.bin", tmp_dir);
    write_tokenizer_file(path, &tf, sizeof(body));
    Tokenizer t;
    if (tokenizer_init(&t, path, err, sizeof(err)) != 0) {
        CHECK(0, "init failed: %s", err);
        return;
    }
    uint32_t ids[] = {0, 1, 2, 3, 4, 5, 6};
    print_tokens(&t, ids, 7, out, sizeof(out));
    const char *want = "\\x01a\nb\xe2\x82\xac\t\\x7f\\x1b[\\x0d<|bad token 6|>";
    CHECK(strcmp(out, want) == 0, "printed '%s', expected '%s'", out, want);
    tokenizer_free(&t);
}

// Reads a shard's tokens (header checked) into a new array; NULL when the file is absent.
static uint16_t *read_shard(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    int32_t header[256];
    fread_check(header, sizeof(int32_t), 256, f);
    if (header[0] != 20240520 || header[1] != 1 || header[2] < 0) fatal("%s: not a token shard", path);
    *n = (size_t)header[2];
    uint16_t *tokens = (uint16_t *)malloc_check(*n * sizeof(uint16_t));
    fread_check(tokens, sizeof(uint16_t), *n, f);
    fclose(f);
    return tokens;
}

// Decoding the val shard (the first 32768 tokens) gives the start of tinyshakespeare, byte for
// byte, with an end-of-text token before the text and at each blank-line section break.
static void test_decode_tinyshakespeare(void) {
    Tokenizer t;
    char err[ERR_SIZE];
    if (tokenizer_init(&t, DATA_DIR "/gpt2_tokenizer.bin", err, sizeof(err)) != 0) {
        CHECK(0, "init failed: %s", err);
        return;
    }
    CHECK(t.vocab_size == 50257 && t.eot_token == 50256, "vocab %u eot %u", t.vocab_size, t.eot_token);
    CHECK(strcmp(tokenizer_decode(&t, 50256), "<|endoftext|>") == 0, "EOT decodes to '%s'", tokenizer_decode(&t, 50256));
    CHECK(strcmp(tokenizer_decode(&t, 5962), "First") == 0 && strcmp(tokenizer_decode(&t, 22307), " Citizen") == 0,
          "5962 22307 decode to '%s' '%s'", tokenizer_decode(&t, 5962), tokenizer_decode(&t, 22307));
    size_t n = 0;
    uint16_t *tokens = read_shard(DATA_DIR "/tiny_shakespeare_val.bin", &n);
    FILE *f = fopen(SHAKESPEARE_TEXT, "rb");
    if (tokens == NULL || f == NULL) fatal("val shard or text missing");
    char *text = (char *)malloc_check(2000000);
    size_t text_len = fread(text, 1, 2000000, f);
    fclose(f);
    char *decoded = (char *)malloc_check(n * 256);
    size_t len = 0, eots = 0, misplaced_eots = 0;
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] == t.eot_token) {
            eots++;
            if (!(i == 0 ? len == 0 : len >= 2 && decoded[len - 1] == '\n' && decoded[len - 2] == '\n')) misplaced_eots++;
            continue;
        }
        size_t k = tokenizer_token_length(&t, tokens[i]);
        memcpy(decoded + len, tokenizer_decode(&t, tokens[i]), k);
        len += k;
    }
    CHECK(tokens[0] == t.eot_token, "the val shard does not start with EOT");
    CHECK(misplaced_eots == 0 && eots > 100, "%zu EOTs, %zu not at a section start", eots, misplaced_eots);
    CHECK(len > 100000 && len <= text_len && memcmp(decoded, text, len) == 0,
          "decoding %zu tokens gives %zu bytes that are not the start of the text", n, len);
    free(decoded);
    free(text);
    free(tokens);
    tokenizer_free(&t);
}

int main(void) {
    testing_seed("test_tokenizer");
    testing_tmpdir_create(tmp_dir, sizeof(tmp_dir), "test_tokenizer");

    RUN_TEST(test_random_vocab_roundtrip);
    RUN_TEST(test_bad_files);
    RUN_TEST(test_print_token);
    if (access(DATA_DIR "/gpt2_tokenizer.bin", R_OK) != 0 || access(DATA_DIR "/tiny_shakespeare_val.bin", R_OK) != 0)
        SKIP_TEST(test_decode_tinyshakespeare, DATA_DIR " absent (make test-data needs ../shared/data)");
    else if (access(SHAKESPEARE_TEXT, R_OK) != 0)
        SKIP_TEST(test_decode_tinyshakespeare, SHAKESPEARE_TEXT " absent");
    else
        RUN_TEST(test_decode_tinyshakespeare);

    testing_tmpdir_remove(tmp_dir);
    return testing_finish();
}
