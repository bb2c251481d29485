/*
 * test_wrap48.c - positions crossing 2^48 across processes, with a recovery on
 * each side of the wrap.
 *
 * A slot word keeps its position mod 2^48 (layout.h), so the first position
 * past 2^48 - 1 reads as a small one in the word while head and tail go on in
 * 64 bits. Recovery compares and CASes exact words (liveness.c
 * release_claims), so a dead claim just before and just after the wrap must
 * both be passed over once, with no message lost, duplicated or reordered
 * beyond the dead one's. For MPSC and MPMC: positions start 4 short of 2^48;
 * a forked producer dies holding a reserved slot before the wrap and another
 * after it (skipped +1 each); on MPMC a forked consumer also dies holding a
 * peeked slot after the wrap (recovered +1). Every wait is bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "shmring.h"
#include "testutil.h"

#define SEC INT64_C(1000000000)
#define MS INT64_C(1000000)
#define WRAP (UINT64_C(1) << 48)

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static int ready_pipe[2];

/* A child that attaches, reserves (producer) or peeks (consumer) one slot, says so and waits to be killed. */
static pid_t holder(const char *name, bool peek)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		struct shmring *r = NULL;
		if (shmring_attach(name, NULL, 5 * SEC, &r))
			_exit(2);
		void *slot;
		const void *cslot;
		if (peek ? shmring_peek(r, &cslot) : shmring_reserve(r, &slot))
			_exit(3);
		char c = 1;
		if (write(ready_pipe[1], &c, 1) != 1)
			_exit(4);
		for (int i = 0; i < 60; i++)
			sleep(1);
		_exit(9);
	}
	char c;
	int64_t end = now_ns() + 10 * SEC;
	fcntl(ready_pipe[0], F_SETFL, O_NONBLOCK);
	while (read(ready_pipe[0], &c, 1) != 1) {
		assert_true(now_ns() < end);
		struct timespec ts = {0, 1 * MS};
		nanosleep(&ts, NULL);
	}
	return pid;
}

static void kill_and_reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* Pop one message (bounded: 1 s covers a recovery) and check it is seq. */
static void pop_expect(struct shmring *c, uint64_t seq)
{
	unsigned char m[64], want[64];
	assert_int_equal(shmring_pop_wait(c, m, 1 * SEC), 0);
	msg_fill(want, 64, 5, seq);
	assert_memory_equal(m, want, 64);
}

static void push_seq(struct shmring *p, uint64_t seq)
{
	unsigned char m[64];
	msg_fill(m, 64, 5, seq);
	assert_int_equal(shmring_try_push(p, m), 0);
}

static void wrap_with_recoveries(enum shmring_kind kind)
{
	const char *name = test_name();
	struct shmring_config cfg = {.kind = kind, .msg_size = 64, .capacity = 8};
	struct shmring *p = NULL, *c = NULL;
	assert_int_equal(shmring_create(name, &cfg, &p), 0);
	assert_int_equal(shmring_test_set_index(p, WRAP - 4), 0);
	assert_int_equal(shmring_attach(name, NULL, 0, &c), 0);
	uint64_t seq = 0;

	/* Before the wrap: a producer dies holding position 2^48 - 4. */
	pid_t pid = holder(name, false);
	push_seq(p, seq); /* 2^48 - 3, behind the dead claim */
	kill_and_reap(pid);
	pop_expect(c, seq++);
	assert_int_equal(atomic_load(&p->hdr->counters.skipped), 1);

	/* Across it: 2^48 - 2 .. 2^48 + 1. */
	for (int i = 0; i < 4; i++)
		push_seq(p, seq + (uint64_t)i);
	for (int i = 0; i < 4; i++)
		pop_expect(c, seq++);
	assert_true(load_relaxed64(&p->hdr->tail) > WRAP);

	/* After it: a producer dies holding position 2^48 + 2. */
	pid = holder(name, false);
	push_seq(p, seq);
	kill_and_reap(pid);
	pop_expect(c, seq++);
	assert_int_equal(atomic_load(&p->hdr->counters.skipped), 2);

	if (kind == SHMRING_MPMC) {
		/* A consumer dies mid-pop after the wrap: its message is lost, the slot comes back. */
		push_seq(p, seq++); /* taken by the dying consumer */
		pid = holder(name, true);
		kill_and_reap(pid);
		for (int i = 0; i < 8; i++) /* all 8 slots, so the dead one must be recovered */
			assert_int_equal(shmring_push_wait(p, (unsigned char[64]){0}, 1 * SEC), 0);
		assert_int_equal(atomic_load(&p->hdr->counters.recovered), 1);
		unsigned char m[64];
		for (int i = 0; i < 8; i++)
			assert_int_equal(shmring_try_pop(c, m), 0);
	}
	/* And the ring goes on: a full fill and drain in order. */
	for (int i = 0; i < 8; i++)
		push_seq(p, seq + (uint64_t)i);
	for (int i = 0; i < 8; i++)
		pop_expect(c, seq++);
	assert_int_equal(shmring_try_pop(c, (unsigned char[64]){0}), -EAGAIN);
	assert_int_equal(shmring_close(c), 0);
	assert_int_equal(shmring_close(p), 0);
}

static void test_positions_wrap_2_48_with_a_recovery_on_each_side(void **s)
{
	(void)s;
	wrap_with_recoveries(SHMRING_MPSC);
	wrap_with_recoveries(SHMRING_MPMC);
}

static int setup(void **s)
{
	(void)s;
	return pipe(ready_pipe);
}

static int teardown(void **s)
{
	(void)s;
	close(ready_pipe[0]);
	close(ready_pipe[1]);
	return 0;
}

int main(void)
{
	watchdog_start(TEST_WATCHDOG_S);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_positions_wrap_2_48_with_a_recovery_on_each_side,
						setup, teardown),
	};
	return cmocka_run_group_tests_name("wrap48", tests, NULL, NULL);
}
