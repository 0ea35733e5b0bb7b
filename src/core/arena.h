/* arena.h — bump allocation for memory that lives and dies with one object (a parsed
 * file's metadata, a forward pass's scratch). One free releases everything. */
#ifndef MOE_CORE_ARENA_H
#define MOE_CORE_ARENA_H

#include "core/common.h"

typedef struct moe_arena_block moe_arena_block;
typedef struct moe_arena {
    moe_arena_block *head;   /* newest block first */
    size_t block_size;       /* default size of a new block */
    size_t used_total;       /* bytes handed out, for reporting */
} moe_arena;

/* block_size 0 picks 64 KiB. */
void moe_arena_init(moe_arena *a, size_t block_size);
void moe_arena_free(moe_arena *a);
/* Returns `n` bytes aligned to `align` (a power of two ≤ 64), or NULL (error recorded). */
void *moe_arena_alloc(moe_arena *a, size_t n, size_t align);
void *moe_arena_calloc(moe_arena *a, size_t n, size_t align);
/* A NUL-terminated copy of n bytes of s. */
char *moe_arena_strndup(moe_arena *a, const char *s, size_t n);
/* Forgets everything allocated but keeps the first block for reuse (scratch memory). */
void moe_arena_reset(moe_arena *a);

#endif
