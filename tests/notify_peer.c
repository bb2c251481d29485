/*
 * notify_peer.c - producer and event-loop consumer processes for test_notify.c
 * (it forks and execs them as siblings: neither is the other's parent, so
 * the eventfd really crosses between unrelated processes), and a latency
 * bench.
 *
 *   notify_peer produce NAME ID COUNT NSTOP
 *       attach, push_wait COUNT messages {ID, seq 0..COUNT-1, checksum},
 *       pausing now and then (20..80 us asleep, so consumers find the ring
 *       empty and go to sleep on their fds often; 0..4 us spinning, so a
 *       publish lands between a consumer's last pop, its arm and its wait);
 *       then NSTOP stop messages.
 *   notify_peer consume NAME WAIT NPRODUCERS COUNT MODE [OUTFILE]
 *       attach, take a notify fd and wait on it with WAIT: "epoll"
 *       (epoll_wait) or "uring" (io_uring IORING_OP_POLL_ADD). Checks every
 *       message's checksum and per-producer order. MODE "exact": stop after
 *       NPRODUCERS*COUNT messages, each producer's sequence exactly 0,1,2,...;
 *       MODE "stop": stop at the first stop message, sequences increasing per
 *       producer, every (producer, seq) written to OUTFILE (binary pairs of
 *       uint32 producer, uint64 seq) for the parent's exactly-once check.
 *       A wait that times out (2 s) while a message sits in the ring and the
 *       fd stays quiet for another 3 s is a lost wake-up. A consumer that
 *       was never woken through its fd fails too: the tests start producers
 *       only once every consumer is asleep.
 *   notify_peer bench [SAMPLES [busy]]
 *       one-way wake-up latency between two processes pinned to CPUs 0 and 1
 *       (producer, consumer), the consumer asleep each time: push -> return
 *       of epoll_wait on the notify fd; push -> return of pop_wait (futex,
 *       spin 0); eventfd write -> return of epoll_wait (bare eventfd); and an
 *       eventfd ping-pong (round trip / 2). p50, p99, p99.9, max in ns.
 *       "busy" keeps both CPUs out of their idle state with SCHED_IDLE
 *       spinners, so the figures leave out the CPU's (or vCPU's) wake from
 *       idle and show the software path alone. BENCH_PRODUCER_CPU and
 *       BENCH_CONSUMER_CPU move the two processes (default 0 and 1).
 *
 * Every loop is bounded by PEER_DEADLINE_S. Exit status 0 = all checks held,
 * 1 = a check failed, 2 = usage or attach error, 3 = deadline passed,
 * 4 = lost wake-up.
 */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#include "shmring.h"
#include "testutil.h"

#define PEER_DEADLINE_S 120
#define STOP_ID 0xffffffffu
#define MAX_PRODUCERS 16
#define WAIT_MS 2000
#define LOST_GRACE_MS 3000
#define SEC INT64_C(1000000000)

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * SEC + t.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / SEC), .tv_nsec = (long)(ns % SEC)};
	nanosleep(&ts, NULL);
}

static void spin_ns(int64_t ns)
{
	for (int64_t end = now_ns() + ns; now_ns() < end;)
		;
}

static struct shmring *attach(const char *name)
{
	struct shmring_config expect = {.flags = SHMRING_F_BLOCKING};
	struct shmring *r = NULL;
	int rc = shmring_attach(name, &expect, 10 * SEC, &r);
	if (rc) {
		fprintf(stderr, "notify_peer: attach %s: %s: %s\n", name, shmring_strerror(rc),
			shmring_last_error());
		exit(2);
	}
	return r;
}

/* ---- producer ---------------------------------------------------------------- */

