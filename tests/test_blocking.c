/*
 * test_blocking.c - SHMRING_F_BLOCKING rings: futex sleep and wake.
 *
 *   - lost wake-up torture: 10^5 cycles (SHMRING_TORTURE_CYCLES) with the
 *     spin budget 0, so every wait really sleeps; the producer publishes one
 *     message after a random 0-50 us; a wait longer than 1 s is a lost
 *     wake-up and fails the test at once. The suite also runs this case
 *     against a library built with the broken protocol (make broken-wake),
 *     where it must fail;
 *   - every kind, with 1 and 2 sleeping consumers, and push_wait asleep on a
 *     full ring; waits and wakes across the futex epoch's wrap (SPSC, MPMC);
 *   - an idle consumer asleep for 10 s costs at most 1% of a CPU and a few
 *     wake-ups a second;
 *   - a bounded wait returns -ETIMEDOUT within its bound + 50 ms, and a
 *     signal (handler installed with signal(), i.e. SA_RESTART) gives -EINTR.
 * Peers are forked processes that attach by name; all waits are bounded.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
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

static struct shmring *make(const char *name, enum shmring_kind kind, uint32_t cap)
{
	struct shmring_config cfg = {.kind = kind, .msg_size = 16, .capacity = cap,
				     .flags = SHMRING_F_BLOCKING};
	struct shmring *r = NULL;
	assert_int_equal(shmring_create(name, &cfg, &r), 0);
	assert_int_equal(shmring_set_spin_ns(r, 0), 0);
	return r;
}

static struct shmring *child_attach(const char *name)
{
	struct shmring *r = NULL;
	if (shmring_attach(name, NULL, 5 * SEC, &r) != 0)
		_exit(90);
	shmring_set_spin_ns(r, 0);
	return r;
}

static pid_t fork_child(void)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	return pid;
}

/* Wait for a child, bounded; its exit status, or -1 if killed at the bound. */
static int reap(pid_t pid, int64_t bound_ns, struct rusage *ru)
{
	int64_t end = now_ns() + bound_ns;
	int st;
	for (;;) {
		pid_t w = wait4(pid, &st, WNOHANG, ru);
		if (w == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (now_ns() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return -1;
		}
		struct timespec ts = {0, 2 * MS};
		nanosleep(&ts, NULL);
	}
}

static void spin_for(int64_t ns)
{
	for (int64_t end = now_ns() + ns; now_ns() < end;)
		;
}

static void test_no_wakeup_is_lost_in_torture_cycles(void **state)
{
	(void)state;
	const char *env = getenv("SHMRING_TORTURE_CYCLES");
	long cycles = env && atol(env) > 0 ? atol(env) : 100000;
	const char *data = test_name(), *ack = test_name();
	struct shmring *rd = make(data, SHMRING_SPSC, 4), *ra = make(ack, SHMRING_SPSC, 4);

	pid_t pid = fork_child();
	if (pid == 0) {
		/*
		 * Consumer: sleep for each message; a wait over 1 s is a lost wake-up.
		 * Its sleeps are not cut into the library's 250 ms slices here: a
		 * slice would end a lost wake-up's sleep before the watchdog saw it.
		 */
		struct shmring *d = child_attach(data), *a = child_attach(ack);
		d->sleep_slice_ns = 10 * SEC;
		unsigned char m[16];
		for (long i = 0; i < cycles; i++) {
			/*
			 * The producer publishes within 50 us of the ack. A wait that runs
			 * to its 1 s bound (returning -ETIMEDOUT, or finding the message
			 * only when the timed-out sleep looks once more) slept through a
			 * publish: a lost wake-up.
			 */
			int64_t t0 = now_ns();
			int rc = shmring_pop_wait(d, m, 1 * SEC);
			if (rc == -ETIMEDOUT || now_ns() - t0 >= 900 * MS) {
				fprintf(stderr, "LOST WAKE-UP in cycle %ld: slept %.0f ms with a message "
						"published\n", i, (double)(now_ns() - t0) / 1e6);
				_exit(1);
			}
			if (rc || memcmp(&i, m, sizeof(i)) != 0)
				_exit(2);
			if (shmring_push_wait(a, m, 5 * SEC) != 0)
				_exit(3);
		}
		_exit(0);
	}
	unsigned int seed = (unsigned int)getpid();
	unsigned char m[16] = {0};
	int failed = 0;
	int64_t worst = 0;
	for (long i = 0; i < cycles && !failed; i++) {
		/* Random 0..50 us, so the publish lands anywhere in the waiter's steps. */
		spin_for(rand_r(&seed) % 50001);
		memcpy(m, &i, sizeof(i));
		int64_t t0 = now_ns();
		if (shmring_push_wait(rd, m, 5 * SEC) != 0)
			failed = 1;
		else if (shmring_pop_wait(ra, m, 2 * SEC) != 0)
			failed = 2; /* the consumer died or lost the wake-up */
		int64_t dt = now_ns() - t0;
		worst = dt > worst ? dt : worst;
	}
	int st = reap(pid, 10 * SEC, NULL);
	print_message("torture: %ld cycles, worst publish-to-ack %.1f us, sleeps %llu, wakes %llu\n",
		      cycles, (double)worst / 1000,
		      (unsigned long long)atomic_load(&rd->hdr->counters.futex_sleeps),
		      (unsigned long long)atomic_load(&rd->hdr->counters.futex_wakes));
	assert_int_equal(failed, 0);
	assert_int_equal(st, 0);
	/* Every cycle slept: the test exercised the futex path, not the spin. */
	assert_true(atomic_load(&rd->hdr->counters.futex_sleeps) >= (uint64_t)cycles / 2);
	assert_int_equal(shmring_close(rd), 0);
	assert_int_equal(shmring_close(ra), 0);
}

/* nsleep consumers sleep in pop_wait; one message each wakes them all. */
static void sleepers_wake(enum shmring_kind kind, int nsleep)
{
	const char *name = test_name();
	struct shmring *r = make(name, kind, 8);
	pid_t pids[2];
	for (int c = 0; c < nsleep; c++) {
		pids[c] = fork_child();
		if (pids[c] == 0) {
			struct shmring *a = child_attach(name);
			unsigned char m[16];
			_exit(shmring_pop_wait(a, m, 5 * SEC) == 0 ? 0 : 1);
		}
	}
	/* Let them fall asleep, then check they did before publishing. */
	int64_t end = now_ns() + 5 * SEC;
	while (atomic_load(&r->hdr->counters.futex_sleeps) < (uint64_t)nsleep && now_ns() < end) {
		struct timespec ts = {0, 1 * MS};
		nanosleep(&ts, NULL);
	}
	assert_true(atomic_load(&r->hdr->counters.futex_sleeps) >= (uint64_t)nsleep);
	unsigned char m[16] = {1};
	int64_t t0 = now_ns();
	for (int c = 0; c < nsleep; c++)
		assert_int_equal(shmring_try_push(r, m), 0);
	for (int c = 0; c < nsleep; c++)
		assert_int_equal(reap(pids[c], 5 * SEC, NULL), 0);
	assert_true(now_ns() - t0 < 2 * SEC);
	assert_true(atomic_load(&r->hdr->counters.futex_wakes) >= 1);
	assert_true(shmring_empty(r));
	assert_int_equal(shmring_close(r), 0);
}

static void test_sleeping_consumer_wakes_on_every_kind(void **state)
{
	(void)state;
	sleepers_wake(SHMRING_SPSC, 1);
	sleepers_wake(SHMRING_MPSC, 1);
	sleepers_wake(SHMRING_MPMC, 1);
}

static void test_two_sleeping_mpmc_consumers_both_wake(void **state)
{
	(void)state;
	sleepers_wake(SHMRING_MPMC, 2);
}

/*
 * The futex word is (epoch << 1) | WAITERS with a 31-bit epoch (wait.c); the
 * Spin model checks the protocol, this checks the C code across the wrap: the
 * word is set 3 wakes short of 2^32 through the mapped header, then 6 rounds
 * of "a forked consumer sleeps in pop_wait, we push one message" must each
 * wake the sleeper (futex_wakes +1 per round: the producer saw WAITERS, CASed
 * the word and woke) and deliver the right message.
 */
static void epoch_wrap(enum shmring_kind kind)
{
	const char *name = test_name();
	struct shmring *r = make(name, kind, 4);
	atomic_store(&r->hdr->data_futex, UINT32_C(0xFFFFFFFA));
	for (unsigned round = 0; round < 6; round++) {
		uint64_t sleeps = atomic_load(&r->hdr->counters.futex_sleeps);
		uint64_t wakes = atomic_load(&r->hdr->counters.futex_wakes);
		pid_t pid = fork_child();
		if (pid == 0) {
			struct shmring *a = child_attach(name);
			unsigned char m[16] = {0};
			_exit(shmring_pop_wait(a, m, 5 * SEC) == 0 && m[0] == round + 1 ? 0 : 1);
		}
		int64_t end = now_ns() + 5 * SEC;
		while (atomic_load(&r->hdr->counters.futex_sleeps) == sleeps && now_ns() < end) {
			struct timespec ts = {0, 1 * MS};
			nanosleep(&ts, NULL);
		}
		assert_true(atomic_load(&r->hdr->counters.futex_sleeps) > sleeps);
		unsigned char m[16] = {(unsigned char)(round + 1)};
		assert_int_equal(shmring_try_push(r, m), 0);
		assert_int_equal(reap(pid, 5 * SEC, NULL), 0);
		assert_true(atomic_load(&r->hdr->counters.futex_wakes) > wakes);
	}
	/* 6 wakes from 0xFFFFFFFA: the epoch went through 2^31 and back to small. */
	uint32_t w = atomic_load(&r->hdr->data_futex);
	assert_true(w < 0x10);
	assert_int_equal(shmring_close(r), 0);
}

static void test_futex_epoch_wrap_keeps_waits_and_wakes(void **state)
{
	(void)state;
	epoch_wrap(SHMRING_SPSC);
	epoch_wrap(SHMRING_MPMC);
}

static void test_push_wait_sleeps_on_a_full_ring_until_a_pop(void **state)
{
	(void)state;
	const enum shmring_kind kinds[] = {SHMRING_SPSC, SHMRING_MPSC, SHMRING_MPMC};
	for (int k = 0; k < 3; k++) {
		const char *name = test_name();
		struct shmring *r = make(name, kinds[k], 2);
		unsigned char m[16] = {0};
		pid_t pid = fork_child();
		if (pid == 0) {
			struct shmring *a = child_attach(name);
			for (int i = 0; i < 2; i++)
				if (shmring_try_push(a, m) != 0)
					_exit(1);
			m[0] = 9; /* the ring is full: this one sleeps */
			_exit(shmring_push_wait(a, m, 5 * SEC) == 0 ? 0 : 2);
		}
		int64_t end = now_ns() + 5 * SEC;
		while (atomic_load(&r->hdr->counters.futex_sleeps) < 1 && now_ns() < end) {
			struct timespec ts = {0, 1 * MS};
			nanosleep(&ts, NULL);
		}
		assert_int_equal(shmring_size(r), 2);
		assert_int_equal(shmring_try_pop(r, m), 0);
		assert_int_equal(reap(pid, 5 * SEC, NULL), 0);
		assert_int_equal(shmring_try_pop(r, m), 0);
		assert_int_equal(shmring_try_pop(r, m), 0);
		assert_int_equal(m[0], 9);
		assert_int_equal(shmring_close(r), 0);
	}
}

static void test_idle_sleeping_consumer_costs_under_one_percent_cpu(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_MPSC, 8);
	pid_t pid = fork_child();
	if (pid == 0) {
		struct shmring *a = NULL;
		if (shmring_attach(name, NULL, 5 * SEC, &a) != 0)
			_exit(90);
		/* The default spin (tens of us), then sleep for 10 s. */
		unsigned char m[16];
		_exit(shmring_pop_wait(a, m, 10 * SEC) == -ETIMEDOUT ? 0 : 1);
	}
	struct rusage ru;
	assert_int_equal(reap(pid, 20 * SEC, &ru), 0);
	double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	long switches = ru.ru_nvcsw + ru.ru_nivcsw;
	print_message("idle: 10 s asleep in pop_wait used %.4f s of CPU (%.3f%%), %ld context switches\n",
		      cpu, cpu * 10, switches);
	assert_true(cpu <= 0.1);     /* 1% of 10 s */
	assert_true(switches <= 60); /* a few a second: four sleep slices, plus scheduling */
	assert_int_equal(shmring_close(r), 0);
}

