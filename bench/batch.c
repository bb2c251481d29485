/*
 * batch.c - the batch and zero-copy drives of shmring rings.
 *
 * Batch (shmring_try_push_n / shmring_try_pop_n, --batch N messages):
 *   ping-pong  A pushes a batch, B pops until it has the whole batch and
 *              pushes it back, A pops it all: the row's one-way latency is
 *              that of a batch (RTT/2), not of a message;
 *   streaming  the producer stamps every message of a batch with one clock
 *              reading taken just before the push; the consumer reads the
 *              clock once per pop and subtracts each message's stamp;
 *   throughput tags as in the one-at-a-time rows, N messages in batches.
 *
 * Zero-copy (shmring_reserve/commit, shmring_peek/release): the producer
 * builds the message in the slot (stamp or tag in the first 8 bytes, the
 * rest filled with memset, as a producer that writes every field would); the
 * consumer reads the 8-byte stamp or tag in place and nothing else, as a
 * consumer that needs one field would. The echo of the ping-pong copies the
 * peeked message into a reserved slot of the other ring.
 *
 * These drives run with one consumer (a batch pop could take another
 * consumer's end-of-stream marker); MPSC and MPMC keep --producers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "shmring.h"

static unsigned char *g_out, *g_in; /* one batch each, this worker's */

static int batch_init(struct worker *w)
{
	size_t len = (size_t)g_opt.batch * w->plan->size;
	g_out = aligned_alloc(64, (len + 63) / 64 * 64);
	g_in = aligned_alloc(64, (len + 63) / 64 * 64);
	if (!g_out || !g_in)
		return worker_fail(w, -ENOMEM, "no memory for batches of %zu bytes", len);
	memset(g_out, 0, len); /* fault the pages in before the loops */
	memset(g_in, 0, len);
	return ring_init(w);
}

static unsigned char *msg_at(unsigned char *base, struct worker *w, unsigned i)
{
	return base + (size_t)i * w->plan->size;
}

/* Push all n messages, spinning while the ring is full. */
static int push_all(struct worker *w, int chan, const unsigned char *msgs, unsigned n)
{
	while (n > 0) {
		int k = shmring_try_push_n(g_h[chan], msgs, n);
		if (k == -EAGAIN) {
			cpu_pause();
			continue;
		}
		if (k <= 0)
			return ring_error(w, k ? k : -EPROTO, "try_push_n");
		msgs += (size_t)k * w->plan->size;
		n -= (unsigned)k;
	}
	return 0;
}

/* Pop 1..max messages, spinning while the ring is empty; the count or -errno. */
static int pop_some(struct worker *w, int chan, unsigned char *msgs, unsigned max)
{
	for (;;) {
		int k = shmring_try_pop_n(g_h[chan], msgs, max);
		if (k > 0)
			return k;
		if (k != -EAGAIN)
			return ring_error(w, k ? k : -EPROTO, "try_pop_n");
		cpu_pause();
	}
}

static int pop_exactly(struct worker *w, int chan, unsigned char *msgs, unsigned n)
{
	for (unsigned got = 0; got < n;) {
		int k = pop_some(w, chan, msg_at(msgs, w, got), n - got);
		if (k < 0)
			return k;
		got += (unsigned)k;
	}
	return 0;
}

/* ------------------------------------------------------------ batch loops */

static int batch_pp_a(struct worker *w)
{
	struct plan *p = w->plan;
	unsigned b = g_opt.batch;
	uint64_t kept = 0, t_prev = clk_now(), until = phase_until(w), warm_end = warm_until(w);

	for (uint64_t i = 0; i < p->pp_msgs; i++) {
		for (unsigned j = 0; j < b; j++)
			put64(msg_at(g_out, w, j), i * b + j);
		int rc = push_all(w, 0, g_out, b);
		if (rc == 0)
			rc = pop_exactly(w, 1, g_in, b);
		if (rc)
			return rc;
		uint64_t t = clk_now();
		if (get64(g_in) != i * b || get64(msg_at(g_in, w, b - 1)) != i * b + b - 1)
			return worker_fail(w, -EBADMSG, "batch ping-pong: batch %llu came back wrong",
					   (unsigned long long)i);
		if ((i >= p->pp_warm || t > warm_end) && kept < w->sample_cap)
			w->samples[kept++] = (int64_t)(t - t_prev);
		t_prev = t;
		if (t > until && i + 1 < p->pp_msgs) {
			mark_truncated(w, PH_PINGPONG);
			put64(g_out, PP_STOP); /* a whole batch, its first message says stop */
			rc = push_all(w, 0, g_out, b);
			if (rc)
				return rc;
			break;
		}
	}
	w->sh->res[w->id].nsamples = kept;
	return 0;
}

