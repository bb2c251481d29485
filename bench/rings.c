/*
 * rings.c - the shared-memory ring rows: the textbook reference ring and
 * shmring's SPSC, MPSC and MPMC rings, driven one message at a time.
 *
 * Each row uses two rings of the same kind: channel 0 from A (producers) to
 * B (consumers), channel 1 back, for the ping-pong echo. The parent creates
 * them by name, the workers attach by name (a forked child attaches anew,
 * as the API asks), and once every worker is attached the parent closes its
 * creator handles: that unlinks the names, so nothing is left in /dev/shm
 * whatever happens to the workers afterwards.
 *
 * Drives:
 *   spin  try_push/try_pop, PAUSE and retry on -EAGAIN (the hot path users
 *         of a spinning ring run);
 *   wait  push_wait/pop_wait on a SHMRING_F_BLOCKING ring with a spin time
 *         of 0: every wait sleeps on the futex at once, so the ping-pong
 *         measures the futex wake-up path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "shmring.h"

/* Bound of every wait in the wait drive (the row timeout is the outer bound). */
#define WAIT_BOUND_NS (INT64_C(10) * 1000000000)
#define ATTACH_BOUND_NS (INT64_C(5) * 1000000000)

#define PARAM_KIND(p) ((enum shmring_kind)((p) & 0xff))
#define PARAM_FLAGS(p) ((uint32_t)((p) >> 8))

struct ring_parent {
	char name[2][64];
	struct shmring *h[2];
};

/* This worker's handles (a worker runs one row and exits). */
struct shmring *g_h[2];

static const char *backing_name(enum shmring_backing b)
{
	switch (b) {
	case SHMRING_BACKING_SHM: return "shm";
	case SHMRING_BACKING_SHM_THP: return "shm+THP";
	case SHMRING_BACKING_HUGETLBFS: return "hugetlbfs";
	case SHMRING_BACKING_HUGETLB_ANON: return "hugetlb";
	}
	return "?";
}

static struct shmring_config ring_cfg(const struct plan *p)
{
	struct shmring_config cfg = {
		.kind = PARAM_KIND(p->param),
		.msg_size = p->size,
		.capacity = g_opt.capacity,
		.flags = PARAM_FLAGS(p->param),
	};
	return cfg;
}

int ring_setup(struct plan *p)
{
	struct ring_parent *rp = calloc(1, sizeof(*rp));
	if (!rp)
		return -ENOMEM;
	p->state = rp;
	struct shmring_config cfg = ring_cfg(p);
	for (int c = 0; c < 2; c++) {
		snprintf(rp->name[c], sizeof(rp->name[c]), "/shmring-bench-%d-%d-%d", (int)getpid(),
			 p->tag, c);
		int rc = shmring_create(rp->name[c], &cfg, &rp->h[c]);
		if (rc) {
			snprintf(p->row->reason, sizeof(p->row->reason), "shmring_create: %s",
				 shmring_last_error()[0] ? shmring_last_error() : shmring_strerror(rc));
			/* A hugepage row on a host without reserved hugepages is skipped, not failed. */
			return (cfg.flags & SHMRING_F_HUGEPAGE) ? ROW_SKIPPED : rc;
		}
	}
	struct shmring_info info;
	if (shmring_info(rp->h[0], &info) == 0) {
		size_t len = strlen(p->row->mode);
		snprintf(p->row->mode + len, sizeof(p->row->mode) - len, "%s%s %zuk%s",
			 len ? ", " : "", backing_name(info.backing), info.page_size / 1024,
			 info.locked ? "" : " unlocked");
	}
	return 0;
}

void ring_attached(struct plan *p)
{
	struct ring_parent *rp = p->state;
	for (int c = 0; c < 2; c++) {
		shmring_close(rp->h[c]); /* the creator's close unlinks the name */
		rp->h[c] = NULL;
	}
}

void ring_teardown(struct plan *p)
{
	struct ring_parent *rp = p->state;
	if (!rp)
		return;
	ring_attached(p);
	free(rp);
	p->state = NULL;
}

int ring_init(struct worker *w)
{
	struct ring_parent *rp = w->plan->state;
	struct shmring_config expect = ring_cfg(w->plan);
	expect.flags &= SHMRING_F_BLOCKING | SHMRING_F_HUGEPAGE;
	for (int c = 0; c < 2; c++) {
		/* The parent's creator handles were copied by fork: never close those here. */
		int rc = shmring_attach(rp->name[c], &expect, ATTACH_BOUND_NS, &g_h[c]);
		if (rc)
			return worker_fail(w, rc, "attach %s: %s", rp->name[c], shmring_last_error());
		if ((expect.flags & SHMRING_F_BLOCKING) && w->plan->ops == &shmring_wait_ops)
			(void)shmring_set_spin_ns(g_h[c], 0);
	}
	return 0;
}

