// Training-state file: everything besides the model file that an exact resume needs (step, run
// settings, host RNG state, dataloader position, the optimizer shard), one file per rank, written next
// to the model file. Atomic writes and read helpers come from core/checkpoint.h.
// Plain C, also compiled as C++ by nvcc; little-endian host assumed (as every file format here).
//
// Format, version 2 (little-endian): a fixed header, then tagged sections.
//   header (24 bytes): uint64 magic 20261122, uint64 version 2, uint64 section count (1..32)
//   then exactly `count` sections, back to back, and nothing after the last one. A section is
//     char   tag[4]           four ASCII characters, e.g. "OPTM"; a tag appears at most once
//     uint32 layout           the version of this section's payload layout (1 for every section below)
//     uint64 payload_bytes
//     uint8  payload[payload_bytes]
//     uint32 crc              CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320: the CRC of zlib,
//                             PNG and Python's zlib.crc32) of the 16 bytes tag..payload_bytes followed
//                             by the payload
//   There is no padding: sections and arrays are not aligned.
// The sections of this build (TRAIN_STATE_SECTIONS), all required, written in this order (a reader finds
// them by tag, so the order carries no meaning):
//   "RUN " layout 1, 56 bytes: uint64 step (optimizer steps completed: the run resumes at this step),
//          host RNG state (core/rng.h), then the run settings that must match on resume: micro-batch
//          size B, sequence length T, total batch size in tokens, world size, rank of the writer
//   "DATA" layout 1, 32 bytes: uint64 shuffle (1: shuffled order, 0: sequential), seed (any value when
//          shuffling, 0 included; 0 when not), epoch, position (dataloader/dataloader.h DataLoaderPosition)
//   "OPTM" layout 1, 32 + 4*n*(has_master ? 3 : 2) bytes: uint64 num_parameters of the whole model,
//          shard_offset, shard_size = n (the arrays cover parameters [shard_offset, shard_offset + n): the
//          whole model, or one rank's ZeRO shard), has_master (0 or 1); then float32 m[n] and v[n] (the
//          AdamW moments) and, when has_master, float32 master[n] (the fp32 master weights, when the
//          model file is bf16)
//
// Reading refuses, with a message naming the file and the problem:
//   - a version-1 file (the 64-word header of builds before this format) with what to do: start a fresh
//     run, or resume it with the older build that wrote it; any other version than 2;
//   - a tag this build does not know (the file comes from a newer build and must not be half
//     understood), naming the tag; a known tag with another payload layout; a tag twice;
//   - a required section that is missing (an optional one may be absent);
//   - a header or section head that claims more bytes or sections than the file holds (checked for every
//     section before any payload is read, so no size from the file is ever allocated or read blindly),
//     a truncated file, trailing bytes;
//   - a payload whose size does not fit its layout, or whose CRC differs (a corrupt file).
// Nothing from the file is allocated: payloads are read into fixed structs and the caller's buffers
// (the OPTM arrays go there before their CRC is known: after a failed load their contents are unspecified).
//
// Adding a section (e.g. "PREC", the precision recipe, or "STSH", the stash): a row in
// TRAIN_STATE_SECTIONS (required 0, so that files written before it still load), one
// state_writer_section call in train_state_write_sections, and one state_file_find +
// state_file_read_section in train_state_read_sections. Changing a payload's layout: bump its row's
// layout number (older builds then refuse the file by name instead of misreading it).
#ifndef CORE_TRAIN_STATE_H
#define CORE_TRAIN_STATE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/utils.h"
#include "dataloader/dataloader.h"

#define TRAIN_STATE_MAGIC 20261122ull
#define TRAIN_STATE_VERSION 2ull
#define STATE_FILE_HEADER_BYTES 24
#define STATE_SECTION_HEAD_BYTES 16
#define STATE_SECTION_CRC_BYTES 4
#define STATE_FILE_MAX_SECTIONS 32
#define STATE_FILE_CHUNK ((size_t)1 << 20)  // bytes checksummed per read while loading a payload

// ----------------------------------------------------------------------------
// CRC-32 (zlib's), slicing by 8 bytes: crc = crc32_update(&table, 0, data, n) and so on for more data.

typedef struct {
    uint32_t t[8][256];
} Crc32Table;

static inline void crc32_table_init(Crc32Table *table) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table->t[0][i] = c;
    }
    for (int s = 1; s < 8; s++)
        for (int i = 0; i < 256; i++) table->t[s][i] = (table->t[s - 1][i] >> 8) ^ table->t[0][table->t[s - 1][i] & 0xFFu];
}

