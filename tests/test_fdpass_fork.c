/*
 * test_fdpass_fork.c - nothing that holds a copy of a ring's fd keeps a dead
 * participant alive, and forked children cost what shmring.h says.
 *
 * A sender creates an unnamed ring, takes a claim or a role, passes
 * shmring_fd() over a Unix socket (SCM_RIGHTS) and is SIGKILLed, while the
 * receiver keeps the fd it got, or the fd is still unread in the socket: the
 * sender's claim is recovered and its role taken over within 1 s (issue #10,
 * defect 2: the locks lived on the fd that was passed, so either copy kept
 * the dead sender "alive" until it was closed).
 *
 * Forked children (defect 6): idle children take no participant entry, so a
 * pre-fork pool larger than the table leaves room for attaches; a child whose
 * first push finds the table full gets -ENOSPC and holds nothing of its
 * parent's.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * MS};
	nanosleep(&ts, NULL);
}

static int send_fd(int sock, int fd)
{
	char byte = 'f';
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			   .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &m, 0) == 1 ? 0 : -1;
}

/* Receive one fd, waiting at most 10 s; -1 on failure. */
static int recv_fd(int sock)
{
	struct pollfd p = {.fd = sock, .events = POLLIN};
	if (poll(&p, 1, 10000) != 1)
		return -1;
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			   .msg_controllen = sizeof(u.buf)};
	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

enum hold { HOLD_CLAIM, HOLD_ROLE };

/*
 * The sender: an unnamed ring (MPSC with a reserved slot, or SPSC with the
 * producer role), its fd sent on each socket in socks, then it waits to die.
 */
static pid_t sender(enum hold what, const int *socks, int nsocks)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct shmring_config cfg = {.kind = what == HOLD_CLAIM ? SHMRING_MPSC : SHMRING_SPSC,
				     .msg_size = 64, .capacity = 8,
				     .flags = SHMRING_F_NO_MLOCK | SHMRING_F_NO_HUGEPAGE};
	struct shmring *r;
	if (shmring_create_anon(&cfg, &r))
		_exit(2);
	unsigned char m[64] = {7};
	void *slot;
	if (what == HOLD_CLAIM ? shmring_reserve(r, &slot) : shmring_try_push(r, m))
		_exit(3);
	for (int i = 0; i < nsocks; i++)
		if (send_fd(socks[i], shmring_fd(r)))
			_exit(4);
	for (int i = 0; i < 600; i++)
		sleep(1);
	_exit(9);
}

/*
 * keep: the receiver keeps the fd it received open; in_flight: a second copy
 * stays unread in a socket that the receiver holds open.
 */
static void passed_claim(bool keep, bool in_flight)
{
	int a[2], b[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), 0);
	int socks[2] = {a[1], b[1]};
	pid_t pid = sender(HOLD_CLAIM, socks, in_flight ? 2 : 1);
	int fd = recv_fd(a[0]);
	assert_true(fd >= 0);
	struct shmring *r = NULL;
	assert_int_equal(shmring_attach_fd(fd, NULL, &r), 0);
	if (!keep)
		close(fd);
	/* A message behind the sender's reservation. */
	unsigned char m[64] = {1};
	assert_int_equal(shmring_try_push(r, m), 0);
	assert_int_equal(shmring_try_pop(r, m), -EAGAIN);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	int64_t t0 = now_ns();
	int rc = shmring_pop_wait(r, m, 3 * SEC);
	int64_t took = now_ns() - t0;
	print_message("sender dead (fd %s, %s in flight): pop_wait %d after %.1f ms, "
		      "skipped %llu\n", keep ? "kept" : "closed", in_flight ? "a copy" : "none", rc,
		      (double)took / 1e6,
		      (unsigned long long)atomic_load(&r->hdr->counters.skipped));
	assert_int_equal(rc, 0);
	assert_true(took < 1 * SEC);
	assert_int_equal(m[0], 1);
	assert_int_equal(atomic_load(&r->hdr->counters.skipped), 1);
	assert_int_equal(shmring_close(r), 0);
	if (keep)
		close(fd);
	for (int i = 0; i < 2; i++) {
		close(a[i]);
		close(b[i]);
	}
}

static void test_a_received_fd_kept_open_does_not_keep_a_dead_senders_claim(void **s)
{
	(void)s;
	passed_claim(true, false);
}

static void test_an_fd_unread_in_a_socket_does_not_keep_a_dead_senders_claim(void **s)
{
	(void)s;
	passed_claim(false, true);
}

static void test_a_dead_spsc_producer_whose_fd_was_passed_loses_its_role_within_1s(void **s)
{
	(void)s;
	int a[2], b[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), 0);
	int socks[2] = {a[1], b[1]};
	pid_t pid = sender(HOLD_ROLE, socks, 2);
	int fd = recv_fd(a[0]); /* kept open; the copy on b stays unread */
	assert_true(fd >= 0);
	struct shmring *r = NULL;
	assert_int_equal(shmring_attach_fd(fd, NULL, &r), 0);
	unsigned char m[64] = {2};
	assert_int_equal(shmring_try_push(r, m), -EBUSY); /* the live sender holds it */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	int64_t t0 = now_ns();
	int rc;
	while ((rc = shmring_try_push(r, m)) == -EBUSY && now_ns() - t0 < 3 * SEC)
		sleep_ms(5);
	int64_t took = now_ns() - t0;
	print_message("SPSC producer role after the sender's death: %d after %.1f ms\n", rc,
		      (double)took / 1e6);
	assert_int_equal(rc, 0);
	assert_true(took < 1 * SEC);
	assert_int_equal(shmring_close(r), 0);
	close(fd);
	for (int i = 0; i < 2; i++) {
		close(a[i]);
		close(b[i]);
	}
}

