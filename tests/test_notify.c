/*
 * test_notify.c - the notify fd (shmring_notify_fd, shmring_notify_arm):
 * event-loop consumers woken through an eventfd.
 *
 *   - API edges: NULL and spin-only rings are -EINVAL, arm before notify_fd
 *     is -EINVAL, later calls return the same fd, a non-blocking eventfd;
 *   - arm: 0 on an empty ring, -EAGAIN with data there, on every kind; a
 *     publish after an arm makes the fd readable, one with nobody armed does
 *     not write it, a pop leaves it alone;
 *   - lost-wake-up torture: a publish after a random 0-50 us lands anywhere
 *     in the consumer's pop / arm / wait; an fd quiet with a message there
 *     fails (SPSC and MPMC; make SAN=broken-wake must fail it);
 *   - registrations: 16 per ring, the 17th is -ENOSPC while all are held and
 *     works once one closes; a consumer killed with SIGKILL leaves an entry
 *     that a new consumer takes over, even when a child it forked lives on;
 *   - a consumer stopped (SIGSTOP) when a producer first fetches its fd is
 *     woken when it runs again; the producer waits ~100 ms once, not again;
 *   - a producer killed holding a claim: the consumer's arm after its timed-out
 *     wait releases the claim and goes on (MPSC, MPMC);
 *   - between unrelated processes (siblings forked and exec'd from here,
 *     tests/notify_peer): 10^5 messages {producer, seq, checksum} to a
 *     consumer asleep in epoll, and to one asleep in io_uring, on SPSC and
 *     MPSC rings: nothing lost, order held, no wake-up lost; MPMC with two
 *     consumers (one epoll, one io_uring), each with its own fd, both woken,
 *     every message delivered exactly once across them.
 *
 * SHMRING_TEST_SCALE (a divisor) shortens the message runs for slow builds.
 * Every wait is bounded; peers die with this process (PR_SET_PDEATHSIG).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
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

#include "internal.h"
#include "shmring.h"
#include "testutil.h"

#define SEC INT64_C(1000000000)
#define MS INT64_C(1000000)
#define PEER_TIMEOUT_S 180
#define STOP_ID 0xffffffffu
#define MSGS 100000u

static char peer_path[PATH_MAX];

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * SEC + t.tv_nsec;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * MS};
	nanosleep(&ts, NULL);
}

static uint64_t scaled(uint64_t n)
{
	const char *s = getenv("SHMRING_TEST_SCALE");
	uint64_t d = s && atoi(s) > 0 ? (uint64_t)atoi(s) : 1;
	return n / d ? n / d : 1;
}

static struct shmring *make(const char *name, enum shmring_kind kind, uint32_t cap,
			    uint32_t flags)
{
	struct shmring_config cfg = {.kind = kind, .msg_size = 64, .capacity = cap, .flags = flags};
	struct shmring *r = NULL;
	assert_int_equal(shmring_create(name, &cfg, &r), 0);
	return r;
}

static struct shmring *attach(const char *name)
{
	struct shmring *r = NULL;
	assert_int_equal(shmring_attach(name, NULL, 5 * SEC, &r), 0);
	return r;
}

/* Readable within ms? 1 yes, 0 no. */
static int readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int n = poll(&p, 1, ms);
	assert_true(n >= 0);
	return n;
}

static void drain(int fd)
{
	uint64_t n;
	ssize_t k = read(fd, &n, sizeof(n));
	assert_true(k == (ssize_t)sizeof(n) || (k < 0 && errno == EAGAIN));
}

static unsigned registrations(const struct shmring *r)
{
	unsigned n = 0;
	for (unsigned i = 0; i < SHMRING_NOTIFY_MAX; i++)
		n += atomic_load(&r->hdr->notify[i].id) != 0;
	return n;
}

/* ---- API edges ------------------------------------------------------------------ */

