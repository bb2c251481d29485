/*
 * ring.c - create, attach, close and unlink: the life of a named ring.
 *
 * Initialisation protocol. The creator makes the control file unnamed
 * (O_TMPFILE), sizes and maps it, joins as a participant (its lock byte),
 * fills every header field and the slot words, and then links the file at
 * the name; linkat fails if anything stands there (-EEXIST: reclaim() may
 * remove a dead ring once, then one more try). With the name its own, it
 * names its hugetlbfs slot file, if any, and only then stores the layout
 * version with release (I1). An attacher's acquire load of the version (A1)
 * pairs with I1: once it reads a non-zero version, every other header field
 * is final, and so is the slot file. Until then the attacher keeps waiting
 * (bounded by its timeout) and reports -EINPROGRESS if the version never
 * appears. A second creator never sees a file without its creator's lock, so
 * it cannot take a ring being made for a crashed one; a failing create
 * unlinks only the inode it linked.
 *
 * Attach trusts nothing: the size comes from fstat, every header field is
 * checked against the others and against the file, and only then are the
 * slots addressed. A check that fails is -EPROTO (not ours or another layout
 * version), -EBADMSG (inconsistent) or -EDOM (not what the caller expected).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"
#include "internal.h"

/* How often attach looks again while it waits for a ring to appear. */
#define ATTACH_POLL_NS 1000000

static const char *kind_name(uint32_t kind)
{
	switch (kind) {
	case SHMRING_SPSC: return "SPSC";
	case SHMRING_MPSC: return "MPSC";
	case SHMRING_MPMC: return "MPMC";
	default: return "unknown";
	}
}