static int batch_pp_b(struct worker *w)
{
	unsigned b = g_opt.batch;
	for (uint64_t i = 0; i < w->plan->pp_msgs; i++) {
		int rc = pop_exactly(w, 0, g_in, b);
		if (rc)
			return rc;
		if (get64(g_in) == PP_STOP)
			break;
		rc = push_all(w, 1, g_in, b);
		if (rc)
			return rc;
	}
	return 0;
}

/* Streaming (stamps) or throughput (tags) producer, in batches, then the end marker. */
static int batch_produce(struct worker *w, enum phase ph)
{
	struct plan *p = w->plan;
	uint64_t total = ph == PH_STREAM ? p->st_msgs : p->tput_msgs;
	uint64_t mine = share_of(total, p->producers, w->idx), seq = 0;

	if (ph == PH_TPUT)
		w->sh->res[w->id].t_start = clk_now();
	uint64_t until = phase_until(w);
	while (seq < mine) {
		unsigned n = mine - seq < g_opt.batch ? (unsigned)(mine - seq) : g_opt.batch;
		uint64_t t = clk_now();
		if (t > until) {
			mark_truncated(w, ph);
			break;
		}
		for (unsigned j = 0; j < n; j++)
			put64(msg_at(g_out, w, j), ph == PH_STREAM ? t : tag_make(w->idx, seq + j));
		int rc = push_all(w, 0, g_out, n);
		if (rc)
			return rc;
		seq += n;
	}
	w->sh->res[w->id].sent = seq;
	if (atomic_fetch_add(&w->sh->prod_done[ph], 1) + 1 != (unsigned)p->producers)
		return 0;
	put64(g_out, MSG_STOP);
	return push_all(w, 0, g_out, 1);
}

static int batch_consume(struct worker *w, enum phase ph)
{
	struct consume_acc a;
	acc_init(&a, w, w->plan->st_warm);
	for (;;) {
		int k = pop_some(w, 0, g_in, g_opt.batch);
		if (k < 0)
			return k;
		uint64_t t = clk_now();
		for (int j = 0; j < k; j++) {
			uint64_t v = get64(msg_at(g_in, w, (unsigned)j));
			if (v == MSG_STOP)
				goto done; /* the marker is the last message */
			if (ph == PH_STREAM)
				acc_stamp(w, &a, t, v);
			else
				acc_tag(&a, t, v);
		}
	}
done:
	acc_report(w, &a, ph);
	return 0;
}

static int batch_phase(struct worker *w, enum phase ph)
{
	if (ph == PH_PINGPONG) {
		if (w->idx != 0)
			return 0;
		return w->role == ROLE_PROD ? batch_pp_a(w) : batch_pp_b(w);
	}
	if (ph != PH_STREAM && ph != PH_TPUT)
		return 0;
	return w->role == ROLE_PROD ? batch_produce(w, ph) : batch_consume(w, ph);
}

const struct mech_ops shmring_batch_ops = {
	.setup = ring_setup,
	.attached = ring_attached,
	.teardown = ring_teardown,
	.init = batch_init,
	.phase = batch_phase,
};

/* -------------------------------------------------------- zero-copy loops */

/* The next free slot (spinning while the ring is full), or NULL with *rc set. */
static unsigned char *zc_reserve(struct worker *w, int chan, int *rc)
{
	void *slot = NULL;
	while ((*rc = shmring_reserve(g_h[chan], &slot)) == -EAGAIN)
		cpu_pause();
	if (*rc || !slot) {
		*rc = ring_error(w, *rc ? *rc : -EPROTO, "reserve");
		return NULL;
	}
	return slot;
}

/* The oldest message in place (spinning while the ring is empty), or NULL with *rc set. */
static const unsigned char *zc_peek(struct worker *w, int chan, int *rc)
{
	const void *slot = NULL;
	while ((*rc = shmring_peek(g_h[chan], &slot)) == -EAGAIN)
		cpu_pause();
	if (*rc || !slot) {
		*rc = ring_error(w, *rc ? *rc : -EPROTO, "peek");
		return NULL;
	}
	return slot;
}

/* Build a message in place: the 8-byte word, then the rest of the payload. */
static int zc_send(struct worker *w, int chan, uint64_t word)
{
	int rc;
	unsigned char *slot = zc_reserve(w, chan, &rc);
	if (!slot)
		return rc;
	put64(slot, word);
	memset(slot + 8, 0x5a, w->plan->size - 8);
	rc = shmring_commit(g_h[chan]);
	return rc ? ring_error(w, rc, "commit") : 0;
}

