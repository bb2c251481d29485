/*
 * eos_dead_claim.c - reproducer: end of stream (-EPIPE) is reported while a
 * message is still in the ring, behind a slot claimed by a producer that
 * died between its claim and its publish (MPSC and MPMC).
 *
 * Build against the kill-point library (make SAN=killpoints lib):
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude soak/repro/eos_dead_claim.c \
 *      build-kp/libshmring.a -lhugetlbfs -lpthread -o eos_dead_claim
 *   ./eos_dead_claim mpsc     (or mpmc)
 *
 * Steps: create the ring; the consumer and producer B attach first (so that
 * neither takes over A's participant entry later, which would release A's
 * claim on the spot); producer A pushes message 0 and dies at its second
 * push at push_claimed (SHMRING_KILL_AT=push_claimed:2), holding position 1;
 * producer B pushes message 2 and closes; the consumer asks for end of
 * stream and calls pop_wait until it returns non-zero.
 * Expected: messages 0 and 2 (position 1 skipped, counted in `skipped`),
 * then -EPIPE. Exit 0 if so, 1 if -EPIPE came with message 2 still in the
 * ring.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmring.h"

static int go[2];

static void produce(const char *name, unsigned first, unsigned n, int wait_for_go)
{
	struct shmring *r;
	if (shmring_attach(name, NULL, 1000000000, &r))
		_exit(2);
	char c;
	if (wait_for_go && read(go[0], &c, 1) != 1)
		_exit(4);
	for (unsigned i = 0; i < n; i++) {
		unsigned char m[64] = {0};
		m[0] = (unsigned char)(first + i);
		if (shmring_try_push(r, m))
			_exit(3);
	}
	shmring_close(r);
	_exit(0);
}

int main(int argc, char **argv)
{
	enum shmring_kind kind = argc > 1 && strcmp(argv[1], "mpmc") == 0 ? SHMRING_MPMC : SHMRING_MPSC;
	char name[64];
	snprintf(name, sizeof(name), "/shmring-repro-eos-%d", (int)getpid());
	struct shmring_config cfg = {.kind = kind, .msg_size = 64, .capacity = 8,
				     .flags = SHMRING_F_NO_HUGEPAGE};
	struct shmring *r;
	int rc = shmring_create(name, &cfg, &r);
	if (rc) {
		fprintf(stderr, "create: %s\n", shmring_last_error());
		return 2;
	}
	struct shmring *c;
	if (shmring_attach(name, NULL, 0, &c))
		return 2;
	if (pipe(go))
		return 2;
	int status;
	pid_t b = fork();
	if (b == 0)
		produce(name, 2, 1, 1); /* attaches now; message 2 at position 2 after "go" */
	usleep(100000);
	pid_t a = fork();
	if (a == 0) {
		setenv("SHMRING_KILL_AT", "push_claimed:2", 1);
		produce(name, 0, 2, 0); /* message 0, then dies holding position 1 */
	}
	waitpid(a, &status, 0);
	printf("producer A: %s\n", WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL
					   ? "killed at push_claimed holding position 1"
					   : "did not die as planned");
	if (write(go[1], "g", 1) != 1)
		return 2;
	waitpid(b, &status, 0);
	printf("producer B: pushed message 2 and closed (status %d)\n", WEXITSTATUS(status));
	shmring_set_end_of_stream(c, true);
	unsigned char m[64];
	while ((rc = shmring_pop_wait(c, m, 1000000000)) == 0)
		printf("consumer: message %u\n", m[0]);
	struct shmring_stats st;
	shmring_stats(c, &st);
	printf("consumer: pop_wait returned %d (%s); ring depth %zu, skipped %llu\n", rc,
	       shmring_strerror(rc), st.depth, (unsigned long long)st.skipped);
	int bad = rc == -EPIPE && st.depth > 0;
	if (bad) {
		/* Is the message really there? Pop without end of stream. */
		shmring_set_end_of_stream(c, false);
		while (shmring_pop_wait(c, m, 100000000) == 0)
			printf("consumer: after -EPIPE, a plain pop_wait still gets message %u\n", m[0]);
	}
	shmring_close(c);
	shmring_close(r);
	printf("%s\n", bad ? "BUG: -EPIPE while a message was still in the ring"
			   : "OK: every message, then -EPIPE");
	return bad;
}