static void test_notify_fd_is_einval_on_null_and_on_a_spin_only_ring(void **state)
{
	(void)state;
	assert_int_equal(shmring_notify_fd(NULL), -EINVAL);
	assert_int_equal(shmring_notify_arm(NULL), -EINVAL);
	struct shmring *r = make(test_name(), SHMRING_SPSC, 8, 0);
	assert_int_equal(shmring_notify_fd(r), -EINVAL);
	assert_int_equal(shmring_notify_arm(r), -EINVAL);
	assert_int_equal(registrations(r), 0);
	assert_int_equal(shmring_close(r), 0);

	r = make(test_name(), SHMRING_MPMC, 8, SHMRING_F_BLOCKING);
	/* Arm before the handle has a notify fd: nothing would write to it. */
	assert_int_equal(shmring_notify_arm(r), -EINVAL);
	assert_int_equal(shmring_close(r), 0);
}

static void test_later_calls_return_the_same_nonblocking_cloexec_eventfd(void **state)
{
	(void)state;
	struct shmring *r = make(test_name(), SHMRING_SPSC, 8, SHMRING_F_BLOCKING);
	int fd = shmring_notify_fd(r);
	assert_true(fd >= 0);
	assert_int_equal(shmring_notify_fd(r), fd);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	char path[64], target[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = 0;
	assert_string_equal(target, "anon_inode:[eventfd]");
	assert_int_equal(registrations(r), 1);
	assert_int_equal(shmring_close(r), 0);
}

/* ---- arm -------------------------------------------------------------------------- */

static void arm_on(enum shmring_kind kind)
{
	const char *name = test_name();
	struct shmring *p = make(name, kind, 8, SHMRING_F_BLOCKING), *c = attach(name);
	unsigned char m[64] = {0};
	int fd = shmring_notify_fd(c);
	assert_true(fd >= 0);

	assert_int_equal(shmring_notify_arm(c), 0); /* empty: safe to wait */
	assert_int_equal(readable(fd, 0), 0);
	assert_int_equal(shmring_try_push(p, m), 0); /* armed: this publish writes the fd */
	assert_int_equal(readable(fd, 1000), 1);
	assert_int_equal(shmring_notify_arm(c), -EAGAIN); /* data there: pop, do not wait */
	assert_int_equal(shmring_notify_arm(c), -EAGAIN);

	drain(fd);
	assert_int_equal(shmring_try_pop(c, m), 0);
	assert_int_equal(shmring_try_pop(c, m), -EAGAIN);
	/* The arm that found data left the bit set: one spurious write at most. */
	assert_int_equal(shmring_try_push(p, m), 0);
	assert_int_equal(readable(fd, 1000), 1);
	drain(fd);
	/* Nobody armed since that publish cleared the bit: no write now. */
	assert_int_equal(shmring_try_push(p, m), 0);
	assert_int_equal(readable(fd, 50), 0);
	assert_int_equal(shmring_notify_arm(c), -EAGAIN);
	assert_int_equal(shmring_try_pop(c, m), 0);
	assert_int_equal(shmring_try_pop(c, m), 0);
	assert_int_equal(shmring_try_pop(c, m), -EAGAIN);
	drain(fd);
	assert_int_equal(shmring_notify_arm(c), 0);
	/* Batch and zero-copy publishes wake as well. */
	assert_int_equal(shmring_try_push_n(p, m, 1), 1);
	assert_int_equal(readable(fd, 1000), 1);
	drain(fd);
	assert_int_equal(shmring_try_pop(c, m), 0);
	assert_int_equal(shmring_notify_arm(c), 0);
	void *slot;
	assert_int_equal(shmring_reserve(p, &slot), 0);
	assert_int_equal(shmring_notify_arm(c), 0); /* reserved is not published */
	assert_int_equal(shmring_commit(p), 0);
	assert_int_equal(readable(fd, 1000), 1);
	assert_int_equal(shmring_notify_arm(c), -EAGAIN);
	/* A pop publishes space, not data: it leaves the bit and the fds alone. */
	drain(fd);
	assert_true(atomic_load(&c->hdr->notify_word) & NOTIFY_ARMED);
	assert_int_equal(shmring_try_pop(c, m), 0);
	assert_true(atomic_load(&c->hdr->notify_word) & NOTIFY_ARMED);
	assert_int_equal(readable(fd, 50), 0);
	assert_int_equal(shmring_notify_arm(c), 0);

	assert_int_equal(shmring_close(c), 0);
	assert_int_equal(registrations(p), 0);
	assert_int_equal(shmring_close(p), 0);
}

static void test_arm_returns_eagain_when_data_is_present_on_every_kind(void **state)
{
	(void)state;
	arm_on(SHMRING_SPSC);
	arm_on(SHMRING_MPSC);
	arm_on(SHMRING_MPMC);
}

/*
 * The lost-wake-up window: the producer spins for the consumer's ack, then
 * publishes one message after a random 0-3 us or 0-50 us spin, so the
 * publish lands anywhere in the consumer's pop, arm and wait; an fd that
 * stays quiet for 6 s with the message published is a lost wake-up (the
 * slack is for a loaded host; a correct run never waits 1 s).
 * SHMRING_TORTURE_CYCLES sets the cycles per kind.
 */
static void torture(enum shmring_kind kind, long cycles)
{
	const char *data = test_name(), *ack = test_name();
	struct shmring *rd = make(data, kind, 4, SHMRING_F_BLOCKING);
	struct shmring *ra = make(ack, SHMRING_SPSC, 4, SHMRING_F_BLOCKING);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		struct shmring *d = NULL, *a = NULL;
		if (shmring_attach(data, NULL, 5 * SEC, &d) || shmring_attach(ack, NULL, 5 * SEC, &a))
			_exit(90);
		int fd = shmring_notify_fd(d);
		if (fd < 0)
			_exit(91);
		unsigned char m[64];
		long again = 0, slept = 0;
		unsigned int cseed = (unsigned int)getpid();
		for (long i = 0; i < cycles; i++) {
			int rc;
			/* Some work after the ack, and between the last pop and the arm. */
			for (int64_t until = now_ns() + rand_r(&cseed) % 2001; now_ns() < until;)
				;
			while ((rc = shmring_try_pop(d, m)) == -EAGAIN) {
				for (int64_t until = now_ns() + rand_r(&cseed) % 1001; now_ns() < until;)
					;
				if (shmring_notify_arm(d) == -EAGAIN) {
					again++;
					continue;
				}
				struct pollfd p = {.fd = fd, .events = POLLIN};
				slept++;
				/*
				 * Quiet for 1 s: a lost wake-up if the message is there, or
				 * a producer starved of CPU if not. The producer publishes
				 * nothing else before our ack, so only this message's
				 * wake-up can make the fd readable: give it 5 s more.
				 */
				int n = poll(&p, 1, 1000);
				for (int k = 0; n == 0 && k < 50 && shmring_size(d) == 0; k++)
					n = poll(&p, 1, 100);
				if (n == 0 && shmring_size(d) != 0)
					n = poll(&p, 1, 5000);
				if (n == 0) {
					fprintf(stderr, "LOST WAKE-UP in cycle %ld: armed, fd quiet for "
						"6 s with %zu messages published\n", i, shmring_size(d));
					_exit(1);
				}
				uint64_t count;
				if (read(fd, &count, sizeof(count)) != (ssize_t)sizeof(count))
					_exit(2);
			}
			if (rc || memcmp(&i, m, sizeof(i)) != 0)
				_exit(3);
			if (shmring_push_wait(a, m, 5 * SEC) != 0)
				_exit(4);
		}
		fprintf(stderr, "torture %s: %ld cycles, %ld waits on the fd, %ld arms found data\n",
			kind == SHMRING_SPSC ? "SPSC" : "MPMC", cycles, slept, again);
		shmring_close(d);
		shmring_close(a);
		_exit(0);
	}
	int64_t end = now_ns() + 5 * SEC;
	while (registrations(rd) < 1 && now_ns() < end)
		sleep_ms(1);
	unsigned int seed = (unsigned int)getpid();
	unsigned char m[64] = {0};
	int failed = 0;
	for (long i = 0; i < cycles && !failed; i++) {
		/* Half the cycles within 3 us of the ack: inside the consumer's pop and arm. */
		int64_t delay = i % 2 ? rand_r(&seed) % 3001 : rand_r(&seed) % 50001;
		for (int64_t until = now_ns() + delay; now_ns() < until;)
			;
		memcpy(m, &i, sizeof(i));
		if (shmring_push_wait(rd, m, 5 * SEC) != 0) {
			failed = 1;
			break;
		}
		/* Spin for the ack (a sleep here would let the consumer always be asleep first). */
		int64_t ack_end = now_ns() + 3 * SEC;
		int rc;
		while ((rc = shmring_try_pop(ra, m)) == -EAGAIN && now_ns() < ack_end)
			;
		if (rc != 0)
			failed = 2; /* the consumer died, or lost the wake-up */
	}
	int st = -1;
	for (end = now_ns() + 10 * SEC; waitpid(pid, &st, WNOHANG) != pid; sleep_ms(2))
		if (now_ns() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
	assert_int_equal(failed, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(shmring_close(rd), 0);
	assert_int_equal(shmring_close(ra), 0);
}

static void test_no_wakeup_is_lost_when_the_publish_races_the_arm(void **state)
{
	(void)state;
	const char *env = getenv("SHMRING_TORTURE_CYCLES");
	long cycles = env && atol(env) > 0 ? atol(env) : (long)scaled(20000);
	torture(SHMRING_SPSC, cycles);
	torture(SHMRING_MPMC, cycles);
}

/* ---- registrations -------------------------------------------------------------- */

static void test_seventeenth_registration_is_enospc_until_one_closes(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *p = make(name, SHMRING_MPMC, 8, SHMRING_F_BLOCKING);
	struct shmring *c[SHMRING_NOTIFY_MAX];
	int fds[SHMRING_NOTIFY_MAX];
	for (int i = 0; i < SHMRING_NOTIFY_MAX; i++) {
		c[i] = attach(name);
		fds[i] = shmring_notify_fd(c[i]);
		assert_true(fds[i] >= 0);
		for (int j = 0; j < i; j++)
			assert_int_not_equal(fds[i], fds[j]);
	}
	assert_int_equal(registrations(p), SHMRING_NOTIFY_MAX);
	struct shmring *extra = attach(name);
	assert_int_equal(shmring_notify_fd(extra), -ENOSPC);

	/* All sixteen are woken by one publish after an arm. */
	assert_int_equal(shmring_notify_arm(c[0]), 0);
	unsigned char m[64] = {0};
	assert_int_equal(shmring_try_push(p, m), 0);
	for (int i = 0; i < SHMRING_NOTIFY_MAX; i++)
		assert_int_equal(readable(fds[i], 1000), 1);

	assert_int_equal(shmring_close(c[3]), 0);
	assert_int_equal(registrations(p), SHMRING_NOTIFY_MAX - 1);
	int fd = shmring_notify_fd(extra);
	assert_true(fd >= 0);
	assert_int_equal(registrations(p), SHMRING_NOTIFY_MAX);
	/* The newcomer is woken too: the producer fetches its fd for the reused entry. */
	assert_int_equal(shmring_try_pop(extra, m), 0);
	drain(fd);
	assert_int_equal(shmring_notify_arm(extra), 0);
	assert_int_equal(shmring_try_push(p, m), 0);
	assert_int_equal(readable(fd, 1000), 1);

	assert_int_equal(shmring_close(extra), 0);
	for (int i = 0; i < SHMRING_NOTIFY_MAX; i++)
		if (i != 3)
			assert_int_equal(shmring_close(c[i]), 0);
	assert_int_equal(registrations(p), 0);
	assert_int_equal(shmring_close(p), 0);
}

static void test_a_killed_consumers_registration_is_taken_over(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *p = make(name, SHMRING_MPMC, 8, SHMRING_F_BLOCKING);
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		struct shmring *a = NULL;
		if (shmring_attach(name, NULL, 5 * SEC, &a) != 0 || shmring_notify_fd(a) < 0)
			_exit(1);
		/* A child of the consumer that outlives it must not keep its entry alive. */
		pid_t g = fork();
		if (g == 0) {
			sleep_ms(20000);
			_exit(0);
		}
		if (write(ready[1], &g, sizeof(g)) != (ssize_t)sizeof(g))
			_exit(1);
		sleep_ms(20000);
		_exit(0);
	}
	pid_t grandchild = 0;
	assert_int_equal(read(ready[0], &grandchild, sizeof(grandchild)), sizeof(grandchild));
	close(ready[0]);
	close(ready[1]);
	assert_int_equal(registrations(p), 1);

	struct shmring *c[SHMRING_NOTIFY_MAX];
	for (int i = 0; i < SHMRING_NOTIFY_MAX - 1; i++) {
		c[i] = attach(name);
		assert_true(shmring_notify_fd(c[i]) >= 0);
	}
	struct shmring *late = attach(name);
	assert_int_equal(shmring_notify_fd(late), -ENOSPC); /* the child lives */

	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	int fd = shmring_notify_fd(late);
	assert_true(fd >= 0);
	assert_int_equal(registrations(p), SHMRING_NOTIFY_MAX);
	/* And it is woken. */
	assert_int_equal(shmring_notify_arm(late), 0);
	unsigned char m[64] = {0};
	assert_int_equal(shmring_try_push(p, m), 0);
	assert_int_equal(readable(fd, 1000), 1);

	kill(grandchild, SIGKILL); /* reparented to init, which reaps it */
	assert_int_equal(shmring_close(late), 0);
	for (int i = 0; i < SHMRING_NOTIFY_MAX - 1; i++)
		assert_int_equal(shmring_close(c[i]), 0);
	assert_int_equal(shmring_close(p), 0);
}

/*
 * A consumer that cannot answer the producer's fetch in time (stopped with
 * SIGSTOP here; starved of CPU in life) still gets the wake-up when it runs
 * again, and the producer waits for it once, not on every publish.
 */
static void test_a_stopped_consumer_is_woken_when_it_runs_again(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *p = make(name, SHMRING_SPSC, 8, SHMRING_F_BLOCKING);
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		struct shmring *a = NULL;
		if (shmring_attach(name, NULL, 5 * SEC, &a) != 0)
			_exit(1);
		int fd = shmring_notify_fd(a);
		if (fd < 0)
			_exit(1);
		unsigned char m[64];
		for (char round = 0; round < 2; round++) {
			if (shmring_notify_arm(a) != 0 || write(ready[1], &round, 1) != 1)
				_exit(2);
			struct pollfd pf = {.fd = fd, .events = POLLIN};
			if (poll(&pf, 1, 5000) != 1)
				_exit(3); /* the wake-up was lost */
			uint64_t n;
			if (read(fd, &n, sizeof(n)) != (ssize_t)sizeof(n) || shmring_try_pop(a, m) != 0)
				_exit(4);
		}
		_exit(0);
	}
	unsigned char m[64] = {0};
	int64_t took[2];
	for (int round = 0; round < 2; round++) {
		char b;
		int st;
		assert_int_equal(read(ready[0], &b, 1), 1);
		kill(pid, SIGSTOP);
		assert_int_equal(waitpid(pid, &st, WUNTRACED), pid);
		assert_true(WIFSTOPPED(st));
		int64_t t0 = now_ns();
		assert_int_equal(shmring_try_push(p, m), 0);
		took[round] = now_ns() - t0;
		sleep_ms(20);
		kill(pid, SIGCONT);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	print_message("stopped consumer: first push %.1f ms (fetch timed out), second %.3f ms "
		      "(poke)\n", (double)took[0] / 1e6, (double)took[1] / 1e6);
	assert_true(took[0] >= 18 * MS);  /* waited for the reply (FETCH_TIMEOUT_MS, 20 ms), bounded */
	assert_true(took[0] < 1000 * MS);
	assert_true(took[1] < 50 * MS);   /* did not wait again */
	close(ready[0]);
	close(ready[1]);
	assert_int_equal(shmring_close(p), 0);
}

/*
 * A producer killed between its claim and its publish wakes nobody: the
 * consumer's bounded wait times out, and the arm after it releases the dead
 * claim (liveness) and sends the consumer on to the next message.
 */
static void dead_producer(enum shmring_kind kind)
{
	const char *name = test_name();
	struct shmring *p = make(name, kind, 8, SHMRING_F_BLOCKING), *c = attach(name);
	int fd = shmring_notify_fd(c);
	assert_true(fd >= 0);
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		struct shmring *a = NULL;
		void *slot;
		if (shmring_attach(name, NULL, 5 * SEC, &a) != 0 || shmring_reserve(a, &slot) != 0)
			_exit(1);
		char b = 1;
		if (write(ready[1], &b, 1) != 1)
			_exit(1);
		sleep_ms(20000);
		_exit(0);
	}
	char b;
	assert_int_equal(read(ready[0], &b, 1), 1);
	close(ready[0]);
	close(ready[1]);
	unsigned char m[64];
	msg_fill(m, sizeof(m), 7, 1);
	assert_int_equal(shmring_try_push(p, m), 0); /* behind the child's claim */
	assert_int_equal(shmring_try_pop(c, m), -EAGAIN);
	assert_int_equal(shmring_notify_arm(c), 0); /* held up by a live claim: wait */
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, NULL, 0), pid);

	/* The event loop, with 20 ms waits standing in for the consumer's timeout. */
	int64_t t0 = now_ns(), end = t0 + 5 * SEC;
	int rc, timeouts = 0;
	while ((rc = shmring_try_pop(c, m)) == -EAGAIN && now_ns() < end) {
		if (shmring_notify_arm(c) == -EAGAIN)
			continue;
		if (readable(fd, 20) == 0)
			timeouts++;
		else
			drain(fd);
	}
	assert_int_equal(rc, 0);
	uint32_t prod;
	uint64_t seq;
	assert_true(msg_check(m, sizeof(m), &prod, &seq));
	assert_int_equal(prod, 7);
	assert_int_equal(seq, 1);
	print_message("%s: past the dead producer's claim after %d timed-out waits, %.1f ms\n",
		      kind == SHMRING_MPSC ? "MPSC" : "MPMC", timeouts,
		      (double)(now_ns() - t0) / 1e6);
	assert_true(timeouts <= 3);
	assert_true(atomic_load(&p->hdr->counters.skipped) >= 1);
	assert_int_equal(shmring_close(c), 0);
	assert_int_equal(shmring_close(p), 0);
}