static bool is_pow2(uint64_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static int check_name(const char *name)
{
	if (!name)
		return err_set(-EINVAL, "ring name is NULL");
	size_t len = strnlen(name, SHMRING_NAME_MAX + 1);
	if (len > SHMRING_NAME_MAX)
		return err_set(-ENAMETOOLONG, "ring name is longer than %d bytes", SHMRING_NAME_MAX);
	if (len < 2 || name[0] != '/')
		return err_set(-EINVAL, "ring name '%s' must be '/' followed by at least one character",
			       name);
	if (strchr(name + 1, '/'))
		return err_set(-EINVAL, "ring name '%s' has a slash after the first character", name);
	if (strcmp(name, "/.") == 0 || strcmp(name, "/..") == 0)
		return err_set(-EINVAL, "ring name '%s' is not a file name", name);
	return 0;
}

static bool reserved_zero(const uint64_t *res, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (res[i])
			return false;
	return true;
}

/*
 * Slot geometry. Each message starts 16-byte aligned, 64-byte aligned when
 * msg_size is a multiple of 64 (the promise of the API). MPSC/MPMC slots put
 * their 8-byte state word after the message, so small messages share one
 * cache line with their word.
 */
struct geometry {
	uint32_t slot_size;
	uint32_t word_off;
	uint64_t data_size;
};

static int geometry(uint32_t kind, uint32_t msg_size, uint32_t capacity, struct geometry *g)
{
	uint64_t align = msg_size % 64 == 0 ? 64 : 16;
	uint64_t word_off = 0, slot;
	if (kind == SHMRING_SPSC) {
		slot = round_up(msg_size, align);
	} else {
		word_off = round_up(msg_size, 8);
		slot = round_up(word_off + 8, align);
	}
	if (slot > UINT32_MAX || slot * capacity > SHMRING_MAX_DATA_SIZE)
		return -ENOMEM;
	g->slot_size = (uint32_t)slot;
	g->word_off = (uint32_t)word_off;
	g->data_size = slot * capacity;
	return 0;
}

static int check_config(const struct shmring_config *cfg)
{
	if (!cfg)
		return err_set(-EINVAL, "config is NULL");
	if (cfg->kind < SHMRING_SPSC || cfg->kind > SHMRING_MPMC)
		return err_set(-EINVAL, "unknown ring kind %d", (int)cfg->kind);
	if (cfg->msg_size == 0)
		return err_set(-EINVAL, "msg_size must be > 0");
	if (cfg->capacity < 2 || !is_pow2(cfg->capacity))
		return err_set(-EINVAL, "capacity %u is not a power of two >= 2", cfg->capacity);
	if (cfg->flags & ~SHMRING_F_ALL)
		return err_set(-EINVAL, "unknown flag bits %#x", cfg->flags & ~SHMRING_F_ALL);
	if ((cfg->flags & SHMRING_F_HUGEPAGE) && (cfg->flags & SHMRING_F_NO_HUGEPAGE))
		return err_set(-EINVAL, "SHMRING_F_HUGEPAGE and SHMRING_F_NO_HUGEPAGE contradict");
	if (cfg->mode & ~(mode_t)0777)
		return err_set(-EINVAL, "mode %#o has bits beyond 0777", (unsigned)cfg->mode);
	if (cfg->page_size && !is_pow2(cfg->page_size))
		return err_set(-EINVAL, "page_size %zu is not a power of two", cfg->page_size);
	if (!reserved_zero(cfg->reserved, 4))
		return err_set(-EINVAL, "reserved fields of the config must be zero");
	return 0;
}

static uint64_t new_generation(void)
{
	uint64_t g = 0;
	if (getrandom(&g, sizeof(g), GRND_NONBLOCK) != (ssize_t)sizeof(g))
		g = (uint64_t)mono_ns() ^ ((uint64_t)getpid() << 32);
	return g ? g : 1;
}

static struct shmring *handle_new(const char *name)
{
	struct shmring *r = calloc(1, sizeof(*r));
	if (r) {
		r->fd = -1;
		r->lock_fd = -1;
		r->data_fd = -1;
		r->pid = getpid();
		snprintf(r->name, sizeof(r->name), "%s", name); /* length checked by check_name */
	}
	return r;
}

static void handle_free(struct shmring *r)
{
	handle_track(r, false);
	notify_close(r); /* before the header is unmapped: it unregisters there */
	if (r->data_map)
		munmap(r->data_map, r->data_len);
	if (r->map)
		munmap(r->map, r->map_len);
	if (r->fd >= 0)
		close(r->fd);
	if (r->lock_fd >= 0)
		close(r->lock_fd);
	if (r->data_fd >= 0)
		close(r->data_fd);
	free(r);
}

/* Fill the handle's hot fields from a header already validated. */
static void handle_bind(struct shmring *r, const struct shmring_hdr *h, unsigned char *slots)
{
	r->hdr = (struct shmring_hdr *)h;
	r->slots = slots;
	r->capacity = h->capacity;
	r->mask = (uint64_t)h->capacity - 1;
	r->msg_size = h->msg_size;
	r->slot_size = h->slot_size;
	r->kind = h->kind;
	r->ring_flags = h->flags;
	r->blocking = (h->flags & SHMRING_F_BLOCKING) != 0;
	r->spin_ns = SHMRING_DEFAULT_SPIN_NS;
	r->sleep_slice_ns = SHMRING_SLEEP_SLICE_NS;
	r->backing = h->backing;
	r->page_size = h->page_size;
	r->generation = h->generation;
	/* The header was checked against geometry(), so this cannot fail here. */
	struct geometry g = {0};
	(void)geometry(h->kind, h->msg_size, h->capacity, &g);
	r->word_off = g.word_off;
}

/* Where a ring's slots go, decided at create. */
struct plan {
	uint32_t backing;
	size_t page;     /* page size backing the slots */
	size_t data_off; /* the slots' offset in their file */
	size_t ctl_len;  /* length of the control file (single file: all of it) */
};

static size_t hugepage_request(const struct shmring_config *cfg)
{
	return cfg->page_size ? cfg->page_size : default_hugepage_size();
}

/* Explain a missing hugepage so that a person knows what to run. */
static int no_hugepages(size_t hps, uint64_t bytes, const char *why)
{
	uint64_t need = (bytes + hps - 1) / hps;
	long free_now = hugepages_free(hps), total = hugepages_count(hps, "nr_hugepages");
	uint64_t short_by = free_now >= 0 && (uint64_t)free_now < need ? need - (uint64_t)free_now : 0;
	uint64_t pool = (total > 0 ? (uint64_t)total : 0) + short_by;
	/* setup.sh takes 2M, 1G or a number of kB. */
	char size[32];
	if (hps % (1u << 30) == 0)
		snprintf(size, sizeof(size), "%zuG", hps >> 30);
	else if (hps % (1u << 20) == 0)
		snprintf(size, sizeof(size), "%zuM", hps >> 20);
	else
		snprintf(size, sizeof(size), "%zu", hps >> 10);
	return err_set(-ENOMEM,
		       "%s: the ring needs %llu free %zu kB hugepages (%ld free now); reserve them "
		       "and mount hugetlbfs with 'hugepage/setup.sh --pages %llu --size %s', "
		       "or create without SHMRING_F_HUGEPAGE to fall back to normal pages",
		       why, (unsigned long long)need, hps / 1024, free_now,
		       (unsigned long long)(pool ? pool : need), size);
}

/*
 * Put a named ring's slots in hugetlbfs: 0 with r->data_map set, or -errno
 * with a message that says what to run.
 */
static int try_hugetlbfs(struct shmring *r, size_t hps, uint64_t data_size, mode_t mode,
			 bool lock, struct plan *pl)
{
	char dir[SHMRING_PATH_MAX];
	size_t len = (size_t)round_up(data_size, hps);
	if (hugetlbfs_dir_for(hps, dir, sizeof(dir)))
		return no_hugepages(hps, len, "no hugetlbfs mount for this page size");
	long free_now = hugepages_free(hps);
	if (free_now >= 0 && (uint64_t)free_now < len / hps)
		return no_hugepages(hps, len, "not enough free hugepages");
	int rc = hugetlbfs_data_path(r->data_path, sizeof(r->data_path), dir, r->name);
	if (rc)
		return rc;
	int fd = hugetlbfs_data_create(dir, mode, len);
	if (fd < 0) {
		r->data_path[0] = 0;
		return fd;
	}
	bool locked;
	rc = backing_map(fd, len, 0, lock, &r->data_map, &locked);
	struct stat st;
	if (rc == 0 && fstat(fd, &st) == 0) {
		r->data_dev = st.st_dev;
		r->data_ino = st.st_ino;
	}
	if (rc) {
		close(fd);
		r->data_path[0] = 0;
		r->data_map = NULL;
		return rc == -ENOMEM ? no_hugepages(hps, len, "hugepages ran out while mapping") : rc;
	}
	r->data_fd = fd; /* named by shmring_create once the control file is */
	r->data_len = len;
	pl->backing = SHMRING_BACKING_HUGETLBFS;
	pl->page = hps;
	pl->data_off = 0;
	return 0;
}

/* Fill the header of a freshly mapped ring, all but the version (the caller publishes it, I1). */
static void init_header(struct shmring *r, const struct shmring_config *cfg,
			const struct geometry *g, const struct plan *pl)
{
	struct shmring_hdr *h = r->map;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	h->magic = SHMRING_MAGIC;
	h->ctl_size = SHMRING_CTL_SIZE;
	h->kind = cfg->kind;
	h->msg_size = cfg->msg_size;
	h->capacity = cfg->capacity;
	h->slot_size = g->slot_size;
	/* Only ring-wide flags are stored; the rest are this process's choices. */
	h->flags = cfg->flags & (SHMRING_F_BLOCKING | SHMRING_F_PERSIST | SHMRING_F_HUGEPAGE);
	h->backing = pl->backing;
	h->page_size = pl->page;
	h->data_offset = pl->data_off;
	h->data_size = g->data_size;
	h->file_size = pl->ctl_len;
	h->creator_pid = (int32_t)getpid();
	h->creator_uid = (uint32_t)getuid();
	h->generation = new_generation();
	h->created_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	memcpy(h->data_path, r->data_path, sizeof(h->data_path));
	unsigned char *slots = r->data_map ? (unsigned char *)r->data_map
					   : (unsigned char *)r->map + pl->data_off;
	handle_bind(r, h, slots);
	r->local_flags = cfg->flags & (SHMRING_F_NO_MLOCK | SHMRING_F_NO_HUGEPAGE);
	if (r->kind != SHMRING_SPSC)
		mp_init_slots(r, 0);
}

static void data_file_of(const char *path, const char *name, char *out, size_t len);
static int unlink_if_same(const char *path, dev_t dev, ino_t ino);

/*
 * A ring file already stands at the name. If every participant that ever
 * attached is dead (their locks gone) and it is not PERSIST, it is the
 * leftover of a crash: remove it (and its hugetlbfs file) so that create can
 * go on; return 0 then. Otherwise -EEXIST naming the live participants.
 * Two reclaimers race safely: each holds the old file's reclaim byte while it
 * checks that the name still refers to that file and unlinks it.
 */
static int reclaim(const char *path, const char *name)
{
	int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : err_set(-EEXIST, "ring %s already exists", name);
	int rc = -EEXIST;
	struct stat st, now;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
			   .l_start = (off_t)(SHMRING_LOCK_BASE - 1), .l_len = 1};
	if (fstat(fd, &st) != 0 || fcntl(fd, F_OFD_SETLK, &fl) != 0) {
		close(fd);
		return err_set(-EEXIST, "ring %s already exists (being created or reclaimed by "
			       "another process)", name);
	}
	size_t len = (size_t)st.st_size;
	void *p = len >= SHMRING_CTL_SIZE ? mmap(NULL, SHMRING_CTL_SIZE, PROT_READ, MAP_SHARED, fd, 0)
					  : MAP_FAILED;
	static const struct shmring_hdr zero;
	const struct shmring_hdr *h = p != MAP_FAILED ? p : &zero;
	char pids[256], data[SHMRING_PATH_MAX];
	if (!ring_file_dead(fd, h, p != MAP_FAILED ? len : 0, pids, sizeof(pids))) {
		rc = pids[0] ? err_set(-EEXIST, "ring %s exists with live participants (pids %s)",
				       name, pids)
			     : err_set(-EEXIST, "ring %s already exists", name);
	} else if (lstat(path, &now) == 0 && now.st_ino == st.st_ino && now.st_dev == st.st_dev) {
		data_file_of(path, name, data, sizeof(data));
		if (unlink(path) == 0) {
			/*
			 * A creator names its slot file only after its control file,
			 * whose header already names it: a dead ring's slot file is
			 * this one or none.
			 */
			if (data[0])
				unlink(data);
			rc = 0;
		}
	} else {
		rc = 0; /* someone else removed or replaced it: create again decides */
	}
	if (p != MAP_FAILED)
		munmap(p, SHMRING_CTL_SIZE);
	close(fd);
	return rc;
}

