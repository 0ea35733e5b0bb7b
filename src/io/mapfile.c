/* mapfile.c — see mapfile.h. */
#include "io/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

moe_status moe_map_file(const char *path, const void **base, uint64_t *size) {
    *base = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return moe_error(MOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return moe_error(MOE_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return moe_error(MOE_ERR_IO, "%s: not a regular file", path);
    }
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

void moe_unmap_file(const void *base, uint64_t size) {
    if (base && size) munmap((void *)base, (size_t)size);
}
