/* test_safetensors.c — the safetensors reader and writer: round trips, a file written by
 * an independent Python writer (every readable dtype), malformed headers each with the
 * message it must give, and truncation / byte-flip loops that must never crash. */
#include "test.h"
#include "moe.h"
#include "io/safetensors.h"

#include <stdlib.h>

/* A file image: 8-byte length, header text, data. */
static uint8_t *image(const char *header, const void *data, size_t data_len, size_t *size) {
    size_t hl = strlen(header);
    *size = 8 + hl + data_len;
    uint8_t *b = malloc(*size + 1);
    uint64_t n = hl;
    memcpy(b, &n, 8);
    memcpy(b + 8, header, hl);
    if (data_len) memcpy(b + 8 + hl, data, data_len);
    return b;
}

/* Opens an image from memory and expects failure with `needle` in the message. */
static void expect_error(const char *header, size_t data_len, const char *needle) {
    uint8_t data[256] = {0};
    size_t size;
    uint8_t *b = image(header, data, data_len, &size);
    moe_safetensors *st = moe_st_open_memory(b, size, "bad.safetensors");
    CHECK_MSG(st == NULL, "header accepted: %s", header);
    if (!st) {
        CHECK_STR_CONTAINS(moe_last_error(), "bad.safetensors");
        CHECK_STR_CONTAINS(moe_last_error(), needle);
    }
    moe_st_close(st);
    free(b);
}

