/*
 * strategy.c - one producer of the MPSC demo (see gateway.c). Run several,
 * each with its own --id.
 *
 * Attaches to the gateway's ring (waiting up to --attach-timeout for it to
 * appear), sends --orders orders numbered 0, 1, 2, ... and a DONE message
 * carrying the count. When the ring is full it calls sched_yield(), so that
 * several strategies and the gateway share 2 CPUs without starving each
 * other, and gives up after --stall-timeout seconds of a full ring. On
 * SIGINT/SIGTERM it stops, tells the gateway with an ABORT message (so the
 * gateway does not wait for the rest) and exits 128 + signal.
 *
 *   strategy --id K [--orders 100000] [--name /shmring_demo_orders]
 *            [--attach-timeout 10] [--stall-timeout 10]
 */
#include <getopt.h>
#include <stdbool.h>

#include "demo_common.h"

static const char *prog = "strategy";

struct options {
	const char *name;
	uint32_t id;
	bool have_id;
	uint64_t orders;
	uint64_t attach_ns;
	uint64_t stall_ns;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s --id K [options]\n"
		"  --id K               this strategy's id, 0..%u (required)\n"
		"  --orders N           orders to send (default 100000)\n"
		"  --name NAME          ring name (default /shmring_demo_orders)\n"
		"  --attach-timeout S   seconds to wait for the gateway's ring (default 10)\n"
		"  --stall-timeout S    seconds a full ring may block a push (default 10)\n",
		prog, ORDER_MAX_STRATEGIES - 1);
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "id", required_argument, NULL, 'I' },
		{ "orders", required_argument, NULL, 'o' },
		{ "name", required_argument, NULL, 'n' },
		{ "attach-timeout", required_argument, NULL, 'a' },
		{ "stall-timeout", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*o = (struct options){ .name = "/shmring_demo_orders", .orders = 100000,
			       .attach_ns = 10 * DEMO_NS_PER_S, .stall_ns = 10 * DEMO_NS_PER_S };
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'I':
			o->id = (uint32_t)demo_parse_u64(prog, "--id", optarg, 0, ORDER_MAX_STRATEGIES - 1);
			o->have_id = true;
			break;
		case 'o': o->orders = demo_parse_u64(prog, "--orders", optarg, 0, 1ull << 40); break;
		case 'n': o->name = optarg; break;
		case 'a': o->attach_ns = demo_parse_u64(prog, "--attach-timeout", optarg, 0, 3600) * DEMO_NS_PER_S; break;
		case 's': o->stall_ns = demo_parse_u64(prog, "--stall-timeout", optarg, 1, 3600) * DEMO_NS_PER_S; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc || !o->have_id) {
		usage(stderr);
		exit(2);
	}
}

/*
 * Pushes @m, yielding the CPU while the ring is full. Returns 0; -EINTR when a
 * signal asked us to stop (only if @stoppable); -ETIMEDOUT when the ring
 * stayed full for @stall_ns; or the library's error.
 */
static int push_bounded(struct shmring *r, const struct order_msg *m, uint64_t stall_ns,
			bool stoppable)
{
	uint64_t deadline = 0;
	int rc;

	while ((rc = shmring_try_push(r, m)) == -EAGAIN) {
		uint64_t now;

		if (stoppable && demo_stop)
			return -EINTR;
		sched_yield();
		now = demo_now_ns();
		if (deadline == 0)
			deadline = now + stall_ns;
		else if (now >= deadline)
			return -ETIMEDOUT;
	}
	return rc;
}

static void order_fill(struct order_msg *m, uint32_t id, uint32_t type, uint64_t seq)
{
	memset(m, 0, sizeof(*m));
	m->ts_ns = demo_now_ns();
	m->seq = seq;
	m->strategy = id;
	m->type = type;
	m->side = (uint32_t)(seq & 1);
	m->qty = 100 * (1 + (uint32_t)(seq % 10));
	m->price = 1000000 + (int64_t)((seq * 7 + id) % 500) * 100;
	m->check = demo_mix64(id, seq);
}

static void report_push(int rc)
{
	if (rc == -ETIMEDOUT)
		fprintf(stderr, "%s: the ring stayed full: is the gateway still running?\n", prog);
	else
		demo_report(prog, "shmring_try_push", rc);
}

/* Sends the orders and the closing message. Returns the exit status. */
static int run(struct shmring *r, const struct options *o)
{
	struct order_msg m;
	uint64_t seq;
	int rc;

	for (seq = 0; seq < o->orders; seq++) {
		order_fill(&m, o->id, ORDER_NEW, seq);
		rc = push_bounded(r, &m, o->stall_ns, true);
		if (rc == -EINTR)
			break;
		if (rc < 0) {
			report_push(rc);
			return 1;
		}
	}
	if (demo_stop) {
		/* Tell the gateway we stop here; bounded, so a gone gateway cannot hold us. */
		order_fill(&m, o->id, ORDER_ABORT, seq);
		rc = push_bounded(r, &m, DEMO_NS_PER_S / 10, false);
		printf("%s %" PRIu32 ": stopped by signal %d after %" PRIu64 " orders%s\n", prog,
		       o->id, (int)demo_stop, seq, rc == 0 ? "" : " (gateway not told)");
		return demo_stop_status();
	}
	order_fill(&m, o->id, ORDER_DONE, seq);
	rc = push_bounded(r, &m, o->stall_ns, false);
	if (rc < 0) {
		report_push(rc);
		return 1;
	}
	printf("%s %" PRIu32 ": sent %" PRIu64 " orders\n", prog, o->id, seq);
	return 0;
}

int main(int argc, char **argv)
{
	struct shmring_config expect;
	struct options o;
	struct shmring *r = NULL;
	int rc, status;

	parse_options(argc, argv, &o);
	setvbuf(stdout, NULL, _IOLBF, 0);
	demo_install_signals();

	memset(&expect, 0, sizeof(expect));
	expect.kind = SHMRING_MPSC;
	expect.msg_size = sizeof(struct order_msg); /* capacity 0: whatever the gateway chose */
	rc = demo_attach(o.name, &expect, o.attach_ns, &r);
	if (rc == -EINTR)
		return demo_stop_status();
	if (rc < 0) {
		demo_report(prog, "shmring_attach", rc);
		if (rc == -ENOENT)
			fprintf(stderr, "%s: start the gateway first (it creates %s)\n", prog, o.name);
		return 1;
	}

	status = run(r, &o);

	rc = shmring_close(r);
	if (rc < 0) {
		demo_report(prog, "shmring_close", rc);
		if (status == 0)
			status = 1;
	}
	return status;
}