static int produce(const char *name, uint32_t id, uint64_t count, unsigned nstop)
{
	struct shmring *r = attach(name);
	struct shmring_info info;
	if (shmring_info(r, &info) != 0 || info.msg_size != 64)
		return 2;
	const size_t size = 64;
	unsigned char buf[64];
	uint32_t lcg = id * 2654435761u + 1;
	for (uint64_t seq = 0; seq < count; seq++) {
		msg_fill(buf, size, id, seq);
		int rc = shmring_push_wait(r, buf, 10 * SEC);
		if (rc) {
			fprintf(stderr, "producer %u: push_wait of seq %llu: %s\n", id,
				(unsigned long long)seq, shmring_strerror(rc));
			return rc == -ETIMEDOUT ? 3 : 1;
		}
		lcg = lcg * 1664525u + 1013904223u;
		unsigned dice = (lcg >> 24) % 32;
		if (dice == 0) /* about one message in 32: the consumer falls asleep */
			sleep_ns(20000 + (int64_t)((lcg >> 8) % 60000));
		else if (dice < 5) /* a short spin: the next publish lands inside its arm */
			spin_ns((int64_t)((lcg >> 8) % 4000));
	}
	for (unsigned i = 0; i < nstop; i++) {
		msg_fill(buf, size, STOP_ID, i);
		if (shmring_push_wait(r, buf, 10 * SEC) != 0)
			return 3;
	}
	shmring_close(r);
	return 0;
}

/* ---- consumer ---------------------------------------------------------------- */

enum wait_kind { WAIT_EPOLL, WAIT_URING };

struct waiter {
	enum wait_kind kind;
	int fd;
	int ep;
	struct io_uring ring;
	bool poll_pending;
};

static int waiter_init(struct waiter *w, enum wait_kind kind, int fd)
{
	w->kind = kind;
	w->fd = fd;
	w->poll_pending = false;
	if (kind == WAIT_EPOLL) {
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		if (w->ep < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
			return -errno;
		return 0;
	}
	return io_uring_queue_init(8, &w->ring, 0);
}

static void waiter_fini(struct waiter *w)
{
	if (w->kind == WAIT_EPOLL)
		close(w->ep);
	else
		io_uring_queue_exit(&w->ring);
}

/* Wait until the fd is readable, at most ms: 1 readable, 0 timed out, < 0 error. */
static int waiter_wait(struct waiter *w, int ms)
{
	if (w->kind == WAIT_EPOLL) {
		struct epoll_event ev;
		int n = epoll_wait(w->ep, &ev, 1, ms);
		return n < 0 ? (errno == EINTR ? 0 : -errno) : n;
	}
	/* One POLL_ADD outstanding at a time; a wait that times out leaves it armed. */
	if (!w->poll_pending) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
		if (!sqe)
			return -EBUSY;
		io_uring_prep_poll_add(sqe, w->fd, POLLIN);
		io_uring_sqe_set_data64(sqe, 1);
		w->poll_pending = true;
	}
	struct __kernel_timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	struct io_uring_cqe *cqe = NULL;
	int rc = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
	if (rc == -ETIME || rc == -EINTR)
		return 0;
	if (rc < 0)
		return rc;
	int res = cqe->res;
	io_uring_cqe_seen(&w->ring, cqe);
	w->poll_pending = false;
	return res < 0 ? res : 1;
}

static void drain(int fd)
{
	uint64_t n;
	ssize_t k = read(fd, &n, sizeof(n)); /* EAGAIN: nothing to drain */
	(void)k;
}

struct tally {
	uint64_t msgs, waits, wakes, arm_again, timeouts;
};

