/*
 * feed_handler.c - the producer half of the SPSC demo (see processor.c).
 *
 * Creates the ring (SPSC, 64-byte messages), waits for the processor to show
 * up, then sends in two phases:
 *   1. latency: --latency-msgs messages, each sent at least --gap-ns (2 us)
 *      after the previous one and only once the ring is empty again, and
 *      stamped with CLOCK_MONOTONIC just before the push. So what the
 *      processor measures is the one-way latency of the ring, not time spent
 *      queueing behind earlier messages.
 *   2. throughput: --msgs messages back to back.
 * and ends with an END message carrying the number sent.
 *
 * Handshake: the API has no "someone attached" notification, so the first
 * message is a HELLO and the feed handler waits (bounded, --wait-timeout)
 * until the ring is empty again: only a processor that attached and popped it
 * can empty it. The processor may be started before or after the feed handler;
 * it attaches with a timeout and waits for the ring to appear.
 *
 * Every wait is bounded and checks the stop flag, so SIGINT/SIGTERM end the
 * program cleanly: it closes the ring, and as the creator that removes the
 * name.
 *
 *   feed_handler [--name /shmring_demo_feed] [--latency-msgs 200000]
 *                [--msgs 10000000] [--gap-ns 2000] [--capacity 4096]
 *                [--cpu 0] [--wait-timeout 10] [--stall-timeout 5]
 *   feed_handler --unlink [--name ...]  (remove a ring a crashed run left behind)
 */
#include <getopt.h>
#include <stdbool.h>

#include "demo_common.h"

static const char *prog = "feed_handler";

/* With fewer than two CPUs a busy-spin only delays the peer: yield instead. */
static bool yield_mode;

