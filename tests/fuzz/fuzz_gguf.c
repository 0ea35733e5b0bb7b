/* fuzz_gguf.c — libFuzzer target for the GGUF reader: every input goes through
 * moe_gguf_open_memory, and whatever parses is walked completely (every key, every
 * array element at every depth, every tensor's first and last byte) and deep-copied into
 * a writer, so that a bad bound shows up as an ASan report here rather than in a user's
 * model loader. Build and run: `make fuzz` (see docs/FUZZING.md). */
#include "moe.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A broken promise of the reader stops the fuzzer (libFuzzer saves the input); the
 * unit test that replays mutations (tests/test_gguf_fuzz.c) includes this file with its
 * own FUZZ_CHECK that records a test failure instead. */
#ifndef FUZZ_CHECK
#define FUZZ_CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)
#endif

static volatile uint64_t g_sink; /* keeps the reads from being optimised away */

static void walk_value(const moe_gguf_value *v) {
    switch (v->type) {
    case MOE_GGUF_STRING:
        /* the reader promises a NUL after len bytes */
        g_sink += v->v.str.len + (uint8_t)v->v.str.ptr[v->v.str.len];
        if (v->v.str.len) g_sink += (uint8_t)v->v.str.ptr[0];
        break;
    case MOE_GGUF_ARRAY: {
        uint64_t n = v->v.arr.n;
        const void *d = v->v.arr.data;
        switch (v->v.arr.type) {
        case MOE_GGUF_STRING:
            for (uint64_t i = 0; i < n; i++) {
                const moe_gguf_str *s = &((const moe_gguf_str *)d)[i];
                g_sink += s->len + (uint8_t)s->ptr[s->len];
            }
            break;
        case MOE_GGUF_ARRAY:
            for (uint64_t i = 0; i < n; i++) walk_value(&((const moe_gguf_value *)d)[i]);
            break;
        case MOE_GGUF_U8: case MOE_GGUF_I8: case MOE_GGUF_BOOL:
            for (uint64_t i = 0; i < n; i++) g_sink += ((const uint8_t *)d)[i];
            break;
        case MOE_GGUF_U16: case MOE_GGUF_I16:
            for (uint64_t i = 0; i < n; i++) g_sink += ((const uint16_t *)d)[i];
            break;
        case MOE_GGUF_U32: case MOE_GGUF_I32: case MOE_GGUF_F32:
            for (uint64_t i = 0; i < n; i++) g_sink += ((const uint32_t *)d)[i];
            break;
        default: /* 8-byte elements */
            for (uint64_t i = 0; i < n; i++) g_sink += ((const uint64_t *)d)[i];
            break;
        }
        break;
    }
    default:
        g_sink += v->v.u64;
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    moe_gguf *g = moe_gguf_open_memory(data, size, "fuzz.gguf");
    if (!g) {
        /* every failure must leave a message naming the file */
        const char *m = moe_last_error();
        FUZZ_CHECK(m && strncmp(m, "fuzz.gguf", 9) == 0);
        return 0;
    }
    moe_gguf_writer *w = moe_gguf_writer_init();
    for (int64_t i = 0; i < moe_gguf_n_kv(g); i++) {
        const char *key = moe_gguf_kv_key(g, i);
        const moe_gguf_value *v = moe_gguf_kv_value(g, i);
        walk_value(v);
        FUZZ_CHECK(moe_gguf_find(g, key) == v);
        /* the typed getters on every key, whatever its type */
        int64_t x; uint32_t u; float f; bool b; const char *s; const void *d; uint64_t n;
        (void)moe_gguf_get_i64(g, key, &x);
        (void)moe_gguf_get_u32(g, key, &u);
        (void)moe_gguf_get_f32(g, key, &f);
        (void)moe_gguf_get_bool(g, key, &b);
        (void)moe_gguf_get_str(g, key, &s);
        (void)moe_gguf_get_arr(g, key, -1, &d, &n);
        /* whatever the reader accepts, the writer copies (keys are unique, alignment valid) */
        if (w) FUZZ_CHECK(moe_gguf_writer_set_value(w, key, v) == MOE_OK);
    }
    for (int64_t i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        FUZZ_CHECK(moe_gguf_find_tensor(g, t->name) == t);
        if (t->nbytes) {
            const uint8_t *p = t->data;
            /* checked here too, so the promise holds in builds without ASan */
            FUZZ_CHECK(p >= data && t->nbytes <= size && (size_t)(p - data) <= size - t->nbytes);
            g_sink += p[0] + p[t->nbytes - 1];
        }
        /* the writer may refuse names llama.cpp refuses (64 bytes and more); never crash */
        if (w) (void)moe_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes);
    }
    moe_gguf_writer_free(w);
    moe_gguf_close(g);
    return 0;
}