static int consume(const char *name, const char *wait_name, unsigned nprod, uint64_t count,
		   const char *mode, const char *outfile)
{
	bool exact = strcmp(mode, "exact") == 0;
	enum wait_kind kind;
	if (strcmp(wait_name, "epoll") == 0)
		kind = WAIT_EPOLL;
	else if (strcmp(wait_name, "uring") == 0)
		kind = WAIT_URING;
	else
		return 2;
	if (nprod == 0 || nprod > MAX_PRODUCERS || (!exact && !outfile))
		return 2;
	FILE *out = NULL;
	if (outfile && !(out = fopen(outfile, "wb")))
		return 2;

	struct shmring *r = attach(name);
	int fd = shmring_notify_fd(r);
	if (fd < 0) {
		fprintf(stderr, "consumer: notify_fd: %s: %s\n", shmring_strerror(fd),
			shmring_last_error());
		exit(2);
	}
	struct waiter w;
	int rc = waiter_init(&w, kind, fd);
	if (rc) {
		fprintf(stderr, "consumer: %s init: %s\n", wait_name, strerror(-rc));
		exit(2);
	}
	uint64_t next[MAX_PRODUCERS] = {0};
	bool seen[MAX_PRODUCERS] = {false};
	uint64_t total = exact ? (uint64_t)nprod * count : UINT64_MAX;
	struct tally t = {0};
	int64_t deadline = now_ns() + PEER_DEADLINE_S * SEC;
	unsigned char buf[64];
	int status = 0;
	bool done = false;

	while (!done && status == 0) {
		drain(fd); /* before popping: a write after this is for a message we may miss */
		while ((rc = shmring_try_pop(r, buf)) == 0) {
			uint32_t p;
			uint64_t seq;
			if (!msg_check(buf, sizeof(buf), &p, &seq)) {
				fprintf(stderr, "consumer: damaged message after %llu\n",
					(unsigned long long)t.msgs);
				status = 1;
				break;
			}
			if (p == STOP_ID && !exact) {
				done = true;
				break;
			}
			if (p >= nprod || (exact && seq != next[p]) ||
			    (!exact && seen[p] && seq < next[p])) {
				fprintf(stderr, "consumer: producer %u seq %llu, expected %s%llu\n", p,
					(unsigned long long)seq, exact ? "" : "more than ",
					(unsigned long long)next[p]);
				status = 1;
				break;
			}
			seen[p] = true;
			next[p] = seq + 1;
			if (out && (fwrite(&p, sizeof(p), 1, out) != 1 ||
				    fwrite(&seq, sizeof(seq), 1, out) != 1))
				status = 1;
			if (++t.msgs == total) {
				done = true;
				break;
			}
		}
		if (done || status)
			break;
		if (rc != -EAGAIN) {
			fprintf(stderr, "consumer: try_pop: %s\n", shmring_strerror(rc));
			status = 1;
			break;
		}
		rc = shmring_notify_arm(r);
		if (rc == -EAGAIN) {
			t.arm_again++;
			continue;
		}
		if (rc) {
			status = 1;
			break;
		}
		if (now_ns() > deadline) {
			status = 3;
			break;
		}
		t.waits++;
		int n = waiter_wait(&w, WAIT_MS);
		if (n < 0) {
			fprintf(stderr, "consumer: wait: %s\n", strerror(-n));
			status = 1;
		} else if (n > 0) {
			t.wakes++;
		} else {
			t.timeouts++;
			/*
			 * Armed, asleep for 2 s, and data in the ring: a producer may be
			 * between its publish and its write (starved of CPU on a loaded
			 * host). Give it 3 s; if the fd is still quiet, it was lost.
			 */
			if (!shmring_empty(r)) {
				struct pollfd pf = {.fd = fd, .events = POLLIN};
				if (poll(&pf, 1, LOST_GRACE_MS) == 0) {
					fprintf(stderr, "consumer: LOST WAKE-UP: armed, %zu messages in "
						"the ring, fd quiet for %d ms\n", shmring_size(r),
						WAIT_MS + LOST_GRACE_MS);
					status = 4;
				}
			}
		}
	}
	printf("consumer %s: %llu messages, %llu waits on the fd, %llu wake-ups, %llu arms "
	       "found data, %llu timeouts\n", wait_name, (unsigned long long)t.msgs,
	       (unsigned long long)t.waits, (unsigned long long)t.wakes,
	       (unsigned long long)t.arm_again, (unsigned long long)t.timeouts);
	if (status == 0 && t.wakes == 0) {
		fprintf(stderr, "consumer: never woken through the notify fd\n");
		status = 1;
	}
	if (out && fclose(out) != 0)
		status = status ? status : 1;
	waiter_fini(&w);
	shmring_close(r);
	return status;
}

/* ---- bench ------------------------------------------------------------------- */

enum bench_kind { B_NOTIFY, B_FUTEX, B_EVENTFD, B_PINGPONG, B_KINDS };

static const char *const bench_names[B_KINDS] = {
	"notify fd (push -> epoll_wait returns)",
	"futex (push -> pop_wait returns, spin 0)",
	"bare eventfd (write -> epoll_wait returns)",
	"eventfd ping-pong (round trip / 2)",
};

