/*
 * ops.c - the data operations as the API names them: dispatch on the ring
 * kind, the wake-up of sleepers on blocking rings, and the queries. The
 * waiting forms are in wait.c.
 */
#include <errno.h>

#include "internal.h"

int shmring_try_push(struct shmring *r, const void *msg)
{
	if (!r || !msg)
		return err_set(-EINVAL, "try_push: NULL argument");
	int rc = ensure_producer(r);
	if (rc)
		return rc;
	rc = r->kind == SHMRING_SPSC ? spsc_push(r, msg) : mp_push(r, msg);
	if (r->blocking && rc == 0)
		wake_waiters(r, &r->hdr->data_futex);
	return rc;
}

int shmring_try_pop(struct shmring *r, void *msg)
{
	if (!r || !msg)
		return err_set(-EINVAL, "try_pop: NULL argument");
	int rc = ensure_consumer(r);
	if (rc)
		return rc;
	switch (r->kind) {
	case SHMRING_SPSC: rc = spsc_pop(r, msg); break;
	case SHMRING_MPSC: rc = mpsc_pop(r, msg); break;
	default: rc = mpmc_pop(r, msg); break;
	}
	if (r->blocking && rc == 0)
		wake_waiters(r, &r->hdr->space_futex);
	return rc;
}

size_t shmring_size(const struct shmring *r)
{
	if (!r)
		return 0;
	/* Read head first: tail read later is no older, so the difference is not negative in a quiet ring. */
	uint64_t head = load_acquire64(&r->hdr->head);
	uint64_t tail = load_acquire64(&r->hdr->tail);
	uint64_t n = tail - head;
	if ((int64_t)n < 0)
		return 0;
	return n > r->capacity ? r->capacity : (size_t)n;
}

bool shmring_empty(const struct shmring *r)
{
	return shmring_size(r) == 0;
}

size_t shmring_capacity(const struct shmring *r)
{
	return r ? r->capacity : 0;
}

int shmring_info(const struct shmring *r, struct shmring_info *out)
{
	if (!r || !out)
		return err_set(-EINVAL, "info: NULL argument");
	*out = (struct shmring_info){
		.kind = (enum shmring_kind)r->kind,
		.msg_size = r->msg_size,
		.capacity = r->capacity,
		.flags = r->ring_flags,
		.backing = (enum shmring_backing)r->backing,
		.page_size = r->page_size,
		.map_size = r->map_len + r->data_len,
		.locked = r->locked,
	};
	return 0;
}

int shmring_stats(const struct shmring *r, struct shmring_stats *out)
{
	if (!r || !out)
		return err_set(-EINVAL, "stats: NULL argument");
	const struct shmring_hdr *h = r->hdr;
	const struct shmring_counters *c = &h->counters;
	*out = (struct shmring_stats){
		.head = load_acquire64(&h->head),
		.tail = load_acquire64(&h->tail),
		.depth = shmring_size(r),
		.futex_sleeps = load_relaxed64(&c->futex_sleeps),
		.futex_wakes = load_relaxed64(&c->futex_wakes),
		.wait_timeouts = load_relaxed64(&c->wait_timeouts),
		.skipped = load_relaxed64(&c->skipped),
		.recovered = load_relaxed64(&c->recovered),
		.takeovers = load_relaxed64(&c->takeovers),
		.attach_rejects = load_relaxed64(&c->attach_rejects),
	};
	for (uint32_t i = 0; i < SHMRING_PARTICIPANTS_MAX; i++) {
		const struct shmring_participant *p = &h->part[i];
		if (!atomic_load_explicit(&p->state, memory_order_acquire))
			continue;
		out->participants++;
		if (!part_alive(r, i + 1))
			continue;
		out->alive++;
		uint32_t roles = atomic_load_explicit(&p->roles, memory_order_relaxed);
		out->producers_alive += (roles & PART_PRODUCER) != 0;
		out->consumers_alive += (roles & PART_CONSUMER) != 0;
	}
	return 0;
}