static void test_bounded_wait_times_out_within_50ms_of_its_bound(void **state)
{
	(void)state;
	for (int blocking = 0; blocking < 2; blocking++) {
		struct shmring_config cfg = {.kind = SHMRING_MPMC, .msg_size = 16, .capacity = 2,
					     .flags = blocking ? SHMRING_F_BLOCKING : 0};
		struct shmring *r = NULL;
		assert_int_equal(shmring_create(test_name(), &cfg, &r), 0);
		unsigned char m[16] = {0};
		int64_t t0 = now_ns();
		assert_int_equal(shmring_pop_wait(r, m, 100 * MS), -ETIMEDOUT);
		int64_t e = now_ns() - t0;
		assert_true(e >= 100 * MS && e <= 150 * MS);
		assert_int_equal(shmring_try_push(r, m), 0);
		assert_int_equal(shmring_try_push(r, m), 0);
		t0 = now_ns();
		assert_int_equal(shmring_push_wait(r, m, 100 * MS), -ETIMEDOUT);
		e = now_ns() - t0;
		assert_true(e >= 100 * MS && e <= 150 * MS);
		assert_int_equal(shmring_close(r), 0);
	}
}

static volatile sig_atomic_t got_signal;

static void on_usr1(int sig)
{
	(void)sig;
	got_signal = 1;
}