/* Shared between the two bench processes (MAP_SHARED | MAP_ANONYMOUS). */
struct bench_shared {
	_Atomic uint64_t acked;  /* samples the consumer has finished */
	_Atomic int64_t stamp;   /* eventfd kinds: the send time */
	int failed;
	int64_t lat[];           /* consumer's per-sample latency, ns */
};

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		fprintf(stderr, "bench: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
}

static int epoll_for(int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		exit(2);
	return ep;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* The consumer side of one bench kind: sleep, wake, record now - send time. */
static int bench_cpu(const char *var, int dflt)
{
	const char *v = getenv(var);
	return v && *v ? atoi(v) : dflt;
}

static void bench_consumer(enum bench_kind k, const char *name, int efd1, int efd2,
			   struct bench_shared *sh, uint64_t samples)
{
	pin(bench_cpu("BENCH_CONSUMER_CPU", 1));
	struct shmring *r = NULL;
	int fd = -1, ep = -1;
	if (k == B_NOTIFY || k == B_FUTEX) {
		if (shmring_attach(name, NULL, 5 * SEC, &r) != 0)
			_exit(2);
		shmring_set_spin_ns(r, 0);
		if (k == B_NOTIFY && (fd = shmring_notify_fd(r)) < 0)
			_exit(2);
	} else {
		fd = efd1;
	}
	if (fd >= 0)
		ep = epoll_for(fd);
	unsigned char msg[64];
	struct epoll_event ev;
	for (uint64_t i = 0; i < samples; i++) {
		int64_t t1 = 0, t0;
		if (k == B_FUTEX) {
			if (shmring_pop_wait(r, msg, 5 * SEC) != 0)
				_exit(4);
			t1 = now_ns();
			memcpy(&t0, msg, sizeof(t0));
		} else if (k == B_NOTIFY) {
			drain(fd);
			int rc;
			while ((rc = shmring_try_pop(r, msg)) == -EAGAIN) {
				if (shmring_notify_arm(r) == -EAGAIN)
					continue;
				if (epoll_wait(ep, &ev, 1, 5000) != 1)
					_exit(4);
				t1 = now_ns();
				drain(fd);
			}
			if (rc)
				_exit(1);
			if (t1 == 0)
				t1 = now_ns(); /* found without sleeping: the consumer was late */
			memcpy(&t0, msg, sizeof(t0));
		} else {
			if (epoll_wait(ep, &ev, 1, 5000) != 1)
				_exit(4);
			t1 = now_ns();
			drain(fd);
			t0 = atomic_load(&sh->stamp);
			if (k == B_PINGPONG) {
				uint64_t one = 1;
				if (write(efd2, &one, sizeof(one)) != sizeof(one))
					_exit(1);
			}
		}
		sh->lat[i] = t1 - t0;
		atomic_store(&sh->acked, i + 1);
	}
	if (r)
		shmring_close(r);
	_exit(0);
}

/* A SCHED_IDLE spinner pinned to cpu: keeps that CPU out of its idle state, takes no time from others. */
static pid_t idle_spinner(int cpu)
{
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		pin(cpu);
		struct sched_param sp = {.sched_priority = 0};
		if (sched_setscheduler(0, SCHED_IDLE, &sp) != 0)
			_exit(2);
		for (int64_t end = now_ns() + 600 * SEC; now_ns() < end;)
			;
		_exit(0);
	}
	return pid;
}

