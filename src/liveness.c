/*
 * liveness.c - participants, roles, and what happens when a process dies.
 *
 * Liveness. Every handle is a participant: it takes a free entry of the
 * ring's participant table by taking an OFD write lock on one byte of the
 * ring's file (SHMRING_LOCK_BASE + index, past any file's end). The kernel
 * drops that lock when the last descriptor of the open file description goes,
 * that is when the process dies, however it dies. "Is participant i alive?"
 * is therefore F_OFD_GETLK on its byte, never a PID (PIDs are reused and
 * differ across PID namespaces; the pid in the entry is only for people).
 * The locks are taken on a description private to the handle (lock_fd,
 * reopened through /proc/self/fd), never on the fd that shmring_fd() hands
 * out, so a process that received that fd, or an fd still in flight in a
 * socket, does not keep a dead participant's locks. Two handles, even in one
 * process, hold separate locks. A forked child closes its copy of the lock
 * description and joins anew on first use (atfork_child).
 *
 * Roles. SPSC has one producer role and one consumer role, MPSC one consumer
 * role: words in the header holding the participant id of the holder. A
 * handle claims a role with its first push or pop (one CAS), keeps it until
 * close, and a second claimant gets -EBUSY while the holder is alive, or takes
 * the role over (a counter records it) when the holder is dead.
 *
 * Recovery. MPSC/MPMC slot claims carry their owner's id (layout.h). A claim
 * whose owner is dead is released: WRITING becomes SKIP (the message the dead
 * producer held is lost and counted; consumers pass over it, so no torn
 * message is delivered), READING becomes EMPTY for the next lap (the message
 * the dead consumer held is lost and counted). Recovery runs when a handle
 * takes over a dead participant's entry, and when a push or pop has been held
 * up by the same claim for STUCK_NS: a claim that old is checked with one
 * F_OFD_GETLK, so a slow but live owner (descheduled, stopped with SIGSTOP,
 * under a debugger) costs a system call per STUCK_NS of waiting and is never
 * robbed: it holds up the slots behind its claim until it goes on.
 * Recovery and role takeover hold the dead participant's lock byte while
 * they work (F_OFD_SETLK succeeds only if nobody holds it), so a newcomer
 * cannot join under that id and have its fresh claims or role taken by a
 * recoverer that decided "dead" a moment earlier. Recovery CASes the exact
 * word it found, so a racing recoverer or a claim that moved on is left alone.
 *
 * Transitions. A participant byte is held by a live participant, or for a
 * moment by a process that is taking it over: a joiner (between locking a
 * dead entry and releasing that entry's roles), a recoverer or a role
 * claimant (between deciding "dead" and letting go). To a role claimant that
 * finds the holder's byte locked, the two look alike, and calling the second
 * "live" was a spurious -EBUSY. So every such transition also holds a shared
 * (read) lock on the TRANSITION byte (SHMRING_LOCK_BASE - 2) from before it
 * locks a participant byte not its own until after it has released the dead
 * entry's roles. A claimant that sees the holder's byte locked, then sees no
 * transition in progress, then reads the role word unchanged, then finds the
 * byte still locked, knows the holder is live: a transition that held the
 * byte has ended, and either moved the role word (a joiner, a takeover) or
 * let go of the byte (a recoverer, which leaves roles alone), so a role word
 * naming that id with its byte held was claimed by the live participant that
 * holds the id now. A transition seen in progress is
 * waited for, for at most ROLE_SETTLE_NS (a joiner stopped in the middle).
 * The kernel drops the read lock of a transition that dies. Ordering: the
 * kernel takes the file's lock-list spinlock in every one of these fcntl
 * calls, so a transition's role CAS, made before it unlocks the TRANSITION
 * byte, is visible to a claimant whose F_OFD_GETLK then finds the byte free.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* How long a claim may hold a push or pop up before its owner is checked. */
#define STUCK_NS 1000000
/* Sightings of the same blocking claim between clock reads while spinning. */
#define STUCK_EVERY 64
/* Attempts at a role word before a peer that keeps rewriting it is called corrupt. */
#define ROLE_TRIES 1024
/* How long a role claim waits for transitions in progress before -EBUSY. */
#define ROLE_SETTLE_NS 1000000000LL
/* The byte whose read locks mark transitions in progress (see above). */
#define TRANSITION_BYTE (SHMRING_LOCK_BASE - 2)

static off_t lock_byte(uint32_t id)
{
	return (off_t)(SHMRING_LOCK_BASE + (int64_t)id - 1);
}

