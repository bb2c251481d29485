/*
 * test_liveness.c - roles, liveness and crashes: a second live claimant of an
 * SPSC/MPSC role gets -EBUSY and a dead one's role is taken over; a producer
 * killed holding a claimed slot costs that message only and the consumer
 * (spinning or asleep) goes on within a second; an MPMC consumer killed
 * mid-pop frees its slot; a restarted consumer resumes where the dead one
 * stopped; a crashed creator's name is reclaimed, a live ring's is not; a
 * stopped (SIGSTOP) producer is not robbed; end of stream gives -EPIPE.
 * Processes die by SIGKILL, so nothing of theirs runs after the kill.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "internal.h"
#include "shmring.h"
#include "testutil.h"

#define SEC INT64_C(1000000000)
#define MS INT64_C(1000000)

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * SEC + t.tv_nsec;
}

static struct shmring *make(const char *name, enum shmring_kind kind, uint32_t cap, uint32_t flags)
{
	struct shmring_config cfg = {.kind = kind, .msg_size = 64, .capacity = cap, .flags = flags};
	struct shmring *r = NULL;
	int rc = shmring_create(name, &cfg, &r);
	if (rc)
		print_error("create: %s\n", shmring_last_error());
	assert_int_equal(rc, 0);
	return r;
}

static struct shmring *join(const char *name)
{
	struct shmring *r = NULL;
	assert_int_equal(shmring_attach(name, NULL, 0, &r), 0);
	return r;
}

/* Fork a child that runs fn(name) and then waits to be killed (or exits). */
static pid_t child(void (*fn)(const char *), const char *name)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fn(name);
		_exit(0);
	}
	return pid;
}

/* Wait (bounded) until the child has signalled readiness by a byte in a pipe. */
static int ready_pipe[2];

static void say_ready(void)
{
	char c = 1;
	ssize_t n = write(ready_pipe[1], &c, 1);
	(void)n;
}

static void wait_ready(void)
{
	struct timespec ts = {0, 1 * MS};
	int64_t end = now_ns() + 10 * SEC;
	char c;
	fcntl(ready_pipe[0], F_SETFL, O_NONBLOCK);
	while (read(ready_pipe[0], &c, 1) != 1) {
		assert_true(now_ns() < end);
		nanosleep(&ts, NULL);
	}
}

/* In a child of this test: wait (bounded) for a grandchild's readiness byte. */
static void wait_ready_in_child(void)
{
	struct pollfd p = {.fd = ready_pipe[0], .events = POLLIN};
	char c;
	if (poll(&p, 1, 10000) != 1 || read(ready_pipe[0], &c, 1) != 1)
		_exit(7);
}

static void kill_and_reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void hold_forever(void)
{
	for (int i = 0; i < 600; i++)
		sleep(1);
	_exit(9);
}

static void push_then_hold(const char *name)
{
	struct shmring *r = NULL;
	if (shmring_attach(name, NULL, 5 * SEC, &r))
		_exit(2);
	unsigned char m[64];
	msg_fill(m, 64, 7, 0);
	if (shmring_try_push(r, m))
		_exit(3);
	say_ready();
	hold_forever();
}

static void pop_then_hold(const char *name)
{
	struct shmring *r = NULL;
	if (shmring_attach(name, NULL, 5 * SEC, &r))
		_exit(2);
	unsigned char m[64];
	for (int i = 0; i < 5; i++)
		if (shmring_pop_wait(r, m, 5 * SEC))
			_exit(3);
	say_ready();
	hold_forever();
}

static void test_second_live_spsc_producer_gets_ebusy_and_a_dead_ones_role_is_taken_over(void **s)
{
	(void)s;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 8, 0);
	pid_t pid = child(push_then_hold, name);
	wait_ready();
	unsigned char m[64] = {0};
	struct shmring *p = join(name);
	assert_int_equal(shmring_try_push(p, m), -EBUSY);
	assert_non_null(strstr(shmring_last_error(), "producer role is held by live process"));
	assert_int_equal(atomic_load(&r->hdr->counters.takeovers), 0);
	kill_and_reap(pid);
	assert_int_equal(shmring_try_push(p, m), 0); /* the dead holder's role is taken over */
	assert_int_equal(atomic_load(&r->hdr->counters.takeovers), 1);
	/* Closing releases a role: another handle may take it without a takeover. */
	assert_int_equal(shmring_close(p), 0);
	p = join(name);
	assert_int_equal(shmring_try_push(p, m), 0);
	assert_int_equal(atomic_load(&r->hdr->counters.takeovers), 1);
	assert_int_equal(shmring_close(p), 0);
	assert_int_equal(shmring_close(r), 0);
}

