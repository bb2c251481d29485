/*
 * test_create_race.c - two creators of one name, one of them stopped
 * (SIGSTOP) at a random point inside shmring_create: exactly one gets the
 * ring, the name refers to the winner's ring, and the other answers -EEXIST
 * promptly, also when a crashed ring stands at the name and both reclaim it.
 *
 * Creator A is a child; creator B is this process. A tells us it is about to
 * call create, we wait 0-80 us, stop it, create ourselves, let it go on, and
 * compare. A ring "held" by a creator must be the file at the name: a create
 * that succeeds on an inode nobody can attach to is the defect too.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "shmring.h"
#include "testutil.h"

#define ROUNDS 300

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void spin_ns(int64_t ns)
{
	int64_t end = now_ns() + ns;
	while (now_ns() < end)
		;
}

/* Read exactly n bytes within 10 s; 0 on success. */
static int read_bounded(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 10000) != 1)
			return -1;
		ssize_t k = read(fd, (char *)buf + got, n - got);
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	return 0;
}

/* The inode at a ring's name, or 0. */
static ino_t named_ino(const char *name)
{
	char path[300];
	struct stat st;
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	return lstat(path, &st) == 0 ? st.st_ino : 0;
}

static ino_t handle_ino(const struct shmring *r)
{
	struct stat st;
	return fstat(shmring_fd(r), &st) == 0 ? st.st_ino : 0;
}

struct answer {
	int rc;
	ino_t ino; /* the inode A's handle maps, if rc == 0 */
};

/* Creator A: report readiness, create, report, hold the ring until told to close. */
static void creator_a(const char *name, const struct shmring_config *cfg, int to_parent,
		      int from_parent)
{
	struct shmring *r = NULL;
	char go = 'g';
	if (write(to_parent, &go, 1) != 1)
		_exit(3);
	struct answer a = {.rc = shmring_create(name, cfg, &r), .ino = 0};
	if (a.rc == 0)
		a.ino = handle_ino(r);
	if (write(to_parent, &a, sizeof(a)) != (ssize_t)sizeof(a))
		_exit(3);
	char bye;
	(void)read_bounded(from_parent, &bye, 1);
	if (r)
		shmring_close(r);
	_exit(0);
}

/* Leave a crashed ring at name: its creator dies without closing. */
static void leave_dead_ring(const char *name, const struct shmring_config *cfg)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct shmring *r;
		_exit(shmring_create(name, cfg, &r) == 0 ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_true(shm_exists(name));
}

static void race(int kind, bool dead_first)
{
	struct shmring_config cfg = {.kind = kind, .msg_size = 64, .capacity = 64,
				     .flags = SHMRING_F_NO_MLOCK | SHMRING_F_NO_HUGEPAGE};
	unsigned both = 0, neither = 0, unnamed = 0, a_won = 0, b_won = 0;
	int64_t slowest_b = 0;
	srand((unsigned)getpid());
	for (int round = 0; round < ROUNDS; round++) {
		const char *name = test_name();
		if (dead_first)
			leave_dead_ring(name, &cfg);
		int up[2], down[2];
		assert_int_equal(pipe(up), 0);
		assert_int_equal(pipe(down), 0);
		pid_t a = fork();
		assert_true(a >= 0);
		if (a == 0) {
			close(up[0]);
			close(down[1]);
			creator_a(name, &cfg, up[1], down[0]);
		}
		close(up[1]);
		close(down[0]);
		char go;
		assert_int_equal(read_bounded(up[0], &go, 1), 0);
		spin_ns(rand() % 80000);
		kill(a, SIGSTOP);

		struct shmring *rb = NULL;
		int64_t t0 = now_ns();
		int rcb = shmring_create(name, &cfg, &rb);
		int64_t took = now_ns() - t0;
		if (took > slowest_b)
			slowest_b = took;
		ino_t ino_b = rcb == 0 ? handle_ino(rb) : 0;
		if (rcb != 0 && rcb != -EEXIST)
			fail_msg("round %d: creator B got %d (%s)", round, rcb, shmring_last_error());

		kill(a, SIGCONT);
		struct answer ans;
		assert_int_equal(read_bounded(up[0], &ans, sizeof(ans)), 0);
		if (ans.rc != 0 && ans.rc != -EEXIST)
			fail_msg("round %d: creator A got %d", round, ans.rc);

		ino_t at_name = named_ino(name);
		if (ans.rc == 0 && rcb == 0)
			both++;
		else if (ans.rc != 0 && rcb != 0)
			neither++;
		if ((ans.rc == 0 && ans.ino != at_name) || (rcb == 0 && ino_b != at_name))
			unnamed++;
		a_won += ans.rc == 0;
		b_won += rcb == 0;

		char bye = 'b';
		assert_int_equal(write(down[1], &bye, 1), 1);
		int status;
		assert_int_equal(waitpid(a, &status, 0), a);
		if (rb)
			shmring_close(rb);
		close(up[0]);
		close(down[1]);
		if (shm_exists(name)) {
			/* A's ring if B won the name after A's failure path: never. */
			fail_msg("round %d: a ring is left at the name after both closed", round);
		}
	}
	print_message("%d rounds (%s): A won %u, B won %u, both %u, neither %u, "
		      "a winner not at the name %u; B's slowest create %.1f ms\n",
		      ROUNDS, dead_first ? "over a crashed ring" : "fresh name", a_won, b_won, both,
		      neither, unnamed, (double)slowest_b / 1e6);
	assert_int_equal(both, 0);
	assert_int_equal(unnamed, 0);
	/* Nobody else touches the name, so one of the two always gets it. */
	assert_int_equal(neither, 0);
	/* A stopped creator is alive: B's answer never waits for it. */
	assert_true(slowest_b < 1000000000);
}

static void test_two_creators_of_a_fresh_name_never_both_succeed(void **state)
{
	(void)state;
	race(SHMRING_MPSC, false);
}

static void test_two_creators_reclaiming_a_crashed_ring_never_both_succeed(void **state)
{
	(void)state;
	race(SHMRING_MPMC, true);
}

int main(void)
{
	watchdog_start(TEST_WATCHDOG_S);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_creators_of_a_fresh_name_never_both_succeed),
		cmocka_unit_test(test_two_creators_reclaiming_a_crashed_ring_never_both_succeed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