/*
 * Where to look at others' locks: the handle's lock description, whose own
 * locks F_OFD_GETLK does not report; before a forked copy has joined, the
 * ring's fd, which holds no lock of ours.
 */
static int probe_fd(const struct shmring *r)
{
	return r->lock_fd >= 0 ? r->lock_fd : r->fd;
}

/*
 * Mark (or unmark) a transition of this handle's: a read lock on the
 * TRANSITION byte. A handle is used by one thread at a time, so these never
 * nest. Taking it may wait (F_OFD_SETLKW) only behind a claimant's probe,
 * which holds nothing: in practice it does not wait. On failure the
 * transition goes on unmarked: a claimant may then see a spurious -EBUSY,
 * nothing worse.
 */
static void transition_mark(const struct shmring *r, bool on)
{
	struct flock fl = {.l_type = on ? F_RDLCK : F_UNLCK, .l_whence = SEEK_SET,
			   .l_start = (off_t)TRANSITION_BYTE, .l_len = 1};
	while (fcntl(r->lock_fd, on ? F_OFD_SETLKW : F_OFD_SETLK, &fl) != 0 && errno == EINTR)
		;
}

/* Whether another handle is in a transition now. */
static bool transition_seen(const struct shmring *r)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
			   .l_start = (off_t)TRANSITION_BYTE, .l_len = 1};
	if (fcntl(probe_fd(r), F_OFD_GETLK, &fl) != 0)
		return true; /* cannot tell: wait as if there were one */
	return fl.l_type != F_UNLCK;
}

/*
 * Take participant id's lock byte: true means its holder is dead and, until
 * part_unlock, nobody can join that entry, so its claims and roles can be
 * released without robbing a live newcomer who reused the id (review A1/A2).
 */
static bool part_lock_dead(const struct shmring *r, uint32_t id)
{
	if (id == 0 || id > SHMRING_PARTICIPANTS_MAX || id == r->owner)
		return false;
	transition_mark(r, true);
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = lock_byte(id),
			   .l_len = 1};
	if (fcntl(r->lock_fd, F_OFD_SETLK, &fl) == 0)
		return true;
	transition_mark(r, false);
	return false;
}

/* Let go of a byte taken by part_lock_dead (the dead entry's roles released). */
static void part_unlock(const struct shmring *r, uint32_t id)
{
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = lock_byte(id),
			   .l_len = 1};
	(void)fcntl(r->lock_fd, F_OFD_SETLK, &fl);
	transition_mark(r, false);
}

bool part_alive(const struct shmring *r, uint32_t id)
{
	if (id == 0 || id > SHMRING_PARTICIPANTS_MAX)
		return false;
	if (id == r->owner)
		return true; /* our own lock does not conflict with us */
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = lock_byte(id),
			   .l_len = 1};
	if (fcntl(probe_fd(r), F_OFD_GETLK, &fl) != 0)
		return true; /* cannot tell: never rob a claim on doubt */
	return fl.l_type != F_UNLCK;
}

/* Release every slot claim of a dead participant; returns how many. */
static unsigned release_claims(struct shmring *r, uint32_t id)
{
	unsigned n = 0;
	if (r->kind == SHMRING_SPSC)
		return 0; /* SPSC claims nothing in shared memory: indices move only on publish */
	for (uint64_t i = 0; i < r->capacity; i++) {
		atomic_u64 *wp = slot_word(r, i);
		uint64_t w = load_acquire64(wp);
		if ((w & W_OWNER_MASK) != id)
			continue;
		uint64_t pos = w >> W_POS_SHIFT;
		if (word_state(w) == ST_WRITING &&
		    cas_acquire64(wp, &w, word_make(pos, ST_SKIP, 0))) {
			atomic_fetch_add_explicit(&r->hdr->counters.skipped, 1, memory_order_relaxed);
			n++;
		} else if (word_state(w) == ST_READING &&
			   cas_acquire64(wp, &w, word_make(pos + r->capacity, ST_EMPTY, 0))) {
			atomic_fetch_add_explicit(&r->hdr->counters.recovered, 1, memory_order_relaxed);
			n++;
		}
	}
	if (n && r->blocking) {
		/* Freed slots and skips change what sleepers would find: let them look. */
		wake_waiters(r, &r->hdr->data_futex);
		wake_waiters(r, &r->hdr->space_futex);
	}
	return n;
}

static void release_roles(struct shmring *r, uint32_t id)
{
	uint32_t cur = id;
	atomic_compare_exchange_strong(&r->hdr->producer_role, &cur, 0);
	cur = id;
	atomic_compare_exchange_strong(&r->hdr->consumer_role, &cur, 0);
}