int shmring_create(const char *name, const struct shmring_config *cfg, struct shmring **out)
{
	int rc;
	struct geometry g;
	char path[sizeof("/dev/shm") + SHMRING_NAME_MAX];

	if (!out)
		return err_set(-EINVAL, "out is NULL");
	if ((rc = check_name(name)) || (rc = check_config(cfg)))
		return rc;
	if (geometry(cfg->kind, cfg->msg_size, cfg->capacity, &g))
		return err_set(-ENOMEM, "ring of %u messages of %u bytes is too large",
			       cfg->capacity, cfg->msg_size);
	if ((rc = shm_path(path, sizeof(path), name)))
		return rc;

	struct shmring *r = handle_new(name);
	if (!r)
		return err_set(-ENOMEM, "out of memory for a handle");
	mode_t mode = cfg->mode ? cfg->mode : 0600;
	bool lock = !(cfg->flags & SHMRING_F_NO_MLOCK);
	size_t base = system_page_size();
	struct plan pl = {.backing = SHMRING_BACKING_SHM, .page = base,
			  .data_off = SHMRING_CTL_SIZE};

	/*
	 * The control file is made unnamed and named last (backing.c): a second
	 * creator never finds a half-made ring at the name, so it cannot take one
	 * for a crashed ring and remove it.
	 */
	rc = backing_tmpfile("/dev/shm", mode);
	if (rc < 0)
		goto fail;
	r->fd = rc;
	r->creator = true;

	size_t hps = hugepage_request(cfg);
	bool want_huge = !(cfg->flags & SHMRING_F_NO_HUGEPAGE) && hps > base;
	if (want_huge && !hugepage_size_supported(hps)) {
		if (cfg->flags & SHMRING_F_HUGEPAGE) {
			rc = err_set(-EINVAL, "this kernel offers no %zu kB hugepages", hps / 1024);
			goto fail;
		}
		want_huge = false;
	}
	if (want_huge) {
		rc = try_hugetlbfs(r, hps, g.data_size, mode, lock, &pl);
		if (rc && (cfg->flags & SHMRING_F_HUGEPAGE))
			goto fail;
	}
	if (pl.backing == SHMRING_BACKING_HUGETLBFS) {
		pl.ctl_len = (size_t)round_up(SHMRING_CTL_SIZE, base);
	} else {
		if (want_huge && g.data_size >= hps && thp_shmem_allowed()) {
			/* Slots on a hugepage boundary of the file, so THP can map them whole. */
			pl.backing = SHMRING_BACKING_SHM_THP;
			pl.data_off = hps;
		}
		pl.ctl_len = (size_t)round_up(pl.data_off + g.data_size, base);
	}
	if (ftruncate(r->fd, (off_t)pl.ctl_len) != 0) {
		rc = err_sys("cannot size the new ring %s to %zu bytes", name, pl.ctl_len);
		goto fail;
	}
	bool locked;
	rc = backing_map(r->fd, pl.ctl_len, pl.backing == SHMRING_BACKING_SHM_THP ? pl.data_off : 0,
			 lock, &r->map, &locked);
	if (rc)
		goto fail;
	r->map_len = pl.ctl_len;
	/* hugetlb slots are never swapped; the control page counts only if mlocked. */
	r->locked = locked;
	/*
	 * The creator is a participant before the name is published: from then
	 * on a second creator's reclaim() sees a live lock (-EEXIST at once), and
	 * a crash leaves a ring that a later create can tell is dead.
	 */
	r->hdr = r->map;
	if ((rc = part_join(r)))
		goto fail;
	init_header(r, cfg, &g, &pl);
	KILL_POINT("create_unnamed");
	rc = backing_link_file(r->fd, path, name);
	if (rc == -EEXIST && (rc = reclaim(path, name)) == 0)
		rc = backing_link_file(r->fd, path, name); /* a crashed ring was removed */
	if (rc)
		goto fail;
	KILL_POINT("create_named");
	/* The name is ours: now the slot file's name (init_header put it in the header). */
	if (r->data_fd >= 0) {
		if ((rc = hugetlbfs_data_link(r->data_fd, r->data_path)))
			goto fail_unlink;
		close(r->data_fd);
		r->data_fd = -1;
	}
	store_release32(&r->hdr->version, SHMRING_LAYOUT_VERSION); /* I1, pairs with A1 */
	handle_track(r, true);
	*out = r;
	return 0;

fail_unlink:;
	/* Only the file this create made: the name may hold another ring by now. */
	struct stat st_mine;
	if (fstat(r->fd, &st_mine) == 0)
		(void)unlink_if_same(path, st_mine.st_dev, st_mine.st_ino);
fail:
	handle_free(r);
	return rc;
}

