/* gguf.h — GGUF reading and writing (the public functions are in moe.h); this header
 * adds what only the library uses. */
#ifndef MOE_IO_GGUF_H
#define MOE_IO_GGUF_H

#include "core/common.h"

/* Start of the file image (the mapping), for code that reads tensor bytes by offset. */
const void *moe_gguf_base(const moe_gguf *g);

#endif