static inline uint32_t crc32_update(const Crc32Table *table, uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    const uint32_t(*t)[256] = table->t;
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + 4, 4);
        a ^= crc;
        crc = t[7][a & 0xFFu] ^ t[6][(a >> 8) & 0xFFu] ^ t[5][(a >> 16) & 0xFFu] ^ t[4][a >> 24] ^ t[3][b & 0xFFu] ^
              t[2][(b >> 8) & 0xFFu] ^ t[1][(b >> 16) & 0xFFu] ^ t[0][b >> 24];
    }
    for (; n > 0; n--, p++) crc = t[0][(crc ^ *p) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

// ----------------------------------------------------------------------------
// Section types

// A section type a build knows: writers write only these, readers refuse any other tag.
typedef struct {
    const char *tag;   // 4 characters
    uint32_t layout;   // payload layout this build writes and reads
    int required;      // a file without it is refused
    const char *what;  // for messages
} StateSectionType;

static const StateSectionType TRAIN_STATE_SECTIONS[] = {
    {"RUN ", 1, 1, "step, host RNG state and run settings"},
    {"DATA", 1, 1, "dataloader position"},
    {"OPTM", 1, 1, "optimizer shard: AdamW moments and master weights"},
};
#define TRAIN_STATE_NUM_SECTIONS ((int)(sizeof(TRAIN_STATE_SECTIONS) / sizeof(TRAIN_STATE_SECTIONS[0])))

static inline const StateSectionType *state_type_find(const StateSectionType *types, int num_types, const char tag[4]) {
    for (int i = 0; i < num_types; i++)
        if (memcmp(types[i].tag, tag, 4) == 0) return &types[i];
    return NULL;
}

// A tag for messages: printable ASCII as is, other bytes as \xNN (a corrupt tag). out holds 17 chars.
static inline const char *state_tag_str(const char tag[4], char out[17]) {
    char *o = out;
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)tag[i];
        if (c >= 32 && c < 127 && c != '\\' && c != '\'') *o++ = (char)c;
        else o += snprintf(o, 5, "\\x%02x", c);
    }
    *o = '\0';
    return out;
}

// ----------------------------------------------------------------------------
// Writing: open, then per section state_writer_section (or begin, write..., end), then commit.
// Any error aborts the whole file (nothing appears at the path); the writer needs no cleanup then.

typedef struct {
    AtomicWriter w;
    const StateSectionType *types;
    int num_types;
    int count;                                   // sections finished or open
    char tags[STATE_FILE_MAX_SECTIONS][4];       // their tags
    int open;                                    // a section is being written
    uint64_t declared, written;                  // its payload bytes: announced, written so far
    uint32_t crc;
    Crc32Table crc_table;
} StateWriter;

// Aborts the file with a message (the atomic writer removes its temporary file). Returns -1.
static inline int state_writer_fail(StateWriter *sw, char *err, size_t err_size, const char *what) {
    set_error(err, err_size, "cannot write '%s': %s", sw->w.path != NULL ? sw->w.path : "?", what);
    atomic_writer_abort(&sw->w);
    return -1;
}

// Starts a state file at `path` whose sections must be among `types`. Returns 0, or -1 with a message.
static inline int state_writer_open(StateWriter *sw, const char *path, const StateSectionType *types, int num_types, char *err,
                                    size_t err_size) {
    memset(sw, 0, sizeof(*sw));
    sw->types = types;
    sw->num_types = num_types;
    crc32_table_init(&sw->crc_table);
    if (atomic_writer_open(&sw->w, path, err, err_size) != 0) return -1;
    const uint64_t header[3] = {TRAIN_STATE_MAGIC, TRAIN_STATE_VERSION, 0};  // the count is set by the commit
    return atomic_writer_write(&sw->w, header, sizeof(header), err, err_size);
}