int shmring_create_anon(const struct shmring_config *cfg, struct shmring **out)
{
	int rc;
	struct geometry g;

	if (!out)
		return err_set(-EINVAL, "out is NULL");
	if ((rc = check_config(cfg)))
		return rc;
	if (geometry(cfg->kind, cfg->msg_size, cfg->capacity, &g))
		return err_set(-ENOMEM, "ring of %u messages of %u bytes is too large",
			       cfg->capacity, cfg->msg_size);
	struct shmring *r = handle_new("(anonymous)");
	if (!r)
		return err_set(-ENOMEM, "out of memory for a handle");
	bool lock = !(cfg->flags & SHMRING_F_NO_MLOCK);
	size_t base = system_page_size();
	size_t hps = hugepage_request(cfg);
	bool want_huge = !(cfg->flags & SHMRING_F_NO_HUGEPAGE) && hps > base &&
			 hugepage_size_supported(hps);
	struct plan pl = {.backing = SHMRING_BACKING_SHM, .page = base,
			  .data_off = SHMRING_CTL_SIZE};
	bool locked = false;

	if (!want_huge && (cfg->flags & SHMRING_F_HUGEPAGE)) {
		rc = err_set(-EINVAL, "this kernel offers no %zu kB hugepages", hps / 1024);
		goto fail;
	}
	if (want_huge) {
		size_t len = (size_t)round_up(SHMRING_CTL_SIZE + g.data_size, hps);
		long free_now = hugepages_free(hps);
		rc = free_now >= 0 && (uint64_t)free_now < len / hps
			     ? no_hugepages(hps, len, "not enough free hugepages")
			     : memfd_ring(hps);
		if (rc >= 0) {
			r->fd = rc;
			rc = ftruncate(r->fd, (off_t)len) ? err_sys("cannot size memfd")
							   : backing_map(r->fd, len, 0, lock, &r->map,
									 &locked);
			if (rc == 0) {
				pl = (struct plan){.backing = SHMRING_BACKING_HUGETLB_ANON, .page = hps,
						   .data_off = SHMRING_CTL_SIZE, .ctl_len = len};
			} else {
				close(r->fd);
				r->fd = -1;
			}
		}
		if (rc && (cfg->flags & SHMRING_F_HUGEPAGE))
			goto fail;
	}
	if (pl.backing != SHMRING_BACKING_HUGETLB_ANON) {
		pl.ctl_len = (size_t)round_up(SHMRING_CTL_SIZE + g.data_size, base);
		rc = memfd_ring(0);
		if (rc < 0)
			goto fail;
		r->fd = rc;
		if (ftruncate(r->fd, (off_t)pl.ctl_len) != 0) {
			rc = err_sys("cannot size memfd");
			goto fail;
		}
		if ((rc = backing_map(r->fd, pl.ctl_len, 0, lock, &r->map, &locked)))
			goto fail;
	}
	r->map_len = pl.ctl_len;
	r->locked = locked || pl.backing == SHMRING_BACKING_HUGETLB_ANON;
	/*
	 * Seal the size: no process holding the fd can shrink the ring under
	 * another's mapping (which would be SIGBUS there) or grow it. Named rings
	 * in /dev/shm cannot be sealed; their file mode decides who could.
	 */
	if (fcntl(r->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
		rc = err_sys("cannot seal the ring's memfd");
		goto fail;
	}
	r->hdr = r->map;
	if ((rc = part_join(r)))
		goto fail;
	init_header(r, cfg, &g, &pl);
	store_release32(&r->hdr->version, SHMRING_LAYOUT_VERSION); /* I1, pairs with A1 */
	handle_track(r, true);
	*out = r;
	return 0;
fail:
	handle_free(r);
	return rc;
}

/* Validate a mapped header against the file size; fills the geometry. */
static int check_header(const char *name, const struct shmring_hdr *h, uint64_t file_size)
{
	struct geometry g;
	if (h->ctl_size != SHMRING_CTL_SIZE)
		return err_set(-EBADMSG, "ring %s: control block size %u, expected %u", name,
			       h->ctl_size, SHMRING_CTL_SIZE);
	if (h->kind < SHMRING_SPSC || h->kind > SHMRING_MPMC)
		return err_set(-EBADMSG, "ring %s: unknown kind %u", name, h->kind);
	if (h->msg_size == 0)
		return err_set(-EBADMSG, "ring %s: msg_size is 0", name);
	if (h->capacity < 2 || !is_pow2(h->capacity))
		return err_set(-EBADMSG, "ring %s: capacity %u is not a power of two >= 2", name,
			       h->capacity);
	if (h->flags & ~SHMRING_F_ALL)
		return err_set(-EBADMSG, "ring %s: unknown flag bits %#x", name, h->flags);
	if (h->backing < SHMRING_BACKING_SHM || h->backing > SHMRING_BACKING_HUGETLB_ANON)
		return err_set(-EBADMSG, "ring %s: unknown backing %u", name, h->backing);
	if (geometry(h->kind, h->msg_size, h->capacity, &g) || g.slot_size != h->slot_size ||
	    g.data_size != h->data_size)
		return err_set(-EBADMSG, "ring %s: slot size %u and data size %llu do not fit %u "
			       "messages of %u bytes", name, h->slot_size,
			       (unsigned long long)h->data_size, h->capacity, h->msg_size);
	if (h->file_size != file_size)
		return err_set(-EBADMSG, "ring %s: header says %llu bytes, the file has %llu", name,
			       (unsigned long long)h->file_size, (unsigned long long)file_size);
	if (h->page_size < 4096 || !is_pow2(h->page_size) || h->page_size > (UINT64_C(1) << 30))
		return err_set(-EBADMSG, "ring %s: page size %llu is not a page size", name,
			       (unsigned long long)h->page_size);
	if (memchr(h->data_path, 0, sizeof(h->data_path)) == NULL)
		return err_set(-EBADMSG, "ring %s: data path is not terminated", name);
	/*
	 * The file must be exactly as large as the layout implies: attach maps,
	 * pre-faults and locks all of it, so a larger file would let a peer make
	 * us lock memory for nothing.
	 */
	uint64_t base = system_page_size();
	if (h->backing == SHMRING_BACKING_HUGETLBFS) {
		/* Slots in their own file; attach checks that file separately. */
		if (h->data_offset != 0 || h->data_path[0] != '/')
			return err_set(-EBADMSG, "ring %s: hugetlbfs slots without a file", name);
		if (file_size != round_up(SHMRING_CTL_SIZE, base))
			return err_set(-EBADMSG, "ring %s: control file of %llu bytes, expected %llu",
				       name, (unsigned long long)file_size,
				       (unsigned long long)round_up(SHMRING_CTL_SIZE, base));
		return 0;
	}
	uint64_t unit = h->backing == SHMRING_BACKING_HUGETLB_ANON ? h->page_size : base;
	if (h->data_offset <= file_size && h->data_size <= file_size - h->data_offset &&
	    file_size != round_up(h->data_offset + h->data_size, unit))
		return err_set(-EBADMSG, "ring %s: file of %llu bytes, the layout needs %llu", name,
			       (unsigned long long)file_size,
			       (unsigned long long)round_up(h->data_offset + h->data_size, unit));
	if (h->data_path[0] || h->data_offset < SHMRING_CTL_SIZE || h->data_offset % 64 ||
	    h->data_offset > file_size || h->data_size > file_size - h->data_offset)
		return err_set(-EBADMSG, "ring %s: slots at %llu+%llu lie outside the %llu-byte file",
			       name, (unsigned long long)h->data_offset,
			       (unsigned long long)h->data_size, (unsigned long long)file_size);
	return 0;
}

/* Map the slot file of a hugetlbfs ring named by a checked header. */
static int attach_data_file(struct shmring *r, const struct shmring_hdr *h, uid_t owner,
			    bool lock)
{
	size_t len = (size_t)round_up(h->data_size, h->page_size);
	if (r->name[0] != '/' || !hugetlbfs_path_ok(h->data_path, r->name))
		return err_set(-EBADMSG, "ring %s: slot file %s is not shmring.<name> in a hugetlbfs "
			       "mount", r->name, h->data_path);
	memcpy(r->data_path, h->data_path, sizeof(r->data_path));
	int fd = hugetlbfs_data_open(r->data_path, owner, (size_t)h->page_size, len);
	if (fd < 0)
		return fd;
	bool locked;
	int rc = backing_map(fd, len, 0, lock, &r->data_map, &locked);
	struct stat st;
	if (rc == 0 && fstat(fd, &st) == 0) {
		r->data_dev = st.st_dev;
		r->data_ino = st.st_ino;
	}
	close(fd);
	if (rc) {
		r->data_map = NULL;
		return rc;
	}
	r->data_len = len;
	return 0;
}

static int check_expect(const char *name, const struct shmring_hdr *h,
			const struct shmring_config *e)
{
	if (!e)
		return 0;
	if (e->kind && (uint32_t)e->kind != h->kind)
		return err_set(-EDOM, "ring %s is %s, you asked for %s", name, kind_name(h->kind),
			       kind_name((uint32_t)e->kind));
	if (e->msg_size && e->msg_size != h->msg_size)
		return err_set(-EDOM, "ring %s exists with msg_size %u, you asked for %u", name,
			       h->msg_size, e->msg_size);
	if (e->capacity && e->capacity != h->capacity)
		return err_set(-EDOM, "ring %s exists with capacity %u, you asked for %u", name,
			       h->capacity, e->capacity);
	uint32_t matched = e->flags & (SHMRING_F_BLOCKING | SHMRING_F_PERSIST | SHMRING_F_HUGEPAGE);
	if ((h->flags & matched) != matched)
		return err_set(-EDOM, "ring %s was created without flags %#x that you asked for", name,
			       matched & ~h->flags);
	return 0;
}

static int check_expect_args(const struct shmring_config *e)
{
	if (!e)
		return 0;
	if ((int)e->kind < 0 || e->kind > SHMRING_MPMC)
		return err_set(-EINVAL, "unknown ring kind %d in expect", (int)e->kind);
	if (e->flags & ~SHMRING_F_ALL)
		return err_set(-EINVAL, "unknown flag bits %#x in expect", e->flags & ~SHMRING_F_ALL);
	if (!reserved_zero(e->reserved, 4))
		return err_set(-EINVAL, "reserved fields of expect must be zero");
	return 0;
}

static void sleep_until_next_poll(int64_t deadline)
{
	int64_t left = deadline - mono_ns();
	int64_t step = left < ATTACH_POLL_NS ? left : ATTACH_POLL_NS;
	if (step <= 0)
		return;
	struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)step};
	nanosleep(&ts, NULL);
}

