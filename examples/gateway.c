/*
 * gateway.c - the consumer of the MPSC demo: several strategy processes
 * (strategy.c) send orders into one ring, this gateway takes them out.
 *
 * Creates /shmring_demo_orders (MPSC, 64-byte orders) and pops until every one
 * of --strategies strategies has said it is done, checking on the way that
 * each strategy's orders arrive once and in its own order (seq 0, 1, 2, ...),
 * undamaged, and that the count each strategy reports at the end is the count
 * received. Exit status 0 when all of that holds, 1 otherwise.
 *
 * Several processes share 2 CPUs here, so nobody busy-spins on an empty or
 * full ring: the gateway calls sched_yield() when the ring is empty, and gives
 * up after --idle-timeout seconds without an order. SIGINT/SIGTERM stop it
 * cleanly; as the creator, its close removes the name.
 *
 *   gateway [--name /shmring_demo_orders] [--strategies 3] [--capacity 4096]
 *           [--idle-timeout 10]
 *   gateway --unlink [--name ...]    (remove a ring a crashed run left behind)
 */
#include <getopt.h>
#include <stdbool.h>

#include "demo_common.h"

static const char *prog = "gateway";

struct options {
	const char *name;
	bool unlink_only; /* --unlink: remove a leftover ring and exit */
	uint32_t strategies;
	uint32_t capacity;
	uint64_t idle_ns;
};

/* What the gateway knows of one strategy. */
struct strategy_state {
	uint64_t next_seq; /* the seq its next order must carry = orders received */
	bool finished;     /* DONE or ABORT received */
	bool aborted;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [options]\n"
		"  --name NAME          ring name (default /shmring_demo_orders)\n"
		"  --strategies N       strategies to wait for, ids 0..N-1 (default 3, at most %u)\n"
		"  --capacity N         ring capacity, a power of two (default 4096)\n"
		"  --idle-timeout S     seconds without an order before giving up (default 10)\n"
		"  --unlink             only remove the ring's name (left by a crash) and exit\n",
		prog, ORDER_MAX_STRATEGIES);
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "strategies", required_argument, NULL, 's' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "idle-timeout", required_argument, NULL, 'i' },
		{ "unlink", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*o = (struct options){ .name = "/shmring_demo_orders", .strategies = 3, .capacity = 4096,
			       .idle_ns = 10 * DEMO_NS_PER_S };
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': o->name = optarg; break;
		case 's': o->strategies = (uint32_t)demo_parse_u64(prog, "--strategies", optarg, 1, ORDER_MAX_STRATEGIES); break;
		case 'c': o->capacity = (uint32_t)demo_parse_u64(prog, "--capacity", optarg, 2, 1u << 30); break;
		case 'i': o->idle_ns = demo_parse_u64(prog, "--idle-timeout", optarg, 1, 3600) * DEMO_NS_PER_S; break;
		case 'U': o->unlink_only = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc) {
		usage(stderr);
		exit(2);
	}
}

/*
 * Pops one order, yielding the CPU while the ring is empty. Returns 0;
 * -EINTR when a signal asked us to stop; -ETIMEDOUT after @idle_ns without an
 * order; or the library's error.
 */
static int pop_bounded(struct shmring *r, struct order_msg *m, uint64_t idle_ns)
{
	uint64_t deadline = 0;
	int rc;

	while ((rc = shmring_try_pop(r, m)) == -EAGAIN) {
		uint64_t now;

		if (demo_stop)
			return -EINTR;
		sched_yield();
		now = demo_now_ns();
		if (deadline == 0)
			deadline = now + idle_ns;
		else if (now >= deadline)
			return -ETIMEDOUT;
	}
	return rc;
}

