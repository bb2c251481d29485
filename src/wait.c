/*
 * wait.c - push_wait and pop_wait: a bounded spin, then (on rings created
 * with SHMRING_F_BLOCKING) a sleep on a shared futex.
 *
 * Wait/wake protocol (one copy per direction: data_futex for consumers
 * waiting for a message, space_futex for producers waiting for a free slot).
 * The futex word is (epoch << 1) | WAITERS. The kernel's compare in
 * FUTEX_WAIT is what closes the lost-wake-up window: a waiter sleeps only
 * while the word still holds the value it announced itself with, and a waker
 * changes the word (epoch + 1, WAITERS cleared) before it calls FUTEX_WAKE.
 *
 *   waiter                                  waker (after publishing)
 *   W1 try the ring; done if it has data    K1 publish (the ring's own
 *   W2 v = word; set WAITERS in it by CAS      release store: tail / FULL)
 *   W3 seq_cst fence                        K2 seq_cst fence
 *   W4 try the ring again; done if data     K3 v = word
 *   W5 FUTEX_WAIT(word, v | WAITERS)        K4 if WAITERS: CAS word to
 *   W6 go to W1                                (epoch + 1), then FUTEX_WAKE all
 *
 * W3 pairs with K2 (Dekker): in the single order of seq_cst fences, either
 * K3 reads the WAITERS bit set at W2, so the waker wakes (and a waiter not yet
 * asleep finds the word changed at W5), or W4 sees the message published at
 * K1. Either way nobody sleeps on a message. tests/model/futex_wait.pml checks
 * this with Spin, together with the two broken orders (announce after the last
 * look; look at WAITERS before publishing) that lose wake-ups.
 * ThreadSanitizer does not model standalone fences: it can neither prove nor
 * refute W3/K2, which is why the model check exists.
 *
 * Wake-all: several consumers (MPMC) or producers (MPSC, MPMC) may sleep on
 * one word, and the waker clears WAITERS for all of them, so all must wake
 * and re-announce if they still find nothing (the model shows that waking
 * one loses wake-ups). The epoch is needed too: with the WAITERS bit alone, a
 * second waiter can set the word back to the value a first one is about to
 * sleep on. It is 31 bits and compared for equality, so in theory a waiter
 * stalled between W2 and W5 through exactly 2^31 wake cycles could still
 * sleep on a stale value; every sleep is therefore at most one slice
 * (250 ms), after which the waiter looks at the ring again: a wait without
 * end costs four wake-ups a second. The same slice bounds what a waker that
 * dies between publishing and K4 costs its sleepers (the soak's kill points
 * push_after_publish and pop_after_release land exactly there).
 *
 * The sleep always has an absolute CLOCK_MONOTONIC timeout: the kernel
 * restarts an untimed FUTEX_WAIT after an SA_RESTART handler but turns a
 * timed one into EINTR, and a caller must see signals (-EINTR) whatever flags
 * its handler was installed with.
 *
 * Rings without SHMRING_F_BLOCKING never reach any of this: their push and pop
 * test one handle flag and add no fence, atomic RMW or system call.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define WAIT_CLOCK_EVERY 64
#define WAITERS 1u
/* The longest single futex sleep is the handle's sleep_slice_ns (default
 * SHMRING_SLEEP_SLICE_NS, internal.h); a longer wait sleeps again. */
/* The sleep while a claim holds the wait up, or while end of stream is watched. */
#define SHORT_SLICE_NS INT64_C(2000000)
/* How often pop_wait looks for live producers when end of stream is asked for. */
#define EOS_CHECK_NS INT64_C(1000000)

#ifdef SHMRING_BROKEN_WAKE
/*
 * Test-only broken protocol (make broken-wake): the waiter announces itself
 * after its last look at the ring and sleeps without looking again, with a
 * delay in between that widens the race, so that the lost-wake-up torture
 * test can show it catches the bug.
 */
#define BROKEN_DELAY_NS 60000
#endif