static void test_second_live_consumer_gets_ebusy_on_spsc_and_mpsc_not_mpmc(void **s)
{
	(void)s;
	const enum shmring_kind kinds[] = {SHMRING_SPSC, SHMRING_MPSC, SHMRING_MPMC};
	for (int k = 0; k < 3; k++) {
		const char *name = test_name();
		struct shmring *r = make(name, kinds[k], 8, 0);
		struct shmring *a = join(name), *b = join(name);
		unsigned char m[64] = {0};
		assert_int_equal(shmring_try_pop(a, m), -EAGAIN); /* role taken, ring empty */
		assert_int_equal(shmring_try_pop(b, m), kinds[k] == SHMRING_MPMC ? -EAGAIN : -EBUSY);
		const void *slot;
		assert_int_equal(shmring_peek(b, &slot), kinds[k] == SHMRING_MPMC ? -EAGAIN : -EBUSY);
		assert_int_equal(shmring_close(a), 0);
		assert_int_equal(shmring_try_pop(b, m), -EAGAIN);
		assert_int_equal(shmring_close(b), 0);
		assert_int_equal(shmring_close(r), 0);
	}
}

static void test_restarted_spsc_consumer_resumes_where_the_dead_one_stopped(void **s)
{
	(void)s;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 16, 0);
	unsigned char m[64], want[64];
	for (uint64_t i = 0; i < 10; i++) {
		msg_fill(m, 64, 1, i);
		assert_int_equal(shmring_try_push(r, m), 0);
	}
	pid_t pid = child(pop_then_hold, name);
	wait_ready();
	kill_and_reap(pid);
	struct shmring *c = join(name);
	for (uint64_t i = 5; i < 10; i++) {
		assert_int_equal(shmring_try_pop(c, m), 0);
		msg_fill(want, 64, 1, i);
		assert_memory_equal(m, want, 64);
	}
	assert_int_equal(shmring_try_pop(c, m), -EAGAIN);
	assert_int_equal(shmring_close(c), 0);
	assert_int_equal(shmring_close(r), 0);
}

static void reserve_then_hold(const char *name)
{
	struct shmring *r = NULL;
	if (shmring_attach(name, NULL, 5 * SEC, &r))
		_exit(2);
	void *slot;
	if (shmring_reserve(r, &slot))
		_exit(3);
	memset(slot, 0xab, 32); /* half a message: a torn one, if it were ever delivered */
	say_ready();
	hold_forever();
}

/* A producer dies holding a claimed slot; the consumer passes it within a second. */
static void dead_producer_slot_is_skipped(enum shmring_kind kind, uint32_t flags, bool sleeping)
{
	const char *name = test_name();
	struct shmring *r = make(name, kind, 8, flags);
	struct shmring *c = join(name);
	if (sleeping)
		assert_int_equal(shmring_set_spin_ns(c, 0), 0);
	pid_t pid = child(reserve_then_hold, name);
	wait_ready();
	unsigned char m[64], want[64];
	msg_fill(m, 64, 2, 42);
	assert_int_equal(shmring_try_push(r, m), 0); /* behind the dead claim */
	kill_and_reap(pid);
	int64_t t0 = now_ns();
	assert_int_equal(shmring_pop_wait(c, m, 5 * SEC), 0);
	int64_t took = now_ns() - t0;
	msg_fill(want, 64, 2, 42);
	assert_memory_equal(m, want, 64); /* the next message, not the torn one */
	assert_true(took < 1 * SEC);
	assert_int_equal(atomic_load(&r->hdr->counters.skipped), 1);
	print_message("%s%s: dead producer's slot passed %.2f ms after its death\n",
		      kind == SHMRING_MPSC ? "MPSC" : "MPMC", sleeping ? " (asleep)" : "",
		      (double)took / 1e6);
	assert_int_equal(shmring_close(c), 0);
	assert_int_equal(shmring_close(r), 0);
}

static void test_dead_producer_holding_a_slot_costs_one_message_and_the_consumer_goes_on(void **s)
{
	(void)s;
	dead_producer_slot_is_skipped(SHMRING_MPSC, 0, false);
	dead_producer_slot_is_skipped(SHMRING_MPMC, 0, false);
}

static void test_consumer_asleep_in_pop_wait_is_not_stuck_behind_a_dead_producer(void **s)
{
	(void)s;
	dead_producer_slot_is_skipped(SHMRING_MPSC, SHMRING_F_BLOCKING, true);
	dead_producer_slot_is_skipped(SHMRING_MPMC, SHMRING_F_BLOCKING, true);
}

