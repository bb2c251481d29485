/*
 * processor.c - the consumer half of the SPSC demo (see feed_handler.c).
 *
 * Attaches to the feed handler's ring (waiting up to --attach-timeout for it
 * to appear, so it may be started first), checks that every message arrives
 * once and in order (exit status 1 on any gap, duplicate or damaged message),
 * and reports:
 *   - one-way latency over the paced phase: receive time minus the send
 *     time stamped in the message, both CLOCK_MONOTONIC, as p50 / p99 /
 *     p99.9 / max, after dropping the first 1% as warm-up;
 *   - throughput over the back-to-back phase: from the send time of its
 *     first message to the arrival of the END message.
 *
 * Both processes busy-spin on their own CPU (feed_handler on 0, processor on
 * 1 by default). The spin checks the stop flag every 1024 empty polls, so
 * SIGINT/SIGTERM end the program promptly; so does a feed handler that
 * stays silent for --idle-timeout seconds (exit status 1).
 *
 *   processor [--name /shmring_demo_feed] [--cpu 1] [--attach-timeout 10]
 *             [--idle-timeout 10]
 */
#include <getopt.h>
#include <stdbool.h>

#include "demo_common.h"

static const char *prog = "processor";

/* With fewer than two CPUs a busy-spin only delays the peer: yield instead. */
static bool yield_mode;