// Starts section `tag` (one of the writer's types, not written yet) of payload_bytes bytes.
static inline int state_writer_begin(StateWriter *sw, const char *tag, uint64_t payload_bytes, char *err, size_t err_size) {
    char why[160], ts[17];
    const StateSectionType *type = state_type_find(sw->types, sw->num_types, tag);
    if (sw->open) {
        snprintf(why, sizeof(why), "section '%s' started before section '%.4s' was finished", state_tag_str(tag, ts), sw->tags[sw->count - 1]);
        return state_writer_fail(sw, err, err_size, why);
    }
    if (type == NULL) {
        snprintf(why, sizeof(why), "section '%s' is not one this build reads (not in its table of sections)", state_tag_str(tag, ts));
        return state_writer_fail(sw, err, err_size, why);
    }
    for (int i = 0; i < sw->count; i++) {
        if (memcmp(sw->tags[i], tag, 4) == 0) {
            snprintf(why, sizeof(why), "section '%s' written twice", type->tag);
            return state_writer_fail(sw, err, err_size, why);
        }
    }
    if (sw->count == STATE_FILE_MAX_SECTIONS) {
        snprintf(why, sizeof(why), "more than %d sections", STATE_FILE_MAX_SECTIONS);
        return state_writer_fail(sw, err, err_size, why);
    }
    memcpy(sw->tags[sw->count++], tag, 4);
    unsigned char head[STATE_SECTION_HEAD_BYTES];
    memcpy(head, tag, 4);
    memcpy(head + 4, &type->layout, 4);
    memcpy(head + 8, &payload_bytes, 8);
    sw->open = 1;
    sw->declared = payload_bytes;
    sw->written = 0;
    sw->crc = crc32_update(&sw->crc_table, 0, head, sizeof(head));
    return atomic_writer_write(&sw->w, head, sizeof(head), err, err_size);
}

// Appends bytes to the open section's payload.
static inline int state_writer_write(StateWriter *sw, const void *data, size_t bytes, char *err, size_t err_size) {
    char why[160];
    if (!sw->open || bytes > sw->declared - sw->written) {
        snprintf(why, sizeof(why), "%zu payload bytes written outside a section or beyond its announced %llu", bytes,
                 (unsigned long long)sw->declared);
        return state_writer_fail(sw, err, err_size, why);
    }
    sw->crc = crc32_update(&sw->crc_table, sw->crc, data, bytes);
    sw->written += bytes;
    return atomic_writer_write(&sw->w, data, bytes, err, err_size);
}

// Finishes the open section (its payload must be complete) with its checksum.
static inline int state_writer_end(StateWriter *sw, char *err, size_t err_size) {
    char why[160];
    if (!sw->open || sw->written != sw->declared) {
        snprintf(why, sizeof(why), "section '%.4s' ended after %llu of its %llu payload bytes", sw->count > 0 ? sw->tags[sw->count - 1] : "",
                 (unsigned long long)sw->written, (unsigned long long)sw->declared);
        return state_writer_fail(sw, err, err_size, why);
    }
    sw->open = 0;
    return atomic_writer_write(&sw->w, &sw->crc, STATE_SECTION_CRC_BYTES, err, err_size);
}

// Writes a whole section in one call.
static inline int state_writer_section(StateWriter *sw, const char *tag, const void *payload, size_t bytes, char *err, size_t err_size) {
    if (state_writer_begin(sw, tag, bytes, err, err_size) != 0) return -1;
    if (state_writer_write(sw, payload, bytes, err, err_size) != 0) return -1;
    return state_writer_end(sw, err, err_size);
}

// Checks that every required type was written, sets the section count and renames the file into place.
static inline int state_writer_commit(StateWriter *sw, char *err, size_t err_size) {
    char why[160];
    if (sw->open) {
        snprintf(why, sizeof(why), "section '%.4s' not finished", sw->tags[sw->count - 1]);
        return state_writer_fail(sw, err, err_size, why);
    }
    for (int i = 0; i < sw->num_types; i++) {
        int found = 0;
        for (int j = 0; j < sw->count; j++) found |= memcmp(sw->tags[j], sw->types[i].tag, 4) == 0;
        if (sw->types[i].required && !found) {
            snprintf(why, sizeof(why), "the required section '%s' (%s) was not written", sw->types[i].tag, sw->types[i].what);
            return state_writer_fail(sw, err, err_size, why);
        }
    }
    const uint64_t count = (uint64_t)sw->count;
    if (fseek(sw->w.file, 16, SEEK_SET) != 0 || fwrite(&count, 8, 1, sw->w.file) != 1 || fseek(sw->w.file, 0, SEEK_END) != 0)
        return state_writer_fail(sw, err, err_size, "setting the section count in the header failed");
    return atomic_writer_commit(&sw->w, err, err_size);
}