static void test_a_killed_producers_claim_stalls_a_notify_consumer_only_two_timeouts(void **state)
{
	(void)state;
	dead_producer(SHMRING_MPSC);
	dead_producer(SHMRING_MPMC);
}

/* ---- between unrelated processes ------------------------------------------------ */

static pid_t spawn(char *const argv[])
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
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
	int64_t end = now_ns() + timeout_s * SEC;
	while (left > 0) {
		for (int i = 0; i < n; i++) {
			int st;
			if (pids[i] <= 0 || waitpid(pids[i], &st, WNOHANG) != pids[i])
				continue;
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				print_error("peer %d ended with status %#x\n", (int)pids[i], st);
				failed++;
			}
			pids[i] = 0;
			left--;
		}
		if (left > 0 && now_ns() > end) {
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
		if (left > 0)
			sleep_ms(5);
	}
	return failed;
}

/* Wait (bounded) until n consumers registered and one of them armed: they sleep. */
static void wait_consumers_asleep(struct shmring *r, unsigned n)
{
	int64_t end = now_ns() + 10 * SEC;
	while ((registrations(r) < n || !(atomic_load(&r->hdr->notify_word) & NOTIFY_ARMED)) &&
	       now_ns() < end)
		sleep_ms(1);
	assert_int_equal(registrations(r), n);
	sleep_ms(100); /* the last of them to arm gets into its wait */
}

