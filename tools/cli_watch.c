/*
 * cli_watch.c - `shmring watch`: a ring's depth and message rates, live.
 *
 * Rates come from the free-running indices: messages in = tail delta, out =
 * head delta, over the time between two reads. Both are relaxed loads of
 * hints (in MPSC/MPMC rings a claimed but unpublished slot is already in
 * tail), so a rate is exact over many intervals, not within one.
 *
 * On a terminal one status line is redrawn in place; otherwise (a pipe, a
 * file, a test) every refresh prints a line of its own, and --json prints one
 * JSON object per line. SIGINT or SIGTERM ends it with status 0.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define BAR_WIDTH 20
#define INTERVAL_MAX_MS 3600000u

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Sleep until the absolute CLOCK_MONOTONIC time; false if a stop signal came. */
static bool sleep_until(const struct timespec *t)
{
	while (!stop_requested) {
		int rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, t, NULL);
		if (rc == 0)
			return !stop_requested;
		if (rc != EINTR)
			return false;
	}
	return false;
}

static void rate_string(double v, char *buf, size_t len)
{
	if (v < 1e3)
		snprintf(buf, len, "%.0f", v);
	else if (v < 1e6)
		snprintf(buf, len, "%.1fk", v / 1e3);
	else if (v < 1e9)
		snprintf(buf, len, "%.2fM", v / 1e6);
	else
		snprintf(buf, len, "%.2fG", v / 1e9);
}

static void bar_string(uint64_t depth, uint32_t capacity, char *buf)
{
	unsigned fill = capacity ? (unsigned)((depth * BAR_WIDTH + capacity - 1) / capacity) : 0;
	if (fill > BAR_WIDTH)
		fill = BAR_WIDTH;
	for (unsigned i = 0; i < BAR_WIDTH; i++)
		buf[i] = i < fill ? '#' : '.';
	buf[BAR_WIDTH] = 0;
}

static double per_second(uint64_t now, uint64_t before, double dt)
{
	int64_t d = (int64_t)(now - before); /* indices never go back; a torn read could */
	return d > 0 && dt > 0 ? (double)d / dt : 0.0;
}

static void print_line(const struct ring *r, double in, double out, double dt, bool json,
		       bool tty)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	char when[64];
	uint64_t depth = ring_depth(r);
	if (json) {
		struct json j;
		show_time(ns, true, when, sizeof(when));
		json_init(&j, stdout);
		json_obj(&j);
		json_kstr(&j, "time", when);
		json_kstr(&j, "name", r->name);
		json_ku64(&j, "head", r->head);
		json_ku64(&j, "tail", r->tail);
		json_ku64(&j, "depth", depth);
		json_ku64(&j, "capacity", r->id.capacity);
		json_key(&j, "in_per_s");
		json_dbl(&j, in);
		json_key(&j, "out_per_s");
		json_dbl(&j, out);
		json_key(&j, "interval_ms");
		json_dbl(&j, dt * 1e3);
		json_ku64(&j, "alive", r->n_alive);
		json_obj_end(&j);
	} else {
		char bar[BAR_WIDTH + 1], rin[32], rout[32];
		show_time(ns, false, when, sizeof(when));
		when[23] = 0; /* drop the zone: "YYYY-MM-DD HH:MM:SS.mmm" */
		bar_string(depth, r->id.capacity, bar);
		rate_string(in, rin, sizeof(rin));
		rate_string(out, rout, sizeof(rout));
		int w = snprintf(NULL, 0, "%u", r->id.capacity);
		printf("%s%s  depth %*llu/%u [%s] %5.1f%%  in %7s/s  out %7s/s  alive %u%s",
		       tty ? "\r\033[K" : "", when, w, (unsigned long long)depth, r->id.capacity, bar,
		       100.0 * (double)depth / (double)(r->id.capacity ? r->id.capacity : 1), rin,
		       rout, r->n_alive, tty ? "" : "\n");
	}
	fflush(stdout);
}

int cmd_watch(int argc, char *argv[])
{
	static const struct option opts[] = {{"interval", required_argument, NULL, 'i'},
					     {"count", required_argument, NULL, 'n'},
					     {"json", no_argument, NULL, 'j'},
					     {"help", no_argument, NULL, 'h'},
					     {0, 0, 0, 0}};
	bool json = false;
	uint64_t interval_ms = 1000, count = 0;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":i:n:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (!cli_parse_size(optarg, &interval_ms) || interval_ms == 0 ||
			    interval_ms > INTERVAL_MAX_MS)
				return cli_usage("watch", "--interval wants milliseconds, 1 to %u",
						 INTERVAL_MAX_MS);
			break;
		case 'n':
			if (!cli_parse_size(optarg, &count))
				return cli_usage("watch", "--count wants a number (0: until stopped)");
			break;
		case 'j': json = true; break;
		case 'h': cli_help("watch", stdout); return CLI_OK;
		default: return cli_bad_option("watch", c, argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage("watch", optind == argc ? "needs a ring name" : "takes one ring name");
	char name[SHMRING_NAME_MAX + 1], err[512];
	int rc = cli_ring_name("watch", argv[optind], name, sizeof(name));
	if (rc)
		return rc;
	struct ring *r = calloc(1, sizeof(*r));
	if (!r)
		return cli_fail(CLI_SYSERR, "out of memory");
	if ((rc = ring_open(r, name, err, sizeof(err))) != CLI_OK) {
		free(r);
		return cli_fail(rc, "%s", err);
	}
	if (r->status != RING_OK) {
		rc = cli_fail(CLI_NOTRING, "ring %s: %s", name, r->problem);
		goto out;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop; /* no SA_RESTART: the sleep must end */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	bool tty = !json && isatty(STDOUT_FILENO);
	if (tty)
		printf("watching %s: %s, capacity %u, every %llu ms; Ctrl-C to stop\n", name,
		       kind_name(r->id.kind, false), r->id.capacity, (unsigned long long)interval_ms);
	if ((rc = ring_read(r, err, sizeof(err))) != CLI_OK) {
		rc = cli_fail(rc, "%s", err);
		goto out;
	}
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (uint64_t i = 0; count == 0 || i < count; i++) {
		uint64_t head = r->head, tail = r->tail;
		int64_t then = r->read_mono_ns;
		next.tv_sec += (time_t)(interval_ms / 1000);
		next.tv_nsec += (long)(interval_ms % 1000) * 1000000L;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000L;
		}
		if (!sleep_until(&next))
			break;
		if (ring_removed(r)) {
			if (tty)
				printf("\n");
			rc = cli_fail(CLI_NOENT, "ring %s was removed", name);
			goto out;
		}
		if ((rc = ring_read(r, err, sizeof(err))) != CLI_OK) {
			rc = cli_fail(rc, "%s", err);
			goto out;
		}
		double dt = (double)(r->read_mono_ns - then) / 1e9;
		print_line(r, per_second(r->tail, tail, dt), per_second(r->head, head, dt), dt, json,
			   tty);
	}
	if (tty)
		printf("\n");
	rc = CLI_OK;
out:
	ring_close(r);
	free(r);
	return rc;
}
