/*
 * batch.c - batch and zero-copy forms of push and pop.
 *
 * Batches move the shared index once per batch: an SPSC producer copies k
 * messages and stores tail + k once (P1 of spsc.c, once); an MPSC/MPMC
 * producer claims k consecutive slots one CAS each (the claims are on the
 * slots' own lines, as in mpmc.c), moves the tail hint once, then fills and
 * publishes each slot with its own release store (P1 of mpmc.c). Consumers
 * mirror this. Orderings and their pairings are those of spsc.c and mpmc.c.
 *
 * Zero-copy: reserve hands out the slot itself to write in place, and commit
 * publishes it; peek hands out the oldest slot to read in place, and release
 * frees it. Between the two calls the slot is this handle's alone: in
 * MPSC/MPMC it is claimed in its state word (WRITING/READING with the
 * owner), exactly as a copying push or pop holds it while copying. One
 * reservation and one peek may be outstanding per handle.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

/*
 * Copy k messages between the slots from position pos on and a caller's
 * array: into the ring from from_user, or out of it to to_user (the other is
 * NULL). Packed slots (stride == message size) are contiguous up to the wrap,
 * so they go in at most two runs, one memcpy each, instead of k calls.
 */
static void copy_batch(const struct shmring *r, uint64_t pos, unsigned k, unsigned char *to_user,
		       const unsigned char *from_user)
{
	size_t sz = r->msg_size;
	bool packed = r->slot_size == sz;
	for (unsigned i = 0, n; i < k; i += n) {
		uint64_t room = r->capacity - ((pos + i) & r->mask);
		n = !packed ? 1 : k - i < room ? k - i : (unsigned)room;
		unsigned char *slot = slot_at(r, pos + i);
		size_t off = (size_t)i * sz, len = (size_t)n * sz;
		if (to_user)
			memcpy(to_user + off, slot, len);
		else
			memcpy(slot, from_user + off, len);
	}
}

static unsigned spsc_free_slots(struct shmring *r, unsigned want, int *err)
{
	struct shmring_hdr *h = r->hdr;
	if (!r->p_ready) {
		r->p_tail = load_relaxed64(&h->tail);
		r->p_head_cache = load_acquire64(&h->head); /* P2, pairs with C2 */
		r->p_ready = true;
	}
	uint64_t t = r->p_tail;
	uint64_t room = r->capacity - (t - r->p_head_cache);
	if (t - r->p_head_cache > r->capacity || room < want) {
		r->p_head_cache = load_acquire64(&h->head); /* P2, pairs with C2 */
		uint64_t used = t - r->p_head_cache;
		if (used > r->capacity) {
			*err = err_set(-EBADMSG, "ring %s: head is past tail", r->name);
			return 0;
		}
		room = r->capacity - used;
	}
	*err = 0;
	return (unsigned)(room < want ? room : want);
}

static unsigned spsc_avail(struct shmring *r, unsigned want, int *err)
{
	struct shmring_hdr *h = r->hdr;
	if (!r->c_ready) {
		r->c_head = load_relaxed64(&h->head);
		r->c_tail_cache = r->c_head;
		r->c_ready = true;
	}
	uint64_t hd = r->c_head;
	uint64_t avail = r->c_tail_cache - hd;
	if (avail < want) {
		r->c_tail_cache = load_acquire64(&h->tail); /* C1, pairs with P1 */
		avail = r->c_tail_cache - hd;
		if (avail > r->capacity) {
			r->c_tail_cache = hd;
			*err = err_set(-EBADMSG, "ring %s: tail is more than capacity past head", r->name);
			return 0;
		}
	}
	*err = 0;
	return (unsigned)(avail < want ? avail : want);
}

/* Move a hint index forward to at least to (never backwards). */
static void hint_forward(atomic_u64 *hint, uint64_t to)
{
	uint64_t cur = load_relaxed64(hint);
	/* Bounded: a peer that rewrites the hint without end only leaves it behind. */
	for (int i = 0; i < 64 && (int64_t)(to - cur) > 0 && !cas_relaxed64(hint, &cur, to); i++)
		;
}