/* Read the 8-byte word in place and free the slot. */
static int zc_recv(struct worker *w, int chan, uint64_t *word)
{
	int rc;
	const unsigned char *slot = zc_peek(w, chan, &rc);
	if (!slot)
		return rc;
	*word = get64(slot);
	rc = shmring_release(g_h[chan]);
	return rc ? ring_error(w, rc, "release") : 0;
}

static int zc_pp_a(struct worker *w)
{
	struct plan *p = w->plan;
	uint64_t kept = 0, t_prev = clk_now(), until = phase_until(w), warm_end = warm_until(w);

	for (uint64_t i = 0; i < p->pp_msgs; i++) {
		uint64_t v = 0;
		int rc = zc_send(w, 0, i);
		if (rc == 0)
			rc = zc_recv(w, 1, &v);
		if (rc)
			return rc;
		uint64_t t = clk_now();
		if (v != i)
			return worker_fail(w, -EBADMSG, "zero-copy ping-pong: sent %llu, got %llu",
					   (unsigned long long)i, (unsigned long long)v);
		if ((i >= p->pp_warm || t > warm_end) && kept < w->sample_cap)
			w->samples[kept++] = (int64_t)(t - t_prev);
		t_prev = t;
		if (t > until && i + 1 < p->pp_msgs) {
			mark_truncated(w, PH_PINGPONG);
			w->sh->res[w->id].nsamples = kept;
			return zc_send(w, 0, PP_STOP);
		}
	}
	w->sh->res[w->id].nsamples = kept;
	return 0;
}

/* The echo: peek on channel 0, copy into a slot reserved on channel 1, commit, release. */
static int zc_pp_b(struct worker *w)
{
	for (uint64_t i = 0; i < w->plan->pp_msgs; i++) {
		int rc;
		const unsigned char *in = zc_peek(w, 0, &rc);
		if (!in)
			return rc;
		if (get64(in) == PP_STOP) {
			rc = shmring_release(g_h[0]);
			return rc ? ring_error(w, rc, "release") : 0;
		}
		unsigned char *out = zc_reserve(w, 1, &rc);
		if (!out)
			return rc;
		memcpy(out, in, w->plan->size);
		if ((rc = shmring_commit(g_h[1])) || (rc = shmring_release(g_h[0])))
			return ring_error(w, rc, "commit/release");
	}
	return 0;
}

static int zc_produce(struct worker *w, enum phase ph)
{
	struct plan *p = w->plan;
	uint64_t total = ph == PH_STREAM ? p->st_msgs : p->tput_msgs;
	uint64_t mine = share_of(total, p->producers, w->idx), i;

	if (ph == PH_TPUT)
		w->sh->res[w->id].t_start = clk_now();
	uint64_t until = phase_until(w);
	for (i = 0; i < mine; i++) {
		uint64_t now = clk_now();
		if (now > until) {
			mark_truncated(w, ph);
			break;
		}
		int rc = zc_send(w, 0, ph == PH_STREAM ? now : tag_make(w->idx, i));
		if (rc)
			return rc;
	}
	w->sh->res[w->id].sent = i;
	if (atomic_fetch_add(&w->sh->prod_done[ph], 1) + 1 != (unsigned)p->producers)
		return 0;
	return zc_send(w, 0, MSG_STOP);
}

static int zc_consume(struct worker *w, enum phase ph)
{
	struct consume_acc a;
	acc_init(&a, w, w->plan->st_warm);
	for (;;) {
		uint64_t v = 0;
		int rc = zc_recv(w, 0, &v);
		if (rc)
			return rc;
		uint64_t t = clk_now();
		if (v == MSG_STOP)
			break;
		if (ph == PH_STREAM)
			acc_stamp(w, &a, t, v);
		else
			acc_tag(&a, t, v);
	}
	acc_report(w, &a, ph);
	return 0;
}

static int zc_phase(struct worker *w, enum phase ph)
{
	if (ph == PH_PINGPONG) {
		if (w->idx != 0)
			return 0;
		return w->role == ROLE_PROD ? zc_pp_a(w) : zc_pp_b(w);
	}
	if (ph != PH_STREAM && ph != PH_TPUT)
		return 0;
	return w->role == ROLE_PROD ? zc_produce(w, ph) : zc_consume(w, ph);
}

const struct mech_ops shmring_zc_ops = {
	.setup = ring_setup,
	.attached = ring_attached,
	.teardown = ring_teardown,
	.init = ring_init,
	.phase = zc_phase,
};
