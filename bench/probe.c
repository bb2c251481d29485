/*
 * probe.c - the physical limit: a bare cache-line ping-pong between the two
 * CPUs, used three ways:
 *
 *   - the "cache line" row: what any shared-memory IPC between these CPUs
 *     pays at least (one line to the other side and one back per round trip);
 *   - the placement probe before and after every row (probe_run), because on
 *     this VM the two vCPUs land on near or far physical cores and every
 *     shared-memory figure moves with that;
 *   - the clock check at start (probe_clock_skew): B writes its own TSC
 *     instead of echoing, which bounds the TSC offset between the CPUs.
 *
 * Layout: two 8-byte words, each on its own 64-byte-aligned line, 128 bytes
 * apart (adjacent-line prefetch would otherwise pair them), in a MAP_SHARED
 * anonymous mapping made before fork. A writes round i into its word and
 * spins (PAUSE) until B's word shows it back; B spins until A's word changes
 * and writes the value into its own. Release stores pair with the acquire
 * loads on the other side; nothing else is shared.
 */
#include <errno.h>
#include <stdio.h>

#include "bench.h"

struct phys_shm {
	_Alignas(BENCH_LINE) _Atomic uint64_t a;  /* written by A only */
	_Alignas(BENCH_LINE) _Atomic uint64_t b;  /* written by B only */
	_Alignas(BENCH_LINE) int64_t d_ab, d_ba;       /* clock check: minimum B-A and A-B */
};

static int64_t g_skew_ab, g_skew_ba;

/*
 * One mapping for the whole run. The cost of moving a line between the two
 * CPUs depends on its physical address as well as on where the vCPUs sit
 * (on this VM 210-280 ns one-way across 16 lines at one placement), so every
 * probe uses the same two lines: then a change between probes is a change of
 * placement, not of address.
 */
static struct phys_shm *g_lines;

static int phys_setup(struct plan *p)
{
	if (!g_lines)
		g_lines = shared_alloc(sizeof(*g_lines));
	if (!g_lines)
		return -ENOMEM;
	atomic_store(&g_lines->a, 0);
	atomic_store(&g_lines->b, 0);
	g_lines->d_ab = g_lines->d_ba = 0;
	p->state = g_lines;
	return 0;
}

static void phys_teardown(struct plan *p)
{
	struct phys_shm *s = p->state;
	if (!s)
		return;
	g_skew_ab = s->d_ab;
	g_skew_ba = s->d_ba;
	p->state = NULL;
}

static int phys_init(struct worker *w)
{
	w->priv = w->plan->state;
	return 0;
}

static int phys_a(struct worker *w, struct phys_shm *s, bool stamp)
{
	uint64_t n = w->plan->pp_msgs, warm = w->plan->pp_warm, kept = 0;
	int64_t d_ab = INT64_MAX, d_ba = INT64_MAX;
	uint64_t prev_b = 0;
	uint64_t t_prev = clk_now(), until = phase_until(w), warm_end = warm_until(w);

	for (uint64_t i = 1; i <= n; i++) {
		atomic_store_explicit(&s->a, i, memory_order_release); /* pairs with B's acquire */
		uint64_t v;
		if (stamp) {
			while ((v = atomic_load_explicit(&s->b, memory_order_acquire)) == prev_b)
				cpu_pause();
			prev_b = v;
		} else {
			while (atomic_load_explicit(&s->b, memory_order_acquire) != i)
				cpu_pause();
		}
		uint64_t t = clk_now();
		if (stamp) {
			/* t_prev <= v <= t if both TSCs agree: the offset lies between the two. */
			if ((int64_t)(v - t_prev) < d_ab)
				d_ab = (int64_t)(v - t_prev);
			if ((int64_t)(t - v) < d_ba)
				d_ba = (int64_t)(t - v);
		}
		if ((i > warm || t > warm_end) && kept < w->sample_cap)
			w->samples[kept++] = (int64_t)(t - t_prev);
		t_prev = t;
		if (t > until && i < n) {
			mark_truncated(w, PH_PINGPONG);
			atomic_store_explicit(&s->a, PP_STOP, memory_order_release);
			break;
		}
	}
	w->sh->res[w->id].nsamples = kept;
	if (stamp) {
		s->d_ab = d_ab;
		s->d_ba = d_ba;
	}
	return 0;
}

static int phys_b(struct worker *w, struct phys_shm *s, bool stamp)
{
	uint64_t n = w->plan->pp_msgs;

	for (uint64_t i = 1; i <= n; i++) {
		uint64_t v;
		while ((v = atomic_load_explicit(&s->a, memory_order_acquire)) != i) { /* pairs with A's release */
			if (v == PP_STOP)
				return 0; /* A stopped at its time budget */
			cpu_pause();
		}
		atomic_store_explicit(&s->b, stamp ? clk_now() : i, memory_order_release);
	}
	return 0;
}

static int phys_phase(struct worker *w, enum phase ph)
{
	if (ph != PH_PINGPONG || w->idx != 0)
		return 0;
	bool stamp = w->plan->param != 0;
	return w->role == ROLE_PROD ? phys_a(w, w->priv, stamp) : phys_b(w, w->priv, stamp);
}

const struct mech_ops phys_ops = {
	.setup = phys_setup,
	.teardown = phys_teardown,
	.init = phys_init,
	.phase = phys_phase,
};

static int run_pingpong(uint64_t round_trips, unsigned long stamp, struct row *row)
{
	struct plan p = {
		.row = row,
		.ops = &phys_ops,
		.size = 8,
		.producers = 1,
		.consumers = 1,
		.pp_warm = round_trips / 10 + 100,
		.param = stamp,
		/*
		 * A probe takes milliseconds. On a loaded machine (or with both
		 * sides on one CPU) it stops at 1 s with what it has.
		 */
		.timeout_s = 5,
		.budget_s = 1,
	};
	p.pp_msgs = p.pp_warm + round_trips;
	return harness_run(&p);
}

/* A short cache-line ping-pong: its one-way p50 in ns. */
int probe_run(uint64_t round_trips, double *p50_ns)
{
	struct row row = {0};
	int rc = run_pingpong(round_trips, 0, &row);
	*p50_ns = rc == 0 ? row.pp.p50 : 0;
	return rc;
}

/*
 * With B stamping its clock, A sees t_a0 <= t_b <= t_a1 if the clocks agree.
 * min(t_b - t_a0) = one-way + offset, min(t_a1 - t_b) = one-way - offset (at
 * best): the offset is half their difference, known to within half their sum.
 */
int probe_clock_skew(void)
{
	struct row row = {0};
	int rc = run_pingpong(20000, 1, &row);
	if (rc)
		return rc;
	g_clk.skew_ns = ticks_to_ns((double)(g_skew_ab - g_skew_ba) / 2);
	g_clk.skew_bound_ns = ticks_to_ns((double)(g_skew_ab + g_skew_ba) / 2);
	g_clk.skew_checked = true;
	return 0;
}
