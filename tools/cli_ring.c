/*
 * cli_ring.c - looking at a ring from outside without changing it.
 *
 * The tool is never a participant. It does not call shmring_attach (which maps
 * read-write, pre-faults, locks, and counts a failed check in the ring); it
 * takes no participant entry and holds no lock. It opens the control file
 * O_RDONLY | O_NOFOLLOW (and O_NOATIME where the kernel lets it), checks that
 * the file is a regular file at least one control page long that starts with
 * the magic (read with pread), maps that page PROT_READ, and reads:
 *
 *   - the identity (line 0 and the data path) once, after an acquire load of
 *     the version word that pairs with the creator's release store of it (I1
 *     in src/ring.c): once the version reads non-zero those fields are final,
 *     so a plain copy is safe;
 *   - everything else (indices, futex and notify words, counters, roles,
 *     participant entries) with relaxed loads (an entry's state with acquire,
 *     so its pid is the one written before it). Each value is a snapshot of its
 *     own, possibly stale at once, and no two are read at one instant; the
 *     tool shows them and decides nothing from them but whether rm refuses.
 *
 * Participant liveness is the kernel's word, not the pid's (pids are reused
 * and differ across namespaces): entry i is alive iff some open file
 * description holds a lock on byte SHMRING_LOCK_BASE + i of the control file.
 * F_OFD_GETLK answers that on our read-only fd without taking anything; it is
 * asked for a write lock, which conflicts with a lock of either type.
 *
 * Nothing read from the header is used as a size or an offset into memory:
 * the tool only ever reads the one page it mapped. A file truncated under us
 * (a SIGBUS on the mapping) becomes an error, not a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

const char *const counter_names[N_COUNTERS] = {
	"futex_sleeps", "futex_wakes", "wait_timeouts", "skipped",
	"recovered",    "takeovers",   "attach_rejects",
};

/* ---- SIGBUS guard ------------------------------------------------------------ */

static sigjmp_buf bus_env;
static volatile sig_atomic_t bus_armed;

static void on_sigbus(int sig)
{
	if (bus_armed)
		siglongjmp(bus_env, 1);
	/* Not ours: die of it as we would have without the handler. */
	signal(sig, SIG_DFL);
	raise(sig);
}

static void bus_guard_install(void)
{
	static bool done;
	if (done)
		return;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	done = true;
}

/* ---- small decoders ---------------------------------------------------------- */

const char *kind_name(uint32_t kind, bool lower)
{
	switch (kind) {
	case SHMRING_SPSC: return lower ? "spsc" : "SPSC";
	case SHMRING_MPSC: return lower ? "mpsc" : "MPSC";
	case SHMRING_MPMC: return lower ? "mpmc" : "MPMC";
	default: return lower ? "unknown" : "?";
	}
}

const char *backing_name(uint32_t backing)
{
	switch (backing) {
	case SHMRING_BACKING_SHM: return "shm";
	case SHMRING_BACKING_SHM_THP: return "shm-thp";
	case SHMRING_BACKING_HUGETLBFS: return "hugetlbfs";
	case SHMRING_BACKING_HUGETLB_ANON: return "hugetlb-anon";
	default: return "unknown";
	}
}

void flags_string(uint32_t flags, bool lower, char *buf, size_t len)
{
	static const struct {
		uint32_t bit;
		const char *upper, *low;
	} names[] = {
		{SHMRING_F_BLOCKING, "BLOCKING", "blocking"},
		{SHMRING_F_HUGEPAGE, "HUGEPAGE", "hugepage"},
		{SHMRING_F_NO_HUGEPAGE, "NO_HUGEPAGE", "no_hugepage"},
		{SHMRING_F_NO_MLOCK, "NO_MLOCK", "no_mlock"},
		{SHMRING_F_PERSIST, "PERSIST", "persist"},
	};
	size_t used = 0;
	buf[0] = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(flags & names[i].bit))
			continue;
		int n = snprintf(buf + used, len - used, "%s%s", used ? (lower ? "," : "|") : "",
				 lower ? names[i].low : names[i].upper);
		if (n < 0 || (size_t)n >= len - used)
			return;
		used += (size_t)n;
	}
	if (flags & ~SHMRING_F_ALL)
		snprintf(buf + used, len - used, "%s%#x", used ? (lower ? "," : "|") : "",
			 flags & ~SHMRING_F_ALL);
	else if (!used && !lower)
		snprintf(buf, len, "-");
}

int ring_locked(const struct ring *r)
{
	/* hugetlb pages are never swapped; mlock of anything else is each process's own. */
	uint32_t b = r->id.backing;
	return b == SHMRING_BACKING_HUGETLBFS || b == SHMRING_BACKING_HUGETLB_ANON ? 1 : -1;
}

void size_short(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	unsigned u = 0;
	uint64_t v = bytes;
	while (v >= 1024 && v % 1024 == 0 && u < sizeof(units) - 1) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)v, units[u - 1]);
}

