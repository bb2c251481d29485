/*
 * mpmc.c - multi-producer rings: MPSC and MPMC.
 *
 * Why claims are made on the slot, not on the index. The textbook bounded
 * MPMC queue (per-slot sequence numbers) claims a position by a CAS or an
 * atomic add on tail, then writes the slot. Between those two steps the claim
 * belongs to nobody visible: if the producer dies there, the slot stays
 * "claimed, never published" and no one can tell whether its owner is dead or
 * only slow. Here a producer claims the slot itself, in one CAS of the slot's
 * state word from EMPTY to WRITING with its owner id (layout.h), and only
 * then moves tail forward. Claim and owner change together, so a recovery
 * step that knows the owner is dead can turn WRITING into SKIP and the ring
 * goes on; consumers claim MPMC slots the same way (FULL -> READING). tail
 * and head are therefore hints: every participant that finds the slot at the
 * hint already taken moves the hint on by one CAS (helping), so a claimant
 * that dies before moving it holds nobody up.
 *
 * Orderings. A producer's acquire on the EMPTY word (P0, a load or the claim
 * CAS) pairs with the consumer's release store that freed the slot (C2), so
 * the producer's writes come after the previous lap's reads. The producer
 * publishes with a release store of FULL (P1); the consumer's acquire load of
 * the word (C1) pairs with P1, so it reads the whole message. Index CASes are
 * relaxed: indices order nothing, the slot words do.
 *
 * Positions in the word are modulo 2^48; word_dist() gives the signed distance
 * between a slot's position and the position a participant is looking for:
 *   0         the slot serves that position: its state decides
 *   > 0       the slot has moved past it: the index hint is behind; help it
 *   < 0       the slot still serves the previous lap: full (push) or empty (pop)
 *
 * Progress: a push or pop retries only when another participant's CAS
 * succeeded (lock-free). Hints are moved at most capacity times per call in
 * a consistent ring; more means the state is corrupt and the call returns
 * -EBADMSG rather than loop.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

/*
 * Hint moves allowed in one call before the ring is declared corrupt. In a
 * consistent ring each move passes a position that another participant
 * claimed during this call, so the bound is generous: it is reached only if
 * other participants complete thousands of operations while this one loses
 * every race, or if the slot words are garbage.
 */
static uint64_t help_limit(const struct shmring *r)
{
	return 4 * (uint64_t)r->capacity + 4096;
}

/*
 * Lost claim CASes allowed in one call. Each loss is another participant's
 * success, so only a peer that scribbles on the word without end gets here;
 * the call then gives up with -EAGAIN, as if it had found the ring full or
 * empty, and the caller's own bound decides what happens next.
 */
#define CAS_LOSS_LIMIT (1u << 16)

/* How many positions ahead a producer prefetches (for writing) the slot it will claim. */
#define MP_PREFETCH 4

static int corrupt(const struct shmring *r, uint64_t pos, uint64_t w)
{
	return err_set(-EBADMSG, "ring %s: slot of position %llu has inconsistent state word %#llx",
		       r->name, (unsigned long long)pos, (unsigned long long)w);
}

/*
 * Claim the slot of the next free position for writing (EMPTY -> WRITING by
 * this owner). Moves the tail hint past it when move_hint (a batch moves it
 * once at the end instead). 0 with *pos set, -EAGAIN when full, -EBADMSG.
 */