/*
 * Copy the identity fields (line 0 and the data path) out of a mapping.
 * Checks and the handle use this private copy, so a peer that rewrites the
 * header after the checks cannot change what was checked.
 */
static void snapshot(struct shmring_hdr *dst, const struct shmring_hdr *src)
{
	memcpy(dst, src, offsetof(struct shmring_hdr, tail));
	memcpy(dst->data_path, src->data_path, sizeof(dst->data_path));
}

static bool same_identity(const struct shmring_hdr *a, const struct shmring_hdr *b)
{
	return memcmp(a, b, offsetof(struct shmring_hdr, tail)) == 0 &&
	       memcmp(a->data_path, b->data_path, sizeof(a->data_path)) == 0;
}

/*
 * Check and map the ring behind r->fd (a named ring's control file, or an
 * unnamed ring's memfd): 0 with the handle bound, -EINPROGRESS to look again
 * later, or a final error.
 */
static int attach_fd_common(struct shmring *r, const char *what,
			    const struct shmring_config *expect)
{
	int rc;
	struct stat st;
	if (fstat(r->fd, &st) != 0)
		return err_sys("cannot stat %s", what);
	if (!S_ISREG(st.st_mode))
		return err_set(-EPROTO, "%s is not a regular file", what);
	if ((uint64_t)st.st_size < SHMRING_CTL_SIZE)
		return err_set(-EINPROGRESS, "ring %s exists but is not initialised (%lld bytes)",
			       r->name, (long long)st.st_size);

	/* A first look, not pre-faulted: nothing is trusted yet. */
	size_t len = (size_t)st.st_size;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	if (p == MAP_FAILED)
		return err_sys("cannot map %s", what);
	r->map = p;
	r->map_len = len;

	struct shmring_hdr *h = p;
	uint32_t version = load_acquire32(&h->version); /* A1, pairs with I1 */
	uint64_t magic = h->magic;
	if (magic != SHMRING_MAGIC && (magic != 0 || version != 0))
		return err_set(-EPROTO, "%s is not a shmring ring (bad magic)", what);
	if (version == 0)
		return err_set(-EINPROGRESS, "ring %s exists but is not initialised", r->name);
	if (version != SHMRING_LAYOUT_VERSION)
		return err_set(-EPROTO, "ring %s has layout version %u; this library reads version %u",
			       r->name, version, SHMRING_LAYOUT_VERSION);
	struct shmring_hdr snap, again;
	snapshot(&snap, h);
	if ((rc = check_header(r->name, &snap, (uint64_t)st.st_size)))
		return rc;
	if ((rc = check_expect(r->name, &snap, expect)))
		return rc;

	/* Checked: now make it resident and locked as create does. */
	munmap(p, len);
	r->map = NULL;
	bool lock = !(expect && (expect->flags & SHMRING_F_NO_MLOCK));
	bool locked;
	if ((rc = backing_map(r->fd, len, 0, lock, &r->map, &locked)))
		return rc;
	snapshot(&again, r->map);
	if (!same_identity(&snap, &again))
		return err_set(-EBADMSG, "ring %s: header changed while attaching", r->name);
	r->locked = locked || snap.backing == SHMRING_BACKING_HUGETLB_ANON;
	unsigned char *slots = (unsigned char *)r->map + snap.data_offset;
	if (snap.backing == SHMRING_BACKING_HUGETLBFS) {
		if ((rc = attach_data_file(r, &snap, st.st_uid, lock)))
			return rc;
		slots = r->data_map;
	}
	handle_bind(r, &snap, slots);
	r->hdr = r->map; /* indices and counters: the live header */
	r->local_flags = expect ? expect->flags & (SHMRING_F_NO_MLOCK | SHMRING_F_NO_HUGEPAGE) : 0;
	return part_join(r);
}

