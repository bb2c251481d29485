/*
 * notify_uring.c - an event-loop consumer on io_uring, woken through the
 * ring's notify fd, with a one-second heartbeat timer in the same loop; and
 * a producer to feed it. Run them as two separate processes (see
 * notify_demo.sh):
 *
 *   notify_uring --produce [--name /shmring_notify_demo] [--kind spsc|mpsc|mpmc]
 *                [--msgs 20000] [--burst 200] [--gap-ms 10] [--pause-ms 2500]
 *                [--timeout 30] [--unlink]
 *   notify_uring --consume [--name /shmring_notify_demo] [--msgs 0]
 *                [--attach-timeout 10] [--idle-timeout 10]
 *
 * The producer creates a SHMRING_F_BLOCKING ring and sends --msgs messages
 * in bursts of --burst, --gap-ms apart, with one pause of --pause-ms in the
 * middle (so the consumer's heartbeat shows it idle), then an END message
 * that carries the count. It waits (bounded by --timeout) until the
 * consumer has drained the ring, then closes it, which removes the name.
 *
 * The consumer attaches (waiting for the producer), takes the ring's notify
 * fd and keeps two requests in one io_uring: IORING_OP_POLL_ADD on the fd,
 * and IORING_OP_TIMEOUT of one second. When the fd fires it drains it, pops
 * until the ring is empty, and arms again (shmring_notify_arm) before going
 * back to io_uring_submit_and_wait; when the timer fires with nothing new, it
 * prints a heartbeat. It checks that every message arrives once and in order
 * and reports the one-way latency (send stamp to pop, CLOCK_MONOTONIC). It
 * stops at END, after --msgs messages (0: no limit), on SIGINT/SIGTERM, or
 * after --idle-timeout seconds without a message. Exit status: 0 all
 * arrived, 1 loss / damage / idle timeout / error, 2 usage, 128+signal when
 * stopped by one.
 */
#include <getopt.h>
#include <liburing.h>
#include <poll.h>
#include <stdbool.h>
#include <unistd.h>

#include "demo_common.h"

static const char *prog = "notify_uring";

enum nu_type { NU_DATA = 1, NU_END = 2 };

struct nu_msg {
	uint64_t seq;
	uint64_t ts_ns;  /* CLOCK_MONOTONIC at push */
	uint64_t check;  /* demo_mix64(type, seq) */
	uint32_t type;   /* enum nu_type */
	uint32_t pad;
	uint64_t payload[4];
};
_Static_assert(sizeof(struct nu_msg) == 64, "the notify demo's message is 64 bytes");