/* MPSC/MPMC: claim up to n consecutive slots from a first claimed position. */
static unsigned mp_claim_more(struct shmring *r, uint64_t first, unsigned n, unsigned from,
			      unsigned to)
{
	unsigned k = 1;
	while (k < n) {
		uint64_t pos = first + k;
		atomic_u64 *wp = slot_word(r, pos);
		uint64_t w = load_acquire64(wp); /* P0/C1 as in mpmc.c */
		if (word_dist(w, pos) != 0 || word_state(w) != from ||
		    !cas_acquire64(wp, &w, word_make(pos, to, r->owner)))
			break;
		k++;
	}
	return k;
}

int shmring_try_push_n(struct shmring *r, const void *msgs, unsigned n)
{
	if (!r || !msgs || n == 0)
		return err_set(-EINVAL, "try_push_n: NULL argument or n == 0");
	const unsigned char *src = msgs;
	if (n > r->capacity)
		n = r->capacity; /* keeps the count an int and a batch within one lap */
	int err = ensure_producer(r);
	if (err)
		return err;
	unsigned k;
	if (r->kind == SHMRING_SPSC) {
		k = spsc_free_slots(r, n, &err);
		if (err)
			return err;
		if (k == 0)
			return -EAGAIN;
		copy_batch(r, r->p_tail, k, NULL, src);
		r->p_tail += k;
		store_release64(&r->hdr->tail, r->p_tail); /* P1, pairs with C1: once per batch */
	} else {
		uint64_t first;
		int rc = mp_claim(r, &first, false);
		if (rc)
			return rc;
		k = mp_claim_more(r, first, n, ST_EMPTY, ST_WRITING);
		KILL_POINT("push_claimed");
		hint_forward(&r->hdr->tail, first + k); /* once per batch */
		for (unsigned i = 0; i < k; i++) {
			copy_msg(slot_at(r, first + i), src + (size_t)i * r->msg_size, r->msg_size,
				 "push_mid_copy");
			store_release64(slot_word(r, first + i), word_make(first + i, ST_FULL, 0)); /* P1 */
		}
	}
	if (r->blocking)
		wake_waiters(r, &r->hdr->data_futex);
	return (int)k;
}

int shmring_try_pop_n(struct shmring *r, void *msgs, unsigned n)
{
	if (!r || !msgs || n == 0)
		return err_set(-EINVAL, "try_pop_n: NULL argument or n == 0");
	unsigned char *dst = msgs;
	if (n > r->capacity)
		n = r->capacity;
	int err = ensure_consumer(r);
	if (err)
		return err;
	unsigned k;
	if (r->kind == SHMRING_SPSC) {
		k = spsc_avail(r, n, &err);
		if (err)
			return err;
		if (k == 0)
			return -EAGAIN;
		copy_batch(r, r->c_head, k, dst, NULL);
		r->c_head += k;
		store_release64(&r->hdr->head, r->c_head); /* C2, pairs with P2: once per batch */
	} else if (r->kind == SHMRING_MPSC) {
		/* The one consumer: take FULL slots in order, free each, move head once. */
		uint64_t hd = load_relaxed64(&r->hdr->head);
		k = 0;
		while (k < n) {
			atomic_u64 *wp = slot_word(r, hd + k);
			uint64_t w = load_acquire64(wp); /* C1, pairs with P1 */
			if (word_dist(w, hd + k) != 0 || word_state(w) != ST_FULL)
				break;
			if (k == 0)
				KILL_POINT("pop_claimed");
			copy_msg(dst + (size_t)k * r->msg_size, slot_at(r, hd + k), r->msg_size,
				 "pop_mid_copy");
			store_release64(wp, word_make(hd + k + r->capacity, ST_EMPTY, 0)); /* C2 */
			k++;
		}
		if (k == 0) {
			/* Nothing plain to take: the single pop handles skips, lag and corruption. */
			int rc = mpsc_pop(r, dst);
			if (rc == 0 && r->blocking)
				wake_waiters(r, &r->hdr->space_futex);
			return rc == 0 ? 1 : rc;
		}
		KILL_POINT("pop_before_head"); /* the k slots are free, head not moved: lost */
		store_relaxed64(&r->hdr->head, hd + k);
	} else {
		uint64_t first;
		int rc = mpmc_claim(r, &first, false);
		if (rc)
			return rc;
		k = mp_claim_more(r, first, n, ST_FULL, ST_READING);
		KILL_POINT("pop_claimed");
		hint_forward(&r->hdr->head, first + k); /* once per batch */
		for (unsigned i = 0; i < k; i++) {
			copy_msg(dst + (size_t)i * r->msg_size, slot_at(r, first + i), r->msg_size,
				 "pop_mid_copy");
			store_release64(slot_word(r, first + i),
					word_make(first + i + r->capacity, ST_EMPTY, 0)); /* C2 */
		}
	}
	if (r->blocking)
		wake_waiters(r, &r->hdr->space_futex);
	return (int)k;
}

