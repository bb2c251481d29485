/*
 * backing.c - the memory under a ring: files, mappings, pre-faulting, locking,
 * and hugepages.
 *
 * A named ring always has its control block in a file in /dev/shm, created
 * O_EXCL and never through a symlink, so the name lives in the one namespace
 * of shm_open whatever backs the slots: two creators of one name never both
 * succeed. The slots live in one of:
 *   HUGETLBFS     a second file, "shmring.<name>", in a hugetlbfs mount found
 *                 with libhugetlbfs (or $SHMRING_HUGETLBFS_DIR); its path is in
 *                 the header, and attach checks that it is on hugetlbfs, has
 *                 the ring file's owner and the size the header implies;
 *   SHM_THP       the /dev/shm file itself, slots aligned to the hugepage size
 *                 and advised MADV_HUGEPAGE, where shmem THP allows it;
 *   SHM           the /dev/shm file itself, normal pages;
 *   HUGETLB_ANON  unnamed rings: one memfd made with MFD_HUGETLB.
 *
 * Every mapping is made resident for writing before create or attach
 * returns, so that the hot path takes no page fault: MAP_POPULATE reads pages
 * in, and MADV_POPULATE_WRITE (Linux 5.14) also makes this process's
 * page-table entries writable, which MAP_POPULATE alone does not do for shared
 * mappings. Then the mapping is mlocked unless the caller said
 * SHMRING_F_NO_MLOCK. Hugetlb pages are never swapped, so such a mapping
 * counts as locked whether or not mlock marked it (smaps shows "Locked: 0 kB"
 * for hugetlb even after a successful mlock).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h> /* hugetlbfs.h uses size_t without including it */
#include <hugetlbfs.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "backing.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#define MFD_HUGE_SHIFT_ 26

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

int backing_map(int fd, size_t len, size_t thp_off, bool lock, void **out, bool *locked)
{
	/* THP must be advised before the pages come in, so no MAP_POPULATE then. */
	int populate = thp_off ? 0 : MAP_POPULATE;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | populate, fd, 0);
	if (p == MAP_FAILED)
		return errno == ENOMEM ? err_set(-ENOMEM, "mmap of %zu bytes failed: out of memory "
						 "(or, for hugetlb, of free hugepages)", len)
				       : err_sys("mmap of %zu bytes failed", len);
	if (thp_off && thp_off < len)
		(void)madvise((char *)p + thp_off, len - thp_off, MADV_HUGEPAGE);
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

size_t default_hugepage_size(void)
{
	long ps = gethugepagesize();
	return ps > 0 ? (size_t)ps : 0;
}

bool hugepage_size_supported(size_t size)
{
	long sizes[16];
	int n = gethugepagesizes(sizes, 16);
	for (int i = 0; i < n; i++)
		if ((size_t)sizes[i] == size)
			return true;
	return false;
}

long hugepages_free(size_t size)
{
	return hugepages_count(size, "free_hugepages");
}

long hugepages_count(size_t size, const char *what)
{
	char path[128];
	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%zukB/%s", size / 1024,
		 what);
	FILE *f = fopen(path, "re");
	char buf[32];
	long n = -1;
	if (f) {
		if (fgets(buf, sizeof(buf), f)) {
			char *end;
			errno = 0;
			n = strtol(buf, &end, 10);
			if (errno || end == buf)
				n = -1;
		}
		fclose(f);
	}
	return n;
}

static bool on_hugetlbfs(int fd, size_t page)
{
	struct statfs sf;
	return fstatfs(fd, &sf) == 0 && (unsigned long)sf.f_type == HUGETLBFS_MAGIC &&
	       (size_t)sf.f_bsize == page;
}

/*
 * The hugetlbfs directory for pages of this size: $SHMRING_HUGETLBFS_DIR if
 * it is such a mount, else the one libhugetlbfs found when the process
 * started (it reads the mount table once, at load).
 */
