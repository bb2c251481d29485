/*
 * demo_common.h - what the example programs in examples/ share: their message
 * layouts (each pair of programs must agree on one), shutdown on SIGINT and
 * SIGTERM, CPU pinning, the clock, option parsing and error reports.
 *
 * Every function here is static inline, so each example stays one .c file
 * plus this header, and a program that uses only part of it gets no warning.
 */
#ifndef SHMRING_DEMO_COMMON_H
#define SHMRING_DEMO_COMMON_H

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmring.h"

/* ---- message layouts --------------------------------------------------- */

/*
 * SPSC demo (feed_handler -> processor): a MarketData-like update. The
 * sequence number runs 0, 1, 2, ... over both phases, so the processor finds
 * any gap or duplicate; symbol and check are functions of seq, so a torn
 * message would show.
 */
enum md_type {
	MD_HELLO = 1,      /* first message: aux[0] latency msgs, aux[1] throughput msgs */
	MD_LATENCY = 2,    /* paced, ts_ns set on every message */
	MD_THROUGHPUT = 3, /* back to back, ts_ns set on the first only */
	MD_END = 4,        /* last message: seq = the number of data messages sent */
};

struct md_msg {
	uint64_t ts_ns;    /* CLOCK_MONOTONIC when pushed (0 when not stamped) */
	uint64_t seq;
	uint32_t type;     /* enum md_type */
	uint32_t symbol;   /* seq % MD_SYMBOLS */
	uint32_t bid_size;
	uint32_t ask_size;
	int64_t bid;       /* price in units of 1e-4 */
	int64_t ask;
	uint64_t aux[2];   /* HELLO: the counts; data: aux[0] = md_check(seq) */
};
_Static_assert(sizeof(struct md_msg) == 64, "the demo's message is 64 bytes");

#define MD_SYMBOLS 128u

/* ---- MPSC demo (strategy -> gateway) ------------------------------------ */

enum order_type {
	ORDER_NEW = 1,   /* an order: seq is this strategy's 0, 1, 2, ... */
	ORDER_DONE = 2,  /* the strategy finished: seq = orders it sent */
	ORDER_ABORT = 3, /* the strategy stopped early (signal): seq = orders sent */
};

struct order_msg {
	uint64_t ts_ns;
	uint64_t seq;
	uint32_t strategy; /* the sender's --id */
	uint32_t type;     /* enum order_type */
	int64_t price;
	uint32_t qty;
	uint32_t side;     /* 0 buy, 1 sell */
	uint64_t check;    /* demo_mix64(strategy, seq) */
	uint64_t pad[2];
};
_Static_assert(sizeof(struct order_msg) == 64, "the orders demo's message is 64 bytes");

/* The most strategies the gateway tracks (ids 0 .. ORDER_MAX_STRATEGIES-1). */
#define ORDER_MAX_STRATEGIES 64u

/* ---- MPMC demo (feed -> worker) ----------------------------------------- */

enum work_type {
	WORK_ITEM = 1, /* seq is this feed's 0, 1, 2, ... */
	WORK_STOP = 2, /* a worker that pops this prints its tally and exits */
};

struct work_msg {
	uint64_t seq;
	uint32_t feed;     /* the sender's --id */
	uint32_t type;     /* enum work_type */
	uint64_t check;    /* demo_mix64(feed, seq) */
	uint64_t payload[5];
};
_Static_assert(sizeof(struct work_msg) == 64, "the workers demo's message is 64 bytes");

/* The most feeds a worker tracks (ids 0 .. WORK_MAX_FEEDS-1). */
#define WORK_MAX_FEEDS 64u

/* A 64-bit mix of two values (splitmix64's finaliser), for payload checks. */
static inline uint64_t demo_mix64(uint64_t a, uint64_t b)
{
	uint64_t z = a * 0x9e3779b97f4a7c15ull + b + 0x632be59bd9b4e019ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- shutdown ----------------------------------------------------------- */

/* The signal that asked us to stop, 0 while running. */
static volatile sig_atomic_t demo_stop;

static inline void demo_on_signal(int sig)
{
	demo_stop = sig;
}

/*
 * SIGINT and SIGTERM set demo_stop. No SA_RESTART: a sleep in the kernel
 * returns early, so loops see the flag; every wait in the examples is bounded
 * for the same reason.
 */
static inline void demo_install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = demo_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* Output piped into "head" must not kill us before we close the ring. */
	signal(SIGPIPE, SIG_IGN);
}

/* The exit status of a program stopped by a signal: 128 + signal, as a shell's. */
static inline int demo_stop_status(void)
{
	return 128 + (int)demo_stop;
}

/* ---- time --------------------------------------------------------------- */

#define DEMO_NS_PER_S UINT64_C(1000000000)

static inline uint64_t demo_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * DEMO_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static inline void demo_sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / DEMO_NS_PER_S),
			       .tv_nsec = (long)(ns % DEMO_NS_PER_S) };

	nanosleep(&ts, NULL); /* a signal cuts it short: the caller re-checks demo_stop */
}

/* A spin-wait hint to the CPU (lets the sibling hyperthread run). */
static inline void demo_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/* ---- CPUs --------------------------------------------------------------- */

/* How many CPUs this process may run on. */
static inline int demo_allowed_cpus(void)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return 1;
	return CPU_COUNT(&set);
}

/*
 * Pins the calling process to @cpu (< 0: leave it unpinned). Pins only a CPU
 * that exists and that this process may use; otherwise, or when
 * sched_setaffinity fails, prints a note and stays unpinned. Returns true when
 * pinned.
 */