/* One look at the name: 0, -ENOENT or -EINPROGRESS to look again later, or a final error. */
static int attach_once(struct shmring *r, const char *path, const struct shmring_config *expect)
{
	int rc = backing_open_file(path, r->name);
	if (rc < 0)
		return rc;
	r->fd = rc;
	return attach_fd_common(r, path, expect);
}

int shmring_attach_fd(int fd, const struct shmring_config *expect, struct shmring **out)
{
	int rc;
	if (!out || fd < 0)
		return err_set(-EINVAL, "attach_fd: bad fd or NULL out");
	if ((rc = check_expect_args(expect)))
		return rc;
	struct shmring *r = handle_new("(anonymous)");
	if (!r)
		return err_set(-ENOMEM, "out of memory for a handle");
	/* Our own open file description: this handle's close must not close the caller's fd. */
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	r->fd = open(self, O_RDWR | O_CLOEXEC);
	if (r->fd < 0) {
		rc = err_sys("cannot reopen fd %d", fd);
		handle_free(r);
		return rc;
	}
	rc = attach_fd_common(r, "the ring's fd", expect);
	if (rc) {
		handle_free(r);
		return rc;
	}
	handle_track(r, true);
	*out = r;
	return 0;
}

int shmring_fd(const struct shmring *r)
{
	if (!r)
		return err_set(-EINVAL, "fd: NULL handle");
	return r->fd;
}

