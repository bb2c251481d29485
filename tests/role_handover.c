/*
 * role_handover.c - helper of tests/test_role_handover.sh: the consumer role
 * of a dead holder changes hands while another process is taking over the
 * dead holder's participant entry. Built against the kill-point library, so
 * that SHMRING_KILL_AT=join_locked:1 SHMRING_KILL_SIGNAL=STOP holds a
 * newcomer in the middle of its join (entry locked, roles not yet released).
 *
 *   role_handover create NAME KIND STOPFILE [KILLFILE]
 *       create a KIND (spsc|mpsc) ring, let a forked child claim the consumer
 *       role, SIGKILL and reap it, print "ready", keep the ring open until
 *       STOPFILE exists (at most 60 s), then close it (and so unlink it).
 *       With KILLFILE, print "holding" and kill the child only once KILLFILE
 *       exists (at most 10 s): claimants attached before that cannot rejoin
 *       the dead holder's entry, so they take the role over (role_claim).
 *       KIND mpmc: the child reserves a slot instead (a dead WRITING claim)
 *       and, once it is dead, one message is pushed behind that claim.
 *   role_handover attach NAME
 *       attach and close (the newcomer).
 *   role_handover popwait NAME MS
 *       attach and pop_wait up to MS ms; print "rc=N ms=T"; exit 0 on a
 *       message, 1 on -ETIMEDOUT, 2 otherwise.
 *   role_handover pop NAME [HOLD_MS [GOFILE]]
 *       attach and try_pop; print "rc=N ms=T" (T: the try_pop's wall time)
 *       and, after a claim, "claimed"; then keep the role HOLD_MS ms. With
 *       GOFILE, print "attached" and try_pop only once GOFILE exists (10 s).
 *       Exit 0 when it got the role (0 or -EAGAIN), 1 on -EBUSY, 2 otherwise.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Wait for a file the test script touches: at most 10 s. */
static void wait_file(const char *path)
{
	for (int i = 0; i < 1000 && access(path, F_OK) != 0; i++)
		usleep(10000);
}

static int create(const char *name, const char *kind, const char *stopfile,
		  const char *killfile)
{
	int ready[2];
	if (pipe(ready))
		return 2;
	/* The holder is forked before the ring exists: it inherits no handle. */
	pid_t holder = fork();
	if (holder < 0)
		return 2;
	if (holder == 0) {
		struct shmring *c;
		unsigned char m[64];
		void *slot;
		if (shmring_attach(name, NULL, 5000000000LL, &c) ||
		    (strcmp(kind, "mpmc") == 0 ? shmring_reserve(c, &slot) : shmring_try_pop(c, m) != -EAGAIN))
			_exit(1);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	struct shmring_config cfg = {.kind = strcmp(kind, "spsc") == 0   ? SHMRING_SPSC
					     : strcmp(kind, "mpmc") == 0 ? SHMRING_MPMC
									 : SHMRING_MPSC,
				     .msg_size = 64, .capacity = 8, .flags = SHMRING_F_NO_HUGEPAGE};
	struct shmring *r;
	if (shmring_create(name, &cfg, &r)) {
		fprintf(stderr, "create: %s\n", shmring_last_error());
		kill(holder, SIGKILL);
		waitpid(holder, NULL, 0);
		return 2;
	}
	char ch;
	if (read(ready[0], &ch, 1) != 1) {
		waitpid(holder, NULL, 0);
		shmring_close(r);
		return 2;
	}
	if (killfile) {
		printf("holding\n");
		fflush(stdout);
		wait_file(killfile);
	}
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	if (cfg.kind == SHMRING_MPMC) {
		unsigned char m[64] = {42};
		if (shmring_try_push(r, m)) {
			shmring_close(r);
			return 2;
		}
	}
	printf("ready: consumer role held by pid %d, now dead\n", (int)holder);
	fflush(stdout);
	for (int i = 0; i < 600 && access(stopfile, F_OK) != 0; i++)
		usleep(100000);
	shmring_close(r);
	return 0;
}

int main(int argc, char **argv)
{
	if ((argc == 5 || argc == 6) && strcmp(argv[1], "create") == 0)
		return create(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL);
	if (argc < 3)
		return 2;
	struct shmring *r;
	if (shmring_attach(argv[2], NULL, 5000000000LL, &r)) {
		fprintf(stderr, "attach: %s\n", shmring_last_error());
		return 2;
	}
	int rc = 0;
	if (strcmp(argv[1], "popwait") == 0 && argc > 3) {
		unsigned char m[64];
		double t0 = now_ms();
		rc = shmring_pop_wait(r, m, (int64_t)atoi(argv[3]) * 1000000);
		printf("rc=%d ms=%.1f\n", rc, now_ms() - t0);
		rc = rc == 0 && m[0] == 42 ? 0 : rc == -ETIMEDOUT ? 1 : 2;
	} else if (strcmp(argv[1], "pop") == 0) {
		unsigned char m[64];
		if (argc > 4) {
			printf("attached\n");
			fflush(stdout);
			wait_file(argv[4]);
		}
		double t0 = now_ms();
		rc = shmring_try_pop(r, m);
		double t1 = now_ms();
		printf("rc=%d ms=%.1f%s%s\n", rc, t1 - t0, rc == -EBUSY ? " " : "",
		       rc == -EBUSY ? shmring_last_error() : "");
		if (rc == 0 || rc == -EAGAIN) {
			printf("claimed\n");
			fflush(stdout);
			if (argc > 3)
				usleep((useconds_t)atoi(argv[3]) * 1000u);
		}
		rc = rc == 0 || rc == -EAGAIN ? 0 : rc == -EBUSY ? 1 : 2;
	}
	fflush(stdout);
	shmring_close(r);
	return rc;
}
