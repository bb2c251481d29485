/*
 * create_crash_orphan.c - reproducer: a creator killed inside shmring_create,
 * after it made the ring's hugetlbfs slot file and before it published the
 * ring's header, leaves that file, and the hugepages it holds, behind. A
 * later create of the same name reclaims the dead control file but not the
 * slot file, unless that create itself uses hugetlbfs (its O_EXCL create of
 * the slot file then removes the stale one). shmring_unlink does not remove
 * it either: it finds the slot file's path only in a published header.
 *
 * Needs free hugepages and a hugetlbfs mount named by SHMRING_HUGETLBFS_DIR,
 * e.g. under hugepage/ci-hugepages.sh:
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude soak/repro/create_crash_orphan.c \
 *      build/libshmring.a -lhugetlbfs -lpthread -o create_crash_orphan
 *   hugepage/ci-hugepages.sh --pages 16 -- ./create_crash_orphan
 *
 * The child creates a ring with 8 MiB of slots (4 hugepages of 2 MiB, which
 * take milliseconds to pre-fault); the parent watches for the slot file and
 * SIGKILLs the child the moment it appears. Then the name is created again
 * without hugepages and closed, as a user reclaiming the dead ring would.
 * Exit 1 if the slot file (and its pages) outlive all that.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"

static long free_pages(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	long n = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %ld", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

int main(void)
{
	const char *dir = getenv("SHMRING_HUGETLBFS_DIR");
	if (!dir) {
		fprintf(stderr, "set SHMRING_HUGETLBFS_DIR (run under hugepage/ci-hugepages.sh)\n");
		return 2;
	}
	char name[64], slot[512], ctl[128];
	snprintf(name, sizeof(name), "/shmring-repro-orphan-%d", (int)getpid());
	snprintf(slot, sizeof(slot), "%s/shmring.%s", dir, name + 1);
	snprintf(ctl, sizeof(ctl), "/dev/shm%s", name);
	struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 64, .capacity = 1u << 17};
	long before = free_pages();

	pid_t child = fork();
	if (child == 0) {
		struct shmring *r;
		if (shmring_create(name, &cfg, &r) == 0)
			pause(); /* got through: the parent was too slow */
		_exit(3);
	}
	struct stat st;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (t1.tv_sec - t0.tv_sec > 5) {
			fprintf(stderr, "the slot file never appeared (no hugepages?)\n");
			kill(child, SIGKILL);
			return 2;
		}
	} while (stat(slot, &st) != 0);
	kill(child, SIGKILL);
	int status;
	waitpid(child, &status, 0);
	printf("creator killed inside create; control file %s: %s; slot file %s: %s\n", ctl,
	       stat(ctl, &st) == 0 ? "present" : "absent", slot,
	       stat(slot, &st) == 0 ? "present" : "absent");

	/* What a user does: unlink the dead ring's name; later make the name again. */
	int rc = shmring_unlink(name);
	printf("shmring_unlink: %s; slot file: %s\n", rc ? shmring_strerror(rc) : "ok",
	       stat(slot, &st) == 0 ? "present" : "absent");
	cfg.flags = SHMRING_F_NO_HUGEPAGE;
	cfg.capacity = 64;
	struct shmring *r;
	rc = shmring_create(name, &cfg, &r);
	printf("create %s again (no hugepages), then close: %s\n", name,
	       rc ? shmring_last_error() : "ok");
	if (rc == 0)
		shmring_close(r);

	int orphan = stat(slot, &st) == 0;
	long after = free_pages();
	printf("slot file after unlink, create and close: %s; HugePages_Free %ld -> %ld\n",
	       orphan ? "STILL THERE" : "gone", before, after);
	if (orphan)
		unlink(slot); /* clean up after the demonstration */
	printf("%s\n", orphan ? "BUG: the hugetlbfs slot file of a creator killed inside create leaks"
			      : "OK: nothing left");
	return orphan;
}
