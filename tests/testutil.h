/*
 * testutil.h - what every cmocka test binary shares: a watchdog, unique ring
 * names, and message payloads that can be checked.
 */
#ifndef SHMRING_TESTUTIL_H
#define SHMRING_TESTUTIL_H

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Default watchdog of a test binary, seconds; SHMRING_TEST_WATCHDOG overrides. */
#define TEST_WATCHDOG_S 300

static void watchdog_fire(int sig)
{
	(void)sig;
	static const char msg[] = "\nWATCHDOG: test binary exceeded its time bound; failing\n";
	ssize_t n = write(2, msg, sizeof(msg) - 1);
	(void)n;
	_exit(124);
}

/* Kill this test binary (and report it failed) if it runs longer than its bound. */
static inline void watchdog_start(unsigned seconds)
{
	const char *env = getenv("SHMRING_TEST_WATCHDOG");
	if (env && atoi(env) > 0)
		seconds = (unsigned)atoi(env);
	signal(SIGALRM, watchdog_fire);
	alarm(seconds);
}

/*
 * Names handed out by test_name(), removed at exit if a failed assertion
 * skipped the test's own cleanup: a failing test leaves nothing in /dev/shm.
 */
#define TEST_NAMES_MAX 4096
static char test_names[TEST_NAMES_MAX][48];
static unsigned test_names_n;
static pid_t test_names_owner;

static void test_names_cleanup(void)
{
	char path[sizeof(test_names[0]) + 16];
	if (getpid() != test_names_owner)
		return; /* a forked child: the parent cleans up */
	for (unsigned i = 0; i < test_names_n && i < TEST_NAMES_MAX; i++) {
		snprintf(path, sizeof(path), "/dev/shm%.47s", test_names[i]);
		unlink(path);
	}
}

/* A ring name unique to this process and call: /shmring-t-<pid>-<n>. */
static inline const char *test_name(void)
{
	if (test_names_n == 0) {
		test_names_owner = getpid();
		atexit(test_names_cleanup);
	}
	char *buf = test_names[test_names_n % TEST_NAMES_MAX];
	snprintf(buf, sizeof(test_names[0]), "/shmring-t-%d-%u", (int)getpid(), test_names_n);
	test_names_n++;
	return buf;
}

static inline int shm_exists(const char *name)
{
	char path[300];
	struct stat st;
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	return lstat(path, &st) == 0;
}

/*
 * A test message: producer id, sequence and a checksum over the rest, with
 * the payload bytes derived from (producer, seq). Any torn or mixed-up copy
 * fails msg_check. Works for any size >= 1; fields are truncated to fit.
 */
struct msg_head {
	uint32_t producer;
	uint32_t check;
	uint64_t seq;
};

static inline uint32_t fnv1a(const unsigned char *p, size_t n, uint32_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static inline void msg_fill(void *buf, size_t size, uint32_t producer, uint64_t seq)
{
	unsigned char *b = buf;
	for (size_t i = 0; i < size; i++)
		b[i] = (unsigned char)(seq * 31 + producer * 7 + i);
	if (size >= sizeof(struct msg_head)) {
		struct msg_head h = {.producer = producer, .check = 0, .seq = seq};
		memcpy(b, &h, sizeof(h));
		uint32_t c = fnv1a(b, size, 2166136261u);
		memcpy(b + offsetof(struct msg_head, check), &c, sizeof(c));
	}
}

/* 1 if buf is a whole, untorn message; fills producer and seq when it has them. */
static inline int msg_check(const void *buf, size_t size, uint32_t *producer, uint64_t *seq)
{
	const unsigned char *b = buf;
	if (size < sizeof(struct msg_head))
		return 1;
	struct msg_head h;
	memcpy(&h, b, sizeof(h));
	unsigned char tmp[8192];
	if (size > sizeof(tmp))
		return 0;
	memcpy(tmp, b, size);
	memset(tmp + offsetof(struct msg_head, check), 0, sizeof(uint32_t));
	if (fnv1a(tmp, size, 2166136261u) != h.check)
		return 0;
	if (producer)
		*producer = h.producer;
	if (seq)
		*seq = h.seq;
	return 1;
}

#endif /* SHMRING_TESTUTIL_H */
