/*
 * test_mp.c - producers and consumers as separate processes (fork + exec of
 * ringpeer), every message carrying {producer, sequence, checksum}:
 * nothing lost, nothing duplicated, per-producer order held, no torn copy.
 *
 *   SPSC  1 -> 1, 10^7 messages
 *   MPSC  2 -> 1, 10^6 messages each
 *   MPMC  2 -> 2, 5 x 10^5 messages each; exactly-once checked here from the
 *         consumers' logs
 *
 * SHMRING_TEST_SCALE (a divisor, default 1) shortens the runs for slow
 * builds; the suite runs them at full size.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "shmring.h"
#include "testutil.h"

#define PEER_TIMEOUT_S 240
#define STOP_ID 0xffffffffu

static char peer_path[PATH_MAX];

static uint64_t scaled(uint64_t n)
{
	const char *s = getenv("SHMRING_TEST_SCALE");
	uint64_t d = s && atoi(s) > 0 ? (uint64_t)atoi(s) : 1;
	return n / d ? n / d : 1;
}

static pid_t spawn(char *const argv[])
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* A failed test must not leave peers spinning: they die with us. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(peer_path, argv);
		_exit(127);
	}
	return pid;
}

/* Wait for all pids, bounded; kill the rest on timeout. Returns how many failed. */
static int wait_all(pid_t *pids, int n, int timeout_s)
{
	int failed = 0, left = n;
	time_t end = time(NULL) + timeout_s;
	while (left > 0) {
		for (int i = 0; i < n; i++) {
			if (pids[i] <= 0)
				continue;
			int st;
			pid_t w = waitpid(pids[i], &st, WNOHANG);
			if (w == pids[i]) {
				if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
					print_error("peer %d ended with status %#x\n", (int)pids[i], st);
					failed++;
				}
				pids[i] = 0;
				left--;
			}
		}
		if (left > 0 && time(NULL) > end) {
			for (int i = 0; i < n; i++)
				if (pids[i] > 0) {
					print_error("peer %d still running at the timeout: killed\n",
						    (int)pids[i]);
					kill(pids[i], SIGKILL);
					waitpid(pids[i], NULL, 0);
					failed++;
				}
			break;
		}
		if (left > 0) {
			struct timespec ts = {0, 5000000};
			nanosleep(&ts, NULL);
		}
	}
	return failed;
}

static struct shmring *make(const char *name, enum shmring_kind kind, uint32_t msg_size,
			    uint32_t cap)
{
	struct shmring_config cfg = {.kind = kind, .msg_size = msg_size, .capacity = cap};
	struct shmring *r = NULL;
	assert_int_equal(shmring_create(name, &cfg, &r), 0);
	return r;
}

static void run_exact(enum shmring_kind kind, int nprod, uint64_t count, uint32_t cap)
{
	const char *name = test_name();
	struct shmring *r = make(name, kind, 64, cap);
	char cnt[32], np[16], ids[8][16];
	snprintf(cnt, sizeof(cnt), "%llu", (unsigned long long)count);
	snprintf(np, sizeof(np), "%d", nprod);
	pid_t pids[9];
	char *cargv[] = {"ringpeer", "consume", (char *)name, np, cnt, "exact", NULL};
	pids[0] = spawn(cargv);
	for (int i = 0; i < nprod; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%d", i);
		char *pargv[] = {"ringpeer", "produce", (char *)name, ids[i], cnt, NULL};
		pids[1 + i] = spawn(pargv);
	}
	assert_int_equal(wait_all(pids, 1 + nprod, PEER_TIMEOUT_S), 0);
	assert_true(shmring_empty(r));
	assert_int_equal(shmring_close(r), 0);
}

static void test_spsc_ten_million_messages_between_processes_arrive_once_in_order(void **state)
{
	(void)state;
	run_exact(SHMRING_SPSC, 1, scaled(10000000), 1024);
}

static void test_mpsc_two_producer_processes_to_one_consumer_arrive_once_in_order(void **state)
{
	(void)state;
	run_exact(SHMRING_MPSC, 2, scaled(1000000), 256);
}