int mp_claim(struct shmring *r, uint64_t *pos, bool move_hint)
{
	struct shmring_hdr *h = r->hdr;
	uint64_t t = load_relaxed64(&h->tail);
	unsigned lost = 0;

	for (uint64_t steps = 0; steps < help_limit(r); steps++) {
		atomic_u64 *wp = slot_word(r, t);
		uint64_t w = load_acquire64(wp); /* P0, pairs with C2 */
		int64_t d = word_dist(w, t);
		unsigned st = word_state(w);

		if (st > ST_SKIP)
			return corrupt(r, t, w);
		if (d == 0 && st == ST_EMPTY) {
			/* P0 (on success), pairs with C2 */
			if (!cas_acquire64(wp, &w, word_make(t, ST_WRITING, r->owner))) {
				if (++lost > CAS_LOSS_LIMIT)
					return -EAGAIN;
				steps--;
				continue; /* another producer took it: look again */
			}
			if (move_hint) {
				uint64_t expect = t;
				cas_relaxed64(&h->tail, &expect, t + 1);
			}
			/*
			 * The claim CAS of a later push would stall on a line the
			 * consumer freed on its core (a remote miss, serialised by the
			 * locked instruction): ask for it in exclusive state now.
			 */
			__builtin_prefetch(slot_at(r, t + MP_PREFETCH), 1, 3);
			__builtin_prefetch(slot_word(r, t + MP_PREFETCH), 1, 3);
			*pos = t;
			return 0;
		}
		if (d < 0) {
			/* The slot still holds the previous lap: full, unless t is stale. */
			uint64_t now = load_relaxed64(&h->tail);
			if (now != t) {
				t = now;
				continue;
			}
			/* Held by a consumer's claim: look again if its owner was dead. */
			if ((st == ST_READING || st == ST_WRITING) && stuck_check(r, w))
				continue;
			return -EAGAIN;
		}
		/* Position t is taken (d == 0) or long gone (d > 0): move the hint on. */
		uint64_t expect = t;
		t = cas_relaxed64(&h->tail, &expect, t + 1) ? t + 1 : expect;
	}
	return err_set(-EBADMSG, "ring %s: no free slot found after %llu steps; state is corrupt",
		       r->name, (unsigned long long)help_limit(r));
}

int mp_push(struct shmring *r, const void *msg)
{
	uint64_t t = 0;
	int rc = mp_claim(r, &t, true);
	if (rc)
		return rc;
	KILL_POINT("push_claimed");
	copy_msg(slot_at(r, t), msg, r->msg_size, "push_mid_copy");
	KILL_POINT("push_before_publish");
	store_release64(slot_word(r, t), word_make(t, ST_FULL, 0)); /* P1, pairs with C1 */
	KILL_POINT("push_after_publish");
	return 0;
}

/*
 * MPSC: the position of the oldest FULL slot, passing over skipped slots and
 * a head left behind by a consumer that died. No claim: there is one consumer.
 * 0 with *pos set, -EAGAIN when empty, -EBADMSG.
 */
int mpsc_peek(struct shmring *r, uint64_t *pos)
{
	struct shmring_hdr *h = r->hdr;
	/* Only this consumer writes head, so plain loads and stores of it suffice. */
	uint64_t hd = load_relaxed64(&h->head);

	for (uint64_t steps = 0; steps < help_limit(r); steps++) {
		atomic_u64 *wp = slot_word(r, hd);
		uint64_t w = load_acquire64(wp); /* C1, pairs with P1 */
		int64_t d = word_dist(w, hd);
		unsigned st = word_state(w);

		if (st > ST_SKIP || st == ST_READING)
			return corrupt(r, hd, w);
		if (d == 0 && st == ST_WRITING && stuck_check(r, w))
			continue; /* its producer was dead: the slot is SKIP now */
		if (d < 0 || (d == 0 && (st == ST_EMPTY || st == ST_WRITING)))
			return -EAGAIN;
		if (d == 0 && st == ST_FULL) {
			*pos = hd;
			return 0;
		}
		if (d == 0) { /* ST_SKIP: a dead producer's slot; free it and go on */
			store_release64(wp, word_make(hd + r->capacity, ST_EMPTY, 0)); /* C2 */
			if (r->blocking)
				wake_waiters(r, &h->space_futex);
		}
		/* d > 0: a previous consumer freed this slot but died before moving head. */
		hd++;
		store_relaxed64(&h->head, hd);
	}
	return err_set(-EBADMSG, "ring %s: no message found after %llu steps; state is corrupt",
		       r->name, (unsigned long long)help_limit(r));
}