int ring_error(struct worker *w, int rc, const char *what)
{
	return worker_fail(w, rc, "%s: %s (%s)", what, shmring_strerror(rc), shmring_last_error());
}

static int spin_send(struct worker *w, int chan, const void *msg)
{
	int rc;
	while ((rc = shmring_try_push(g_h[chan], msg)) == -EAGAIN)
		cpu_pause();
	return rc ? ring_error(w, rc, "try_push") : 0;
}

static int spin_recv(struct worker *w, int chan, void *msg)
{
	int rc;
	while ((rc = shmring_try_pop(g_h[chan], msg)) == -EAGAIN)
		cpu_pause();
	return rc ? ring_error(w, rc, "try_pop") : 0;
}

static int wait_send(struct worker *w, int chan, const void *msg)
{
	int rc = shmring_push_wait(g_h[chan], msg, WAIT_BOUND_NS);
	return rc ? ring_error(w, rc, "push_wait") : 0;
}

static int wait_recv(struct worker *w, int chan, void *msg)
{
	int rc = shmring_pop_wait(g_h[chan], msg, WAIT_BOUND_NS);
	return rc ? ring_error(w, rc, "pop_wait") : 0;
}

static int spin_phase(struct worker *w, enum phase ph)
{
	return run_phase(w, ph, spin_send, spin_recv, g_msg_a, g_msg_b);
}

static int wait_phase(struct worker *w, enum phase ph)
{
	return run_phase(w, ph, wait_send, wait_recv, g_msg_a, g_msg_b);
}

const struct mech_ops shmring_spin_ops = {
	.setup = ring_setup,
	.attached = ring_attached,
	.teardown = ring_teardown,
	.init = ring_init,
	.phase = spin_phase,
};

const struct mech_ops shmring_wait_ops = {
	.setup = ring_setup,
	.attached = ring_attached,
	.teardown = ring_teardown,
	.init = ring_init,
	.phase = wait_phase,
};

/* ------------------------------------------------ the textbook ring */

struct tb_parent {
	void *mem;
	size_t len, one;
};

static struct tb_end g_tb[2];

static int tb_setup(struct plan *p)
{
	struct tb_parent *tp = calloc(1, sizeof(*tp));
	if (!tp)
		return -ENOMEM;
	p->state = tp;
	tp->one = (tb_bytes(p->size, g_opt.capacity, p->param) + 4095) / 4096 * 4096;
	tp->len = 2 * tp->one;
	tp->mem = shared_alloc(tp->len);
	if (!tp->mem)
		return -ENOMEM;
	for (int c = 0; c < 2; c++)
		tb_init((struct tb_ring *)((char *)tp->mem + c * tp->one));
	snprintf(p->row->mode, sizeof(p->row->mode), "spin, anon shm 4k%s",
		 p->param ? ", seq word per slot" : "");
	return 0;
}

static void tb_teardown(struct plan *p)
{
	struct tb_parent *tp = p->state;
	if (!tp)
		return;
	shared_free(tp->mem, tp->len);
	free(tp);
	p->state = NULL;
}

static int tb_worker_init(struct worker *w)
{
	struct tb_parent *tp = w->plan->state;
	for (int c = 0; c < 2; c++)
		tb_end_init(&g_tb[c], (struct tb_ring *)((char *)tp->mem + c * tp->one), w->plan->size,
			    g_opt.capacity, w->plan->param);
	return 0;
}

static int tb_send(struct worker *w, int chan, const void *msg)
{
	(void)w;
	while (tb_push(&g_tb[chan], msg) == -EAGAIN)
		cpu_pause();
	return 0;
}

static int tb_recv(struct worker *w, int chan, void *msg)
{
	(void)w;
	while (tb_pop(&g_tb[chan], msg) == -EAGAIN)
		cpu_pause();
	return 0;
}

static int tb_phase(struct worker *w, enum phase ph)
{
	return run_phase(w, ph, tb_send, tb_recv, g_msg_a, g_msg_b);
}

const struct mech_ops textbook_ops = {
	.setup = tb_setup,
	.teardown = tb_teardown,
	.init = tb_worker_init,
	.phase = tb_phase,
};

/* The slot-sequence experiment: same memory set-up (param 1), its own push and pop. */
static int seq_send(struct worker *w, int chan, const void *msg)
{
	(void)w;
	while (seq_push(&g_tb[chan], msg) == -EAGAIN)
		cpu_pause();
	return 0;
}

static int seq_recv(struct worker *w, int chan, void *msg)
{
	(void)w;
	while (seq_pop(&g_tb[chan], msg) == -EAGAIN)
		cpu_pause();
	return 0;
}

static int seq_phase(struct worker *w, enum phase ph)
{
	return run_phase(w, ph, seq_send, seq_recv, g_msg_a, g_msg_b);
}

const struct mech_ops slotseq_ops = {
	.setup = tb_setup,
	.teardown = tb_teardown,
	.init = tb_worker_init,
	.phase = seq_phase,
};