int shmring_reserve(struct shmring *r, void **slot)
{
	if (!r || !slot)
		return err_set(-EINVAL, "reserve: NULL argument");
	if (r->zc_push)
		return err_set(-EINVAL, "reserve: a reservation is already outstanding on this handle");
	int rc0 = ensure_producer(r);
	if (rc0)
		return rc0;
	if (r->kind == SHMRING_SPSC) {
		int err;
		if (spsc_free_slots(r, 1, &err) == 0)
			return err ? err : -EAGAIN;
		r->zc_push_pos = r->p_tail;
	} else {
		int rc = mp_claim(r, &r->zc_push_pos, true);
		if (rc)
			return rc;
	}
	r->zc_push = true;
	r->is_producer = false; /* copying pushes take the slow path, which refuses them */
	*slot = slot_at(r, r->zc_push_pos);
	return 0;
}

int shmring_commit(struct shmring *r)
{
	if (!r || !r->zc_push)
		return err_set(-EINVAL, "commit: no reservation outstanding");
	r->zc_push = false;
	r->is_producer = true;
	KILL_POINT("push_before_publish");
	if (r->kind == SHMRING_SPSC) {
		r->p_tail = r->zc_push_pos + 1;
		store_release64(&r->hdr->tail, r->p_tail); /* P1, pairs with C1 */
	} else {
		store_release64(slot_word(r, r->zc_push_pos),
				word_make(r->zc_push_pos, ST_FULL, 0)); /* P1, pairs with C1 */
	}
	if (r->blocking)
		wake_waiters(r, &r->hdr->data_futex);
	return 0;
}

int shmring_peek(struct shmring *r, const void **slot)
{
	if (!r || !slot)
		return err_set(-EINVAL, "peek: NULL argument");
	if (r->zc_pop)
		return err_set(-EINVAL, "peek: a peeked slot is already outstanding on this handle");
	int rc = ensure_consumer(r);
	if (rc)
		return rc;
	if (r->kind == SHMRING_SPSC) {
		if (spsc_avail(r, 1, &rc) == 0)
			return rc ? rc : -EAGAIN;
		r->zc_pop_pos = r->c_head;
	} else if (r->kind == SHMRING_MPSC) {
		if ((rc = mpsc_peek(r, &r->zc_pop_pos)))
			return rc;
	} else if ((rc = mpmc_claim(r, &r->zc_pop_pos, true))) {
		return rc;
	}
	r->zc_pop = true;
	r->is_consumer = false; /* copying pops take the slow path, which refuses them */
	*slot = slot_at(r, r->zc_pop_pos);
	return 0;
}

int shmring_release(struct shmring *r)
{
	if (!r || !r->zc_pop)
		return err_set(-EINVAL, "release: no peeked slot outstanding");
	r->zc_pop = false;
	r->is_consumer = true;
	uint64_t pos = r->zc_pop_pos;
	if (r->kind == SHMRING_SPSC) {
		r->c_head = pos + 1;
		store_release64(&r->hdr->head, r->c_head); /* C2, pairs with P2 */
	} else {
		store_release64(slot_word(r, pos), word_make(pos + r->capacity, ST_EMPTY, 0)); /* C2 */
		if (r->kind == SHMRING_MPSC)
			store_relaxed64(&r->hdr->head, pos + 1);
	}
	if (r->blocking)
		wake_waiters(r, &r->hdr->space_futex);
	return 0;
}