static void one_consumer(enum shmring_kind kind, int nprod, const char *wait)
{
	const char *name = test_name();
	struct shmring *r = make(name, kind, 256, SHMRING_F_BLOCKING);
	uint64_t count = scaled(MSGS) / (uint64_t)nprod;
	char cnt[32], np[16], ids[4][16];
	snprintf(cnt, sizeof(cnt), "%llu", (unsigned long long)count);
	snprintf(np, sizeof(np), "%d", nprod);
	pid_t pids[5];
	char *cargv[] = {"notify_peer", "consume", (char *)name, (char *)wait, np, cnt, "exact",
			 NULL};
	pids[0] = spawn(cargv);
	wait_consumers_asleep(r, 1);
	for (int i = 0; i < nprod; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%d", i);
		char *pargv[] = {"notify_peer", "produce", (char *)name, ids[i], cnt, "0", NULL};
		pids[1 + i] = spawn(pargv);
	}
	assert_int_equal(wait_all(pids, 1 + nprod, PEER_TIMEOUT_S), 0);
	assert_true(shmring_empty(r));
	assert_int_equal(registrations(r), 0);
	assert_int_equal(shmring_close(r), 0);
}

static void test_spsc_epoll_consumer_in_an_unrelated_process_gets_every_message_in_order(void **state)
{
	(void)state;
	one_consumer(SHMRING_SPSC, 1, "epoll");
}

