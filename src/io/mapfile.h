/* mapfile.h — read-only memory mapping of a whole file, the way every reader of model
 * files (GGUF, safetensors) opens its input: checked to be a regular file, mapped shared
 * and read-only, the descriptor closed (the mapping keeps the file alive); or, for
 * `--no-mmap`, the whole file read into memory. */
#ifndef MOE_IO_MAPFILE_H
#define MOE_IO_MAPFILE_H

#include "core/common.h"

/* Maps `path`; an empty file gives *base = NULL, *size = 0 and MOE_OK. Errors name the
 * file and the failing step. */
moe_status moe_map_file(const char *path, const void **base, uint64_t *size);
/* The same contract, but the file is read into anonymous memory (2 MiB-aligned, with
 * transparent huge pages where the kernel allows them) instead of mapped: the pages are
 * the process's own (counted in its RSS like mapped pages once touched), and streaming
 * them can be faster than streaming page-cache pages (mapfile.c says why). Released with
 * moe_unmap_file too. The memory is left writable (the model loader rearranges weights in
 * it, core/matmul.h: moe_mat_interleave) until moe_protect_file makes it read-only, like
 * the mapping, so that a stray write faults. */
moe_status moe_read_file(const char *path, const void **base, uint64_t *size);
void moe_protect_file(const void *base, uint64_t size);
/* Hands back the mapped pages that lie wholly inside [p, p + n) (MADV_DONTNEED): they
 * leave the process's RSS, and a later read of them faults them in again from the page
 * cache, so this is safe on any part of a read-only file mapping. */
void moe_release_pages(const void *p, uint64_t n);
/* Releases what moe_map_file or moe_read_file returned. */
void moe_unmap_file(const void *base, uint64_t size);

#endif
