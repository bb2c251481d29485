/*
 * spsc.c - single-producer single-consumer ring.
 *
 * Protocol. The producer owns tail, the consumer owns head (layout.h: two
 * lines 128 bytes apart). Slot tail & mask is the producer's until it
 * publishes it by storing tail + 1 with release (P1); the consumer's acquire
 * load of tail (C1) pairs with P1, so the message bytes written before P1 are
 * visible after C1. Symmetrically the consumer frees a slot by storing head + 1
 * with release (C2) after copying the message out; the producer's acquire load
 * of head (P2) pairs with C2, so it never overwrites bytes still being read.
 *
 * Each side caches the other side's index in its own handle and reloads it
 * only when the cache says full (producer) or empty (consumer). While the
 * ring is neither, a push or pop touches one shared line of indices (its own,
 * which it holds exclusively) plus the slot.
 *
 * Both sides are wait-free: a bounded number of steps whatever the peer does.
 * A corrupt or hostile peer can only make the distance tail - head exceed the
 * capacity, which is checked on every reload and reported as -EBADMSG; slot
 * addresses are always masked, so nothing outside the ring is touched.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

int spsc_push(struct shmring *r, const void *msg)
{
	struct shmring_hdr *h = r->hdr;

	if (!r->p_ready) {
		/* First push by this handle: take over from wherever the ring is. */
		r->p_tail = load_relaxed64(&h->tail);
		r->p_head_cache = load_acquire64(&h->head); /* P2, pairs with C2 */
		r->p_ready = true;
	}
	uint64_t t = r->p_tail;
	if (t - r->p_head_cache >= r->capacity) {
		r->p_head_cache = load_acquire64(&h->head); /* P2, pairs with C2 */
		uint64_t used = t - r->p_head_cache;
		if (used > r->capacity)
			return err_set(-EBADMSG, "ring %s: head %llu is past tail %llu",
				       r->name, (unsigned long long)r->p_head_cache,
				       (unsigned long long)t);
		if (used == r->capacity)
			return -EAGAIN;
	}
	KILL_POINT("push_claimed");
	copy_msg(slot_at(r, t), msg, r->msg_size, "push_mid_copy");
	KILL_POINT("push_before_publish");
	store_release64(&h->tail, t + 1); /* P1, pairs with C1 */
	r->p_tail = t + 1;
	KILL_POINT("push_after_publish");
	return 0;
}

int spsc_pop(struct shmring *r, void *msg)
{
	struct shmring_hdr *h = r->hdr;

	if (!r->c_ready) {
		/* First pop by this handle: resume where the last consumer stopped. */
		r->c_head = load_relaxed64(&h->head);
		r->c_tail_cache = r->c_head;
		r->c_ready = true;
	}
	uint64_t hd = r->c_head;
	if (hd == r->c_tail_cache) {
		r->c_tail_cache = load_acquire64(&h->tail); /* C1, pairs with P1 */
		uint64_t tail = r->c_tail_cache, avail = tail - hd;
		if (avail > r->capacity) {
			r->c_tail_cache = hd;
			return err_set(-EBADMSG, "ring %s: tail %llu is more than capacity past head %llu",
				       r->name, (unsigned long long)tail, (unsigned long long)hd);
		}
		if (avail == 0)
			return -EAGAIN;
	}
	KILL_POINT("pop_claimed");
	copy_msg(msg, slot_at(r, hd), r->msg_size, "pop_mid_copy");
	KILL_POINT("pop_before_release");
	store_release64(&h->head, hd + 1); /* C2, pairs with P2 */
	r->c_head = hd + 1;
	KILL_POINT("pop_after_release");
	return 0;
}
