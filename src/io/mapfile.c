/* mapfile.c — see mapfile.h. */
#include "io/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdint.h>

/* Opens `path` read-only and checks that it is a regular file; errors name the file. */
static moe_status open_regular(const char *path, int *fd_out, struct stat *sb) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return moe_error(MOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, sb) != 0) {
        int e = errno;
        close(fd);
        return moe_error(MOE_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb->st_mode)) {
        close(fd);
        return moe_error(MOE_ERR_IO, "%s: not a regular file", path);
    }
    *fd_out = fd;
    return MOE_OK;
}

moe_status moe_map_file(const char *path, const void **base, uint64_t *size) {
    *base = NULL;
    *size = 0;
    int fd;
    struct stat sb;
    moe_status st = open_regular(path, &fd, &sb);
    if (st) return st;
    if (sb.st_size > 0) {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return moe_error(MOE_ERR_IO, "%s: cannot map %llu bytes: %s", path, (unsigned long long)sb.st_size,
                             strerror(e));
        }
        *base = m;
        *size = (uint64_t)sb.st_size;
    }
    close(fd); /* the mapping keeps the file alive */
    return MOE_OK;
}

void moe_protect_file(const void *base, uint64_t size) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (base && size) (void)mprotect((void *)base, ((size_t)size + page - 1) / page * page, PROT_READ);
}

void moe_release_pages(const void *p, uint64_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p;
    const uintptr_t b = (a + page - 1) / page * page, e = (a + (uintptr_t)n) / page * page;
    if (p && e > b) (void)madvise((void *)b, e - b, MADV_DONTNEED);
}

void moe_unmap_file(const void *base, uint64_t size) {
    if (base && size) munmap((void *)base, (size_t)size);
}

/* Huge pages where the kernel grants them (THP in "madvise" mode, the Debian default):
 * decoding streams every weight once per token, and on the machines measured
 * (docs/BENCHMARKS.md, "Mapped or read") weights read into fresh anonymous memory decoded
 * up to 25 % faster than the same bytes mapped from the page cache. */
#define HUGE_ALIGN ((size_t)2 << 20)

moe_status moe_read_file(const char *path, const void **base, uint64_t *size) {
    *base = NULL;
    *size = 0;
    int fd;
    struct stat sb;
    moe_status st = open_regular(path, &fd, &sb);
    if (st) return st;
    const size_t n = (size_t)sb.st_size, page = (size_t)sysconf(_SC_PAGESIZE);
    if (n == 0) {
        close(fd);
        return MOE_OK;
    }
    /* Reserve n + 2 MiB and keep the 2 MiB-aligned part, so that moe_unmap_file(base,
     * size) releases exactly what is kept. */
    const size_t len = (n + page - 1) / page * page;
    uint8_t *raw = mmap(NULL, len + HUGE_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
        close(fd);
        return moe_error(MOE_ERR_NOMEM, "%s: cannot allocate %llu bytes to read the file into", path,
                         (unsigned long long)n);
    }
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    munmap(p + len, (size_t)(raw + HUGE_ALIGN - p)); /* p - raw < HUGE_ALIGN: a tail is always left */
    (void)madvise(p, len, MADV_HUGEPAGE); /* advice only: without THP this is plain memory */
    for (size_t at = 0; at < n;) {
        ssize_t r = pread(fd, p + at, MOE_MIN(n - at, (size_t)64 << 20), (off_t)at);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            munmap(p, len);
            return e ? moe_error(MOE_ERR_IO, "%s: read error at byte %llu: %s", path, (unsigned long long)at, strerror(e))
                     : moe_error(MOE_ERR_IO, "%s: file shrank to %llu bytes while being read", path,
                                 (unsigned long long)at);
        }
        at += (size_t)r;
    }
    close(fd);
    *base = p;
    *size = n;
    return MOE_OK;
}
