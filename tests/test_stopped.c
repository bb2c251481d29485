/*
 * test_stopped.c - SIGSTOP, the short form of the soak's stopped participants.
 *
 * What include/shmring.h and liveness.c document: a stopped process is alive.
 *   - a stopped MPMC consumer holding a READING slot (peeked): the slot is not
 *     recovered (recovered stays 0), a producer that needs it waits (bounded
 *     push_wait times out); resumed, the consumer releases it and the producer
 *     goes on;
 *   - a stopped SPSC role holder keeps its role (-EBUSY to a second consumer,
 *     also after a wait); killed, its role is taken over at once.
 * The child stops itself (raise(SIGSTOP)) at a known step; waitpid(WUNTRACED)
 * sees it stopped. Every wait is bounded.
 */
#include <errno.h>
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

/* Wait (bounded, 10 s) for the child to stop or (stopped == false) to exit; returns its status. */
static int wait_child(pid_t pid, bool stopped)
{
	for (int i = 0; i < 10000; i++) {
		int st;
		pid_t w = waitpid(pid, &st, WNOHANG | (stopped ? WUNTRACED : 0));
		if (w == pid && (stopped ? WIFSTOPPED(st) : (WIFEXITED(st) || WIFSIGNALED(st))))
			return st;
		struct timespec ts = {0, 1 * MS};
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fail_msg("child %d did not %s within 10 s", (int)pid, stopped ? "stop" : "exit");
	return -1;
}

static void test_stopped_mpmc_reader_holds_its_slot_until_resumed(void **s)
{
	(void)s;
	const char *name = test_name();
	struct shmring_config cfg = {.kind = SHMRING_MPMC, .msg_size = 64, .capacity = 4};
	struct shmring *r = NULL;
	assert_int_equal(shmring_create(name, &cfg, &r), 0);
	unsigned char m[64] = {1};
	assert_int_equal(shmring_try_push(r, m), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		struct shmring *c = NULL;
		const void *slot;
		if (shmring_attach(name, NULL, 5 * SEC, &c) || shmring_peek(c, &slot))
			_exit(2);
		raise(SIGSTOP); /* READING, stopped */
		_exit(shmring_release(c) == 0 && shmring_close(c) == 0 ? 0 : 3);
	}
	wait_child(pid, true);
	/* 3 free slots; the 4th is the stopped reader's: wait for it, never take it. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(shmring_try_push(r, m), 0);
	assert_int_equal(shmring_push_wait(r, m, 300 * MS), -ETIMEDOUT);
	assert_int_equal(atomic_load(&r->hdr->counters.recovered), 0);
	kill(pid, SIGCONT);
	int st = wait_child(pid, false);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(shmring_push_wait(r, m, 1 * SEC), 0);
	assert_int_equal(atomic_load(&r->hdr->counters.recovered), 0);
	assert_int_equal(shmring_size(r), 4);
	assert_int_equal(shmring_close(r), 0);
}

static void test_stopped_spsc_role_holder_keeps_its_role_until_killed(void **s)
{
	(void)s;
	const char *name = test_name();
	struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 64, .capacity = 4};
	struct shmring *r = NULL, *c2 = NULL;
	assert_int_equal(shmring_create(name, &cfg, &r), 0);
	assert_int_equal(shmring_attach(name, NULL, 0, &c2), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		struct shmring *c = NULL;
		unsigned char m[64];
		if (shmring_attach(name, NULL, 5 * SEC, &c) || shmring_try_pop(c, m) != -EAGAIN)
			_exit(2);
		raise(SIGSTOP); /* the consumer role's holder, stopped */
		_exit(0);
	}
	wait_child(pid, true);
	unsigned char m[64] = {7};
	assert_int_equal(shmring_try_push(r, m), 0);
	assert_int_equal(shmring_try_pop(c2, m), -EBUSY);
	struct timespec ts = {0, 200 * MS};
	nanosleep(&ts, NULL);
	assert_int_equal(shmring_try_pop(c2, m), -EBUSY); /* still: stopped is alive */
	kill(pid, SIGKILL);
	wait_child(pid, false);
	assert_int_equal(shmring_try_pop(c2, m), 0); /* taken over, message intact */
	assert_int_equal(m[0], 7);
	assert_int_equal(shmring_close(c2), 0);
	assert_int_equal(shmring_close(r), 0);
}

int main(void)
{
	watchdog_start(TEST_WATCHDOG_S);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stopped_mpmc_reader_holds_its_slot_until_resumed),
		cmocka_unit_test(test_stopped_spsc_role_holder_keeps_its_role_until_killed),
	};
	return cmocka_run_group_tests_name("stopped", tests, NULL, NULL);
}
