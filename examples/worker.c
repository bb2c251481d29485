/*
 * worker.c - one consumer of the MPMC demo (see feed.c and workers_demo.sh).
 * Run several, each with its own --id; exactly one with --create.
 *
 * The --create worker makes /shmring_demo_work (MPMC, 64-byte items); the
 * others attach, waiting up to --attach-timeout for it. Each worker pops
 * items until it takes a STOP message, checking every item's payload and
 * that each feed's items reach this worker in increasing order (an MPMC ring
 * is FIFO: one consumer sees one producer's items in the order they were
 * pushed). Then it prints, for each feed it heard from, the line the demo
 * script sums over all workers and compares with what the feeds sent:
 *
 *   worker <id> feed <f> count <n> seqsum <sum of seq> hashsum <sum of low 32 bits>
 *   worker <id> total <n>
 *
 * When the ring is empty it calls sched_yield() (several processes share 2
 * CPUs), and gives up after --idle-timeout seconds without a message.
 * SIGINT/SIGTERM stop it cleanly (exit 128 + signal); the creator's close
 * removes the name, and the others keep their mapping until they close.
 *
 *   worker --id K [--create [--capacity 1024]] [--name /shmring_demo_work]
 *          [--attach-timeout 10] [--idle-timeout 20]
 *   worker --unlink [--name ...]     (remove a ring a crashed run left behind)
 */
#include <getopt.h>
#include <stdbool.h>

#include "demo_common.h"

static const char *prog = "worker";

struct options {
	const char *name;
	bool unlink_only; /* --unlink: remove a leftover ring and exit */
	uint32_t id;
	bool have_id;
	bool create;
	uint32_t capacity;
	uint64_t attach_ns;
	uint64_t idle_ns;
};

/* What this worker got from one feed. */
struct feed_tally {
	uint64_t count;
	uint64_t seqsum;
	uint64_t hashsum;
	uint64_t next_min; /* the lowest seq the next item of this feed may carry */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s --id K [options]\n"
		"  --id K               this worker's id (required)\n"
		"  --create             create the ring (exactly one worker does)\n"
		"  --capacity N         with --create: capacity, a power of two (default 1024)\n"
		"  --name NAME          ring name (default /shmring_demo_work)\n"
		"  --attach-timeout S   seconds to wait for the ring (default 10)\n"
		"  --idle-timeout S     seconds without a message before giving up (default 20)\n"
		"  --unlink             only remove the ring's name (left by a crash) and exit\n",
		prog);
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "id", required_argument, NULL, 'I' },
		{ "create", no_argument, NULL, 'C' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'n' },
		{ "attach-timeout", required_argument, NULL, 'a' },
		{ "idle-timeout", required_argument, NULL, 'i' },
		{ "unlink", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*o = (struct options){ .name = "/shmring_demo_work", .capacity = 1024,
			       .attach_ns = 10 * DEMO_NS_PER_S, .idle_ns = 20 * DEMO_NS_PER_S };
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'I':
			o->id = (uint32_t)demo_parse_u64(prog, "--id", optarg, 0, UINT32_MAX);
			o->have_id = true;
			break;
		case 'C': o->create = true; break;
		case 'c': o->capacity = (uint32_t)demo_parse_u64(prog, "--capacity", optarg, 2, 1u << 30); break;
		case 'n': o->name = optarg; break;
		case 'a': o->attach_ns = demo_parse_u64(prog, "--attach-timeout", optarg, 0, 3600) * DEMO_NS_PER_S; break;
		case 'i': o->idle_ns = demo_parse_u64(prog, "--idle-timeout", optarg, 1, 3600) * DEMO_NS_PER_S; break;
		case 'U': o->unlink_only = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc || (!o->have_id && !o->unlink_only)) {
		usage(stderr);
		exit(2);
	}
}

/*
 * Pops one message, yielding the CPU while the ring is empty. Returns 0;
 * -EINTR when a signal asked us to stop; -ETIMEDOUT after @idle_ns without a
 * message; or the library's error.
 */