static void test_spsc_io_uring_consumer_in_an_unrelated_process_gets_every_message_in_order(void **state)
{
	(void)state;
	one_consumer(SHMRING_SPSC, 1, "uring");
}

static void test_mpsc_two_producers_to_an_epoll_consumer_arrive_once_in_order(void **state)
{
	(void)state;
	one_consumer(SHMRING_MPSC, 2, "epoll");
}

struct rec {
	uint32_t producer;
	uint64_t seq;
};

static size_t read_log(const char *path, unsigned char *seen, uint64_t count, int nprod)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	size_t n = 0;
	struct rec x;
	while (fread(&x.producer, sizeof(x.producer), 1, f) == 1 &&
	       fread(&x.seq, sizeof(x.seq), 1, f) == 1) {
		assert_true(x.producer < (uint32_t)nprod && x.seq < count);
		unsigned char *s = &seen[(uint64_t)x.producer * count + x.seq];
		assert_int_equal(*s, 0); /* delivered twice */
		*s = 1;
		n++;
	}
	fclose(f);
	unlink(path);
	return n;
}

static void test_mpmc_two_notify_consumers_are_both_woken_and_get_each_message_once(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_MPMC, 256, SHMRING_F_BLOCKING);
	enum { NPROD = 2, NCONS = 2 };
	uint64_t count = scaled(MSGS) / NPROD;
	char cnt[32], np[16], outs[NCONS][64], ids[NPROD][16];
	snprintf(cnt, sizeof(cnt), "%llu", (unsigned long long)count);
	snprintf(np, sizeof(np), "%d", NPROD);
	const char *waits[NCONS] = {"epoll", "uring"};
	pid_t pids[NCONS + NPROD];
	for (int i = 0; i < NCONS; i++) {
		snprintf(outs[i], sizeof(outs[i]), "/tmp/shmring-notify-%d-%d.log", (int)getpid(), i);
		char *cargv[] = {"notify_peer", "consume", (char *)name, (char *)waits[i], np, cnt,
				 "stop", outs[i], NULL};
		pids[i] = spawn(cargv);
	}
	wait_consumers_asleep(r, NCONS);
	for (int i = 0; i < NPROD; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%d", i);
		char *pargv[] = {"notify_peer", "produce", (char *)name, ids[i], cnt, "0", NULL};
		pids[NCONS + i] = spawn(pargv);
	}
	/* Producers first; then one stop message per consumer, after all the data. */
	assert_int_equal(wait_all(pids + NCONS, NPROD, PEER_TIMEOUT_S), 0);
	unsigned char stop[64];
	for (uint32_t i = 0; i < NCONS; i++) {
		msg_fill(stop, sizeof(stop), STOP_ID, i);
		assert_int_equal(shmring_push_wait(r, stop, 10 * SEC), 0);
	}
	assert_int_equal(wait_all(pids, NCONS, PEER_TIMEOUT_S), 0);

	unsigned char *seen = calloc(NPROD * count, 1);
	assert_non_null(seen);
	size_t got[NCONS];
	for (int i = 0; i < NCONS; i++)
		got[i] = read_log(outs[i], seen, count, NPROD);
	for (uint64_t i = 0; i < NPROD * count; i++)
		assert_int_equal(seen[i], 1); /* lost */
	print_message("mpmc: %zu messages to the epoll consumer, %zu to the io_uring one\n", got[0],
		      got[1]);
	free(seen);
	assert_true(shmring_empty(r));
	assert_int_equal(shmring_close(r), 0);
}