// ----------------------------------------------------------------------------
// Reading: state_file_open walks and checks every section head; state_file_find looks a section up;
// state_file_read_section (or begin, read..., end) reads a payload and checks its CRC; state_file_close.

typedef struct {
    char tag[4];
    uint32_t layout;
    uint64_t offset;  // of the payload in the file
    uint64_t bytes;   // payload bytes
} StateSection;

typedef struct {
    const char *path;  // the caller's string, used in messages
    FILE *file;
    long long size;
    int count;
    StateSection sections[STATE_FILE_MAX_SECTIONS];
    const StateSectionType *types;
    int num_types;
    Crc32Table crc_table;
} StateFile;

// The section with this tag, or NULL when the file has none (an optional section may be absent).
static inline const StateSection *state_file_find(const StateFile *sf, const char *tag) {
    for (int i = 0; i < sf->count; i++)
        if (memcmp(sf->sections[i].tag, tag, 4) == 0) return &sf->sections[i];
    return NULL;
}

static inline void state_file_close(StateFile *sf) {
    if (sf->file != NULL) fclose(sf->file);
    sf->file = NULL;
}

// Closes the file and fails with the message already in err.
static inline int state_file_fail(StateFile *sf) {
    state_file_close(sf);
    return -1;
}

// Opens a state file and checks its header and the head of every section against `types` (the tags this
// reader knows) and the file size; reads no payload. Returns 0 (close it with state_file_close), or -1
// with a message naming the file (then nothing is left open).
static inline int state_file_open(StateFile *sf, const char *path, const StateSectionType *types, int num_types, char *err,
                                  size_t err_size) {
    memset(sf, 0, sizeof(*sf));
    sf->path = path;
    sf->types = types;
    sf->num_types = num_types;
    crc32_table_init(&sf->crc_table);
    sf->file = checkpoint_open_read(path, &sf->size, err, err_size);
    if (sf->file == NULL) return -1;
    uint64_t header[3] = {0, 0, 0};
    size_t got = fread(header, 1, sizeof(header), sf->file);
    if (got >= 8 && header[0] != TRAIN_STATE_MAGIC) {
        set_error(err, err_size, "'%s' is not a training-state file: magic %llu, expected %llu", path, (unsigned long long)header[0],
                  TRAIN_STATE_MAGIC);
        return state_file_fail(sf);
    }
    if (got >= 16 && header[1] == 1) {
        set_error(err, err_size,
                  "'%s' is a version-1 training-state file, written by an older build of this program; this build reads only "
                  "version %llu (tagged sections). Start a fresh run (without -y/--resume), or resume this checkpoint with the "
                  "older build that wrote it",
                  path, TRAIN_STATE_VERSION);
        return state_file_fail(sf);
    }
    if (got >= 16 && header[1] != TRAIN_STATE_VERSION) {
        set_error(err, err_size,
                  "'%s': training-state version %llu is not one this build reads (version %llu): resume it with the build that "
                  "wrote it, or start a fresh run",
                  path, (unsigned long long)header[1], TRAIN_STATE_VERSION);
        return state_file_fail(sf);
    }
    if (got != sizeof(header)) {
        set_error(err, err_size, "'%s': file is %lld bytes, shorter than the %d-byte training-state header (truncated)", path, sf->size,
                  STATE_FILE_HEADER_BYTES);
        return state_file_fail(sf);
    }
    if (header[2] < 1 || header[2] > STATE_FILE_MAX_SECTIONS) {
        set_error(err, err_size, "'%s': the header claims %llu sections, outside 1..%d (corrupt file)", path, (unsigned long long)header[2],
                  STATE_FILE_MAX_SECTIONS);
        return state_file_fail(sf);
    }
    const int count = (int)header[2];
    long long pos = STATE_FILE_HEADER_BYTES;
    for (int i = 0; i < count; i++) {
        const long long frame = STATE_SECTION_HEAD_BYTES + STATE_SECTION_CRC_BYTES;
        if (sf->size - pos < frame) {
            set_error(err, err_size,
                      "'%s': the file ends at byte %lld, inside section %d of %d (at byte %lld), whose head and checksum alone need %lld "
                      "bytes (truncated)",
                      path, sf->size, i + 1, count, pos, frame);
            return state_file_fail(sf);
        }
        unsigned char head[STATE_SECTION_HEAD_BYTES];
        if (fseek(sf->file, (long)pos, SEEK_SET) != 0 ||
            checkpoint_read(sf->file, head, sizeof(head), path, "a section head", err, err_size) != 0) {
            if (strstr(err, path) == NULL) set_error(err, err_size, "'%s': cannot seek to section %d at byte %lld", path, i + 1, pos);
            return state_file_fail(sf);
        }
        StateSection *s = &sf->sections[i];
        memcpy(s->tag, head, 4);
        memcpy(&s->layout, head + 4, 4);
        memcpy(&s->bytes, head + 8, 8);
        s->offset = (uint64_t)(pos + STATE_SECTION_HEAD_BYTES);
        char ts[17];
        state_tag_str(s->tag, ts);
        const StateSectionType *type = state_type_find(types, num_types, s->tag);
        if (type == NULL) {
            char known[160] = "";
            for (int k = 0; k < num_types; k++) {
                size_t len = strlen(known);
                snprintf(known + len, sizeof(known) - len, "%s'%s'", k == 0 ? "" : ", ", types[k].tag);
            }
            set_error(err, err_size,
                      "'%s': section %d of %d has the tag '%s', which this build does not know (it knows %s): the file comes from a "
                      "newer build; resume it with that build, or start a fresh run",
                      path, i + 1, count, ts, known);
            return state_file_fail(sf);
        }
        for (int k = 0; k < i; k++) {
            if (memcmp(sf->sections[k].tag, s->tag, 4) == 0) {
                set_error(err, err_size, "'%s': section '%s' appears twice (sections %d and %d; corrupt file)", path, ts, k + 1, i + 1);
                return state_file_fail(sf);
            }
        }
        if (s->layout != type->layout) {
            set_error(err, err_size,
                      "'%s': section '%s' (%s) has payload layout %u, this build reads layout %u: resume it with the build that wrote it, "
                      "or start a fresh run",
                      path, ts, type->what, s->layout, type->layout);
            return state_file_fail(sf);
        }
        const long long room = sf->size - pos - frame;  // payload bytes the file has room for
        if (s->bytes > (uint64_t)room) {
            set_error(err, err_size, "'%s': section '%s' at byte %lld claims %llu payload bytes, but the file has room for only %lld (truncated or corrupt)",
                      path, ts, pos, (unsigned long long)s->bytes, room);
            return state_file_fail(sf);
        }
        pos += frame + (long long)s->bytes;
    }
    if (pos != sf->size) {
        set_error(err, err_size, "'%s': %lld trailing bytes after the last of its %d sections (file of %lld bytes; corrupt file)", path,
                  sf->size - pos, count, sf->size);
        return state_file_fail(sf);
    }
    sf->count = count;
    for (int k = 0; k < num_types; k++) {
        if (types[k].required && state_file_find(sf, types[k].tag) == NULL) {
            set_error(err, err_size, "'%s': the required section '%s' (%s) is missing (corrupt file, or not written by this program)",
                      path, types[k].tag, types[k].what);
            return state_file_fail(sf);
        }
    }
    return 0;
}