/* Fork n children that hold their inherited handles, idle, until told (bounded). */
static pid_t *fork_idle(int n, int release_fd)
{
	pid_t *pids = calloc((size_t)n, sizeof(*pids));
	assert_non_null(pids);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			struct pollfd p = {.fd = release_fd, .events = POLLIN};
			(void)poll(&p, 1, 20000);
			_exit(0);
		}
	}
	return pids;
}

static void reap_all(pid_t *pids, int n, int release_w)
{
	close(release_w); /* EOF wakes every child */
	for (int i = 0; i < n; i++)
		waitpid(pids[i], NULL, 0);
	free(pids);
}

static void test_sixty_idle_forked_children_take_no_participant_entries(void **s)
{
	(void)s;
	const char *name = test_name();
	struct shmring_config cfg = {.kind = SHMRING_MPMC, .msg_size = 64, .capacity = 64,
				     .flags = SHMRING_F_NO_MLOCK | SHMRING_F_NO_HUGEPAGE};
	struct shmring *r;
	assert_int_equal(shmring_create(name, &cfg, &r), 0);
	int rel[2];
	assert_int_equal(pipe(rel), 0);
	int64_t t0 = now_ns();
	pid_t *pids = fork_idle(60, rel[0]);
	int64_t forked = now_ns() - t0;
	/* The pool idles; the table still has room for the rest of the system. */
	struct shmring *more[8];
	for (int i = 0; i < 8; i++) {
		int rc = shmring_attach(name, NULL, 0, &more[i]);
		if (rc)
			fail_msg("attach %d with 60 idle forked children: %d (%s)", i, rc,
				 shmring_last_error());
	}
	struct shmring_stats st;
	assert_int_equal(shmring_stats(r, &st), 0);
	print_message("60 forks in %.1f ms; then %u participants alive (1 + 8 attaches)\n",
		      (double)forked / 1e6, st.alive);
	assert_int_equal(st.alive, 9);
	for (int i = 0; i < 8; i++)
		assert_int_equal(shmring_close(more[i]), 0);
	reap_all(pids, 60, rel[1]);
	close(rel[0]);
	assert_int_equal(shmring_close(r), 0);
}

static void test_a_forked_child_that_finds_the_table_full_gets_enospc(void **s)
{
	(void)s;
	const char *name = test_name();
	struct shmring_config cfg = {.kind = SHMRING_MPMC, .msg_size = 64, .capacity = 64,
				     .flags = SHMRING_F_NO_MLOCK | SHMRING_F_NO_HUGEPAGE};
	struct shmring *r;
	assert_int_equal(shmring_create(name, &cfg, &r), 0);
	/* Fill the table from this process: 1 + 46 handles. */
	struct shmring *fill[SHMRING_PARTICIPANTS_MAX - 1];
	for (int i = 0; i < SHMRING_PARTICIPANTS_MAX - 1; i++)
		assert_int_equal(shmring_attach(name, NULL, 0, &fill[i]), 0);
	struct shmring *extra;
	assert_int_equal(shmring_attach(name, NULL, 0, &extra), -ENOSPC);
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		unsigned char m[64] = {3};
		int rc = shmring_try_push(r, m);
		int rc2 = shmring_try_pop(r, m);
		int out[2] = {rc, rc2};
		_exit(write(p[1], out, sizeof(out)) == (ssize_t)sizeof(out) ? 0 : 1);
	}
	int status, out[2] = {0, 0};
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(read(p[0], out, sizeof(out)), (ssize_t)sizeof(out));
	print_message("forked child with a full table: push %d, pop %d\n", out[0], out[1]);
	assert_int_equal(out[0], -ENOSPC);
	assert_int_equal(out[1], -ENOSPC);
	/* Nothing happened to the ring: the parent's handle works, nothing was pushed. */
	unsigned char m[64] = {4};
	assert_int_equal(shmring_try_pop(r, m), -EAGAIN);
	assert_int_equal(shmring_try_push(r, m), 0);
	assert_int_equal(shmring_try_pop(r, m), 0);
	assert_int_equal(m[0], 4);
	for (int i = 0; i < SHMRING_PARTICIPANTS_MAX - 1; i++)
		assert_int_equal(shmring_close(fill[i]), 0);
	close(p[0]);
	close(p[1]);
	assert_int_equal(shmring_close(r), 0);
}

int main(void)
{
	watchdog_start(TEST_WATCHDOG_S);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_received_fd_kept_open_does_not_keep_a_dead_senders_claim),
		cmocka_unit_test(test_an_fd_unread_in_a_socket_does_not_keep_a_dead_senders_claim),
		cmocka_unit_test(test_a_dead_spsc_producer_whose_fd_was_passed_loses_its_role_within_1s),
		cmocka_unit_test(test_sixty_idle_forked_children_take_no_participant_entries),
		cmocka_unit_test(test_a_forked_child_that_finds_the_table_full_gets_enospc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
