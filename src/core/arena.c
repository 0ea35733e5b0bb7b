/* arena.c — the bump allocator of arena.h: a list of blocks, each carved front to back. */
#include "core/arena.h"

#include <stdlib.h>

struct moe_arena_block {
    moe_arena_block *next;
    size_t size, used;
    _Alignas(64) unsigned char data[];
};

void moe_arena_init(moe_arena *a, size_t block_size) {
    a->head = NULL;
    a->block_size = block_size ? block_size : 64 * 1024;
    a->used_total = 0;
}

void moe_arena_free(moe_arena *a) {
    moe_arena_block *b = a->head;
    while (b) {
        moe_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->used_total = 0;
}

void *moe_arena_alloc(moe_arena *a, size_t n, size_t align) {
    if (align == 0) align = 1;
    moe_arena_block *b = a->head;
    if (b) {
        size_t off = (b->used + align - 1) & ~(align - 1);
        if (off <= b->size && n <= b->size - off) {
            b->used = off + n;
            a->used_total += n;
            return b->data + off;
        }
    }
    /* A request larger than a block gets a block of its own. */
    size_t size = n + align > a->block_size ? n + align : a->block_size;
    if (size < n) return moe_error_null(MOE_ERR_NOMEM, "arena: allocation of %zu bytes overflows", n);
    moe_arena_block *nb = NULL;
    if (posix_memalign((void **)&nb, 64, sizeof *nb + size) != 0)
        return moe_error_null(MOE_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    nb->size = size;
    nb->used = n;
    /* Keep the partly used block at the head if it has more room left than the new one
     * would, so a single huge request does not waste the current block. */
    if (b && b->size - b->used > size - n) {
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        a->head = nb;
    }
    a->used_total += n;
    return nb->data;
}

void *moe_arena_calloc(moe_arena *a, size_t n, size_t align) {
    void *p = moe_arena_alloc(a, n, align);
    if (p) memset(p, 0, n);
    return p;
}

char *moe_arena_strndup(moe_arena *a, const char *s, size_t n) {
    if (n == SIZE_MAX) return moe_error_null(MOE_ERR_NOMEM, "arena: string too long");
    char *p = moe_arena_alloc(a, n + 1, 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void moe_arena_reset(moe_arena *a) {
    if (!a->head) return;
    /* keep the last block in the list (the first allocated) and free the rest */
    moe_arena_block *b = a->head, *keep = NULL;
    while (b) {
        moe_arena_block *next = b->next;
        if (!next) keep = b; else free(b);
        b = next;
    }
    keep->used = 0;
    keep->next = NULL;
    a->head = keep;
    a->used_total = 0;
}