void size_long(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	unsigned u = 0;
	uint64_t v = bytes;
	while (v >= 1024 && v % 1024 == 0 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%llu %s", (unsigned long long)v, units[u - 1]);
}

void printable(const char *s, char *buf, size_t len)
{
	size_t i = 0;
	for (; s[i] && i + 1 < len; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[i] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
	}
	buf[i] = 0;
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* ---- open and check ---------------------------------------------------------- */

static int open_ro(const char *path)
{
	int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK; /* NONBLOCK: a FIFO must not hang us */
	int fd = open(path, flags | O_NOATIME);
	if (fd < 0 && errno == EPERM) /* O_NOATIME needs ownership; reading without it is fine */
		fd = open(path, flags);
	return fd;
}

/* The header checks that need no mapping of the slots: enough to show it honestly. */
static void check_identity(struct ring *r)
{
	const struct shmring_hdr *h = &r->id;
	const char *why = NULL;
	char buf[160];
	if (h->ctl_size != SHMRING_CTL_SIZE)
		why = "control block size is wrong";
	else if (h->kind < SHMRING_SPSC || h->kind > SHMRING_MPMC)
		why = "unknown kind";
	else if (h->msg_size == 0)
		why = "msg_size is 0";
	else if (h->capacity < 2 || !is_pow2(h->capacity))
		why = "capacity is not a power of two >= 2";
	else if (h->flags & ~SHMRING_F_ALL)
		why = "unknown flag bits";
	else if (h->backing < SHMRING_BACKING_SHM || h->backing > SHMRING_BACKING_HUGETLB_ANON)
		why = "unknown backing";
	else if (h->slot_size < h->msg_size ||
		 (uint64_t)h->slot_size * h->capacity != h->data_size)
		why = "slot size and data size do not fit the messages";
	else if (h->file_size != (uint64_t)r->st.st_size) {
		snprintf(buf, sizeof(buf), "header says %llu bytes, the file has %lld",
			 (unsigned long long)h->file_size, (long long)r->st.st_size);
		why = buf;
	} else if (h->page_size < 4096 || !is_pow2(h->page_size))
		why = "page size is not a page size";
	else if (!memchr(h->data_path, 0, sizeof(h->data_path)))
		why = "data path is not terminated";
	else if ((h->backing == SHMRING_BACKING_HUGETLBFS) != (h->data_path[0] == '/'))
		why = "data path does not match the backing";
	if (why) {
		r->status = RING_INCONSISTENT;
		snprintf(r->problem, sizeof(r->problem), "inconsistent header: %s", why);
	}
}

/* Copy line 0 and the data path; guarded against SIGBUS by the caller. */
static void copy_identity(struct ring *r)
{
	memcpy(&r->id, r->h, offsetof(struct shmring_hdr, tail));
	memcpy(r->id.data_path, r->h->data_path, sizeof(r->id.data_path));
	r->id.data_path[sizeof(r->id.data_path) - 1] = 0; /* shown as text; the check saw the original */
}

int ring_open(struct ring *r, const char *name, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->path, sizeof(r->path), "%s%s", SHM_DIR, name);
	bus_guard_install();

	r->fd = open_ro(r->path);
	if (r->fd < 0) {
		int e = errno;
		r->open_errno = e;
		if (e == ENOENT) {
			snprintf(err, errlen, "no ring named %s", name);
			return CLI_NOENT;
		}
		if (e == ELOOP) {
			snprintf(err, errlen, "%s is a symbolic link, not a ring", r->path);
			return CLI_NOTRING;
		}
		snprintf(err, errlen, "cannot read %s: %s", r->path, strerror(e));
		return e == EACCES || e == EPERM ? CLI_NOTRING : CLI_SYSERR;
	}
	if (fstat(r->fd, &r->st) != 0) {
		snprintf(err, errlen, "cannot stat %s: %s", r->path, strerror(errno));
		ring_close(r);
		return CLI_SYSERR;
	}
	if (!S_ISREG(r->st.st_mode) || r->st.st_size < (off_t)SHMRING_CTL_SIZE) {
		snprintf(err, errlen, "%s is not a shmring ring (%s)", r->path,
			 S_ISREG(r->st.st_mode) ? "shorter than a ring header" : "not a regular file");
		ring_close(r);
		return CLI_NOTRING;
	}
	/*
	 * The magic by pread first: a read fault on a hole of a shared tmpfs
	 * mapping allocates a page, a pread does not, and a file that is not a
	 * ring must stay as it was too.
	 */
	uint64_t magic = 0;
	if (pread(r->fd, &magic, sizeof(magic), 0) != (ssize_t)sizeof(magic) ||
	    magic != SHMRING_MAGIC) {
		snprintf(err, errlen, "%s is not a shmring ring (no shmring magic)", r->path);
		ring_close(r);
		return CLI_NOTRING;
	}
	void *p = mmap(NULL, SHMRING_CTL_SIZE, PROT_READ, MAP_SHARED, r->fd, 0);
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %s: %s", r->path, strerror(errno));
		ring_close(r);
		return CLI_SYSERR;
	}
	r->h = p;

	if (sigsetjmp(bus_env, 1)) {
		bus_armed = 0;
		snprintf(err, errlen, "%s shrank while being read", r->path);
		ring_close(r);
		return CLI_NOTRING;
	}
	bus_armed = 1;
	/* Pairs with the creator's release store of the version (I1, src/ring.c). */
	r->version = load_acquire32(&r->h->version);
	if (r->version == SHMRING_LAYOUT_VERSION)
		copy_identity(r);
	bus_armed = 0;

	if (r->version == 0) {
		r->status = RING_INITIALISING;
		snprintf(r->problem, sizeof(r->problem),
			 "being initialised: layout version not set yet (if this lasts, its creator died)");
	} else if (r->version != SHMRING_LAYOUT_VERSION) {
		r->status = RING_OTHER_VERSION;
		snprintf(r->problem, sizeof(r->problem),
			 "layout version %u; this tool reads version %u", r->version,
			 SHMRING_LAYOUT_VERSION);
	} else {
		r->status = RING_OK;
		check_identity(r);
	}
	return CLI_OK;
}