/*
 * Handles of this process, so that a child made by fork() turns every
 * inherited handle into a participant of its own (see atfork_child). Without
 * it the child would share its parent's open file description, and so its
 * lock: a dead parent would stay "alive" while a forked worker lives.
 */
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shmring *handles;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&handles_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&handles_lock);
}

/*
 * In the child: each inherited handle lets go of its parent's lock
 * description (closing the child's reference; the parent keeps its own) and
 * forgets its participant entry, roles, caches, outstanding zero-copy slots,
 * and that it created the ring (its close does not unlink). Its first push
 * or pop joins as a participant of its own (role_claim_*), so an idle child
 * takes no entry and a dead parent is never kept "alive" by a child. Nothing
 * here can fail, and nothing is mapped, faulted or locked again: the child
 * keeps the parent's mappings (shared, of r->fd, which holds no lock); mlock
 * is not inherited, and the child's first touch of each page is a minor
 * fault. Only async-signal-safe calls: the parent may have threads.
 */
static void atfork_child(void)
{
	for (struct shmring *r = handles; r; r = r->next) {
		if (r->lock_fd >= 0)
			close(r->lock_fd);
		r->lock_fd = -1;
		r->owner = 0;
		r->pid = getpid();
		r->creator = false;
		r->is_producer = r->is_consumer = false;
		r->p_ready = r->c_ready = false;
		r->zc_push = r->zc_pop = false;
		r->stuck_word = 0;
	}
	pthread_mutex_unlock(&handles_lock);
}

/*
 * A forked child's copy joins on first use (see atfork_child). If that fails
 * (a full table: -ENOSPC), the copy holds nothing and its next push or pop
 * tries again.
 */
static int ensure_joined(struct shmring *r)
{
	if (r->owner)
		return 0;
	if (r->lock_fd >= 0)
		return err_set(-EINVAL, "ring %s: handle has no participant entry", r->name);
	int rc = part_join(r);
	if (rc && r->lock_fd >= 0) {
		close(r->lock_fd);
		r->lock_fd = -1;
	}
	return rc;
}

static void atfork_register(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void handle_track(struct shmring *r, bool add)
{
	pthread_once(&atfork_once, atfork_register);
	pthread_mutex_lock(&handles_lock);
	if (add) {
		r->prev = NULL;
		r->next = handles;
		if (handles)
			handles->prev = r;
		handles = r;
	} else if (r->tracked) {
		if (r->prev)
			r->prev->next = r->next;
		else
			handles = r->next;
		if (r->next)
			r->next->prev = r->prev;
	}
	r->tracked = add;
	pthread_mutex_unlock(&handles_lock);
}

/*
 * The handle's private open file description of its ring, for its locks
 * only: reopened through /proc/self/fd, it is never mapped, never handed out
 * (shmring_fd returns r->fd) and closed in a forked child, so it, and the
 * locks on it, go when this process does, whoever keeps r->fd (a receiver
 * of it over SCM_RIGHTS, a message still in flight, a child).
 */
static int lock_fd_open(struct shmring *r)
{
	char self[32];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", r->fd);
	int fd = open(self, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return err_sys("ring %s: cannot open a private description for its locks (%s)",
			       r->name, self);
	r->lock_fd = fd;
	return 0;
}

int part_join(struct shmring *r)
{
	struct shmring_hdr *h = r->hdr;
	if (r->lock_fd < 0) {
		int rc = lock_fd_open(r);
		if (rc)
			return rc;
	}
	transition_mark(r, true);
	for (uint32_t i = 0; i < SHMRING_PARTICIPANTS_MAX; i++) {
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
				   .l_start = lock_byte(i + 1), .l_len = 1};
		if (fcntl(r->lock_fd, F_OFD_SETLK, &fl) != 0) {
			if (errno == EAGAIN || errno == EACCES)
				continue; /* a live participant holds it */
			int rc = err_sys("cannot lock participant byte of ring %s", r->name);
			transition_mark(r, false);
			return rc;
		}
		/*
		 * Ours now. An entry still in use belonged to a process that died:
		 * release its roles at once (a claimant that saw our lock meanwhile
		 * waits for that, see role_claim), then its slot claims.
		 */
		r->owner = i + 1;
		if (atomic_load_explicit(&h->part[i].state, memory_order_acquire)) {
			KILL_POINT("join_locked");
			release_roles(r, r->owner);
			release_claims(r, r->owner);
		}
		atomic_store_explicit(&h->part[i].pid, (int32_t)getpid(), memory_order_relaxed);
		atomic_store_explicit(&h->part[i].roles, 0, memory_order_relaxed);
		atomic_store_explicit(&h->part[i].state, 1, memory_order_release);
		transition_mark(r, false);
		return 0;
	}
	transition_mark(r, false);
	return err_set(-ENOSPC, "ring %s: all %d participant entries are held by live processes",
		       r->name, SHMRING_PARTICIPANTS_MAX);
}

void part_leave(struct shmring *r)
{
	if (!r->owner || !r->hdr)
		return;
	release_roles(r, r->owner);
	atomic_store_explicit(&r->hdr->part[r->owner - 1].state, 0, memory_order_release);
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = lock_byte(r->owner),
			   .l_len = 1};
	(void)fcntl(r->lock_fd, F_OFD_SETLK, &fl);
	r->owner = 0;
}