// Reads one payload in parts, checksumming as it goes.
typedef struct {
    StateFile *sf;
    const StateSection *section;
    uint64_t done;  // payload bytes read
    uint32_t crc;
} StateSectionReader;

static inline int state_section_begin(StateFile *sf, const char *tag, StateSectionReader *r, char *err, size_t err_size) {
    memset(r, 0, sizeof(*r));
    r->sf = sf;
    r->section = state_file_find(sf, tag);
    char ts[17];
    if (r->section == NULL) return set_error(err, err_size, "'%s' has no section '%s'", sf->path, state_tag_str(tag, ts));
    unsigned char head[STATE_SECTION_HEAD_BYTES];
    memcpy(head, r->section->tag, 4);
    memcpy(head + 4, &r->section->layout, 4);
    memcpy(head + 8, &r->section->bytes, 8);
    r->crc = crc32_update(&sf->crc_table, 0, head, sizeof(head));
    if (fseek(sf->file, (long)r->section->offset, SEEK_SET) != 0)
        return set_error(err, err_size, "'%s': cannot seek to section '%s'", sf->path, state_tag_str(tag, ts));
    return 0;
}

// Reads the next `bytes` bytes of the payload (`what` names them in messages).
static inline int state_section_read(StateSectionReader *r, void *out, size_t bytes, const char *what, char *err, size_t err_size) {
    char ts[17];
    const StateSection *s = r->section;
    if (bytes > s->bytes - r->done)
        return set_error(err, err_size, "'%s': section '%s' has %llu payload bytes, too few for %s (%zu more bytes after %llu)", r->sf->path,
                         state_tag_str(s->tag, ts), (unsigned long long)s->bytes, what, bytes, (unsigned long long)r->done);
    unsigned char *p = (unsigned char *)out;
    for (size_t start = 0; start < bytes; start += STATE_FILE_CHUNK) {
        const size_t n = bytes - start < STATE_FILE_CHUNK ? bytes - start : STATE_FILE_CHUNK;
        if (checkpoint_read(r->sf->file, p + start, n, r->sf->path, what, err, err_size) != 0) return -1;
        r->crc = crc32_update(&r->sf->crc_table, r->crc, p + start, n);
    }
    r->done += bytes;
    return 0;
}

