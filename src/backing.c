/*
 * backing.c - the memory under a ring: files, mappings, pre-faulting, locking.
 *
 * A named ring is a file in /dev/shm, created O_EXCL and never through a
 * symlink, so the name lives in the one namespace of shm_open. Every mapping
 * is made resident for writing before create or attach returns, so that the
 * hot path takes no page fault: MAP_POPULATE reads pages in, and
 * MADV_POPULATE_WRITE (Linux 5.14) also makes this process's page-table
 * entries writable, which MAP_POPULATE alone does not do for shared mappings.
 * Then the mapping is mlocked unless the caller said SHMRING_F_NO_MLOCK.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backing.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define SHM_DIR "/dev/shm"

int shm_path(char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "%s%s", SHM_DIR, name);
	if (n < 0 || (size_t)n >= len)
		return err_set(-ENAMETOOLONG, "ring name %s is too long", name);
	return 0;
}

/* Create the file exclusively; a symlink at the name is -ELOOP, not -EEXIST. */
int backing_create_file(const char *path, const char *name, mode_t mode)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST) {
			struct stat st;
			if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
				return err_set(-ELOOP, "a symbolic link stands at %s", path);
			return err_set(-EEXIST, "ring %s already exists (%s)", name, path);
		}
		return err_sys("cannot create %s", path);
	}
	/* The umask must not narrow or widen what the caller asked for. */
	if (fchmod(fd, mode) != 0) {
		int rc = err_sys("cannot set mode %04o on %s", (unsigned)mode, path);
		unlink(path);
		close(fd);
		return rc;
	}
	return fd;
}

int backing_open_file(const char *path, const char *name)
{
	int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ELOOP)
			return err_set(-ELOOP, "a symbolic link stands at %s", path);
		if (errno == ENOENT)
			return err_set(-ENOENT, "no ring named %s", name);
		return err_sys("cannot open %s", path);
	}
	return fd;
}

static int memlock_error(size_t len)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		return err_set(-ENOMEM,
			       "mlock of %zu bytes failed: RLIMIT_MEMLOCK is %llu bytes, %llu short "
			       "(raise it with 'ulimit -l', LimitMEMLOCK= or /etc/security/limits.conf, "
			       "or pass SHMRING_F_NO_MLOCK)",
			       len, (unsigned long long)rl.rlim_cur,
			       len > rl.rlim_cur ? (unsigned long long)(len - rl.rlim_cur) : 0ULL);
	return err_sys("mlock of %zu bytes failed", len);
}

int backing_map(int fd, size_t len, bool lock, void **out, bool *locked)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (p == MAP_FAILED)
		return err_sys("mmap of %zu bytes failed", len);
	/* Older kernels lack MADV_POPULATE_WRITE (EINVAL); MAP_POPULATE then has to do. */
	if (madvise(p, len, MADV_POPULATE_WRITE) != 0 && errno != EINVAL) {
		int rc = err_sys("cannot pre-fault %zu bytes", len);
		munmap(p, len);
		return rc;
	}
	*locked = false;
	if (lock) {
		if (mlock(p, len) != 0) {
			int rc = (errno == ENOMEM || errno == EPERM || errno == EAGAIN)
					 ? memlock_error(len)
					 : err_sys("mlock of %zu bytes failed", len);
			munmap(p, len);
			return rc;
		}
		*locked = true;
	}
	*out = p;
	return 0;
}

size_t system_page_size(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	return ps > 0 ? (size_t)ps : 4096;
}