/* What a claimant that found the holder's byte locked learns (role_settle). */
enum settle { ROLE_MOVED, ROLE_LIVE, ROLE_STALLED };

/*
 * The holder's byte was seen locked. ROLE_MOVED when the role word has moved
 * (the claim looks again), ROLE_LIVE when the holder is live: no transition
 * in progress and the word unchanged (the reasoning is in the block comment
 * at the top). Waits for transitions for at most ROLE_SETTLE_NS, then
 * ROLE_STALLED (a joiner or recoverer stopped in the middle).
 */
static enum settle role_settle(atomic_u32 *role, uint32_t cur, const struct shmring *r)
{
	int64_t deadline = 0;
	for (unsigned spins = 0;; spins++) {
		bool busy = transition_seen(r);
		if (atomic_load_explicit(role, memory_order_acquire) != cur)
			return ROLE_MOVED;
		if (!busy)
			return ROLE_LIVE;
		int64_t now = mono_ns();
		if (!deadline)
			deadline = now + ROLE_SETTLE_NS;
		else if (now > deadline)
			return ROLE_STALLED;
		if (spins < 64) {
			sched_yield();
		} else {
			struct timespec ts = {0, 100000};
			nanosleep(&ts, NULL);
		}
	}
}

/* Claim a role word, or take it over from a dead holder. */
static int role_claim(struct shmring *r, atomic_u32 *role, const char *what)
{
	uint32_t cur = atomic_load_explicit(role, memory_order_acquire);
	for (unsigned tries = 0; tries < ROLE_TRIES; tries++) {
		if (cur == r->owner)
			return 0;
		if (cur > SHMRING_PARTICIPANTS_MAX)
			return err_set(-EBADMSG, "ring %s: the %s role word names participant %u",
				       r->name, what, cur);
		if (cur == 0) {
			if (atomic_compare_exchange_strong(role, &cur, r->owner))
				return 0;
			continue;
		}
		/*
		 * Held: take the holder's lock byte. Failing means it lives. Holding
		 * it means it is dead and nobody can rejoin under its id until we let
		 * go, so the CAS cannot take a role a newcomer just claimed.
		 */
		bool locked = part_lock_dead(r, cur);
		enum settle st = ROLE_LIVE;
		if (!locked) {
			st = role_settle(role, cur, r);
			if (st == ROLE_MOVED) {
				/* Released by a newcomer that took over the holder's entry. */
				cur = atomic_load_explicit(role, memory_order_acquire);
				continue;
			}
			/*
			 * Live, unless what held the byte was a transition that died
			 * since: then the byte is free now. One more look settles it.
			 */
			locked = part_lock_dead(r, cur);
		}
		if (!locked) {
			int pid = cur <= SHMRING_PARTICIPANTS_MAX
					  ? atomic_load_explicit(&r->hdr->part[cur - 1].pid,
								 memory_order_relaxed)
					  : 0;
			if (st == ROLE_STALLED)
				return err_set(-EBUSY, "ring %s: the %s role's holder (process %d) "
					       "may be dead, but a process joining or recovering "
					       "the ring has not finished within 1 s (stopped?)",
					       r->name, what, pid);
			return err_set(-EBUSY, "ring %s: the %s role is held by live process %d",
				       r->name, what, pid);
		}
		KILL_POINT("takeover_locked");
		uint32_t dead = cur;
		bool took = atomic_compare_exchange_strong(role, &cur, r->owner);
		part_unlock(r, dead);
		if (took) {
			atomic_fetch_add_explicit(&r->hdr->counters.takeovers, 1, memory_order_relaxed);
			return 0;
		}
	}
	return err_set(-EBADMSG, "ring %s: the %s role word keeps changing", r->name, what);
}

