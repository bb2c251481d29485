/* backing.h - files and mappings under a ring (backing.c). */
#ifndef SHMRING_BACKING_H
#define SHMRING_BACKING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "internal.h"

/* "/dev/shm" + name into buf; -ENAMETOOLONG if it does not fit. */
SHMRING_HIDDEN int shm_path(char *buf, size_t len, const char *name);
/* An fd (>= 0) for a new file at path, mode applied exactly; or -errno. */
SHMRING_HIDDEN int backing_create_file(const char *path, const char *name, mode_t mode);
/* An fd (>= 0) for an existing file, no symlink followed; or -errno. */
SHMRING_HIDDEN int backing_open_file(const char *path, const char *name);
/* Map len bytes of fd shared, resident and writable; mlock if lock. */
SHMRING_HIDDEN int backing_map(int fd, size_t len, bool lock, void **out, bool *locked);
SHMRING_HIDDEN size_t system_page_size(void);

#endif /* SHMRING_BACKING_H */