static int futex_wait_abs(atomic_u32 *word, uint32_t val, int64_t deadline)
{
	struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time; not private: shared memory. */
	long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET, val, &ts, NULL,
			  FUTEX_BITSET_MATCH_ANY);
	if (rc == 0)
		return 0;
	return errno == EINTR ? -EINTR : errno == ETIMEDOUT ? -ETIMEDOUT : -EAGAIN;
}

static void futex_wake_all(atomic_u32 *word)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/*
 * K2..K4: called by the side that just published, on blocking rings only.
 * After a push (word is data_futex) it also looks at the notify word beside
 * it, for consumers waiting on a notify fd (the protocol is in notify.c).
 */
void wake_waiters(struct shmring *r, atomic_u32 *word)
{
	atomic_thread_fence(memory_order_seq_cst); /* K2, pairs with W3 and with N2 (notify.c) */
	uint32_t v = atomic_load_explicit(word, memory_order_relaxed); /* K3 */
	/* K3 for notify fds: same line as the futex word, so no extra cache miss. */
	if (word == &r->hdr->data_futex &&
	    (atomic_load_explicit(&r->hdr->notify_word, memory_order_relaxed) & NOTIFY_ARMED))
		notify_wake(r);
	for (int i = 0; v & WAITERS; i++) {
		/* K4: change the word first, so a waiter between W2 and W5 does not sleep. */
		if (atomic_compare_exchange_weak_explicit(word, &v, (v + 2) & ~WAITERS,
							  memory_order_relaxed, memory_order_relaxed) ||
		    i == 1024) {
			/* (After 1024 lost races with a peer rewriting the word: wake anyway.) */
			futex_wake_all(word);
			atomic_fetch_add_explicit(&r->hdr->counters.futex_wakes, 1,
						  memory_order_relaxed);
			return;
		}
	}
}

static int timed_out(struct shmring *r, const char *what)
{
	atomic_fetch_add_explicit(&r->hdr->counters.wait_timeouts, 1, memory_order_relaxed);
	return err_set(-ETIMEDOUT, "%s on ring %s reached its timeout", what, r->name);
}

typedef int (*try_fn)(struct shmring *r, void *msg);

/* W1..W6: sleep on word until try succeeds, the deadline passes, or a signal. */
static int sleep_until(struct shmring *r, atomic_u32 *word, try_fn try, void *msg,
		       int64_t deadline, const char *what)
{
	for (;;) {
		r->blocked = false;
		int rc = try(r, msg); /* W1 */
		if (rc != -EAGAIN)
			return rc;
		if (mono_ns() >= deadline)
			return timed_out(r, what);
#ifdef SHMRING_BROKEN_WAKE
		for (int64_t until = mono_ns() + BROKEN_DELAY_NS; mono_ns() < until;)
			cpu_relax();
#endif
		/*
		 * W2. Every waiter announces with its own read-modify-write, even one
		 * that finds WAITERS already set: the C11 fence rules order only a
		 * thread's own earlier operations before its fence W3, so a waiter
		 * that merely read another's announcement would be outside the
		 * Dekker argument (C++20 would cover it; C11 does not).
		 */
		uint32_t v = atomic_fetch_or_explicit(word, WAITERS, memory_order_seq_cst) | WAITERS;
#ifndef SHMRING_BROKEN_WAKE
		atomic_thread_fence(memory_order_seq_cst); /* W3, pairs with K2 */
		rc = try(r, msg); /* W4 */
		if (rc != -EAGAIN)
			return rc;
#endif
		atomic_fetch_add_explicit(&r->hdr->counters.futex_sleeps, 1, memory_order_relaxed);
		/*
		 * W5, at most SLEEP_SLICE_NS at a time (see the epoch note above), and
		 * SHORT_SLICE_NS while a claim holds this wait up (its owner may be
		 * dead: liveness.c checks it) or while end of stream is watched for:
		 * a dead process wakes nobody.
		 */
		KILL_POINT("wait_sleeping");
		int64_t now = mono_ns();
		int64_t slice = r->blocked || r->eos ? SHORT_SLICE_NS : r->sleep_slice_ns;
		rc = futex_wait_abs(word, v, deadline - now > slice ? now + slice : deadline);
		if (rc == -EINTR)
			return err_set(-EINTR, "%s on ring %s interrupted by a signal", what, r->name);
		/* W6: woken, word changed, or timed out: look again (the deadline is checked at W1). */
	}
}