int role_claim_producer(struct shmring *r)
{
	int jrc = ensure_joined(r);
	if (jrc)
		return jrc;
	if (r->zc_push)
		return err_set(-EINVAL, "ring %s: a reserved slot is outstanding; commit it first",
			       r->name);
	if (r->kind == SHMRING_SPSC) {
		int rc = role_claim(r, &r->hdr->producer_role, "producer");
		if (rc)
			return rc;
	}
	atomic_fetch_or_explicit(&r->hdr->part[r->owner - 1].roles, PART_PRODUCER,
				 memory_order_relaxed);
	r->is_producer = true;
	return 0;
}

int role_claim_consumer(struct shmring *r)
{
	int jrc = ensure_joined(r);
	if (jrc)
		return jrc;
	if (r->zc_pop)
		return err_set(-EINVAL, "ring %s: a peeked slot is outstanding; release it first",
			       r->name);
	if (r->kind != SHMRING_MPMC) {
		int rc = role_claim(r, &r->hdr->consumer_role, "consumer");
		if (rc)
			return rc;
	}
	atomic_fetch_or_explicit(&r->hdr->part[r->owner - 1].roles, PART_CONSUMER,
				 memory_order_relaxed);
	r->is_consumer = true;
	return 0;
}

/*
 * A push or pop found its position held up by the claim in word w. Returns
 * true when that claim belonged to a dead participant and was released (the
 * caller looks again). Cheap while the claim is young: it counts sightings and
 * reads the clock every STUCK_EVERY of them (every time while r->sleeping).
 */
bool stuck_check(struct shmring *r, uint64_t w)
{
	r->blocked = true;
	if (w != r->stuck_word) {
		r->stuck_word = w;
		r->stuck_seen = 0;
		r->stuck_since = 0;
		return false;
	}
	/* The clock starts at the second sighting, then is read every STUCK_EVERY. */
	if (r->stuck_since && !r->sleeping && ++r->stuck_seen % STUCK_EVERY)
		return false;
	int64_t now = mono_ns();
	if (!r->stuck_since) {
		r->stuck_since = now;
		return false;
	}
	if (now - r->stuck_since < STUCK_NS)
		return false;
	r->stuck_since = now;
	uint32_t owner = (uint32_t)(w & W_OWNER_MASK);
	if (!part_lock_dead(r, owner))
		return false; /* alive (or ourselves, or no owner): wait for it */
	KILL_POINT("recover_locked");
	release_claims(r, owner);
	part_unlock(r, owner);
	r->stuck_word = 0;
	return true;
}

bool any_live_producer(const struct shmring *r)
{
	for (uint32_t i = 0; i < SHMRING_PARTICIPANTS_MAX; i++) {
		const struct shmring_participant *p = &r->hdr->part[i];
		if (i + 1 == r->owner)
			continue;
		if (atomic_load_explicit(&p->state, memory_order_acquire) &&
		    (atomic_load_explicit(&p->roles, memory_order_relaxed) & PART_PRODUCER) &&
		    part_alive(r, i + 1))
			return true;
	}
	return false;
}

/*
 * Whether a ring file that stands at a name can be reclaimed by create: it is
 * ours (magic) or was never initialised, it is not PERSIST, and no live
 * participant holds a lock on it. Fills pids with the live ones otherwise.
 */
bool ring_file_dead(int fd, const struct shmring_hdr *h, size_t len, char *pids, size_t plen)
{
	pids[0] = 0;
	if (len >= sizeof(struct shmring_hdr)) {
		if (h->magic != SHMRING_MAGIC && h->magic != 0)
			return false; /* not ours: never touch it */
		/* PERSIST counts once published (a half-initialised ring has no flags yet). */
		if (h->magic == SHMRING_MAGIC && (h->flags & SHMRING_F_PERSIST) &&
		    atomic_load_explicit(&h->version, memory_order_acquire) != 0)
			return false;
	}
	bool dead = true;
	size_t used = 0;
	for (uint32_t i = 0; i < SHMRING_PARTICIPANTS_MAX; i++) {
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
				   .l_start = lock_byte(i + 1), .l_len = 1};
		if (fcntl(fd, F_OFD_GETLK, &fl) != 0 || fl.l_type == F_UNLCK)
			continue;
		dead = false;
		int pid = len >= sizeof(struct shmring_hdr)
				  ? atomic_load_explicit(&h->part[i].pid, memory_order_relaxed)
				  : 0;
		int n = snprintf(pids + used, plen - used, "%s%d", used ? ", " : "", pid);
		if (n > 0 && (size_t)n < plen - used)
			used += (size_t)n;
	}
	return dead;
}