static inline int demo_pin_cpu(const char *prog, int cpu)
{
	cpu_set_t allowed, want;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&allowed);
	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
		printf("%s: note: cannot read the CPU affinity (%s); running unpinned\n", prog,
		       strerror(errno));
		return 0;
	}
	if (cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed)) {
		printf("%s: note: CPU %d does not exist or is not allowed to this process; "
		       "running unpinned\n", prog, cpu);
		return 0;
	}
	CPU_ZERO(&want);
	CPU_SET(cpu, &want);
	if (sched_setaffinity(0, sizeof(want), &want) != 0) {
		printf("%s: note: cannot pin to CPU %d (%s); running unpinned\n", prog, cpu,
		       strerror(errno));
		return 0;
	}
	printf("%s: pinned to CPU %d\n", prog, cpu);
	return 1;
}

/* ---- errors and options ------------------------------------------------- */

/* Reports a failed shmring call: the code's sentence and this thread's detail. */
static inline void demo_report(const char *prog, const char *what, int rc)
{
	const char *detail = shmring_last_error();

	fprintf(stderr, "%s: %s: %s (%d)%s%s\n", prog, what, shmring_strerror(rc), rc,
		detail[0] ? ": " : "", detail);
}

/* Prints how the ring is backed: the users' "did it really get hugepages and mlock?". */
static inline void demo_print_info(const char *prog, const char *name, struct shmring *r)
{
	struct shmring_info info;
	const char *kind, *backing;
	int rc;

	memset(&info, 0, sizeof(info));
	rc = shmring_info(r, &info);
	if (rc < 0) {
		demo_report(prog, "shmring_info", rc);
		return;
	}
	switch (info.kind) {
	case SHMRING_SPSC: kind = "SPSC"; break;
	case SHMRING_MPSC: kind = "MPSC"; break;
	case SHMRING_MPMC: kind = "MPMC"; break;
	default: kind = "?"; break;
	}
	switch (info.backing) {
	case SHMRING_BACKING_SHM: backing = "/dev/shm"; break;
	case SHMRING_BACKING_SHM_THP: backing = "/dev/shm with transparent hugepages"; break;
	case SHMRING_BACKING_HUGETLBFS: backing = "hugetlbfs"; break;
	case SHMRING_BACKING_HUGETLB_ANON: backing = "anonymous hugetlb"; break;
	default: backing = "?"; break;
	}
	printf("%s: ring %s: %s, %" PRIu32 " messages of %" PRIu32 " bytes, %s, %zu KiB pages, "
	       "%zu KiB mapped, %s\n", prog, name, kind, info.capacity, info.msg_size, backing,
	       info.page_size / 1024, info.map_size / 1024,
	       info.locked ? "locked in memory" : "NOT locked (may page fault)");
}

/*
 * The creators' --unlink: removes the name of a ring that a crashed run left
 * behind (shmring_unlink also removes a hugetlbfs slot file). Returns the exit
 * status: 0 when removed or already gone.
 */
static inline int demo_unlink(const char *prog, const char *name)
{
	int rc = shmring_unlink(name);

	if (rc == -ENOENT) {
		printf("%s: no ring named %s: nothing to remove\n", prog, name);
		return 0;
	}
	if (rc < 0) {
		demo_report(prog, "shmring_unlink", rc);
		return 1;
	}
	printf("%s: removed ring %s\n", prog, name);
	return 0;
}

/* Parses an unsigned decimal option value in [lo, hi]; exits 2 when it is not one. */
static inline uint64_t demo_parse_u64(const char *prog, const char *opt, const char *arg,
				      uint64_t lo, uint64_t hi)
{
	char *end = NULL;
	unsigned long long v;

	errno = 0;
	if (arg[0] == '-' || arg[0] == '\0')
		goto bad;
	v = strtoull(arg, &end, 10);
	if (errno != 0 || *end != '\0' || v < lo || v > hi)
		goto bad;
	return (uint64_t)v;
bad:
	fprintf(stderr, "%s: %s wants a number in [%" PRIu64 ", %" PRIu64 "], not '%s'\n", prog,
		opt, lo, hi, arg);
	exit(2);
}

/* Parses a CPU number, or -1 for "do not pin". */
static inline int demo_parse_cpu(const char *prog, const char *arg)
{
	if (strcmp(arg, "-1") == 0 || strcmp(arg, "none") == 0)
		return -1;
	return (int)demo_parse_u64(prog, "--cpu", arg, 0, CPU_SETSIZE - 1);
}

/*
 * Attaches to @name, retrying in 100 ms steps until @timeout_ns so a signal is
 * seen while the creator is still missing. Returns 0 or the last error
 * (-ENOENT / -EINPROGRESS when the time ran out, -EINTR when stopped).
 */
static inline int demo_attach(const char *name, const struct shmring_config *expect,
			      uint64_t timeout_ns, struct shmring **out)
{
	uint64_t deadline = demo_now_ns() + timeout_ns;

	for (;;) {
		uint64_t now = demo_now_ns();
		uint64_t step = DEMO_NS_PER_S / 10;
		int rc;

		if (now < deadline && deadline - now < step)
			step = deadline - now;
		rc = shmring_attach(name, expect, now < deadline ? (int64_t)step : 0, out);
		if (rc != -ENOENT && rc != -EINPROGRESS)
			return rc;
		if (demo_stop)
			return -EINTR;
		if (demo_now_ns() >= deadline)
			return rc;
	}
}

#endif /* SHMRING_DEMO_COMMON_H */