static void peek_then_hold(const char *name)
{
	struct shmring *r = NULL;
	if (shmring_attach(name, NULL, 5 * SEC, &r))
		_exit(2);
	const void *slot;
	if (shmring_peek(r, &slot))
		_exit(3);
	say_ready();
	hold_forever();
}

static void test_dead_mpmc_consumer_mid_pop_frees_its_slot(void **s)
{
	(void)s;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_MPMC, 2, 0);
	unsigned char m[64];
	msg_fill(m, 64, 3, 0);
	assert_int_equal(shmring_try_push(r, m), 0);
	assert_int_equal(shmring_try_push(r, m), 0);
	pid_t pid = child(peek_then_hold, name); /* holds position 0 mid-pop */
	wait_ready();
	assert_int_equal(shmring_try_pop(r, m), 0); /* position 1 */
	kill_and_reap(pid);
	/* The ring is not wedged: both slots come back to the producer. */
	int64_t t0 = now_ns();
	assert_int_equal(shmring_push_wait(r, m, 5 * SEC), 0);
	assert_int_equal(shmring_push_wait(r, m, 5 * SEC), 0);
	assert_true(now_ns() - t0 < 1 * SEC);
	assert_int_equal(atomic_load(&r->hdr->counters.recovered), 1);
	assert_int_equal(shmring_close(r), 0);
}

static void test_stopped_producer_is_alive_and_its_slot_waits_for_it(void **s)
{
	(void)s;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_MPSC, 8, 0);
	pid_t pid = child(reserve_then_hold, name);
	wait_ready();
	kill(pid, SIGSTOP);
	unsigned char m[64];
	assert_int_equal(shmring_pop_wait(r, m, 50 * MS), -ETIMEDOUT);
	assert_int_equal(atomic_load(&r->hdr->counters.skipped), 0);
	kill(pid, SIGCONT);
	kill_and_reap(pid);
	assert_int_equal(shmring_close(r), 0);
}

static void create_then_die(const char *name)
{
	struct shmring_config cfg = {.kind = SHMRING_MPMC, .msg_size = 64, .capacity = 8};
	struct shmring *r = NULL;
	if (shmring_create(name, &cfg, &r))
		_exit(2);
	say_ready();
	hold_forever();
}

static void test_crashed_creators_name_is_reclaimed_but_a_live_ring_is_not(void **s)
{
	(void)s;
	const char *name = test_name();
	pid_t pid = child(create_then_die, name);
	wait_ready();
	struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 64, .capacity = 8};
	struct shmring *r = NULL;
	char pidstr[32];
	snprintf(pidstr, sizeof(pidstr), "%d", (int)pid);
	assert_int_equal(shmring_create(name, &cfg, &r), -EEXIST);
	assert_non_null(strstr(shmring_last_error(), pidstr)); /* names the live participant */
	kill_and_reap(pid);
	assert_int_equal(shmring_create(name, &cfg, &r), 0);
	assert_int_equal(shmring_capacity(r), 8);
	struct shmring_info info;
	assert_int_equal(shmring_info(r, &info), 0);
	assert_int_equal(info.kind, SHMRING_SPSC); /* a new ring, not the old one */
	assert_int_equal(shmring_close(r), 0);

	/* Half-initialised: a version never published and no live lock. */
	const char *half = test_name();
	r = make(half, SHMRING_SPSC, 8, SHMRING_F_PERSIST);
	atomic_store(&r->hdr->version, 0);
	assert_int_equal(shmring_close(r), 0);
	/* Version 0 means not initialised, so PERSIST was never published: reclaimed. */
	r = NULL;
	assert_int_equal(shmring_create(half, &cfg, &r), 0);
	assert_int_equal(shmring_close(r), 0);

	/* A PERSIST ring with nobody attached is kept. */
	const char *keep = test_name();
	r = make(keep, SHMRING_SPSC, 8, SHMRING_F_PERSIST);
	assert_int_equal(shmring_close(r), 0);
	assert_int_equal(shmring_create(keep, &cfg, &r), -EEXIST);
	assert_int_equal(shmring_unlink(keep), 0);
}

static void push3_and_exit(const char *name)
{
	struct shmring *r = NULL;
	if (shmring_attach(name, NULL, 5 * SEC, &r))
		_exit(2);
	unsigned char m[64] = {0};
	for (int i = 0; i < 3; i++)
		if (shmring_try_push(r, m))
			_exit(3);
	say_ready();
	_exit(0); /* exits without close: the lock goes with the process */
}