static int bench(uint64_t samples, bool busy)
{
	pid_t spin[2] = {0, 0};
	if (busy) {
		spin[0] = idle_spinner(0);
		spin[1] = idle_spinner(1);
	}
	size_t len = sizeof(struct bench_shared) + samples * sizeof(int64_t);
	struct bench_shared *sh = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				       -1, 0);
	if (sh == MAP_FAILED)
		return 2;
	printf("bench: %llu samples each, producer on CPU %d, consumer on CPU %d, consumer asleep "
	       "before every send%s\n", (unsigned long long)samples,
	       bench_cpu("BENCH_PRODUCER_CPU", 0), bench_cpu("BENCH_CONSUMER_CPU", 1),
	       busy ? "; both CPUs kept out of idle by SCHED_IDLE spinners" : "");
	for (int k = 0; k < B_KINDS; k++) {
		char name[64];
		snprintf(name, sizeof(name), "/shmring-bench-%d-%d", (int)getpid(), k);
		struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 64, .capacity = 1024,
					     .flags = SHMRING_F_BLOCKING};
		struct shmring *r = NULL;
		if ((k == B_NOTIFY || k == B_FUTEX) && shmring_create(name, &cfg, &r) != 0)
			return 2;
		int efd1 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		int efd2 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		atomic_store(&sh->acked, 0);
		pid_t pid = fork();
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			bench_consumer((enum bench_kind)k, name, efd1, efd2, sh, samples);
		}
		pin(bench_cpu("BENCH_PRODUCER_CPU", 0));
		int ep2 = epoll_for(efd2);
		unsigned char msg[64] = {0};
		int64_t end = now_ns() + 60 * SEC;
		int status = 0;
		for (uint64_t i = 0; i < samples && !status; i++) {
			/* Wait for the previous sample, then give the consumer time to fall asleep. */
			while (atomic_load(&sh->acked) < i && now_ns() < end)
				sleep_ns(5000);
			sleep_ns(50000);
			int64_t t0 = now_ns();
			if (k == B_NOTIFY || k == B_FUTEX) {
				memcpy(msg, &t0, sizeof(t0));
				if (shmring_push_wait(r, msg, 5 * SEC) != 0)
					status = 1;
			} else {
				uint64_t one = 1;
				atomic_store(&sh->stamp, t0);
				if (write(efd1, &one, sizeof(one)) != sizeof(one))
					status = 1;
				if (k == B_PINGPONG) {
					struct epoll_event ev;
					if (epoll_wait(ep2, &ev, 1, 5000) != 1)
						status = 1;
					int64_t t2 = now_ns();
					drain(efd2);
					while (atomic_load(&sh->acked) < i + 1 && now_ns() < end)
						;
					sh->lat[i] = (t2 - t0) / 2; /* round trip / 2 replaces one-way */
				}
			}
			if (now_ns() > end)
				status = 3;
		}
		int st;
		waitpid(pid, &st, 0);
		if (status || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "bench %s failed (%d, child %#x)\n", bench_names[k], status, st);
			return 1;
		}
		qsort(sh->lat, samples, sizeof(int64_t), cmp_i64);
		printf("  %-44s p50 %6lld ns  p99 %6lld ns  p99.9 %6lld ns  max %7lld ns\n",
		       bench_names[k], (long long)sh->lat[samples / 2],
		       (long long)sh->lat[samples * 99 / 100],
		       (long long)sh->lat[samples * 999 / 1000], (long long)sh->lat[samples - 1]);
		close(ep2);
		close(efd1);
		close(efd2);
		if (r)
			shmring_close(r);
	}
	munmap(sh, len);
	for (int i = 0; i < 2; i++)
		if (spin[i] > 0) {
			kill(spin[i], SIGKILL);
			waitpid(spin[i], NULL, 0);
		}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 6 && strcmp(argv[1], "produce") == 0)
		return produce(argv[2], (uint32_t)atoi(argv[3]), strtoull(argv[4], NULL, 10),
			       (unsigned)atoi(argv[5]));
	if (argc >= 7 && strcmp(argv[1], "consume") == 0)
		return consume(argv[2], argv[3], (unsigned)atoi(argv[4]),
			       strtoull(argv[5], NULL, 10), argv[6], argc > 7 ? argv[7] : NULL);
	if (argc >= 2 && strcmp(argv[1], "bench") == 0) {
		uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 20000;
		return bench(n ? n : 20000, argc > 3 && strcmp(argv[3], "busy") == 0);
	}
	fprintf(stderr, "usage: notify_peer produce NAME ID COUNT NSTOP\n"
			"       notify_peer consume NAME epoll|uring NPRODUCERS COUNT exact|stop "
			"[OUTFILE]\n"
			"       notify_peer bench [SAMPLES [busy]]\n");
	return 2;
}
