/* atomic.c — see atomic.h. */
#include "io/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

moe_status moe_atomic_open(moe_atomic_file *a, const char *path) {
    a->fd = -1;
    a->path = path;
    /* next to the destination, so rename() stays within one file system; O_EXCL with pid
     * and a counter keeps concurrent writers apart */
    static _Atomic unsigned counter;
    size_t plen = strlen(path);
    a->tmp = moe_malloc(plen + 48);
    if (!a->tmp) return MOE_ERR_NOMEM;
    for (int attempt = 0; attempt < 100 && a->fd < 0; attempt++) {
        snprintf(a->tmp, plen + 48, "%s.tmp.%ld.%u", path, (long)getpid(), counter++);
        a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (a->fd < 0 && errno != EEXIST) break;
    }
    if (a->fd < 0) {
        moe_status st = moe_error(MOE_ERR_IO, "%s: cannot create temporary file %s: %s", path, a->tmp, strerror(errno));
        free(a->tmp);
        a->tmp = NULL;
        return st;
    }
    return MOE_OK;
}

moe_status moe_atomic_write(moe_atomic_file *a, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(a->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return moe_error(MOE_ERR_IO, "%s: write failed: %s", a->path, w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
    }
    return MOE_OK;
}

/* fsync of the directory makes the rename itself durable; best effort (some file
 * systems refuse to open directories for this). */
static void sync_dir_of(const char *path) {
    size_t n = strlen(path);
    char *copy = malloc(n + 1);
    if (!copy) return;
    memcpy(copy, path, n + 1);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

moe_status moe_atomic_close(moe_atomic_file *a, moe_status st) {
    if (a->fd < 0) return st ? st : moe_error(MOE_ERR_INVALID, "%s: file was not opened", a->path);
    if (st == MOE_OK && fsync(a->fd) != 0) st = moe_error(MOE_ERR_IO, "%s: cannot sync: %s", a->path, strerror(errno));
    if (close(a->fd) != 0 && st == MOE_OK) st = moe_error(MOE_ERR_IO, "%s: cannot close: %s", a->path, strerror(errno));
    a->fd = -1;
    if (st == MOE_OK && rename(a->tmp, a->path) != 0)
        st = moe_error(MOE_ERR_IO, "%s: cannot rename %s into place: %s", a->path, a->tmp, strerror(errno));
    if (st != MOE_OK) unlink(a->tmp); /* may change errno, not the message already recorded */
    else sync_dir_of(a->path);
    free(a->tmp);
    a->tmp = NULL;
    return st;
}
