/* backing.h - files and mappings under a ring (backing.c). */
#ifndef SHMRING_BACKING_H
#define SHMRING_BACKING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "internal.h"

/* "/dev/shm" + name into buf; -ENAMETOOLONG if it does not fit. */
SHMRING_HIDDEN int shm_path(char *buf, size_t len, const char *name);
/* An fd (>= 0) for a new unnamed file in dir, mode applied exactly; or -errno. */
SHMRING_HIDDEN int backing_tmpfile(const char *dir, mode_t mode);
/* Name the unnamed file fd path; -EEXIST or -ELOOP if something stands there. */
SHMRING_HIDDEN int backing_link_file(int fd, const char *path, const char *name);
/* An fd (>= 0) for an existing file, no symlink followed; or -errno. */
SHMRING_HIDDEN int backing_open_file(const char *path, const char *name);
/* Map len bytes of fd shared, resident and writable; advise THP from thp_off if
 * non-zero; mlock if lock. */
SHMRING_HIDDEN int backing_map(int fd, size_t len, size_t thp_off, bool lock, void **out,
			       bool *locked);
SHMRING_HIDDEN size_t system_page_size(void);

/* Hugepages. Sizes are in bytes. */
SHMRING_HIDDEN size_t default_hugepage_size(void);
SHMRING_HIDDEN bool hugepage_size_supported(size_t size);
SHMRING_HIDDEN long hugepages_free(size_t size); /* -1 if unknown */
/* A count from /sys/kernel/mm/hugepages/hugepages-<kB>kB/<what>; -1 if unknown. */
SHMRING_HIDDEN long hugepages_count(size_t size, const char *what);
SHMRING_HIDDEN int hugetlbfs_dir_for(size_t page, char *dir, size_t len);
SHMRING_HIDDEN int hugetlbfs_data_path(char *buf, size_t len, const char *dir, const char *name);
SHMRING_HIDDEN int hugetlbfs_data_create(const char *dir, mode_t mode, size_t len);
SHMRING_HIDDEN int hugetlbfs_data_link(int fd, const char *path);
SHMRING_HIDDEN int hugetlbfs_data_open(const char *path, uid_t owner, size_t page, size_t len);
SHMRING_HIDDEN bool hugetlbfs_path_ok(const char *path, const char *name);
SHMRING_HIDDEN bool thp_shmem_allowed(void);
SHMRING_HIDDEN int memfd_ring(size_t page);

#endif /* SHMRING_BACKING_H */
