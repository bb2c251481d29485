/*
 * ops.c - the data operations as the API names them: dispatch on the ring
 * kind, the waiting forms, and the queries.
 *
 * Waiting. push_wait and pop_wait retry the try form with a CPU relax hint in
 * between and read the clock only every WAIT_CLOCK_EVERY tries (the vDSO
 * clock is cheap but not free). They never sleep in the kernel; a caller that
 * must see a signal passes a bounded timeout.
 */
#include <errno.h>

#include "internal.h"

#define WAIT_CLOCK_EVERY 64

int shmring_try_push(struct shmring *r, const void *msg)
{
	if (!r || !msg)
		return err_set(-EINVAL, "try_push: NULL argument");
	return r->kind == SHMRING_SPSC ? spsc_push(r, msg) : mp_push(r, msg);
}

int shmring_try_pop(struct shmring *r, void *msg)
{
	if (!r || !msg)
		return err_set(-EINVAL, "try_pop: NULL argument");
	switch (r->kind) {
	case SHMRING_SPSC: return spsc_pop(r, msg);
	case SHMRING_MPSC: return mpsc_pop(r, msg);
	default: return mpmc_pop(r, msg);
	}
}

static int timed_out(struct shmring *r, const char *what)
{
	atomic_fetch_add_explicit(&r->hdr->counters.wait_timeouts, 1, memory_order_relaxed);
	return err_set(-ETIMEDOUT, "%s on ring %s reached its timeout", what, r->name);
}

int shmring_push_wait(struct shmring *r, const void *msg, int64_t timeout_ns)
{
	int rc = shmring_try_push(r, msg);
	if (rc != -EAGAIN)
		return rc;
	if (timeout_ns == 0)
		return timed_out(r, "push_wait");
	int64_t deadline = deadline_from(timeout_ns);
	for (unsigned i = 1;; i++) {
		cpu_relax();
		rc = shmring_try_push(r, msg);
		if (rc != -EAGAIN)
			return rc;
		if (i % WAIT_CLOCK_EVERY == 0 && mono_ns() >= deadline)
			return timed_out(r, "push_wait");
	}
}

int shmring_pop_wait(struct shmring *r, void *msg, int64_t timeout_ns)
{
	int rc = shmring_try_pop(r, msg);
	if (rc != -EAGAIN)
		return rc;
	if (timeout_ns == 0)
		return timed_out(r, "pop_wait");
	int64_t deadline = deadline_from(timeout_ns);
	for (unsigned i = 1;; i++) {
		cpu_relax();
		rc = shmring_try_pop(r, msg);
		if (rc != -EAGAIN)
			return rc;
		if (i % WAIT_CLOCK_EVERY == 0 && mono_ns() >= deadline)
			return timed_out(r, "pop_wait");
	}
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