struct options {
	bool produce, consume, unlink;
	const char *name;
	enum shmring_kind kind;
	uint64_t msgs, burst, gap_ms, pause_ms, timeout_s, attach_s, idle_s;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s --produce|--consume [options]\n"
		"  --name NAME          ring name (default /shmring_notify_demo)\n"
		"  --msgs N             produce: messages to send (default 20000);\n"
		"                       consume: stop after N (default 0: at END)\n"
		"  --kind K             produce: spsc, mpsc or mpmc (default spsc)\n"
		"  --burst N            produce: messages per burst (default 200)\n"
		"  --gap-ms MS          produce: pause between bursts (default 10)\n"
		"  --pause-ms MS        produce: one idle pause halfway (default 2500)\n"
		"  --timeout S          produce: the most it waits for the consumer (default 30)\n"
		"  --unlink             produce: remove a ring left by a crashed run, then exit\n"
		"  --attach-timeout S   consume: wait this long for the ring (default 10)\n"
		"  --idle-timeout S     consume: give up after S seconds without a message "
		"(default 10)\n",
		prog);
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"produce", no_argument, NULL, 'P'},
		{"consume", no_argument, NULL, 'C'},
		{"name", required_argument, NULL, 'n'},
		{"msgs", required_argument, NULL, 'm'},
		{"kind", required_argument, NULL, 'k'},
		{"burst", required_argument, NULL, 'b'},
		{"gap-ms", required_argument, NULL, 'g'},
		{"pause-ms", required_argument, NULL, 'p'},
		{"timeout", required_argument, NULL, 't'},
		{"unlink", no_argument, NULL, 'u'},
		{"attach-timeout", required_argument, NULL, 'a'},
		{"idle-timeout", required_argument, NULL, 'i'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	bool msgs_set = false;

	*o = (struct options){.name = "/shmring_notify_demo", .kind = SHMRING_SPSC,
			      .msgs = 20000, .burst = 200, .gap_ms = 10, .pause_ms = 2500,
			      .timeout_s = 30, .attach_s = 10, .idle_s = 10};
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'P': o->produce = true; break;
		case 'C': o->consume = true; break;
		case 'n': o->name = optarg; break;
		case 'm':
			o->msgs = demo_parse_u64(prog, "--msgs", optarg, 0, UINT64_C(1) << 40);
			msgs_set = true;
			break;
		case 'k':
			if (strcmp(optarg, "spsc") == 0)
				o->kind = SHMRING_SPSC;
			else if (strcmp(optarg, "mpsc") == 0)
				o->kind = SHMRING_MPSC;
			else if (strcmp(optarg, "mpmc") == 0)
				o->kind = SHMRING_MPMC;
			else {
				fprintf(stderr, "%s: --kind wants spsc, mpsc or mpmc\n", prog);
				exit(2);
			}
			break;
		case 'b': o->burst = demo_parse_u64(prog, "--burst", optarg, 1, 1u << 20); break;
		case 'g': o->gap_ms = demo_parse_u64(prog, "--gap-ms", optarg, 0, 10000); break;
		case 'p': o->pause_ms = demo_parse_u64(prog, "--pause-ms", optarg, 0, 60000); break;
		case 't': o->timeout_s = demo_parse_u64(prog, "--timeout", optarg, 1, 3600); break;
		case 'u': o->unlink = true; break;
		case 'a': o->attach_s = demo_parse_u64(prog, "--attach-timeout", optarg, 0, 3600); break;
		case 'i': o->idle_s = demo_parse_u64(prog, "--idle-timeout", optarg, 1, 3600); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc || o->produce == o->consume) {
		usage(stderr);
		exit(2);
	}
	if (o->consume && !msgs_set)
		o->msgs = 0;
}

static void fill(struct nu_msg *m, uint32_t type, uint64_t seq)
{
	memset(m, 0, sizeof(*m));
	m->seq = seq;
	m->type = type;
	m->check = demo_mix64(type, seq);
	m->ts_ns = demo_now_ns();
}

/* ---- producer ------------------------------------------------------------------ */

static int produce(const struct options *o)
{
	if (o->unlink)
		return demo_unlink(prog, o->name);
	struct shmring_config cfg = {.kind = o->kind, .msg_size = sizeof(struct nu_msg),
				     .capacity = 1024, .flags = SHMRING_F_BLOCKING};
	struct shmring *r = NULL;
	int rc = shmring_create(o->name, &cfg, &r);
	if (rc) {
		demo_report(prog, "shmring_create", rc);
		return 1;
	}
	demo_print_info(prog, o->name, r);
	uint64_t deadline = demo_now_ns() + o->timeout_s * DEMO_NS_PER_S;
	struct nu_msg m;
	int status = 0;
	uint64_t sent = 0;

	uint64_t in_burst = 0;
	bool paused = false;
	while (sent < o->msgs && !demo_stop && status == 0) {
		fill(&m, NU_DATA, sent);
		/* Bounded steps, so that a signal or a consumer that went away is seen. */
		rc = shmring_push_wait(r, &m, (int64_t)DEMO_NS_PER_S / 10);
		if (rc == -ETIMEDOUT || rc == -EINTR) {
			if (demo_now_ns() > deadline) {
				fprintf(stderr, "%s: the ring stayed full until --timeout\n", prog);
				status = 1;
			}
			continue;
		}
		if (rc) {
			demo_report(prog, "shmring_push_wait", rc);
			status = 1;
			break;
		}
		sent++;
		if (++in_burst < o->burst && sent < o->msgs)
			continue;
		in_burst = 0;
		if (!paused && sent >= o->msgs / 2 && o->pause_ms) {
			paused = true;
			printf("%s: %llu sent; pausing %llu ms\n", prog, (unsigned long long)sent,
			       (unsigned long long)o->pause_ms);
			demo_sleep_ns(o->pause_ms * 1000000);
		} else if (o->gap_ms) {
			demo_sleep_ns(o->gap_ms * 1000000);
		}
	}
	if (status == 0 && !demo_stop) {
		fill(&m, NU_END, sent);
		while ((rc = shmring_push_wait(r, &m, (int64_t)DEMO_NS_PER_S / 10)) == -ETIMEDOUT &&
		       !demo_stop && demo_now_ns() < deadline)
			;
		if (rc) {
			demo_report(prog, "push of END", rc);
			status = 1;
		}
	}
	/* The consumer may still be on its way: keep the name until it drained the ring. */
	while (status == 0 && !demo_stop && !shmring_empty(r) && demo_now_ns() < deadline)
		demo_sleep_ns(DEMO_NS_PER_S / 100);
	if (status == 0 && !demo_stop && !shmring_empty(r)) {
		fprintf(stderr, "%s: the consumer did not drain the ring before --timeout\n", prog);
		status = 1;
	}
	printf("%s: sent %llu messages\n", prog, (unsigned long long)sent);
	rc = shmring_close(r);
	if (rc) {
		demo_report(prog, "shmring_close", rc);
		status = 1;
	}
	return demo_stop ? demo_stop_status() : status;
}

