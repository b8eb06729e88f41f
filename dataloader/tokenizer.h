// GPT-2 token decoding for printing text samples: loads gpt2_tokenizer.bin as written by
// dev/data/prepare.py (llm.c's format) and maps a token id to its bytes.
// Plain C, also compiled as C++ by nvcc; little-endian host assumed (as the file format).
//
// File: 256 uint32 header ([0]=20240328 magic, [1]=2 version, [2]=vocab size, [3]=end-of-text id),
// then for each id in order: one uint8 byte count (1..255) and that many raw bytes. Nothing follows.
// A token's bytes may be part of a UTF-8 character (GPT-2 is byte-level) and may contain 0 bytes.
#ifndef DATALOADER_TOKENIZER_H
#define DATALOADER_TOKENIZER_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utils.h"

#define TOKENIZER_MAGIC 20240328
#define TOKENIZER_VERSION 2
#define TOKENIZER_HEADER_WORDS 256
#define TOKENIZER_MAX_VOCAB (1u << 24)

typedef struct {
    uint32_t vocab_size;
    uint32_t eot_token;   // id of <|endoftext|>
    char *token_bytes;    // every token's bytes followed by a 0 byte, in id order
    size_t *token_start;  // [vocab_size + 1] offset of each token in token_bytes; [vocab_size] = end
} Tokenizer;

static inline void tokenizer_free(Tokenizer *t) {
    free(t->token_bytes);
    free(t->token_start);
    memset(t, 0, sizeof(*t));
}

// Loads and checks a tokenizer file. Returns 0, or non-zero with a message naming the file and the
// problem in err (and t left empty).
static inline int tokenizer_init(Tokenizer *t, const char *path, char *err, size_t err_size) {
    memset(t, 0, sizeof(*t));
    FILE *f = fopen(path, "rb");
    if (f == NULL) return set_error(err, err_size, "%s: cannot open: %s", path, strerror(errno));
    uint32_t header[TOKENIZER_HEADER_WORDS];
    size_t got = fread(header, sizeof(uint32_t), TOKENIZER_HEADER_WORDS, f);
    int read_errno = ferror(f) ? errno : 0;
    if (read_errno != 0 || got != TOKENIZER_HEADER_WORDS) {
        fclose(f);
        if (read_errno != 0) return set_error(err, err_size, "%s: cannot read: %s", path, strerror(read_errno));
        return set_error(err, err_size, "%s: file is shorter than the %zu-byte tokenizer header", path,
                         TOKENIZER_HEADER_WORDS * sizeof(uint32_t));
    }
    uint32_t vocab = header[2], eot = header[3];
    const char *problem = NULL;
    char detail[128] = "";
    if (header[0] != TOKENIZER_MAGIC) {
        problem = "wrong magic number";
        snprintf(detail, sizeof(detail), "%u (expected %d: not a tokenizer file)", header[0], TOKENIZER_MAGIC);
    } else if (header[1] != TOKENIZER_VERSION) {
        problem = "unsupported tokenizer version";
        snprintf(detail, sizeof(detail), "%u (expected %d; regenerate with dev/data/prepare.py)", header[1], TOKENIZER_VERSION);
    } else if (vocab == 0 || vocab > TOKENIZER_MAX_VOCAB) {
        problem = "implausible vocab size";
        snprintf(detail, sizeof(detail), "%u (expected 1..%u)", vocab, TOKENIZER_MAX_VOCAB);
    } else if (eot >= vocab) {
        problem = "end-of-text id";
        snprintf(detail, sizeof(detail), "%u is not below the vocab size %u", eot, vocab);
    }
    if (problem != NULL) {
        fclose(f);
        return set_error(err, err_size, "%s: %s %s", path, problem, detail);
    }
    // the rest of the file: a length byte and the bytes of each token
    long header_end = ftell(f), file_end = -1;
    if (header_end >= 0 && fseek(f, 0, SEEK_END) == 0) file_end = ftell(f);
    if (file_end < header_end || fseek(f, header_end, SEEK_SET) != 0) {
        fclose(f);
        return set_error(err, err_size, "%s: cannot determine the file size", path);
    }
    size_t body_size = (size_t)(file_end - header_end);
    unsigned char *body = (unsigned char *)malloc_check(body_size + 1);
    size_t body_read = fread(body, 1, body_size, f);
    read_errno = ferror(f) ? errno : 0;
    fclose(f);
    if (body_read != body_size) {
        free(body);
        return set_error(err, err_size, "%s: cannot read: %s", path, read_errno ? strerror(read_errno) : "short read");
    }
    if (body_size < 2 * (size_t)vocab) {  // each token takes at least 2 bytes
        free(body);
        return set_error(err, err_size, "%s: truncated: %zu bytes after the header cannot hold %u tokens", path,
                         body_size, vocab);
    }
    t->vocab_size = vocab;
    t->eot_token = eot;
    t->token_bytes = (char *)malloc_check(body_size + 1);
    t->token_start = (size_t *)malloc_check(((size_t)vocab + 1) * sizeof(size_t));
    size_t at = 0;  // read offset in body; each token's length byte becomes its terminating 0 in token_bytes
    for (uint32_t id = 0; id < vocab; id++) {
        if (at >= body_size || at + 1 + body[at] > body_size) {
            free(body);
            tokenizer_free(t);
            return set_error(err, err_size, "%s: truncated: the file ends inside token %u of %u", path, id, vocab);
        }
        size_t len = body[at];
        if (len == 0) {
            free(body);
            tokenizer_free(t);
            return set_error(err, err_size, "%s: token %u has length 0", path, id);
        }
        t->token_start[id] = at;
        memcpy(t->token_bytes + at, body + at + 1, len);
        t->token_bytes[at + len] = '\0';
        at += 1 + len;
    }
    t->token_start[vocab] = at;
    free(body);
    if (at != body_size) {
        tokenizer_free(t);
        return set_error(err, err_size, "%s: %zu trailing bytes after the %u tokens", path, body_size - at, vocab);
    }
    return 0;
}

// The bytes of token `id` (0-terminated; see tokenizer_token_length for tokens holding 0 bytes),
// or NULL when id is not below the vocab size.
static inline const char *tokenizer_decode(const Tokenizer *t, uint32_t id) {
    if (id >= t->vocab_size) return NULL;
    return t->token_bytes + t->token_start[id];
}

// The number of bytes of token `id` (0 when id is not below the vocab size).
static inline size_t tokenizer_token_length(const Tokenizer *t, uint32_t id) {
    if (id >= t->vocab_size) return 0;
    return t->token_start[id + 1] - t->token_start[id] - 1;
}

// Writes token `id` to f for a human to read: control bytes other than newline and tab (and
// DEL) become \xNN escapes so they cannot garble a terminal; bytes >= 0x80 pass through, so the
// pieces of a UTF-8 character spread over several tokens print as that character. An id out of
// range prints as <|bad token ID|>.
static inline void tokenizer_print_token(FILE *f, const Tokenizer *t, uint32_t id) {
    const char *bytes = tokenizer_decode(t, id);
    if (bytes == NULL) {
        fprintf(f, "<|bad token %u|>", id);
        return;
    }
    size_t len = tokenizer_token_length(t, id);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
}

#endif // DATALOADER_TOKENIZER_H