// Checks that the whole payload was read and that its CRC matches.
static inline int state_section_end(StateSectionReader *r, char *err, size_t err_size) {
    char ts[17];
    const StateSection *s = r->section;
    state_tag_str(s->tag, ts);
    if (r->done != s->bytes)
        return set_error(err, err_size, "'%s': section '%s' has %llu payload bytes, its layout %u uses %llu", r->sf->path, ts,
                         (unsigned long long)s->bytes, s->layout, (unsigned long long)r->done);
    uint32_t stored;
    if (checkpoint_read(r->sf->file, &stored, sizeof(stored), r->sf->path, "a section checksum", err, err_size) != 0) return -1;
    if (stored != r->crc)
        return set_error(err, err_size, "'%s': section '%s' is corrupt: its stored CRC-32 is 0x%08x, its content gives 0x%08x", r->sf->path, ts,
                         stored, r->crc);
    return 0;
}

// Reads the payload of section `tag`, which must be exactly `bytes` bytes, into out, and checks its CRC.
static inline int state_file_read_section(StateFile *sf, const char *tag, void *out, size_t bytes, char *err, size_t err_size) {
    StateSectionReader r;
    if (state_section_begin(sf, tag, &r, err, err_size) != 0) return -1;
    char ts[17];
    if (r.section->bytes != bytes)
        return set_error(err, err_size, "'%s': section '%s' has %llu payload bytes, its layout %u has %zu", sf->path, state_tag_str(tag, ts),
                         (unsigned long long)r.section->bytes, r.section->layout, bytes);
    if (state_section_read(&r, out, bytes, "a section payload", err, err_size) != 0) return -1;
    return state_section_end(&r, err, err_size);
}

// ----------------------------------------------------------------------------
// The training state

// Run settings that must be the same when a run resumes from a state file.
typedef struct {
    uint64_t batch_size;        // micro-batch B per process
    uint64_t seq_len;           // T
    uint64_t total_batch_size;  // tokens per optimizer step
    uint64_t world_size;        // number of processes
    uint64_t rank;              // the process that wrote (and must read) this file
} TrainRunConfig;

// Everything in a training-state file except its arrays.
typedef struct {
    uint64_t step;            // optimizer steps completed
    uint64_t num_parameters;  // of the whole model
    uint64_t shard_offset;    // the arrays cover parameters [shard_offset, shard_offset + shard_size)
    uint64_t shard_size;
    int has_master;           // fp32 master weights stored (model file in bf16)
    uint64_t rng_state;       // core/rng.h state
    DataLoaderPosition data;  // where the dataloader resumes
    TrainRunConfig run;
} TrainState;

#define TRAIN_STATE_RUN_WORDS 7
#define TRAIN_STATE_DATA_WORDS 4
#define TRAIN_STATE_OPTM_HEAD_WORDS 4

