/* atomic.h — writing a file so that readers see the old file or the complete new one,
 * never a partial write: a temporary file next to the destination, fsync, rename into
 * place, fsync of the directory. Used by every writer of model, checkpoint and tensor
 * files (GGUF, safetensors). */
#ifndef MOE_IO_ATOMIC_H
#define MOE_IO_ATOMIC_H

#include "core/common.h"

typedef struct moe_atomic_file {
    int fd;
    char *tmp;          /* the temporary file's name */
    const char *path;   /* the destination (for messages; must outlive the handle) */
} moe_atomic_file;

/* Creates the temporary file (exclusively, so concurrent writers never share one). */
moe_status moe_atomic_open(moe_atomic_file *a, const char *path);
/* Writes all n bytes (short writes are retried); errors name the destination. */
moe_status moe_atomic_write(moe_atomic_file *a, const void *buf, size_t n);
/* With st == MOE_OK: fsync, close, rename into place, fsync the directory (best effort).
 * Otherwise, or when any of those fails: the temporary file is removed and the destination
 * is untouched. Returns the final status; the handle is released either way. */
moe_status moe_atomic_close(moe_atomic_file *a, moe_status st);

#endif
