/* gguf.h — GGUF reading and writing (the public functions are in moe.h); this header
 * adds what only the library uses, and the limits the reader and the writer share so
 * that every file the writer accepts reads back. */
#ifndef MOE_IO_GGUF_H
#define MOE_IO_GGUF_H

#include "core/common.h"

#define GGUF_MAX_DIMS 4             /* ggml's GGML_MAX_DIMS */
#define GGUF_MAX_DEPTH 8            /* levels of arrays (an array of arrays is 2) */
#define GGUF_DEFAULT_ALIGNMENT 32   /* llama.cpp's GGUF_DEFAULT_ALIGNMENT */
#define GGUF_MAX_NAME 64            /* ggml's GGML_MAX_NAME: names must be shorter */

/* moe_gguf_open_ex(path, true) with the memory left writable, for the model loader,
 * which rearranges weights in it (moe_mat_interleave) and then calls moe_gguf_seal to make
 * it read-only as moe_gguf_open_ex leaves it. moe_gguf_seal does nothing to a mapping. */
moe_gguf *moe_gguf_open_writable(const char *path);
void moe_gguf_seal(moe_gguf *g);

/* Start of the file image (the mapping), for code that reads tensor bytes by offset. */
const void *moe_gguf_base(const moe_gguf *g);

/* Bytes of one scalar of a metadata type; 0 for STRING, ARRAY and unknown types (the
 * reader and the writer both size values with it). */
size_t moe_gguf_scalar_size(uint32_t type);

#endif