// Writes this build's sections (RUN, DATA, OPTM) of *st, m, v and (when st->has_master) master into an
// open writer. Returns 0, or -1 with a message (the writer is then aborted).
static inline int train_state_write_sections(StateWriter *sw, const TrainState *st, const float *m, const float *v, const float *master,
                                             char *err, size_t err_size) {
    char why[200];
    if (st->shard_offset > st->num_parameters || st->shard_size > st->num_parameters - st->shard_offset) {
        snprintf(why, sizeof(why), "shard [%llu, %llu) exceeds the %llu parameters", (unsigned long long)st->shard_offset,
                 (unsigned long long)(st->shard_offset + st->shard_size), (unsigned long long)st->num_parameters);
        return state_writer_fail(sw, err, err_size, why);
    }
    if (st->shard_size > (UINT64_MAX / 4 - 64) / 3) return state_writer_fail(sw, err, err_size, "the shard size overflows the file's byte counts");
    if (st->has_master && master == NULL) return state_writer_fail(sw, err, err_size, "has_master is set but no master weights were given");
    if (st->data.shuffle > 1) return state_writer_fail(sw, err, err_size, "the dataloader position's shuffle flag is neither 0 nor 1");
    const uint64_t run[TRAIN_STATE_RUN_WORDS] = {st->step, st->rng_state, st->run.batch_size, st->run.seq_len, st->run.total_batch_size,
                                                 st->run.world_size, st->run.rank};
    if (state_writer_section(sw, "RUN ", run, sizeof(run), err, err_size) != 0) return -1;
    const uint64_t data[TRAIN_STATE_DATA_WORDS] = {st->data.shuffle, st->data.seed, st->data.epoch, st->data.position};
    if (state_writer_section(sw, "DATA", data, sizeof(data), err, err_size) != 0) return -1;
    const uint64_t optm[TRAIN_STATE_OPTM_HEAD_WORDS] = {st->num_parameters, st->shard_offset, st->shard_size, st->has_master ? 1u : 0u};
    const size_t bytes = (size_t)st->shard_size * sizeof(float);
    if (state_writer_begin(sw, "OPTM", sizeof(optm) + (uint64_t)bytes * (st->has_master ? 3 : 2), err, err_size) != 0) return -1;
    if (state_writer_write(sw, optm, sizeof(optm), err, err_size) != 0) return -1;
    if (state_writer_write(sw, m, bytes, err, err_size) != 0) return -1;
    if (state_writer_write(sw, v, bytes, err, err_size) != 0) return -1;
    if (st->has_master && state_writer_write(sw, master, bytes, err, err_size) != 0) return -1;
    return state_writer_end(sw, err, err_size);
}

// Writes a training-state file: the sections of *st, then m, v (shard_size floats each) and, when
// st->has_master, master. Atomic. Returns 0, or -1 with a message.
static inline int train_state_write(const char *path, const TrainState *st, const float *m, const float *v, const float *master, char *err,
                                    size_t err_size) {
    StateWriter *sw = (StateWriter *)malloc_check(sizeof(StateWriter));
    int rc = state_writer_open(sw, path, TRAIN_STATE_SECTIONS, TRAIN_STATE_NUM_SECTIONS, err, err_size);
    if (rc == 0) rc = train_state_write_sections(sw, st, m, v, master, err, err_size);
    if (rc == 0) rc = state_writer_commit(sw, err, err_size);
    free(sw);
    return rc;
}

// Checks that a saved run's settings match the resuming run's; -1 with a message naming the
// first setting that differs.
static inline int train_state_check_run(const char *path, const TrainRunConfig *saved, const TrainRunConfig *now, char *err, size_t err_size) {
    const char *names[5] = {"micro-batch size B", "sequence length T", "total batch size", "world size", "rank"};
    uint64_t s[5] = {saved->batch_size, saved->seq_len, saved->total_batch_size, saved->world_size, saved->rank};
    uint64_t n[5] = {now->batch_size, now->seq_len, now->total_batch_size, now->world_size, now->rank};
    for (int i = 0; i < 5; i++) {
        if (s[i] != n[i])
            return set_error(err, err_size, "'%s': cannot resume: %s was %llu in the saved run but is %llu now", path, names[i],
                             (unsigned long long)s[i], (unsigned long long)n[i]);
    }
    return 0;
}