int hugetlbfs_dir_for(size_t page, char *dir, size_t len)
{
	/* The library never sets the environment, so reading it races with nothing of ours. */
	const char *env = getenv("SHMRING_HUGETLBFS_DIR"); // NOLINT(concurrency-mt-unsafe)
	if (env && *env) {
		int fd = open(env, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		bool ok = fd >= 0 && on_hugetlbfs(fd, page);
		if (fd >= 0)
			close(fd);
		if (ok && snprintf(dir, len, "%s", env) < (int)len)
			return 0;
	}
	const char *found = hugetlbfs_find_path_for_size((long)page);
	if (found && snprintf(dir, len, "%s", found) < (int)len)
		return 0;
	return -ENOENT;
}

/* The data file's path for a ring: <dir>/shmring.<name without its slash>. */
int hugetlbfs_data_path(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/shmring.%s", dir, name + 1);
	if (n < 0 || (size_t)n >= len)
		return err_set(-ENAMETOOLONG, "hugetlbfs path %s/shmring.%s is too long", dir, name + 1);
	return 0;
}

/*
 * Create the slot file in hugetlbfs. The control file was created O_EXCL
 * first, so a data file already there is the leftover of a creator that
 * crashed: it is removed and made again, once.
 */
int hugetlbfs_data_create(const char *path, mode_t mode, size_t len)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno == EEXIST && attempt == 0) {
			struct stat st;
			if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid())
				unlink(path);
			continue;
		}
		if (fd < 0)
			return err_sys("cannot create %s", path);
		if (fchmod(fd, mode) != 0 || ftruncate(fd, (off_t)len) != 0) {
			int rc = err_sys("cannot set up %s", path);
			unlink(path);
			close(fd);
			return rc;
		}
		return fd;
	}
	return err_set(-EEXIST, "%s exists and is not ours", path);
}

/*
 * Whether a path read from a (possibly hostile) header may name ring name's
 * slot file: "<dir>/shmring.<name>" where <dir> is a hugetlbfs mount point
 * in this process's mount table. Checked before anything opens or unlinks
 * the path, so a header cannot steer attach or unlink to another file (and
 * the mount table is read without touching any other file system).
 */
bool hugetlbfs_path_ok(const char *path, const char *name)
{
	const char *slash = strrchr(path, '/');
	char want[SHMRING_NAME_MAX + 16];
	snprintf(want, sizeof(want), "shmring.%s", name + 1);
	if (!slash || slash == path || strcmp(slash + 1, want) != 0)
		return false;
	size_t dlen = (size_t)(slash - path);
	FILE *m = setmntent("/proc/self/mounts", "re");
	bool ok = false;
	struct mntent ent, *e;
	char buf[4096];
	while (m && !ok && (e = getmntent_r(m, &ent, buf, sizeof(buf))))
		ok = strcmp(e->mnt_type, "hugetlbfs") == 0 && strlen(e->mnt_dir) == dlen &&
		     strncmp(e->mnt_dir, path, dlen) == 0;
	if (m)
		endmntent(m);
	return ok;
}

/* Open a ring's slot file named by its header: it must be hugetlbfs, ours, and sized right. */
int hugetlbfs_data_open(const char *path, uid_t owner, size_t page, size_t len)
{
	int fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return err_set(-EBADMSG, "ring's hugetlbfs file %s cannot be opened: %s", path,
			       errno == ENOENT ? "it is gone" : "not a slot file");
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != owner ||
	    !on_hugetlbfs(fd, page) || (size_t)st.st_size != len) {
		close(fd);
		return err_set(-EBADMSG, "%s is not the ring's hugetlbfs file (owner, file system, "
			       "page size or size differ)", path);
	}
	return fd;
}

bool thp_shmem_allowed(void)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return !strstr(buf, "[never]") && !strstr(buf, "[deny]") && strchr(buf, '[');
}

/* A memfd for an unnamed ring: hugetlb pages of size page, or normal pages if page is 0. */
int memfd_ring(size_t page)
{
	unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
	if (page) {
		unsigned shift = 0;
		while (((size_t)1 << shift) < page)
			shift++;
		flags |= MFD_HUGETLB | (shift << MFD_HUGE_SHIFT_);
	}
	int fd = memfd_create("shmring", flags);
	if (fd < 0)
		return err_sys("memfd_create%s failed", page ? " (hugetlb)" : "");
	return fd;
}

/*
 * Remove "shmring.<name>" from every hugetlbfs mount, where it is a regular
 * file of ours: the slot file a creator made before it died, before its path
 * was published in a header. Called only once the name's control file is
 * gone or dead (the name is one namespace, so that file can belong to no
 * other ring).
 */
void hugetlbfs_remove_orphans(const char *name)
{
	FILE *m = setmntent("/proc/self/mounts", "re");
	struct mntent ent, *e;
	char buf[4096], path[SHMRING_PATH_MAX + SHMRING_NAME_MAX];
	while (m && (e = getmntent_r(m, &ent, buf, sizeof(buf)))) {
		if (strcmp(e->mnt_type, "hugetlbfs") != 0)
			continue;
		struct stat st;
		int n = snprintf(path, sizeof(path), "%s/shmring.%s", e->mnt_dir, name + 1);
		if (n > 0 && (size_t)n < sizeof(path) && lstat(path, &st) == 0 &&
		    S_ISREG(st.st_mode) && st.st_uid == geteuid())
			unlink(path);
	}
	if (m)
		endmntent(m);
}