int mpsc_pop(struct shmring *r, void *msg)
{
	uint64_t hd = 0;
	int rc = mpsc_peek(r, &hd);
	if (rc)
		return rc;
	KILL_POINT("pop_claimed");
	copy_msg(msg, slot_at(r, hd), r->msg_size, "pop_mid_copy");
	KILL_POINT("pop_before_release");
	store_release64(slot_word(r, hd), word_make(hd + r->capacity, ST_EMPTY, 0)); /* C2, pairs with P0 */
	KILL_POINT("pop_before_head");
	store_relaxed64(&r->hdr->head, hd + 1);
	KILL_POINT("pop_after_release");
	return 0;
}

/*
 * MPMC: claim the oldest FULL slot for reading (FULL -> READING by this
 * owner), freeing skipped slots on the way; move the head hint past it when
 * move_hint (a batch moves it once at the end instead).
 * 0 with *pos set, -EAGAIN when empty, -EBADMSG.
 */
int mpmc_claim(struct shmring *r, uint64_t *pos, bool move_hint)
{
	struct shmring_hdr *h = r->hdr;
	uint64_t hd = load_relaxed64(&h->head);
	unsigned lost = 0;

	for (uint64_t steps = 0; steps < help_limit(r); steps++) {
		atomic_u64 *wp = slot_word(r, hd);
		uint64_t w = load_acquire64(wp); /* C1, pairs with P1 */
		int64_t d = word_dist(w, hd);
		unsigned st = word_state(w);

		if (st > ST_SKIP)
			return corrupt(r, hd, w);
		if (d == 0 && st == ST_WRITING && stuck_check(r, w))
			continue; /* its producer was dead: the slot is SKIP now */
		if (d < 0 || (d == 0 && (st == ST_EMPTY || st == ST_WRITING)))
			return -EAGAIN;
		if (d == 0 && (st == ST_FULL || st == ST_SKIP)) {
			/* C1 again on success: the claim CAS reads the FULL word P1 stored. */
			if (!cas_acquire64(wp, &w, word_make(hd, ST_READING, r->owner))) {
				if (++lost > CAS_LOSS_LIMIT)
					return -EAGAIN;
				steps--;
				continue; /* another consumer took it: look again */
			}
			if (st == ST_FULL) {
				if (move_hint) {
					uint64_t expect = hd;
					cas_relaxed64(&h->head, &expect, hd + 1);
				}
				*pos = hd;
				return 0;
			}
			/* A skipped slot: free it, move the hint past it, go on to the next. */
			store_release64(wp, word_make(hd + r->capacity, ST_EMPTY, 0)); /* C2 */
			if (r->blocking)
				wake_waiters(r, &h->space_futex);
			uint64_t expect = hd;
			cas_relaxed64(&h->head, &expect, hd + 1);
			hd++;
			continue;
		}
		/* Position hd is being read (d == 0) or long gone (d > 0): move the hint on. */
		uint64_t expect = hd;
		hd = cas_relaxed64(&h->head, &expect, hd + 1) ? hd + 1 : expect;
	}
	return err_set(-EBADMSG, "ring %s: no message found after %llu steps; state is corrupt",
		       r->name, (unsigned long long)help_limit(r));
}

int mpmc_pop(struct shmring *r, void *msg)
{
	uint64_t hd = 0;
	int rc = mpmc_claim(r, &hd, true);
	if (rc)
		return rc;
	KILL_POINT("pop_claimed");
	copy_msg(msg, slot_at(r, hd), r->msg_size, "pop_mid_copy");
	KILL_POINT("pop_before_release");
	store_release64(slot_word(r, hd), word_make(hd + r->capacity, ST_EMPTY, 0)); /* C2, pairs with P0 */
	KILL_POINT("pop_after_release");
	return 0;
}

/* Set every slot to EMPTY for the position it serves first, starting at base. */
void mp_init_slots(struct shmring *r, uint64_t base)
{
	for (uint64_t i = 0; i < r->capacity; i++)
		store_relaxed64(slot_word(r, base + i), word_make(base + i, ST_EMPTY, 0));
}