void ring_close(struct ring *r)
{
	if (r->h)
		munmap((void *)r->h, SHMRING_CTL_SIZE);
	r->h = NULL;
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

/* ---- live state ---------------------------------------------------------------- */

static uint32_t load32(const atomic_u32 *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

/* Whether some open file description holds participant i's lock byte. */
static enum part_life lock_held(int fd, unsigned i)
{
	struct flock fl;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK; /* conflicts with a read or a write lock: any holder shows */
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)(SHMRING_LOCK_BASE + (int64_t)i);
	fl.l_len = 1;
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
		return PART_UNKNOWN;
	return fl.l_type == F_UNLCK ? PART_DEAD : PART_ALIVE;
}

static void read_participants(struct ring *r)
{
	const struct shmring_hdr *h = r->h;
	r->producer_role = load32(&h->producer_role);
	r->consumer_role = load32(&h->consumer_role);
	r->n_part = r->n_alive = r->n_dead = r->n_unknown = 0;
	for (unsigned i = 0; i < SHMRING_PARTICIPANTS_MAX; i++) {
		const struct shmring_participant *p = &h->part[i];
		/* Acquire pairs with the release store of state when an entry is taken
		 * (part_join, src/liveness.c): the pid written before it is seen. */
		uint32_t state = atomic_load_explicit(&p->state, memory_order_acquire);
		enum part_life life = lock_held(r->fd, i);
		/* A locked entry with state 0 is one being registered: it counts as alive. */
		if (state == 0 && life != PART_ALIVE)
			continue;
		struct ring_part *q = &r->part[r->n_part++];
		q->index = i;
		q->state = state;
		q->pid = p->pid;
		q->roles = load32(&p->roles);
		q->life = life;
		if (life == PART_ALIVE)
			r->n_alive++;
		else if (life == PART_DEAD)
			r->n_dead++;
		else
			r->n_unknown++;
	}
}

static void read_live(struct ring *r)
{
	const struct shmring_hdr *h = r->h;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	r->read_mono_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	/* Head first, as shmring_size does: a tail read later is no older. */
	r->head = load_relaxed64(&h->head);
	r->tail = load_relaxed64(&h->tail);
	r->data_futex = load32(&h->data_futex);
	r->space_futex = load32(&h->space_futex);
	r->notify_word = load32(&h->notify_word);
	const atomic_u64 *c[N_COUNTERS] = {
		&h->counters.futex_sleeps, &h->counters.futex_wakes, &h->counters.wait_timeouts,
		&h->counters.skipped,      &h->counters.recovered,   &h->counters.takeovers,
		&h->counters.attach_rejects,
	};
	for (unsigned i = 0; i < N_COUNTERS; i++)
		r->counters[i] = load_relaxed64(c[i]);
	for (unsigned i = 0; i < SHMRING_NOTIFY_MAX; i++) {
		r->notify[i].id = load_relaxed64(&h->notify[i].id);
		r->notify[i].pid = h->notify[i].pid;
	}
	read_participants(r);
}

int ring_read(struct ring *r, char *err, size_t errlen)
{
	if (sigsetjmp(bus_env, 1)) {
		bus_armed = 0;
		snprintf(err, errlen, "%s shrank while being read", r->path);
		return CLI_NOTRING;
	}
	bus_armed = 1;
	read_live(r);
	bus_armed = 0;
	return CLI_OK;
}

uint64_t ring_depth(const struct ring *r)
{
	uint64_t n = r->tail - r->head;
	if ((int64_t)n < 0)
		return 0;
	return n > r->id.capacity ? r->id.capacity : n;
}

bool ring_removed(const struct ring *r)
{
	struct stat st;
	return fstat(r->fd, &st) == 0 && st.st_nlink == 0;
}
