/* mapfile.h — read-only memory mapping of a whole file, the way every reader of model
 * files (GGUF, safetensors) opens its input: checked to be a regular file, mapped shared
 * and read-only, the descriptor closed (the mapping keeps the file alive). */
#ifndef MOE_IO_MAPFILE_H
#define MOE_IO_MAPFILE_H

#include "core/common.h"

/* Maps `path`; an empty file gives *base = NULL, *size = 0 and MOE_OK. Errors name the
 * file and the failing step. */
moe_status moe_map_file(const char *path, const void **base, uint64_t *size);
void moe_unmap_file(const void *base, uint64_t size);

#endif