/* The same exchanges through the batch and zero-copy forms. */
static void test_batch_and_zero_copy_forms_between_processes_arrive_once_in_order(void **state)
{
	(void)state;
	const char *modes[] = {"batch", "zerocopy"};
	for (int m = 0; m < 2; m++) {
		setenv("SHMRING_PEER_MODE", modes[m], 1);
		run_exact(SHMRING_SPSC, 1, scaled(1000000), 256);
		run_exact(SHMRING_MPSC, 2, scaled(300000), 64);
	}
	unsetenv("SHMRING_PEER_MODE");
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void mpmc_exactly_once(void);

static void test_mpmc_two_producers_two_consumers_deliver_each_message_exactly_once(void **state)
{
	(void)state;
	mpmc_exactly_once();
}

static void test_mpmc_batch_and_zero_copy_deliver_each_message_exactly_once(void **state)
{
	(void)state;
	setenv("SHMRING_PEER_MODE", "batch", 1);
	mpmc_exactly_once();
	setenv("SHMRING_PEER_MODE", "zerocopy", 1);
	mpmc_exactly_once();
	unsetenv("SHMRING_PEER_MODE");
}

static void mpmc_exactly_once(void)
{
	const char *name = test_name();
	const int nprod = 2, ncons = 2;
	uint64_t count = scaled(500000);
	struct shmring *r = make(name, SHMRING_MPMC, 64, 256);
	char cnt[32], np[16], ids[2][16], outs[2][64];
	snprintf(cnt, sizeof(cnt), "%llu", (unsigned long long)count);
	snprintf(np, sizeof(np), "%d", nprod);
	pid_t cons[2], prods[2];
	for (int i = 0; i < ncons; i++) {
		snprintf(outs[i], sizeof(outs[i]), "/tmp/shmring-t-%d-out%d", (int)getpid(), i);
		char *cargv[] = {"ringpeer", "consume", (char *)name, np, cnt, "stop", outs[i], NULL};
		cons[i] = spawn(cargv);
	}
	for (int i = 0; i < nprod; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%d", i);
		char *pargv[] = {"ringpeer", "produce", (char *)name, ids[i], cnt, NULL};
		prods[i] = spawn(pargv);
	}
	assert_int_equal(wait_all(prods, nprod, PEER_TIMEOUT_S), 0);
	/* All real messages are in the ring or taken: one stop message per consumer. */
	unsigned char stop[64];
	msg_fill(stop, sizeof(stop), STOP_ID, 0);
	for (int i = 0; i < ncons; i++)
		assert_int_equal(shmring_push_wait(r, stop, 30LL * 1000000000), 0);
	assert_int_equal(wait_all(cons, ncons, PEER_TIMEOUT_S), 0);

	/* Exactly once: sort every consumer's (producer, seq) and compare with the ideal. */
	uint64_t total = (uint64_t)nprod * count, n = 0;
	uint64_t *all = malloc(total * sizeof(uint64_t) + 16);
	assert_non_null(all);
	for (int i = 0; i < ncons; i++) {
		FILE *f = fopen(outs[i], "rb");
		assert_non_null(f);
		uint64_t rec[2];
		while (fread(rec, sizeof(rec), 1, f) == 1) {
			if (n < total)
				all[n] = rec[0] * count + rec[1];
			n++;
		}
		fclose(f);
		unlink(outs[i]);
	}
	assert_int_equal(n, total);
	qsort(all, total, sizeof(uint64_t), cmp_u64);
	for (uint64_t i = 0; i < total; i++)
		if (all[i] != i) {
			print_error("message %llu: found %llu (lost or duplicated)\n",
				    (unsigned long long)i, (unsigned long long)all[i]);
			fail();
		}
	free(all);
	assert_true(shmring_empty(r));
	assert_int_equal(shmring_close(r), 0);
}

int main(int argc, char **argv)
{
	(void)argc;
	watchdog_start(TEST_WATCHDOG_S * 2);
	/* ringpeer sits beside this binary. */
	ssize_t n = readlink("/proc/self/exe", peer_path, sizeof(peer_path) - 16);
	assert_true(n > 0 || argv[0]);
	peer_path[n > 0 ? n : 0] = 0;
	char *slash = strrchr(peer_path, '/');
	strcpy(slash ? slash + 1 : peer_path, "ringpeer");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spsc_ten_million_messages_between_processes_arrive_once_in_order),
		cmocka_unit_test(test_mpsc_two_producer_processes_to_one_consumer_arrive_once_in_order),
		cmocka_unit_test(test_mpmc_two_producers_two_consumers_deliver_each_message_exactly_once),
		cmocka_unit_test(test_batch_and_zero_copy_forms_between_processes_arrive_once_in_order),
		cmocka_unit_test(test_mpmc_batch_and_zero_copy_deliver_each_message_exactly_once),
	};
	return cmocka_run_group_tests_name("multiprocess", tests, NULL, NULL);
}
