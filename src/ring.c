/*
 * ring.c - create, attach, close and unlink: the life of a named ring.
 *
 * Initialisation protocol. The creator makes the file (O_EXCL), sizes and
 * maps it, fills every header field and the slot words, and only then stores
 * the layout version with release (I1). An attacher's acquire load of the
 * version (A1) pairs with I1: once it reads a non-zero version, every other
 * header field is final. Until then the attacher keeps waiting (bounded by
 * its timeout) and reports -EINPROGRESS if the version never appears.
 *
 * Attach trusts nothing: the size comes from fstat, every header field is
 * checked against the others and against the file, and only then are the
 * slots addressed. A check that fails is -EPROTO (not ours or another layout
 * version), -EBADMSG (inconsistent) or -EDOM (not what the caller expected).
 */
#include <errno.h>
#include <fcntl.h>
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
		strcpy(r->name, name); /* length checked by check_name */
	}
	return r;
}

static void handle_free(struct shmring *r)
{
	if (r->data_map)
		munmap(r->data_map, r->data_len);
	if (r->map)
		munmap(r->map, r->map_len);
	if (r->fd >= 0)
		close(r->fd);
	free(r);
}

/* Fill the handle's hot fields from a header already validated. */
static void handle_bind(struct shmring *r, struct shmring_hdr *h, unsigned char *slots)
{
	r->hdr = h;
	r->slots = slots;
	r->capacity = h->capacity;
	r->mask = (uint64_t)h->capacity - 1;
	r->msg_size = h->msg_size;
	r->slot_size = h->slot_size;
	r->kind = h->kind;
	r->ring_flags = h->flags;
	r->backing = h->backing;
	r->page_size = h->page_size;
	r->generation = h->generation;
	struct geometry g;
	geometry(h->kind, h->msg_size, h->capacity, &g);
	r->word_off = g.word_off;
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
	size_t page = system_page_size();
	size_t len = (size_t)round_up(SHMRING_CTL_SIZE + g.data_size, page);
	mode_t mode = cfg->mode ? cfg->mode : 0600;

	rc = backing_create_file(path, name, mode);
	if (rc < 0)
		goto fail;
	r->fd = rc;
	r->creator = true;
	if (ftruncate(r->fd, (off_t)len) != 0) {
		rc = err_sys("cannot size %s to %zu bytes", path, len);
		goto fail_unlink;
	}
	bool locked;
	rc = backing_map(r->fd, len, !(cfg->flags & SHMRING_F_NO_MLOCK), &r->map, &locked);
	if (rc)
		goto fail_unlink;
	r->map_len = len;
	r->locked = locked;
	r->local_flags = cfg->flags & (SHMRING_F_NO_MLOCK | SHMRING_F_NO_HUGEPAGE);

	struct shmring_hdr *h = r->map;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	h->magic = SHMRING_MAGIC;
	h->ctl_size = SHMRING_CTL_SIZE;
	h->kind = cfg->kind;
	h->msg_size = cfg->msg_size;
	h->capacity = cfg->capacity;
	h->slot_size = g.slot_size;
	/* Only ring-wide flags are stored; the rest are this process's choices. */
	h->flags = cfg->flags & (SHMRING_F_BLOCKING | SHMRING_F_PERSIST | SHMRING_F_HUGEPAGE);
	h->backing = SHMRING_BACKING_SHM;
	h->page_size = page;
	h->data_offset = SHMRING_CTL_SIZE;
	h->data_size = g.data_size;
	h->file_size = len;
	h->creator_pid = (int32_t)getpid();
	h->creator_uid = (uint32_t)getuid();
	h->generation = new_generation();
	h->created_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	handle_bind(r, h, (unsigned char *)r->map + SHMRING_CTL_SIZE);
	if (r->kind != SHMRING_SPSC)
		mp_init_slots(r, 0);
	store_release32(&h->version, SHMRING_LAYOUT_VERSION); /* I1, pairs with A1 */
	*out = r;
	return 0;

fail_unlink:
	unlink(path);
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
	if (h->data_offset < SHMRING_CTL_SIZE || h->data_offset % 64 ||
	    h->data_offset > file_size || h->data_size > file_size - h->data_offset)
		return err_set(-EBADMSG, "ring %s: slots at %llu+%llu lie outside the %llu-byte file",
			       name, (unsigned long long)h->data_offset,
			       (unsigned long long)h->data_size, (unsigned long long)file_size);
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
 * One look at the name: 0 with the handle mapped and checked, -ENOENT or
 * -EINPROGRESS to look again later, or a final error.
 */
static int attach_once(struct shmring *r, const char *path, const struct shmring_config *expect)
{
	int rc = backing_open_file(path, r->name);
	if (rc < 0)
		return rc;
	r->fd = rc;

	struct stat st;
	if (fstat(r->fd, &st) != 0)
		return err_sys("cannot stat %s", path);
	if (!S_ISREG(st.st_mode))
		return err_set(-EPROTO, "%s is not a regular file", path);
	if ((uint64_t)st.st_size < SHMRING_CTL_SIZE)
		return err_set(-EINPROGRESS, "ring %s exists but is not initialised (%lld bytes)",
			       r->name, (long long)st.st_size);

	size_t len = (size_t)st.st_size;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	if (p == MAP_FAILED)
		return err_sys("cannot map %s", path);
	r->map = p;
	r->map_len = len;

	struct shmring_hdr *h = p;
	uint32_t version = load_acquire32(&h->version); /* A1, pairs with I1 */
	if (h->magic != SHMRING_MAGIC && (h->magic != 0 || version != 0))
		return err_set(-EPROTO, "%s is not a shmring ring (bad magic)", path);
	if (version == 0)
		return err_set(-EINPROGRESS, "ring %s exists but is not initialised", r->name);
	if (version != SHMRING_LAYOUT_VERSION)
		return err_set(-EPROTO, "ring %s has layout version %u; this library reads version %u",
			       r->name, version, SHMRING_LAYOUT_VERSION);
	if ((rc = check_header(r->name, h, (uint64_t)st.st_size)))
		return rc;
	if ((rc = check_expect(r->name, h, expect)))
		return rc;

	/* Checked: now make it resident and locked as create does. */
	munmap(p, len);
	r->map = NULL;
	bool lock = !(expect && (expect->flags & SHMRING_F_NO_MLOCK));
	bool locked;
	if ((rc = backing_map(r->fd, len, lock, &r->map, &locked)))
		return rc;
	r->locked = locked;
	h = r->map;
	/* Read the header again: the first mapping is gone, the file is the same. */
	if ((rc = check_header(r->name, h, (uint64_t)st.st_size)))
		return rc;
	handle_bind(r, h, (unsigned char *)r->map + h->data_offset);
	r->local_flags = expect ? expect->flags & (SHMRING_F_NO_MLOCK | SHMRING_F_NO_HUGEPAGE) : 0;
	return 0;
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

int shmring_close(struct shmring *r)
{
	int rc = 0;
	if (!r)
		return 0;
	if (r->creator && !(r->ring_flags & SHMRING_F_PERSIST)) {
		char path[sizeof("/dev/shm") + SHMRING_NAME_MAX];
		struct stat mine, named;
		/* Unlink only our own file: the name may already hold a newer ring. */
		if (shm_path(path, sizeof(path), r->name) == 0 && fstat(r->fd, &mine) == 0 &&
		    lstat(path, &named) == 0 && mine.st_ino == named.st_ino &&
		    mine.st_dev == named.st_dev && unlink(path) != 0 && errno != ENOENT)
			rc = err_sys("cannot unlink %s", path);
	}
	handle_free(r);
	return rc;
}

int shmring_unlink(const char *name)
{
	int rc;
	char path[sizeof("/dev/shm") + SHMRING_NAME_MAX];
	if ((rc = check_name(name)) || (rc = shm_path(path, sizeof(path), name)))
		return rc;
	if (unlink(path) != 0) {
		if (errno == ENOENT)
			return err_set(-ENOENT, "no ring named %s", name);
		return err_sys("cannot unlink %s", path);
	}
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