struct options {
	const char *name;
	bool unlink_only; /* --unlink: remove a leftover ring and exit */
	uint64_t latency_msgs;
	uint64_t msgs;
	uint64_t gap_ns;
	uint32_t capacity;
	int cpu;
	uint64_t wait_ns;  /* for the processor to take the HELLO */
	uint64_t stall_ns; /* the most a push may wait on a full ring */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [options]\n"
		"  --name NAME          ring name (default /shmring_demo_feed)\n"
		"  --latency-msgs N     paced messages for the latency phase (default 200000)\n"
		"  --msgs N             messages for the throughput phase (default 10000000)\n"
		"  --gap-ns NS          pause between latency-phase messages (default 2000)\n"
		"  --capacity N         ring capacity, a power of two (default 4096)\n"
		"  --cpu K              pin to CPU K, -1 for none (default 0)\n"
		"  --wait-timeout S     seconds to wait for the processor (default 10)\n"
		"  --stall-timeout S    seconds a full ring may block a push (default 5)\n"
		"  --unlink             only remove the ring's name (left by a crash) and exit\n",
		prog);
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "latency-msgs", required_argument, NULL, 'l' },
		{ "msgs", required_argument, NULL, 'm' },
		{ "gap-ns", required_argument, NULL, 'g' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "cpu", required_argument, NULL, 'C' },
		{ "wait-timeout", required_argument, NULL, 'w' },
		{ "stall-timeout", required_argument, NULL, 's' },
		{ "unlink", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*o = (struct options){ .name = "/shmring_demo_feed", .latency_msgs = 200000,
			       .msgs = 10000000, .gap_ns = 2000, .capacity = 4096, .cpu = 0,
			       .wait_ns = 10 * DEMO_NS_PER_S, .stall_ns = 5 * DEMO_NS_PER_S };
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': o->name = optarg; break;
		case 'l': o->latency_msgs = demo_parse_u64(prog, "--latency-msgs", optarg, 0, 1u << 30); break;
		case 'm': o->msgs = demo_parse_u64(prog, "--msgs", optarg, 0, 1ull << 40); break;
		case 'g': o->gap_ns = demo_parse_u64(prog, "--gap-ns", optarg, 0, 1000000000); break;
		case 'c': o->capacity = (uint32_t)demo_parse_u64(prog, "--capacity", optarg, 2, 1u << 30); break;
		case 'C': o->cpu = demo_parse_cpu(prog, optarg); break;
		case 'w': o->wait_ns = demo_parse_u64(prog, "--wait-timeout", optarg, 1, 3600) * DEMO_NS_PER_S; break;
		case 's': o->stall_ns = demo_parse_u64(prog, "--stall-timeout", optarg, 1, 3600) * DEMO_NS_PER_S; break;
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

static void md_fill(struct md_msg *m, uint32_t type, uint64_t seq, uint64_t ts)
{
	m->ts_ns = ts;
	m->seq = seq;
	m->type = type;
	m->symbol = (uint32_t)(seq % MD_SYMBOLS);
	m->bid_size = 100 + (uint32_t)(seq % 7);
	m->ask_size = 100 + (uint32_t)(seq % 11);
	m->bid = 1000000 + (int64_t)(seq % 1000) * 100;
	m->ask = m->bid + 500;
	m->aux[0] = demo_mix64(seq, type);
	m->aux[1] = 0;
}

/*
 * Pushes @m, spinning while the ring is full. Returns 0; -EINTR when a signal
 * asked us to stop; -ETIMEDOUT when the ring stayed full for @stall_ns (the
 * processor is gone or stuck); or the library's error.
 */
static int push_bounded(struct shmring *r, const struct md_msg *m, uint64_t stall_ns)
{
	uint64_t deadline = 0;
	unsigned int spins = 0;
	int rc;

	while ((rc = shmring_try_push(r, m)) == -EAGAIN) {
		if (yield_mode)
			sched_yield();
		else
			demo_cpu_relax();
		if ((++spins & 1023) != 0)
			continue;
		if (demo_stop)
			return -EINTR;
		if (deadline == 0)
			deadline = demo_now_ns() + stall_ns;
		else if (demo_now_ns() >= deadline)
			return -ETIMEDOUT;
	}
	return rc;
}

/* Reports a failed push, in words that say what it means here. */
static void report_push(int rc, const char *phase)
{
	if (rc == -ETIMEDOUT)
		fprintf(stderr, "%s: %s phase: the processor stopped taking messages: is it still "
			"running?\n", prog, phase);
	else if (rc != -EINTR)
		demo_report(prog, "shmring_try_push", rc);
}

/* Waits until the ring is empty, up to @timeout_ns. 0, -EINTR or -ETIMEDOUT. */
static int wait_empty(struct shmring *r, uint64_t timeout_ns)
{
	uint64_t deadline = demo_now_ns() + timeout_ns;

	while (!shmring_empty(r)) {
		if (demo_stop)
			return -EINTR;
		if (demo_now_ns() >= deadline)
			return -ETIMEDOUT;
		demo_sleep_ns(200000);
	}
	return 0;
}

/* Sends both phases and the END message. Returns the exit status. */
static int run(struct shmring *r, const struct options *o)
{
	struct md_msg m;
	uint64_t seq = 0, last, t0, t1;
	int rc;

	memset(&m, 0, sizeof(m));
	md_fill(&m, MD_HELLO, 0, demo_now_ns());
	m.aux[0] = o->latency_msgs;
	m.aux[1] = o->msgs;
	rc = push_bounded(r, &m, o->stall_ns);
	if (rc < 0) {
		report_push(rc, "hello");
		return demo_stop ? demo_stop_status() : 1;
	}
	printf("%s: waiting up to %" PRIu64 " s for the processor (processor --name %s)\n", prog,
	       o->wait_ns / DEMO_NS_PER_S, o->name);
	fflush(stdout);
	rc = wait_empty(r, o->wait_ns);
	if (rc == -EINTR)
		return demo_stop_status();
	if (rc < 0) {
		fprintf(stderr, "%s: no processor took the first message within %" PRIu64 " s\n",
			prog, o->wait_ns / DEMO_NS_PER_S);
		return 1;
	}

	printf("%s: processor attached; latency phase: %" PRIu64 " messages, one every %" PRIu64
	       " ns\n", prog, o->latency_msgs, o->gap_ns);
	fflush(stdout);
	last = demo_now_ns();
	for (uint64_t i = 0; i < o->latency_msgs; i++) {
		uint64_t now;

		if (demo_stop)
			goto stopped;
		/*
		 * Send when the gap has passed and the processor has taken the
		 * previous message: a message never queues behind another, even
		 * when the processor was descheduled for a while.
		 */
		for (;;) {
			if (yield_mode)
				sched_yield();
			now = demo_now_ns();
			if (now - last < o->gap_ns)
				continue;
			if (shmring_empty(r))
				break;
			if (now - last >= o->stall_ns) {
				rc = -ETIMEDOUT;
				goto push_failed;
			}
			if (demo_stop)
				goto stopped;
		}
		now = demo_now_ns(); /* the stamp: taken last, right before the push */
		md_fill(&m, MD_LATENCY, seq, now);
		rc = push_bounded(r, &m, o->stall_ns);
		if (rc < 0)
			goto push_failed;
		last = now;
		seq++;
	}

	printf("%s: throughput phase: %" PRIu64 " messages back to back\n", prog, o->msgs);
	fflush(stdout);
	t0 = demo_now_ns();
	for (uint64_t i = 0; i < o->msgs; i++) {
		if ((i & 0xffff) == 0 && demo_stop)
			goto stopped;
		md_fill(&m, MD_THROUGHPUT, seq, i == 0 ? demo_now_ns() : 0);
		rc = push_bounded(r, &m, o->stall_ns);
		if (rc < 0)
			goto push_failed;
		seq++;
	}
	t1 = demo_now_ns();

	md_fill(&m, MD_END, seq, demo_now_ns());
	rc = push_bounded(r, &m, o->stall_ns);
	if (rc < 0)
		goto push_failed;
	printf("%s: sent %" PRIu64 " messages; the throughput phase took %.3f s on this side\n", prog,
	       seq, (double)(t1 - t0) / 1e9);
	/* Close only once the processor has everything: then "done" means delivered. */
	rc = wait_empty(r, o->stall_ns);
	if (rc == -EINTR)
		return demo_stop_status();
	if (rc < 0) {
		fprintf(stderr, "%s: the processor did not drain the ring within %" PRIu64 " s\n",
			prog, o->stall_ns / DEMO_NS_PER_S);
		return 1;
	}
	return 0;

push_failed:
	report_push(rc, seq < o->latency_msgs ? "latency" : "throughput");
	if (rc != -EINTR)
		return 1;
stopped:
	/* Tell the processor the run ended early, so it need not wait for more. */
	md_fill(&m, MD_END, seq, demo_now_ns());
	(void)shmring_push_wait(r, &m, (int64_t)(DEMO_NS_PER_S / 10));
	printf("%s: stopped by signal %d after %" PRIu64 " messages\n", prog, (int)demo_stop, seq);
	return demo_stop_status();
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
	yield_mode = demo_allowed_cpus() < 2;
	if (yield_mode)
		printf("%s: note: fewer than 2 CPUs allowed; yielding instead of spinning\n", prog);
	demo_pin_cpu(prog, o.cpu);

	memset(&cfg, 0, sizeof(cfg));
	cfg.kind = SHMRING_SPSC;
	cfg.msg_size = sizeof(struct md_msg);
	cfg.capacity = o.capacity;
	rc = shmring_create(o.name, &cfg, &r);
	if (rc < 0) {
		demo_report(prog, "shmring_create", rc);
		if (rc == -EEXIST)
			fprintf(stderr, "%s: another feed_handler may be running; if none is, a crashed "
				"one left the name behind: remove it with --unlink\n", prog);
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