static void test_signal_interrupts_a_sleeping_wait_with_eintr(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 4);
	pid_t pid = fork_child();
	if (pid == 0) {
		signal(SIGUSR1, on_usr1); /* glibc: SA_RESTART */
		struct shmring *a = child_attach(name);
		unsigned char m[16];
		int rc = shmring_pop_wait(a, m, -1); /* without end: only the signal ends it */
		_exit(rc == -EINTR && got_signal ? 0 : 1);
	}
	int64_t end = now_ns() + 5 * SEC;
	while (atomic_load(&r->hdr->counters.futex_sleeps) < 1 && now_ns() < end) {
		struct timespec ts = {0, 1 * MS};
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGUSR1);
	assert_int_equal(reap(pid, 5 * SEC, NULL), 0);
	assert_int_equal(shmring_close(r), 0);
}

int main(void)
{
	watchdog_start(TEST_WATCHDOG_S);
	const char *only = getenv("SHMRING_TEST_ONLY");
	if (only)
		cmocka_set_test_filter(only);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_wakeup_is_lost_in_torture_cycles),
		cmocka_unit_test(test_sleeping_consumer_wakes_on_every_kind),
		cmocka_unit_test(test_two_sleeping_mpmc_consumers_both_wake),
		cmocka_unit_test(test_push_wait_sleeps_on_a_full_ring_until_a_pop),
		cmocka_unit_test(test_futex_epoch_wrap_keeps_waits_and_wakes),
		cmocka_unit_test(test_idle_sleeping_consumer_costs_under_one_percent_cpu),
		cmocka_unit_test(test_bounded_wait_times_out_within_50ms_of_its_bound),
		cmocka_unit_test(test_signal_interrupts_a_sleeping_wait_with_eintr),
	};
	return cmocka_run_group_tests_name("blocking", tests, NULL, NULL);
}