// Reads this build's sections from an open state file: RUN (its run settings must equal *now), DATA,
// and OPTM, which must cover `num_parameters` parameters from `shard_offset` in `shard_size` values;
// its m, v and (when the file has them) master go into the caller's buffers of shard_size floats
// (master may be NULL when the file has none). Fills *st. Returns 0, or -1 with a message naming the
// file; on failure the buffers' contents are unspecified.
static inline int train_state_read_sections(StateFile *sf, const TrainRunConfig *now, uint64_t num_parameters, uint64_t shard_offset,
                                            uint64_t shard_size, TrainState *st, float *m, float *v, float *master, char *err,
                                            size_t err_size) {
    const char *path = sf->path;
    memset(st, 0, sizeof(*st));
    uint64_t run[TRAIN_STATE_RUN_WORDS];
    if (state_file_read_section(sf, "RUN ", run, sizeof(run), err, err_size) != 0) return -1;
    st->step = run[0];
    st->rng_state = run[1];
    st->run.batch_size = run[2];
    st->run.seq_len = run[3];
    st->run.total_batch_size = run[4];
    st->run.world_size = run[5];
    st->run.rank = run[6];
    if (train_state_check_run(path, &st->run, now, err, err_size) != 0) return -1;

    uint64_t data[TRAIN_STATE_DATA_WORDS];
    if (state_file_read_section(sf, "DATA", data, sizeof(data), err, err_size) != 0) return -1;
    if (data[0] > 1) return set_error(err, err_size, "'%s': section 'DATA': bad shuffle flag %llu (0 or 1)", path, (unsigned long long)data[0]);
    st->data.shuffle = data[0];
    st->data.seed = data[1];
    st->data.epoch = data[2];
    st->data.position = data[3];

    StateSectionReader r;
    uint64_t optm[TRAIN_STATE_OPTM_HEAD_WORDS];
    if (state_section_begin(sf, "OPTM", &r, err, err_size) != 0) return -1;
    if (state_section_read(&r, optm, sizeof(optm), "the optimizer shard's head", err, err_size) != 0) return -1;
    const uint64_t np = optm[0], offset = optm[1], size = optm[2], has_master = optm[3];
    if (has_master > 1) return set_error(err, err_size, "'%s': section 'OPTM': bad has_master flag %llu (0 or 1)", path, (unsigned long long)has_master);
    if (offset > np || size > np - offset)
        return set_error(err, err_size, "'%s': section 'OPTM': shard [%llu, +%llu) exceeds the %llu parameters", path, (unsigned long long)offset,
                         (unsigned long long)size, (unsigned long long)np);
    const uint64_t arrays = has_master ? 3 : 2, room = r.section->bytes - sizeof(optm);
    if (size > room / (4 * arrays) || room != size * 4 * arrays)  // the division first: no product overflows
        return set_error(err, err_size, "'%s': section 'OPTM' has %llu payload bytes, which do not hold a shard of %llu values %s master weights",
                         path, (unsigned long long)r.section->bytes, (unsigned long long)size, has_master ? "with" : "without");
    st->num_parameters = np;
    st->shard_offset = offset;
    st->shard_size = size;
    st->has_master = (int)has_master;
    if (np != num_parameters || offset != shard_offset || size != shard_size)
        return set_error(err, err_size, "'%s': the file holds parameters [%llu, +%llu) of %llu but [%llu, +%llu) of %llu are needed", path,
                         (unsigned long long)offset, (unsigned long long)size, (unsigned long long)np, (unsigned long long)shard_offset,
                         (unsigned long long)shard_size, (unsigned long long)num_parameters);
    if (has_master && master == NULL)
        return set_error(err, err_size, "'%s' holds fp32 master weights but the caller gave no buffer for them", path);
    const size_t bytes = (size_t)size * sizeof(float);
    if (state_section_read(&r, m, bytes, "the AdamW first moments", err, err_size) != 0) return -1;
    if (state_section_read(&r, v, bytes, "the AdamW second moments", err, err_size) != 0) return -1;
    if (has_master && state_section_read(&r, master, bytes, "the fp32 master weights", err, err_size) != 0) return -1;
    return state_section_end(&r, err, err_size);
}

// Loads a training-state file: checks it (format, sections, sizes, checksums), checks that the saved
// run settings equal *now and that the file covers `num_parameters` parameters from `shard_offset` in
// `shard_size` values, then reads m, v and (when st->has_master) master, each of shard_size floats,
// into the caller's buffers (master may be NULL when the file has none). Fills *st.
// Returns 0, or -1 with a message naming the file.
static inline int train_state_load(const char *path, const TrainRunConfig *now, uint64_t num_parameters, uint64_t shard_offset,
                                   uint64_t shard_size, TrainState *st, float *m, float *v, float *master, char *err, size_t err_size) {
    StateFile *sf = (StateFile *)malloc_check(sizeof(StateFile));
    int rc = state_file_open(sf, path, TRAIN_STATE_SECTIONS, TRAIN_STATE_NUM_SECTIONS, err, err_size);
    if (rc == 0) rc = train_state_read_sections(sf, now, num_parameters, shard_offset, shard_size, st, m, v, master, err, err_size);
    state_file_close(sf);
    free(sf);
    return rc;
}

#endif // CORE_TRAIN_STATE_H