int shmring_attach(const char *name, const struct shmring_config *expect, int64_t timeout_ns,
		   struct shmring **out)
{
	int rc;
	char path[sizeof("/dev/shm") + SHMRING_NAME_MAX];

	if (!out)
		return err_set(-EINVAL, "out is NULL");
	if ((rc = check_name(name)) || (rc = check_expect_args(expect)))
		return rc;
	if ((rc = shm_path(path, sizeof(path), name)))
		return rc;

	int64_t deadline = deadline_from(timeout_ns);
	for (;;) {
		struct shmring *r = handle_new(name);
		if (!r)
			return err_set(-ENOMEM, "out of memory for a handle");
		rc = attach_once(r, path, expect);
		if (rc == 0) {
			handle_track(r, true);
			*out = r;
			return 0;
		}
		/* A header that failed a check is counted in the ring itself (slow path). */
		if ((rc == -EDOM || rc == -EBADMSG) && r->map && r->map_len >= SHMRING_CTL_SIZE) {
			struct shmring_hdr *h = r->map;
			atomic_fetch_add_explicit(&h->counters.attach_rejects, 1, memory_order_relaxed);
		}
		handle_free(r);
		if ((rc != -ENOENT && rc != -EINPROGRESS) || mono_ns() >= deadline)
			return rc;
		sleep_until_next_poll(deadline);
	}
}