TEST(safetensors_roundtrip) {
    char path[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", test_tmpdir());
    float a[6] = {1, -2, 3.5f, 4, 5, 6};
    double b[3] = {0.1, -1e300, 7};
    int64_t c[2] = {-5, INT64_MAX};
    float s = 42;
    int64_t sa[2] = {2, 3}, sb[1] = {3}, sc[3] = {1, 2, 1}, se[2] = {0, 4};
    moe_st_writer *w = moe_st_writer_init();
    REQUIRE(w);
    CHECK(moe_st_writer_add(w, "a", MOE_ST_F32, 2, sa, a) == MOE_OK);
    CHECK(moe_st_writer_add(w, "b.weird \"name\"", MOE_ST_F64, 1, sb, b) == MOE_OK);
    CHECK(moe_st_writer_add(w, "c", MOE_ST_I64, 3, sc, c) == MOE_OK);
    CHECK(moe_st_writer_add(w, "scalar", MOE_ST_F32, 0, NULL, &s) == MOE_OK);
    CHECK(moe_st_writer_add(w, "empty", MOE_ST_F32, 2, se, NULL) == MOE_OK);
    CHECK(moe_st_writer_add(w, "a", MOE_ST_F32, 2, sa, a) != MOE_OK);             /* duplicate */
    CHECK(moe_st_writer_add(w, "h", MOE_ST_F16, 2, sa, a) != MOE_OK);             /* not written */
    CHECK(moe_st_writer_add(w, "__metadata__", MOE_ST_F32, 2, sa, a) != MOE_OK);
    CHECK(moe_st_writer_set_metadata(w, "format", "pt") == MOE_OK);
    CHECK(moe_st_writer_set_metadata(w, "note", "line\nbreak") == MOE_OK);
    REQUIRE(moe_st_writer_write(w, path) == MOE_OK);
    moe_st_writer_free(w);

    moe_safetensors *st = moe_st_open(path);
    REQUIRE_MSG(st, "%s", moe_last_error());
    CHECK_EQ_INT(moe_st_n_tensors(st), 5);
    const moe_st_tensor *t = moe_st_find(st, "a");
    REQUIRE(t);
    CHECK_EQ_INT(t->dtype, MOE_ST_F32);
    CHECK_EQ_INT(t->n_dims, 2);
    CHECK_EQ_INT(t->shape[0], 2);
    CHECK_EQ_INT(t->shape[1], 3);
    float fa[6];
    CHECK(moe_st_read_f32(st, t, fa) == MOE_OK);
    CHECK(memcmp(fa, a, sizeof a) == 0);
    t = moe_st_find(st, "b.weird \"name\"");
    REQUIRE(t);
    float fb[3];
    CHECK(moe_st_read_f32(st, t, fb) == MOE_OK);
    CHECK(fb[0] == 0.1f && isinf(fb[1]) && fb[2] == 7);
    t = moe_st_find(st, "c");
    REQUIRE(t);
    int64_t ic[2];
    CHECK(moe_st_read_i64(st, t, ic) == MOE_OK);
    CHECK(ic[0] == -5 && ic[1] == INT64_MAX);
    t = moe_st_find(st, "scalar");
    REQUIRE(t);
    CHECK_EQ_INT(t->n_dims, 0);
    CHECK_EQ_INT(t->n_elem, 1);
    t = moe_st_find(st, "empty");
    REQUIRE(t);
    CHECK_EQ_INT(t->n_elem, 0);
    CHECK(moe_st_find(st, "nope") == NULL);
    CHECK(moe_st_metadata_get(st, "format") && strcmp(moe_st_metadata_get(st, "format"), "pt") == 0);
    CHECK(moe_st_metadata_get(st, "note") && strcmp(moe_st_metadata_get(st, "note"), "line\nbreak") == 0);
    /* floats that are not integers are refused as int64 */
    int64_t bad[6];
    CHECK(moe_st_read_i64(st, moe_st_find(st, "a"), bad) != MOE_OK);
    moe_st_close(st);

    /* header length: 8 + N is a multiple of 8 */
    FILE *f = fopen(path, "rb");
    REQUIRE(f);
    uint64_t hl = 0;
    CHECK(fread(&hl, 8, 1, f) == 1);
    fclose(f);
    CHECK_EQ_INT((8 + hl) % 8, 0);
}

/* A file from an independent writer (Python's json + struct, the format's README), with
 * every dtype the reader converts. */
TEST(safetensors_reads_python_file) {
    if (!test_have_python_module("numpy")) { test_skip("python3 numpy is missing"); return; }
    char path[512], script[512], cmd[1200];
    snprintf(path, sizeof path, "%s/py.safetensors", test_tmpdir());
    snprintf(script, sizeof script, "%s/write.py", test_tmpdir());
    FILE *f = fopen(script, "w");
    REQUIRE(f);
    fputs("import json, struct, sys, numpy as np\n"
          "vals = np.array([1.5, -2.25, 3.0, 0.0, 65504.0, -0.125], dtype=np.float64)\n"
          "bf = (vals.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)\n"
          "ts = {'f64': vals, 'f32': vals.astype(np.float32), 'f16': vals.astype(np.float16),\n"
          "      'bf16': bf, 'i32': np.array([-7, 0, 2**31-1], np.int32), 'i64': np.array([-(2**62), 5], np.int64),\n"
          "      'u8': np.array([255, 0], np.uint8), 'i16': np.array([-300], np.int16)}\n"
          "names = {'f64':'F64','f32':'F32','f16':'F16','bf16':'BF16','i32':'I32','i64':'I64','u8':'U8','i16':'I16'}\n"
          "hdr, blobs, off = {'__metadata__': {'who': 'python'}}, [], 0\n"
          "for k in sorted(ts):\n"
          "    b = ts[k].tobytes(); shape = [2, 3] if ts[k].size == 6 else [ts[k].size]\n"
          "    hdr[k] = {'dtype': names[k], 'shape': shape, 'data_offsets': [off, off + len(b)]}\n"
          "    blobs.append(b); off += len(b)\n"
          "h = json.dumps(hdr).encode()\n"
          "h += b' ' * ((8 - len(h) % 8) % 8)\n"
          "open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + b''.join(blobs))\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", script, path);
    char *out = NULL;
    int rc = test_run(cmd, &out);
    REQUIRE_MSG(rc == 0, "python failed: %s", out ? out : "");
    free(out);
    moe_safetensors *st = moe_st_open(path);
    REQUIRE_MSG(st, "%s", moe_last_error());
    const float want[6] = {1.5f, -2.25f, 3.0f, 0.0f, 65504.0f, -0.125f};
    const char *fl[] = {"f64", "f32", "f16", "bf16"};
    for (size_t i = 0; i < 4; i++) {
        const moe_st_tensor *t = moe_st_find(st, fl[i]);
        REQUIRE_MSG(t, "%s missing", fl[i]);
        CHECK_EQ_INT(t->shape[0], 2);
        float v[6];
        CHECK(moe_st_read_f32(st, t, v) == MOE_OK);
        for (int j = 0; j < 6; j++)
            CHECK_MSG(v[j] == want[j] || (i == 3 && fabsf(v[j] - want[j]) <= fabsf(want[j]) / 128),
                      "%s[%d] = %g, want %g", fl[i], j, v[j], want[j]);
    }
    int64_t iv[3];
    CHECK(moe_st_read_i64(st, moe_st_find(st, "i32"), iv) == MOE_OK);
    CHECK(iv[0] == -7 && iv[1] == 0 && iv[2] == 2147483647);
    CHECK(moe_st_read_i64(st, moe_st_find(st, "i64"), iv) == MOE_OK);
    CHECK(iv[0] == -(INT64_C(1) << 62) && iv[1] == 5);
    CHECK(moe_st_read_i64(st, moe_st_find(st, "u8"), iv) == MOE_OK);
    CHECK(iv[0] == 255 && iv[1] == 0);
    CHECK(moe_st_read_i64(st, moe_st_find(st, "i16"), iv) == MOE_OK);
    CHECK(iv[0] == -300);
    CHECK(moe_st_read_i64(st, moe_st_find(st, "f16"), iv) != MOE_OK); /* 1.5 is not an integer */
    CHECK(moe_st_metadata_get(st, "who") && strcmp(moe_st_metadata_get(st, "who"), "python") == 0);
    moe_st_close(st);
}

TEST(safetensors_malformed_headers) {
    /* too short for the length field */
    {
        uint8_t b[4] = {0};
        CHECK(moe_st_open_memory(b, 4, "bad.safetensors") == NULL);
        CHECK_STR_CONTAINS(moe_last_error(), "shorter than the 8-byte header length");
    }
    /* header length past the end / past the limit */
    {
        uint8_t b[16] = {0};
        uint64_t n = 100;
        memcpy(b, &n, 8);
        CHECK(moe_st_open_memory(b, 16, "bad.safetensors") == NULL);
        CHECK_STR_CONTAINS(moe_last_error(), "runs past the end of the file");
        n = UINT64_MAX;
        memcpy(b, &n, 8);
        CHECK(moe_st_open_memory(b, 16, "bad.safetensors") == NULL);
        CHECK_STR_CONTAINS(moe_last_error(), "limit");
    }
    const char *ok_t = "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    char h[512];
    expect_error("[1,2]", 0, "does not start with '{'");
    expect_error("{\"t\" {}}", 0, "expected ':'");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", 8, "expected '\"', found '}'"); /* trailing comma */
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "header ends");
    expect_error("{\"t\":{\"dtype\":\"F32,\"shape\":[2]}}", 0, "");
    expect_error("{\"t\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype \"Q4\"");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "negative");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "fraction");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}", 8, "too large");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "F32 × 3 elements is 12 bytes");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "extends past end of file");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "before begin");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 8, "exactly two");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing field \"data_offsets\"");
    expect_error("{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "missing field \"dtype\"");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "given twice");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
                 "overflows");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions");
    /* overlap, hole, trailing bytes, duplicates */
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "tensor 'b': data_offsets: begin 4 overlaps");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "leaves a hole");
    snprintf(h, sizeof h, "{%s}", ok_t);
    expect_error(h, 12, "the tensors end at data byte 8 but the file has 12");
    snprintf(h, sizeof h, "{%s,%s}", ok_t, ok_t);
    expect_error(h, 8, "duplicate tensor name");
    /* metadata */
    snprintf(h, sizeof h, "{\"__metadata__\":{\"a\":1},%s}", ok_t);
    expect_error(h, 8, "metadata values must be strings");
    snprintf(h, sizeof h, "{\"__metadata__\":{\"a\":\"x\",\"a\":\"y\"},%s}", ok_t);
    expect_error(h, 8, "duplicate key");
    snprintf(h, sizeof h, "{\"__metadata__\":{},\"__metadata__\":{},%s}", ok_t);
    expect_error(h, 8, "given twice");
    /* strings */
    expect_error("{\"t\\q\":{}}", 0, "bad escape");
    expect_error("{\"\\ud800\":{}}", 0, "surrogate");
    expect_error("{\"a\xff\":{}}", 0, "UTF-8");
    expect_error("{\"a\x01\":{}}", 0, "control character");
    /* deep nesting inside an unknown field is bounded, not a stack overflow */
    {
        char deep[400];
        int n = snprintf(deep, sizeof deep, "{\"t\":{\"x\":");
        for (int i = 0; i < 100; i++) deep[n++] = '[';
        for (int i = 0; i < 100; i++) deep[n++] = ']';
        snprintf(deep + n, sizeof deep - (size_t)n, "}}");
        expect_error(deep, 0, "nested deeper");
    }
    /* unknown fields and padding are fine */
    {
        float v[2] = {1, 2};
        size_t size;
        uint8_t *b = image("{\"t\":{\"extra\":[1,{\"k\":null}],\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ",
                           v, 8, &size);
        moe_safetensors *st = moe_st_open_memory(b, size, "ok.safetensors");
        CHECK_MSG(st != NULL, "%s", moe_last_error());
        moe_st_close(st);
        free(b);
    }
}

