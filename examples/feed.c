/*
 * feed.c - one producer of the MPMC demo (see worker.c and workers_demo.sh).
 * Run several, each with its own --id.
 *
 * Attaches to the workers' ring (waiting up to --attach-timeout for it to
 * appear) and sends --msgs work items numbered 0, 1, 2, ... Then it prints
 * what it sent as one line the demo script tallies against the workers':
 *
 *   feed <id> sent <count> seqsum <sum of seq> hashsum <sum of low 32 bits of check>
 *
 * (sums of at most 2^30 items, so they fit in a signed 64-bit shell integer).
 *
 * With --stop-workers N it sends no data, only N STOP messages: one for each
 * worker. The demo runs it after every feed has finished, so the STOPs queue
 * behind all the data and each worker takes exactly one.
 *
 * When the ring is full it calls sched_yield() (several processes share 2
 * CPUs) and gives up after --stall-timeout seconds. SIGINT/SIGTERM stop it
 * cleanly (exit 128 + signal).
 *
 *   feed --id K [--msgs 100000] [--name /shmring_demo_work]
 *        [--attach-timeout 10] [--stall-timeout 10]
 *   feed --stop-workers N [--name ...]
 */
#include <getopt.h>
#include <stdbool.h>

#include "demo_common.h"

static const char *prog = "feed";

struct options {
	const char *name;
	uint32_t id;
	bool have_id;
	uint64_t msgs;
	uint32_t stop_workers; /* > 0: send only this many STOPs */
	uint64_t attach_ns;
	uint64_t stall_ns;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s --id K [options]   or   %s --stop-workers N [options]\n"
		"  --id K               this feed's id, 0..%u\n"
		"  --msgs N             work items to send (default 100000, at most 2^30)\n"
		"  --stop-workers N     send N STOP messages (one per worker) and nothing else\n"
		"  --name NAME          ring name (default /shmring_demo_work)\n"
		"  --attach-timeout S   seconds to wait for the ring (default 10)\n"
		"  --stall-timeout S    seconds a full ring may block a push (default 10)\n",
		prog, prog, WORK_MAX_FEEDS - 1);
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "id", required_argument, NULL, 'I' },
		{ "msgs", required_argument, NULL, 'm' },
		{ "stop-workers", required_argument, NULL, 'S' },
		{ "name", required_argument, NULL, 'n' },
		{ "attach-timeout", required_argument, NULL, 'a' },
		{ "stall-timeout", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*o = (struct options){ .name = "/shmring_demo_work", .msgs = 100000,
			       .attach_ns = 10 * DEMO_NS_PER_S, .stall_ns = 10 * DEMO_NS_PER_S };
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'I':
			o->id = (uint32_t)demo_parse_u64(prog, "--id", optarg, 0, WORK_MAX_FEEDS - 1);
			o->have_id = true;
			break;
		case 'm': o->msgs = demo_parse_u64(prog, "--msgs", optarg, 0, 1u << 30); break;
		case 'S': o->stop_workers = (uint32_t)demo_parse_u64(prog, "--stop-workers", optarg, 1, 1024); break;
		case 'n': o->name = optarg; break;
		case 'a': o->attach_ns = demo_parse_u64(prog, "--attach-timeout", optarg, 0, 3600) * DEMO_NS_PER_S; break;
		case 's': o->stall_ns = demo_parse_u64(prog, "--stall-timeout", optarg, 1, 3600) * DEMO_NS_PER_S; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc || o->have_id == (o->stop_workers > 0)) {
		usage(stderr);
		exit(2);
	}
}

/*
 * Pushes @m, yielding the CPU while the ring is full. Returns 0; -EINTR when a
 * signal asked us to stop; -ETIMEDOUT when the ring stayed full for
 * @stall_ns; or the library's error.
 */
static int push_bounded(struct shmring *r, const struct work_msg *m, uint64_t stall_ns)
{
	uint64_t deadline = 0;
	int rc;

	while ((rc = shmring_try_push(r, m)) == -EAGAIN) {
		uint64_t now;

		if (demo_stop)
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

static int report_push(int rc, uint64_t sent)
{
	if (rc == -EINTR) {
		printf("%s: stopped by signal %d after %" PRIu64 " messages\n", prog, (int)demo_stop,
		       sent);
		return demo_stop_status();
	}
	if (rc == -ETIMEDOUT)
		fprintf(stderr, "%s: the ring stayed full: are the workers still running?\n", prog);
	else
		demo_report(prog, "shmring_try_push", rc);
	return 1;
}

/* Sends the work items and prints the tally line. Returns the exit status. */
static int send_items(struct shmring *r, const struct options *o)
{
	struct work_msg m;
	uint64_t seqsum = 0, hashsum = 0, seq;

	memset(&m, 0, sizeof(m));
	for (seq = 0; seq < o->msgs; seq++) {
		int rc;

		m.seq = seq;
		m.feed = o->id;
		m.type = WORK_ITEM;
		m.check = demo_mix64(o->id, seq);
		m.payload[0] = seq * 3 + o->id; /* something for a worker to "work" on */
		rc = push_bounded(r, &m, o->stall_ns);
		if (rc < 0)
			return report_push(rc, seq);
		seqsum += seq;
		hashsum += m.check & 0xffffffffu;
	}
	printf("feed %" PRIu32 " sent %" PRIu64 " seqsum %" PRIu64 " hashsum %" PRIu64 "\n", o->id,
	       seq, seqsum, hashsum);
	return 0;
}

/* Sends one STOP per worker. Returns the exit status. */
static int send_stops(struct shmring *r, const struct options *o)
{
	struct work_msg m;

	memset(&m, 0, sizeof(m));
	m.type = WORK_STOP;
	for (uint32_t i = 0; i < o->stop_workers; i++) {
		int rc = push_bounded(r, &m, o->stall_ns);

		if (rc < 0)
			return report_push(rc, i);
	}
	printf("%s: sent %" PRIu32 " STOP messages\n", prog, o->stop_workers);
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
	expect.kind = SHMRING_MPMC;
	expect.msg_size = sizeof(struct work_msg); /* capacity 0: whatever the creator chose */
	rc = demo_attach(o.name, &expect, o.attach_ns, &r);
	if (rc == -EINTR)
		return demo_stop_status();
	if (rc < 0) {
		demo_report(prog, "shmring_attach", rc);
		if (rc == -ENOENT)
			fprintf(stderr, "%s: start a worker with --create first (it creates %s)\n",
				prog, o.name);
		return 1;
	}

	status = o.stop_workers ? send_stops(r, &o) : send_items(r, &o);

	rc = shmring_close(r);
	if (rc < 0) {
		demo_report(prog, "shmring_close", rc);
		if (status == 0)
			status = 1;
	}
	return status;
}