static void test_end_of_stream_is_epipe_once_no_producer_lives(void **s)
{
	(void)s;
	const uint32_t flags[] = {0, SHMRING_F_BLOCKING};
	for (int f = 0; f < 2; f++) {
		const char *name = test_name();
		struct shmring *r = make(name, SHMRING_MPSC, 8, flags[f]);
		assert_int_equal(shmring_set_end_of_stream(r, true), 0);
		pid_t pid = child(push3_and_exit, name);
		wait_ready();
		waitpid(pid, NULL, 0);
		unsigned char m[64];
		for (int i = 0; i < 3; i++)
			assert_int_equal(shmring_pop_wait(r, m, 5 * SEC), 0);
		int64_t t0 = now_ns();
		assert_int_equal(shmring_pop_wait(r, m, 5 * SEC), -EPIPE);
		assert_true(now_ns() - t0 < 100 * MS);
		assert_int_equal(shmring_close(r), 0);
	}
}


/* The forked grandchild reads one byte here (bounded) before it exits. */
static int hold_pipe[2];

static void reserve_fork_worker_then_hold(const char *name)
{
	struct shmring *r = NULL;
	if (shmring_attach(name, NULL, 5 * SEC, &r))
		_exit(2);
	void *slot;
	if (shmring_reserve(r, &slot))
		_exit(3);
	pid_t w = fork(); /* a worker that uses the inherited handle, then goes */
	if (w == 0) {
		unsigned char m[64] = {0};
		/* The copy joins as a participant of its own: the parent's slot stays the parent's. */
		int rc = shmring_try_push(r, m);
		_exit(rc == 0 ? 0 : 10);
	}
	int st;
	waitpid(w, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		_exit(4);
	pid_t w2 = fork();
	if (w2 == 0) {
		/* Outlives its parent holding the inherited handle, which it used once. */
		unsigned char m[64] = {1};
		if (shmring_try_push(r, m))
			_exit(5);
		say_ready();
		struct pollfd p = {.fd = hold_pipe[0], .events = POLLIN};
		char c;
		if (poll(&p, 1, 10000) == 1 && read(hold_pipe[0], &c, 1) == 1)
			_exit(0);
		_exit(6);
	}
	wait_ready_in_child();
	say_ready();
	hold_forever();
}

static void test_forked_worker_does_not_keep_a_dead_parent_alive(void **s)
{
	(void)s;
	assert_int_equal(pipe(hold_pipe), 0);
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_MPSC, 8, 0);
	pid_t pid = child(reserve_fork_worker_then_hold, name);
	wait_ready();
	/* The workers' pushes are behind the parent's reservation. */
	unsigned char m[64];
	assert_int_equal(shmring_try_pop(r, m), -EAGAIN);
	kill_and_reap(pid); /* the second worker (its child) lives on, holding a copy */
	int64_t t0 = now_ns();
	assert_int_equal(shmring_pop_wait(r, m, 5 * SEC), 0);
	assert_true(now_ns() - t0 < 1 * SEC);
	assert_int_equal(shmring_pop_wait(r, m, 5 * SEC), 0);
	assert_int_equal(atomic_load(&r->hdr->counters.skipped), 1);
	struct shmring_stats st;
	assert_int_equal(shmring_stats(r, &st), 0);
	/*
	 * Alive: this test's handle, and the second worker's copy of its parent's
	 * handle, which it used (a copy joins as a participant of its own on its
	 * first push or pop). Its copy of this test's handle, never used, holds
	 * no entry; the dead parent's entries are not alive.
	 */
	print_message("after the parent's death: %u participants, %u alive\n", st.participants,
		      st.alive);
	assert_int_equal(st.alive, 2);
	char c = 'x';
	assert_int_equal(write(hold_pipe[1], &c, 1), 1);
	close(hold_pipe[0]);
	close(hold_pipe[1]);
	assert_int_equal(shmring_close(r), 0);
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
		cmocka_unit_test_setup_teardown(test_second_live_spsc_producer_gets_ebusy_and_a_dead_ones_role_is_taken_over, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_live_consumer_gets_ebusy_on_spsc_and_mpsc_not_mpmc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restarted_spsc_consumer_resumes_where_the_dead_one_stopped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_producer_holding_a_slot_costs_one_message_and_the_consumer_goes_on, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consumer_asleep_in_pop_wait_is_not_stuck_behind_a_dead_producer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_mpmc_consumer_mid_pop_frees_its_slot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stopped_producer_is_alive_and_its_slot_waits_for_it, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crashed_creators_name_is_reclaimed_but_a_live_ring_is_not, setup, teardown),
		cmocka_unit_test_setup_teardown(test_end_of_stream_is_epipe_once_no_producer_lives, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forked_worker_does_not_keep_a_dead_parent_alive, setup, teardown),
	};
	return cmocka_run_group_tests_name("liveness", tests, NULL, NULL);
}