/* ---- consumer ------------------------------------------------------------------ */

enum { TAG_POLL = 1, TAG_TIMER = 2 };

#define MAX_SAMPLES 1000000

struct consumer {
	struct io_uring ring;
	int fd;
	bool poll_pending, timer_pending;
	struct __kernel_timespec tick;
	uint64_t received, expect_seq, wakes, heartbeats, idle_ticks, since_tick;
	bool live;   /* armed once: later messages were sent while we listened */
	int64_t *lat;
	size_t nlat;
};

static int submit_missing(struct consumer *c)
{
	struct io_uring_sqe *sqe;
	if (!c->poll_pending) {
		if (!(sqe = io_uring_get_sqe(&c->ring)))
			return -EBUSY;
		io_uring_prep_poll_add(sqe, c->fd, POLLIN);
		io_uring_sqe_set_data64(sqe, TAG_POLL);
		c->poll_pending = true;
	}
	if (!c->timer_pending) {
		if (!(sqe = io_uring_get_sqe(&c->ring)))
			return -EBUSY;
		/* count 0: a pure timer, completes with -ETIME after one second. */
		io_uring_prep_timeout(sqe, &c->tick, 0, 0);
		io_uring_sqe_set_data64(sqe, TAG_TIMER);
		c->timer_pending = true;
	}
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Pop everything there is. 1 at END or the --msgs limit, 0 when empty, -1 on loss. */
static int pop_all(struct shmring *r, struct consumer *c, const struct options *o)
{
	struct nu_msg m;
	int rc;
	while ((rc = shmring_try_pop(r, &m)) == 0) {
		uint64_t now = demo_now_ns();
		if (m.check != demo_mix64(m.type, m.seq) || (m.type != NU_DATA && m.type != NU_END)) {
			fprintf(stderr, "%s: damaged message after seq %llu\n", prog,
				(unsigned long long)c->expect_seq);
			return -1;
		}
		if (m.type == NU_END) {
			if (m.seq != c->received) {
				fprintf(stderr, "%s: the producer sent %llu messages, %llu arrived\n", prog,
					(unsigned long long)m.seq, (unsigned long long)c->received);
				return -1;
			}
			printf("%s: END: all %llu messages arrived\n", prog,
			       (unsigned long long)c->received);
			return 1;
		}
		if (m.seq != c->expect_seq) {
			fprintf(stderr, "%s: expected seq %llu, got %llu (%s)\n", prog,
				(unsigned long long)c->expect_seq, (unsigned long long)m.seq,
				m.seq > c->expect_seq ? "lost" : "duplicate or reordered");
			return -1;
		}
		c->expect_seq++;
		c->received++;
		c->since_tick++;
		/* Messages queued before we attached would only measure our start-up. */
		if (c->live && c->nlat < MAX_SAMPLES)
			c->lat[c->nlat++] = (int64_t)(now - m.ts_ns);
		if (o->msgs && c->received == o->msgs)
			return 1;
	}
	if (rc != -EAGAIN) {
		demo_report(prog, "shmring_try_pop", rc);
		return -1;
	}
	return 0;
}

static int consume(const struct options *o)
{
	struct shmring_config expect = {.msg_size = sizeof(struct nu_msg),
					.flags = SHMRING_F_BLOCKING};
	struct shmring *r = NULL;
	int rc = demo_attach(o->name, &expect, o->attach_s * DEMO_NS_PER_S, &r);
	if (rc) {
		if (rc == -EINTR)
			return demo_stop_status();
		demo_report(prog, "shmring_attach", rc);
		return 1;
	}
	struct consumer c = {.tick = {.tv_sec = 1, .tv_nsec = 0}};
	c.lat = malloc(MAX_SAMPLES * sizeof(int64_t));
	c.fd = shmring_notify_fd(r);
	if (c.fd < 0 || !c.lat) {
		demo_report(prog, "shmring_notify_fd", c.fd < 0 ? c.fd : -ENOMEM);
		shmring_close(r);
		free(c.lat);
		return 1;
	}
	rc = io_uring_queue_init(8, &c.ring, 0);
	if (rc) {
		fprintf(stderr, "%s: io_uring_queue_init: %s\n", prog, strerror(-rc));
		shmring_close(r);
		free(c.lat);
		return 1;
	}
	printf("%s: waiting on notify fd %d and a 1 s timer in io_uring\n", prog, c.fd);
	fflush(stdout);
	int status = 0;
	for (;;) {
		uint64_t n;
		ssize_t k = read(c.fd, &n, sizeof(n)); /* drain first; EAGAIN: nothing to drain */
		(void)k;
		int got = pop_all(r, &c, o);
		if (got) {
			status = got < 0;
			break;
		}
		if (demo_stop)
			break;
		rc = shmring_notify_arm(r);
		if (rc == -EAGAIN)
			continue; /* published between our last pop and the arm: pop again */
		c.live = true;
		if (rc || (rc = submit_missing(&c))) {
			demo_report(prog, "arm", rc);
			status = 1;
			break;
		}
		/* The timer is always pending, so this returns within a second. */
		rc = io_uring_submit_and_wait(&c.ring, 1);
		if (rc < 0 && rc != -EINTR) {
			fprintf(stderr, "%s: io_uring_submit_and_wait: %s\n", prog, strerror(-rc));
			status = 1;
			break;
		}
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&c.ring, head, cqe) {
			seen++;
			if (io_uring_cqe_get_data64(cqe) == TAG_POLL) {
				c.poll_pending = false;
				c.wakes++;
				continue;
			}
			c.timer_pending = false;
			if (c.since_tick == 0) {
				c.heartbeats++;
				printf("%s: heartbeat: idle, %llu messages so far\n", prog,
				       (unsigned long long)c.received);
				fflush(stdout);
				if (++c.idle_ticks >= o->idle_s) {
					fprintf(stderr, "%s: no message for %llu s: giving up\n", prog,
						(unsigned long long)o->idle_s);
					status = 1;
				}
			} else {
				c.idle_ticks = 0;
			}
			c.since_tick = 0;
		}
		io_uring_cq_advance(&c.ring, seen);
		if (status)
			break;
	}
	/* The ring's requests hold the fd: tear io_uring down before the handle closes it. */
	io_uring_queue_exit(&c.ring);
	printf("%s: %llu messages, %llu wake-ups through the notify fd, %llu heartbeats\n", prog,
	       (unsigned long long)c.received, (unsigned long long)c.wakes,
	       (unsigned long long)c.heartbeats);
	if (c.nlat) {
		qsort(c.lat, c.nlat, sizeof(int64_t), cmp_i64);
		printf("%s: push-to-pop latency: p50 %.1f us, p99 %.1f us, max %.1f us (in "
		       "bursts, most messages are popped without a wake-up of their own)\n", prog,
		       (double)c.lat[c.nlat / 2] / 1e3, (double)c.lat[c.nlat * 99 / 100] / 1e3,
		       (double)c.lat[c.nlat - 1] / 1e3);
	}
	free(c.lat);
	rc = shmring_close(r);
	if (rc) {
		demo_report(prog, "shmring_close", rc);
		status = 1;
	}
	if (demo_stop) {
		printf("%s: stopped by signal %d\n", prog, (int)demo_stop);
		return demo_stop_status();
	}
	return status;
}

int main(int argc, char **argv)
{
	struct options o;
	parse_options(argc, argv, &o);
	demo_install_signals();
	setvbuf(stdout, NULL, _IOLBF, 0);
	return o.produce ? produce(&o) : consume(&o);
}
