/*
 * role_takeover_ebusy.c - reproducer: a claimant of an SPSC/MPSC role gets
 * -EBUSY ("held by live process <dead pid>") although the holder is dead,
 * while another process is attaching and taking over the dead holder's
 * participant entry.
 *
 * part_join() (src/liveness.c) takes a free participant byte lock and only
 * then releases the roles that the entry's previous, dead owner held. In
 * between, the role word still names that entry, the entry's lock is held
 * (by the newcomer), so role_claim() sees a live holder and returns -EBUSY.
 * The soak hit this as a consumer replacement exiting with -EBUSY on an MPSC
 * ring while a standby process was attaching.
 *
 * The window is a few instructions wide; gdb holds the newcomer in it:
 *   cc -std=c11 -D_GNU_SOURCE -g -Iinclude soak/repro/role_takeover_ebusy.c \
 *      build/libshmring.a -lhugetlbfs -lpthread -o role_takeover_ebusy
 *   soak/repro/role_takeover_ebusy.sh ./role_takeover_ebusy
 *
 *   role_takeover_ebusy create NAME   create an MPSC ring, claim the consumer role
 *                                      in a child, SIGKILL the child, wait (60 s)
 *   role_takeover_ebusy attach NAME   attach (the newcomer; run under gdb)
 *   role_takeover_ebusy pop NAME      attach and try_pop: 0 or -EAGAIN expected
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmring.h"

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	const char *name = argv[2];
	struct shmring *r;
	int rc;
	if (strcmp(argv[1], "create") == 0) {
		/* The holder is forked before the ring exists: it inherits no handle. */
		int ready[2];
		if (pipe(ready))
			return 2;
		pid_t holder = fork();
		if (holder == 0) {
			struct shmring *c;
			unsigned char m[64];
			if (shmring_attach(name, NULL, 5000000000LL, &c) ||
			    shmring_try_pop(c, m) != -EAGAIN)
				_exit(1);
			if (write(ready[1], "r", 1) != 1)
				_exit(1);
			pause();
		}
		struct shmring_config cfg = {.kind = SHMRING_MPSC, .msg_size = 64, .capacity = 8,
					     .flags = SHMRING_F_NO_HUGEPAGE};
		if ((rc = shmring_create(name, &cfg, &r)))
			return 2;
		char ch;
		if (read(ready[0], &ch, 1) != 1)
			return 2;
		kill(holder, SIGKILL);
		waitpid(holder, NULL, 0);
		printf("consumer role taken by pid %d, which is now dead\n", (int)holder);
		fflush(stdout);
		sleep(60); /* keeps the ring alive while the script runs the rest */
		shmring_close(r);
		return 0;
	}
	if ((rc = shmring_attach(name, NULL, 5000000000LL, &r))) {
		fprintf(stderr, "attach: %s\n", shmring_last_error());
		return 2;
	}
	if (strcmp(argv[1], "pop") == 0) {
		unsigned char m[64];
		rc = shmring_try_pop(r, m);
		printf("claimant: try_pop returned %d%s%s\n", rc, rc == -EBUSY ? ": " : "",
		       rc == -EBUSY ? shmring_last_error() : "");
		shmring_close(r);
		return rc == -EBUSY ? 1 : 0;
	}
	printf("newcomer: attached\n");
	shmring_close(r);
	return 0;
}