int main(int argc, char **argv)
{
	(void)argc;
	watchdog_start(TEST_WATCHDOG_S);
	/* notify_peer sits beside this binary. */
	ssize_t n = readlink("/proc/self/exe", peer_path, sizeof(peer_path) - 16);
	peer_path[n > 0 ? n : 0] = 0;
	char *slash = strrchr(peer_path, '/');
	strcpy(slash ? slash + 1 : peer_path, "notify_peer");
	if (access(peer_path, X_OK) != 0) {
		fprintf(stderr, "%s: helper %s is missing: make %s\n", argv[0], peer_path, peer_path);
		return 1;
	}
	const char *only = getenv("SHMRING_TEST_ONLY");
	if (only)
		cmocka_set_test_filter(only);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_notify_fd_is_einval_on_null_and_on_a_spin_only_ring),
		cmocka_unit_test(test_later_calls_return_the_same_nonblocking_cloexec_eventfd),
		cmocka_unit_test(test_arm_returns_eagain_when_data_is_present_on_every_kind),
		cmocka_unit_test(test_no_wakeup_is_lost_when_the_publish_races_the_arm),
		cmocka_unit_test(test_seventeenth_registration_is_enospc_until_one_closes),
		cmocka_unit_test(test_a_killed_consumers_registration_is_taken_over),
		cmocka_unit_test(test_a_stopped_consumer_is_woken_when_it_runs_again),
		cmocka_unit_test(test_a_killed_producers_claim_stalls_a_notify_consumer_only_two_timeouts),
		cmocka_unit_test(test_spsc_epoll_consumer_in_an_unrelated_process_gets_every_message_in_order),
		cmocka_unit_test(test_spsc_io_uring_consumer_in_an_unrelated_process_gets_every_message_in_order),
		cmocka_unit_test(test_mpsc_two_producers_to_an_epoll_consumer_arrive_once_in_order),
		cmocka_unit_test(test_mpmc_two_notify_consumers_are_both_woken_and_get_each_message_once),
	};
	return cmocka_run_group_tests_name("notify", tests, NULL, NULL);
}
