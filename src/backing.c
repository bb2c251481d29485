/*
 * backing.c - the memory under a ring: files, mappings, pre-faulting, locking,
 * and hugepages.
 *
 * A named ring always has its control block in a file in /dev/shm, so the
 * name lives in the one namespace of shm_open whatever backs the slots. The
 * file is made unnamed (O_TMPFILE), locked, sized and initialised, and only
 * then linked at the name; linkat never replaces a file or follows a symlink
 * there, so two creators of one name never both succeed, and nobody sees a
 * half-made ring under its name. The slots live in one of:
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

/*
 * A new, unnamed file in dir (O_TMPFILE), mode applied exactly: nothing can
 * open it by name until backing_link_file publishes it, so a file that is
 * still being made up is never seen by another creator or an attacher.
 */
int backing_tmpfile(const char *dir, mode_t mode)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_sys("cannot create an unnamed file in %s (O_TMPFILE)", dir);
	/* The umask must not narrow or widen what the caller asked for. */
	if (fchmod(fd, mode) != 0) {
		int rc = err_sys("cannot set mode %04o on a new file in %s", (unsigned)mode, dir);
		close(fd);
		return rc;
	}
	return fd;
}

/*
 * Give the unnamed file fd the name path, never replacing what stands there:
 * 0, -EEXIST (a file is there), -ELOOP (a symbolic link is there) or -errno.
 * Through /proc/self/fd, which needs no privilege (AT_EMPTY_PATH would need
 * CAP_DAC_READ_SEARCH); AT_EMPTY_PATH is the fallback where /proc is absent.
 */
int backing_link_file(int fd, const char *path, const char *name)
{
	char self[32];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	int rc = linkat(AT_FDCWD, self, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
	if (rc != 0 && errno == ENOENT && access("/proc/self/fd", F_OK) != 0)
		rc = linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH);
	if (rc == 0)
		return 0;
	if (errno == EEXIST) {
		struct stat st;
		if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
			return err_set(-ELOOP, "a symbolic link stands at %s", path);
		return err_set(-EEXIST, "ring %s already exists (%s)", name, path);
	}
	return err_sys("cannot name %s", path);
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
 * Make the slot file in hugetlbfs, unnamed (O_TMPFILE in dir) and sized:
 * hugetlbfs_data_link names it once the control file is published, so a
 * creator that dies before that leaves no file behind (its pages go back to
 * the pool with its last reference).
 */
int hugetlbfs_data_create(const char *dir, mode_t mode, size_t len)
{
	int fd = backing_tmpfile(dir, mode);
	if (fd < 0)
		return fd;
	if (ftruncate(fd, (off_t)len) != 0) {
		int rc = err_sys("cannot size a slot file in %s to %zu bytes", dir, len);
		close(fd);
		return rc;
	}
	return fd;
}

/*
 * Name the slot file. The caller has published the control file, so it owns
 * the ring's name, and a regular file of ours already at path belongs to no
 * live ring (a ring's slot file goes with its control file, by reclaim,
 * unlink or close): it is the leftover of an older crash, removed once.
 */
int hugetlbfs_data_link(int fd, const char *path)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		char self[32];
		snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
		if (linkat(AT_FDCWD, self, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0)
			return 0;
		struct stat st;
		if (errno != EEXIST || attempt || lstat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
		    st.st_uid != geteuid())
			break;
		unlink(path);
	}
	return errno == EEXIST ? err_set(-EEXIST, "%s exists and is not ours", path)
			       : err_sys("cannot name %s", path);
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