/* Checks one message against what strategy m->strategy sent before. */
static bool check_order(const struct order_msg *m, struct strategy_state *st, uint32_t nstrat)
{
	struct strategy_state *s;

	if (m->strategy >= nstrat) {
		fprintf(stderr, "%s: order from unknown strategy %" PRIu32 " (expecting ids 0..%" PRIu32
			")\n", prog, m->strategy, nstrat - 1);
		return false;
	}
	s = &st[m->strategy];
	if (m->check != demo_mix64(m->strategy, m->seq)) {
		fprintf(stderr, "%s: DAMAGED order from strategy %" PRIu32 " seq %" PRIu64 "\n", prog,
			m->strategy, m->seq);
		return false;
	}
	if (s->finished) {
		fprintf(stderr, "%s: strategy %" PRIu32 " sent seq %" PRIu64 " after it finished\n",
			prog, m->strategy, m->seq);
		return false;
	}
	if (m->seq != s->next_seq) {
		fprintf(stderr, "%s: ORDER ERROR: strategy %" PRIu32 " expected seq %" PRIu64
			", got %" PRIu64 " (%s)\n", prog, m->strategy, s->next_seq, m->seq,
			m->seq < s->next_seq ? "duplicate or reordered" : "orders lost");
		return false;
	}
	switch (m->type) {
	case ORDER_NEW:
		s->next_seq++;
		return true;
	case ORDER_DONE:
	case ORDER_ABORT:
		/* seq == next_seq (checked above): the count it sent is the count we got */
		s->finished = true;
		s->aborted = m->type == ORDER_ABORT;
		return true;
	default:
		fprintf(stderr, "%s: unknown message type %" PRIu32 " from strategy %" PRIu32 "\n",
			prog, m->type, m->strategy);
		return false;
	}
}

/* Receives until every strategy finished. Returns the exit status. */
static int run(struct shmring *r, const struct options *o)
{
	struct strategy_state st[ORDER_MAX_STRATEGIES];
	struct order_msg m;
	uint64_t total = 0, t0 = 0, t1;
	uint32_t finished = 0;
	int status = 0;

	memset(st, 0, sizeof(st));
	printf("%s: waiting for orders from %" PRIu32 " strategies\n", prog, o->strategies);
	while (finished < o->strategies) {
		int rc = pop_bounded(r, &m, o->idle_ns);

		if (rc == -EINTR) {
			printf("%s: stopped by signal %d after %" PRIu64 " orders\n", prog,
			       (int)demo_stop, total);
			return demo_stop_status();
		}
		if (rc == -ETIMEDOUT) {
			fprintf(stderr, "%s: no order for %" PRIu64 " s; %" PRIu32 " of %" PRIu32
				" strategies finished\n", prog, o->idle_ns / DEMO_NS_PER_S, finished,
				o->strategies);
			status = 1;
			break;
		}
		if (rc < 0) {
			demo_report(prog, "shmring_try_pop", rc);
			return 1;
		}
		if (t0 == 0)
			t0 = demo_now_ns();
		if (!check_order(&m, st, o->strategies))
			return 1;
		if (m.type == ORDER_NEW)
			total++;
		else
			finished++;
	}
	t1 = demo_now_ns();

	for (uint32_t i = 0; i < o->strategies; i++) {
		printf("%s: strategy %" PRIu32 ": %" PRIu64 " orders, in order, %s\n", prog, i,
		       st[i].next_seq,
		       !st[i].finished ? "NOT FINISHED" : st[i].aborted ? "STOPPED EARLY" : "done");
		if (!st[i].finished || st[i].aborted)
			status = 1;
	}
	printf("%s: %" PRIu64 " orders from %" PRIu32 " strategies in %.3f s (%.2f M orders/s): %s\n",
	       prog, total, o->strategies, (double)(t1 - (t0 ? t0 : t1)) / 1e9,
	       t1 > t0 && t0 ? (double)total / ((double)(t1 - t0) / 1e9) / 1e6 : 0.0,
	       status == 0 ? "all checks passed" : "FAILED");
	return status;
}

int main(int argc, char **argv)
{
	struct shmring_config cfg;
	struct options o;
	struct shmring *r = NULL;
	int rc, status;

	parse_options(argc, argv, &o);
	if (o.unlink_only)
		return demo_unlink(prog, o.name);
	setvbuf(stdout, NULL, _IOLBF, 0);
	demo_install_signals();

	memset(&cfg, 0, sizeof(cfg));
	cfg.kind = SHMRING_MPSC;
	cfg.msg_size = sizeof(struct order_msg);
	cfg.capacity = o.capacity;
	rc = shmring_create(o.name, &cfg, &r);
	if (rc < 0) {
		demo_report(prog, "shmring_create", rc);
		if (rc == -EEXIST)
			fprintf(stderr, "%s: another gateway may be running; if none is, a crashed one "
				"left the name behind: remove it with --unlink\n", prog);
		return 1;
	}
	demo_print_info(prog, o.name, r);

	status = run(r, &o);

	rc = shmring_close(r); /* the creator's close removes the name */
	if (rc < 0) {
		demo_report(prog, "shmring_close", rc);
		if (status == 0)
			status = 1;
	}
	return status;
}