TEST(safetensors_missing_file_names_path) {
    CHECK(moe_st_open("/nonexistent/w.safetensors") == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "/nonexistent/w.safetensors");
}

/* Every prefix of a valid file, and every byte of its header changed to a few values,
 * must open cleanly or fail with a message — never crash (ASan checks the reads). */
TEST(safetensors_truncation_and_flips) {
    float v[6] = {1, 2, 3, 4, 5, 6};
    size_t size;
    uint8_t *b = image("{\"__metadata__\":{\"k\":\"v\\u00e9\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                       "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[16,24]}}",
                       v, 24, &size);
    moe_safetensors *st = moe_st_open_memory(b, size, "ok.safetensors");
    REQUIRE_MSG(st, "%s", moe_last_error());
    moe_st_close(st);
    int opened = 0;
    for (size_t n = 0; n < size; n++) {
        uint8_t *cut = malloc(n ? n : 1); /* exact size so ASan sees any over-read */
        memcpy(cut, b, n);
        moe_safetensors *t = moe_st_open_memory(cut, n, "cut.safetensors");
        if (t) opened++;
        else CHECK(strlen(moe_last_error()) > 0);
        moe_st_close(t);
        free(cut);
    }
    CHECK_EQ_INT(opened, 0);
    const uint8_t vals[] = {0, '"', '{', '}', '[', ']', ',', ':', '\\', '9', 0xff};
    for (size_t i = 0; i < size - 24; i++)
        for (size_t k = 0; k < sizeof vals; k++) {
            uint8_t *m = malloc(size);
            memcpy(m, b, size);
            m[i] = vals[k];
            moe_safetensors *t = moe_st_open_memory(m, size, "flip.safetensors");
            if (t) {
                /* whatever opened must have consistent, in-bounds tensors */
                for (int64_t j = 0; j < moe_st_n_tensors(t); j++) {
                    const moe_st_tensor *x = moe_st_tensor_at(t, j);
                    CHECK((const uint8_t *)x->data + (x->end - x->begin) <= m + size);
                }
            }
            moe_st_close(t);
            free(m);
        }
    free(b);
}