/* Unlink path only if it still names the file (dev, ino): the name may hold a newer ring. */
static int unlink_if_same(const char *path, dev_t dev, ino_t ino)
{
	struct stat named;
	if (lstat(path, &named) != 0 || named.st_dev != dev || named.st_ino != ino)
		return 0;
	if (unlink(path) != 0 && errno != ENOENT)
		return err_sys("cannot unlink %s", path);
	return 0;
}

int shmring_close(struct shmring *r)
{
	int rc = 0;
	if (!r)
		return 0;
	if (r->pid != getpid()) {
		/* A copy inherited across fork: it is its parent's participant, not ours to end. */
		r->owner = 0;
		r->creator = false;
		r->zc_push = r->zc_pop = false;
		handle_free(r);
		return 0;
	}
	/* A reservation never committed is passed over; a peeked slot is released. */
	if (r->zc_push && r->kind != SHMRING_SPSC) {
		store_release64(slot_word(r, r->zc_push_pos), word_make(r->zc_push_pos, ST_SKIP, 0));
		atomic_fetch_add_explicit(&r->hdr->counters.skipped, 1, memory_order_relaxed);
		if (r->blocking)
			wake_waiters(r, &r->hdr->data_futex);
	}
	if (r->zc_pop)
		(void)shmring_release(r);
	part_leave(r);
	if (r->creator && !(r->ring_flags & SHMRING_F_PERSIST)) {
		char path[sizeof("/dev/shm") + SHMRING_NAME_MAX];
		struct stat mine;
		if (shm_path(path, sizeof(path), r->name) == 0 && fstat(r->fd, &mine) == 0)
			rc = unlink_if_same(path, mine.st_dev, mine.st_ino);
		if (r->data_path[0]) {
			int rc2 = unlink_if_same(r->data_path, r->data_dev, r->data_ino);
			rc = rc ? rc : rc2;
		}
	}
	handle_free(r);
	return rc;
}

/*
 * The hugetlbfs file of the ring at path, if its header names one that is
 * plausibly its own (basename "shmring.<name>"): a hostile header cannot make
 * unlink remove an arbitrary file.
 */
static void data_file_of(const char *path, const char *name, char *out, size_t len)
{
	struct shmring_hdr h;
	out[0] = 0;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = pread(fd, &h, sizeof(h), 0);
	close(fd);
	if (n != (ssize_t)sizeof(h) || h.magic != SHMRING_MAGIC ||
	    h.backing != SHMRING_BACKING_HUGETLBFS ||
	    !memchr(h.data_path, 0, sizeof(h.data_path)))
		return;
	if (hugetlbfs_path_ok(h.data_path, name))
		snprintf(out, len, "%s", h.data_path);
}

int shmring_unlink(const char *name)
{
	int rc;
	char path[sizeof("/dev/shm") + SHMRING_NAME_MAX], data[SHMRING_PATH_MAX];
	if ((rc = check_name(name)) || (rc = shm_path(path, sizeof(path), name)))
		return rc;
	data_file_of(path, name, data, sizeof(data));
	if (unlink(path) != 0) {
		if (errno == ENOENT)
			return err_set(-ENOENT, "no ring named %s", name);
		return err_sys("cannot unlink %s", path);
	}
	if (data[0] && unlink(data) != 0 && errno != ENOENT)
		return err_sys("cannot unlink %s", data);
	return 0;
}

int shmring_test_set_index(struct shmring *r, uint64_t base)
{
	if (!r)
		return -EINVAL;
	store_relaxed64(&r->hdr->head, base);
	store_relaxed64(&r->hdr->tail, base);
	if (r->kind != SHMRING_SPSC)
		mp_init_slots(r, base);
	r->p_ready = r->c_ready = false;
	return 0;
}