struct options {
	const char *name;
	int cpu;
	uint64_t attach_ns;
	uint64_t idle_ns;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [options]\n"
		"  --name NAME           ring name (default /shmring_demo_feed)\n"
		"  --cpu K               pin to CPU K, -1 for none (default 1)\n"
		"  --attach-timeout S    seconds to wait for the ring to appear (default 10)\n"
		"  --idle-timeout S      seconds without a message before giving up (default 10)\n",
		prog);
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "cpu", required_argument, NULL, 'C' },
		{ "attach-timeout", required_argument, NULL, 'a' },
		{ "idle-timeout", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*o = (struct options){ .name = "/shmring_demo_feed", .cpu = 1,
			       .attach_ns = 10 * DEMO_NS_PER_S, .idle_ns = 10 * DEMO_NS_PER_S };
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': o->name = optarg; break;
		case 'C': o->cpu = demo_parse_cpu(prog, optarg); break;
		case 'a': o->attach_ns = demo_parse_u64(prog, "--attach-timeout", optarg, 0, 3600) * DEMO_NS_PER_S; break;
		case 'i': o->idle_ns = demo_parse_u64(prog, "--idle-timeout", optarg, 1, 3600) * DEMO_NS_PER_S; break;
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
 * Pops one message into @m, spinning while the ring is empty. Returns 0;
 * -EINTR when a signal asked us to stop; -ETIMEDOUT after @idle_ns without a
 * message; or the library's error.
 */
static int pop_bounded(struct shmring *r, struct md_msg *m, uint64_t idle_ns)
{
	uint64_t deadline = 0;
	unsigned int spins = 0;
	int rc;

	while ((rc = shmring_try_pop(r, m)) == -EAGAIN) {
		if (yield_mode)
			sched_yield();
		else
			demo_cpu_relax();
		if ((++spins & 1023) != 0)
			continue;
		if (demo_stop)
			return -EINTR;
		if (deadline == 0)
			deadline = demo_now_ns() + idle_ns;
		else if (demo_now_ns() >= deadline)
			return -ETIMEDOUT;
	}
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* The @q quantile (0 < q <= 1) of sorted @v[0..n-1], nearest rank. */
static uint64_t quantile(const uint64_t *v, size_t n, double q)
{
	size_t rank = (size_t)(q * (double)n + 0.999999);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

static void report_latency(uint64_t *lat, size_t n)
{
	size_t warm = n / 100, cnt;
	uint64_t *v;
	double sum = 0;

	if (n - warm == 0) {
		printf("%s: one-way latency: no samples\n", prog);
		return;
	}
	v = lat + warm;
	cnt = n - warm;
	qsort(v, cnt, sizeof(*v), cmp_u64);
	for (size_t i = 0; i < cnt; i++)
		sum += (double)v[i];
	printf("%s: one-way latency over %zu messages (first %zu dropped as warm-up), ns:\n", prog,
	       cnt, warm);
	printf("%s:   min %" PRIu64 "  p50 %" PRIu64 "  p99 %" PRIu64 "  p99.9 %" PRIu64
	       "  max %" PRIu64 "  mean %.0f\n", prog, v[0], quantile(v, cnt, 0.50),
	       quantile(v, cnt, 0.99), quantile(v, cnt, 0.999), v[cnt - 1], sum / (double)cnt);
}

static void report_throughput(uint64_t msgs, uint64_t ns)
{
	double s = (double)ns / 1e9;

	if (msgs == 0 || ns == 0) {
		printf("%s: throughput: no messages\n", prog);
		return;
	}
	printf("%s: throughput over %" PRIu64 " messages in %.3f s: %.2f M msgs/s, %.0f MB/s "
	       "(%zu-byte messages)\n", prog, msgs, s, (double)msgs / s / 1e6,
	       (double)msgs * sizeof(struct md_msg) / s / 1e6, sizeof(struct md_msg));
}

/* Receives the whole run and reports it. Returns the exit status. */
static int run(struct shmring *r, const struct options *o)
{
	struct md_msg m;
	uint64_t nlat, ntp, expected = 0, tp_start = 0, tp_end = 0;
	uint64_t *lat = NULL;
	size_t nsamples = 0;
	int rc, status = 1;

	/* The feed handler waits for this HELLO to be taken: that is our "attached". */
	rc = pop_bounded(r, &m, o->idle_ns);
	if (rc < 0)
		goto pop_failed;
	if (m.type != MD_HELLO) {
		fprintf(stderr, "%s: the first message is of type %" PRIu32 ", not HELLO: is another "
			"processor reading this ring?\n", prog, m.type);
		return 1;
	}
	nlat = m.aux[0];
	ntp = m.aux[1];
	printf("%s: feed handler announced %" PRIu64 " latency + %" PRIu64 " throughput messages\n",
	       prog, nlat, ntp);
	lat = calloc(nlat ? nlat : 1, sizeof(*lat)); /* calloc touches nothing; we write below */
	if (lat == NULL) {
		fprintf(stderr, "%s: out of memory for %" PRIu64 " latency samples\n", prog, nlat);
		return 1;
	}
	memset(lat, 0, (nlat ? nlat : 1) * sizeof(*lat)); /* fault the pages in now, not mid-run */

	for (;;) {
		uint64_t now;

		rc = pop_bounded(r, &m, o->idle_ns);
		if (rc < 0)
			goto pop_failed;
		now = m.type == MD_LATENCY ? demo_now_ns() : 0;
		if (m.seq != expected) {
			fprintf(stderr, "%s: SEQUENCE ERROR: expected %" PRIu64 ", got %" PRIu64
				" (%s)\n", prog, expected, m.seq,
				m.seq < expected ? "duplicate or reordered" : "gap: messages lost");
			goto out;
		}
		if (m.aux[0] != demo_mix64(m.seq, m.type) || m.symbol != m.seq % MD_SYMBOLS) {
			fprintf(stderr, "%s: DAMAGED MESSAGE at seq %" PRIu64 "\n", prog, m.seq);
			goto out;
		}
		if (m.type == MD_END)
			break;
		if (m.type == MD_LATENCY && m.seq < nlat) {
			lat[nsamples++] = now - m.ts_ns;
		} else if (m.type == MD_THROUGHPUT && m.seq >= nlat && m.seq - nlat < ntp) {
			if (m.seq == nlat)
				tp_start = m.ts_ns;
		} else {
			fprintf(stderr, "%s: message of type %" PRIu32 " out of place at seq %" PRIu64
				"\n", prog, m.type, m.seq);
			goto out;
		}
		expected++;
	}
	tp_end = demo_now_ns();

	printf("%s: received %" PRIu64 " messages in order: no gap, no duplicate, none damaged\n",
	       prog, expected);
	report_latency(lat, nsamples);
	if (expected == nlat + ntp)
		report_throughput(ntp, tp_start ? tp_end - tp_start : 0);
	if (expected != nlat + ntp) {
		fprintf(stderr, "%s: the feed handler stopped early: %" PRIu64 " of %" PRIu64
			" messages sent\n", prog, expected, nlat + ntp);
		goto out;
	}
	status = 0;
	goto out;

pop_failed:
	if (rc == -EINTR) {
		printf("%s: stopped by signal %d after %" PRIu64 " messages\n", prog, (int)demo_stop,
		       expected);
		status = demo_stop_status();
	} else if (rc == -ETIMEDOUT) {
		fprintf(stderr, "%s: no message for %" PRIu64 " s after %" PRIu64 " messages: is the "
			"feed handler still running?\n", prog, o->idle_ns / DEMO_NS_PER_S, expected);
	} else {
		demo_report(prog, "shmring_try_pop", rc);
	}
out:
	free(lat);
	return status;
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
	yield_mode = demo_allowed_cpus() < 2;
	if (yield_mode)
		printf("%s: note: fewer than 2 CPUs allowed; yielding instead of spinning\n", prog);
	demo_pin_cpu(prog, o.cpu);

	memset(&expect, 0, sizeof(expect));
	expect.kind = SHMRING_SPSC;
	expect.msg_size = sizeof(struct md_msg); /* capacity 0: whatever the creator chose */
	rc = demo_attach(o.name, &expect, o.attach_ns, &r);
	if (rc == -EINTR)
		return demo_stop_status();
	if (rc < 0) {
		demo_report(prog, "shmring_attach", rc);
		if (rc == -ENOENT)
			fprintf(stderr, "%s: start feed_handler (it creates %s)\n", prog, o.name);
		return 1;
	}
	printf("%s: attached to %s\n", prog, o.name);

	status = run(r, &o);

	rc = shmring_close(r);
	if (rc < 0) {
		demo_report(prog, "shmring_close", rc);
		if (status == 0)
			status = 1;
	}
	return status;
}