/* Spin on try until it succeeds or spin_until passes; -EAGAIN if it never did. */
static int spin(struct shmring *r, try_fn try, void *msg, int64_t spin_until)
{
	for (unsigned i = 1;; i++) {
		int rc = try(r, msg);
		if (rc != -EAGAIN)
			return rc;
		if (i % WAIT_CLOCK_EVERY == 0 && mono_ns() >= spin_until)
			return -EAGAIN;
		cpu_relax();
	}
}

static int wait_common(struct shmring *r, void *msg, int64_t timeout_ns, try_fn try,
		       atomic_u32 *word, const char *what)
{
	int rc = try(r, msg);
	if (rc != -EAGAIN)
		return rc;
	if (timeout_ns == 0)
		return timed_out(r, what);
	int64_t deadline = deadline_from(timeout_ns);
	if (!(r->ring_flags & SHMRING_F_BLOCKING)) {
		rc = spin(r, try, msg, deadline);
		return rc == -EAGAIN ? timed_out(r, what) : rc;
	}
	if (r->spin_ns > 0) {
		int64_t now = mono_ns();
		int64_t spin_until = r->spin_ns > deadline - now ? deadline : now + r->spin_ns;
		rc = spin(r, try, msg, spin_until);
		if (rc != -EAGAIN)
			return rc;
	}
	r->sleeping = true;
	rc = sleep_until(r, word, try, msg, deadline, what);
	r->sleeping = false;
	return rc;
}

static int try_push_fn(struct shmring *r, void *msg)
{
	return shmring_try_push(r, msg);
}

/*
 * A pop, and end of stream when the handle asked for it: an empty ring with no
 * live producer is -EPIPE. Producers are looked for at most every
 * EOS_CHECK_NS (one F_OFD_GETLK per producer entry), and the ring is looked at
 * once more after that, since a producer may publish and then exit.
 */
static int try_pop_fn(struct shmring *r, void *msg)
{
	if (!r->eos)
		return shmring_try_pop(r, msg);
	bool was_blocked = r->blocked;
	r->blocked = false;
	int rc = shmring_try_pop(r, msg);
	bool held = r->blocked; /* a claim holds the head: messages may wait behind it */
	r->blocked = r->blocked || was_blocked;
	if (rc != -EAGAIN || held)
		return rc;
	int64_t now = mono_ns();
	if (now < r->eos_next_ns)
		return rc;
	r->eos_next_ns = now + EOS_CHECK_NS;
	if (any_live_producer(r))
		return rc;
	r->blocked = false;
	rc = shmring_try_pop(r, msg);
	if (rc == -EAGAIN && !r->blocked)
		return err_set(-EPIPE, "ring %s is empty and no live producer is attached", r->name);
	return rc;
}

int shmring_set_end_of_stream(struct shmring *r, bool on)
{
	if (!r)
		return err_set(-EINVAL, "set_end_of_stream: NULL handle");
	r->eos = on;
	r->eos_next_ns = 0;
	return 0;
}

int shmring_push_wait(struct shmring *r, const void *msg, int64_t timeout_ns)
{
	if (!r || !msg)
		return err_set(-EINVAL, "push_wait: NULL argument");
	return wait_common(r, (void *)msg, timeout_ns, try_push_fn, &r->hdr->space_futex,
			   "push_wait");
}

int shmring_pop_wait(struct shmring *r, void *msg, int64_t timeout_ns)
{
	if (!r || !msg)
		return err_set(-EINVAL, "pop_wait: NULL argument");
	return wait_common(r, msg, timeout_ns, try_pop_fn, &r->hdr->data_futex, "pop_wait");
}

int shmring_set_spin_ns(struct shmring *r, int64_t spin_ns)
{
	if (!r || spin_ns < 0)
		return err_set(-EINVAL, "set_spin_ns: NULL handle or negative time");
	r->spin_ns = spin_ns;
	return 0;
}