static int pop_bounded(struct shmring *r, struct work_msg *m, uint64_t idle_ns)
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

/* Checks and counts one item. False (after a report) when it is wrong. */
static bool take_item(const struct work_msg *m, struct feed_tally *tally, uint32_t self)
{
	struct feed_tally *t;

	if (m->feed >= WORK_MAX_FEEDS) {
		fprintf(stderr, "%s %" PRIu32 ": item from unknown feed %" PRIu32 "\n", prog, self,
			m->feed);
		return false;
	}
	if (m->check != demo_mix64(m->feed, m->seq) || m->payload[0] != m->seq * 3 + m->feed) {
		fprintf(stderr, "%s %" PRIu32 ": DAMAGED item from feed %" PRIu32 " seq %" PRIu64 "\n",
			prog, self, m->feed, m->seq);
		return false;
	}
	t = &tally[m->feed];
	if (m->seq < t->next_min) {
		fprintf(stderr, "%s %" PRIu32 ": ORDER ERROR: feed %" PRIu32 " seq %" PRIu64
			" after seq %" PRIu64 " (duplicate or reordered)\n", prog, self, m->feed,
			m->seq, t->next_min - 1);
		return false;
	}
	t->next_min = m->seq + 1;
	t->count++;
	t->seqsum += m->seq;
	t->hashsum += m->check & 0xffffffffu;
	return true;
}

static void print_tally(const struct feed_tally *tally, uint32_t self)
{
	uint64_t total = 0;

	for (uint32_t f = 0; f < WORK_MAX_FEEDS; f++) {
		if (tally[f].count == 0)
			continue;
		printf("worker %" PRIu32 " feed %" PRIu32 " count %" PRIu64 " seqsum %" PRIu64
		       " hashsum %" PRIu64 "\n", self, f, tally[f].count, tally[f].seqsum,
		       tally[f].hashsum);
		total += tally[f].count;
	}
	printf("worker %" PRIu32 " total %" PRIu64 "\n", self, total);
}

/* Pops until a STOP. Returns the exit status. */
static int run(struct shmring *r, const struct options *o)
{
	static struct feed_tally tally[WORK_MAX_FEEDS];
	struct work_msg m;

	for (;;) {
		int rc = pop_bounded(r, &m, o->idle_ns);

		if (rc == -EINTR) {
			printf("%s %" PRIu32 ": stopped by signal %d\n", prog, o->id, (int)demo_stop);
			return demo_stop_status();
		}
		if (rc == -ETIMEDOUT) {
			fprintf(stderr, "%s %" PRIu32 ": no message for %" PRIu64 " s and no STOP\n",
				prog, o->id, o->idle_ns / DEMO_NS_PER_S);
			return 1;
		}
		if (rc < 0) {
			demo_report(prog, "shmring_try_pop", rc);
			return 1;
		}
		if (m.type == WORK_STOP)
			break;
		if (m.type != WORK_ITEM) {
			fprintf(stderr, "%s %" PRIu32 ": unknown message type %" PRIu32 "\n", prog,
				o->id, m.type);
			return 1;
		}
		if (!take_item(&m, tally, o->id))
			return 1;
	}
	print_tally(tally, o->id);
	return 0;
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
	cfg.kind = SHMRING_MPMC;
	cfg.msg_size = sizeof(struct work_msg);
	if (o.create) {
		cfg.capacity = o.capacity;
		rc = shmring_create(o.name, &cfg, &r);
	} else {
		rc = demo_attach(o.name, &cfg, o.attach_ns, &r); /* capacity 0: any */
		if (rc == -EINTR)
			return demo_stop_status();
	}
	if (rc < 0) {
		demo_report(prog, o.create ? "shmring_create" : "shmring_attach", rc);
		if (rc == -EEXIST)
			fprintf(stderr, "%s: another demo may be running; if none is, a crashed one left "
				"the name behind: remove it with --unlink\n", prog);
		else if (rc == -ENOENT)
			fprintf(stderr, "%s: start one worker with --create (it creates %s)\n", prog,
				o.name);
		return 1;
	}
	if (o.create)
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
