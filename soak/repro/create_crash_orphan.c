/*
 * create_crash_orphan.c - reproducer (issue #10, defect 12): a creator killed
 * inside shmring_create, after it made the ring's hugetlbfs slot file and
 * before it published the ring's header, left that file, and the hugepages
 * it holds, behind: neither unlink nor a later create without hugepages
 * removed it. Since creates make both files unnamed and name them only when
 * they are complete (src/ring.c), a kill leaves nothing, or a dead ring whose
 * header names its slot file, which unlink and reclaim remove.
 *
 * Needs free hugepages and a hugetlbfs mount named by SHMRING_HUGETLBFS_DIR,
 * e.g. under hugepage/ci-hugepages.sh:
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude soak/repro/create_crash_orphan.c \
 *      build/libshmring.a -lhugetlbfs -lpthread -o create_crash_orphan
 *   hugepage/ci-hugepages.sh --pages 16 -- ./create_crash_orphan
 *
 * The child creates a ring with 8 MiB of slots (4 hugepages of 2 MiB, which
 * take milliseconds to pre-fault); the parent SIGKILLs it at a random moment
 * inside create (0 to 1.25 times the time one create takes). Then the name
 * is unlinked, or created again without hugepages and closed, as a user
 * cleaning up or reclaiming the dead ring would. Exit 1 if any file (or its
 * pages) outlives that. Run by tests/test_repro.sh in make check.
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

static int kill_during_create(const char *name, const struct shmring_config *cfg, long delay_us)
{
	pid_t child = fork();
	if (child == 0) {
		struct shmring *r;
		if (shmring_create(name, cfg, &r) == 0)
			pause(); /* got through: it dies holding the ring */
		_exit(3);
	}
	struct timespec ts = {.tv_sec = delay_us / 1000000, .tv_nsec = (delay_us % 1000000) * 1000};
	nanosleep(&ts, NULL);
	kill(child, SIGKILL);
	int status;
	return waitpid(child, &status, 0) == child ? 0 : -1;
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

	/* How long a whole create takes here, so that the kills land inside one. */
	struct timespec t0, t1;
	struct shmring *r;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = shmring_create(name, &cfg, &r);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc) {
		fprintf(stderr, "create with hugepages failed: %s\n", shmring_last_error());
		return 2;
	}
	shmring_close(r);
	long create_us = (t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
	printf("one create takes %ld us; killing creators at 0..%ld us into create\n", create_us,
	       create_us + create_us / 4);

	int rounds = 40, leaks = 0;
	struct stat st;
	srand((unsigned)getpid());
	for (int i = 0; i < rounds; i++) {
		long delay = rand() % (create_us + create_us / 4 + 1);
		if (kill_during_create(name, &cfg, delay))
			return 2;
		/* What a user does: unlink the dead ring's name (or shmring rm it). */
		(void)shmring_unlink(name);
		if (stat(slot, &st) == 0 || stat(ctl, &st) == 0) {
			printf("round %d (killed at %ld us): %s left after unlink\n", i, delay,
			       stat(slot, &st) == 0 ? "slot file" : "control file");
			leaks++;
			unlink(slot);
			unlink(ctl);
		}
	}
	/* And the other way out: the next create of the name reclaims the dead ring. */
	for (int i = 0; i < rounds / 4; i++) {
		long delay = rand() % (create_us + create_us / 4 + 1);
		if (kill_during_create(name, &cfg, delay))
			return 2;
		struct shmring_config small = {.kind = SHMRING_SPSC, .msg_size = 64, .capacity = 64,
					       .flags = SHMRING_F_NO_HUGEPAGE};
		rc = shmring_create(name, &small, &r);
		if (rc == 0)
			shmring_close(r);
		if (rc || stat(slot, &st) == 0) {
			printf("reclaiming create after a kill at %ld us: %s\n", delay,
			       rc ? shmring_last_error() : "the slot file is still there");
			leaks++;
			unlink(slot);
			(void)shmring_unlink(name);
		}
	}
	long after = free_pages();
	printf("%d kills inside create: %d left files behind; HugePages_Free %ld -> %ld\n",
	       rounds + rounds / 4, leaks, before, after);
	int bad = leaks || after != before;
	printf("%s\n", bad ? "BUG: a creator killed inside create leaks its files or hugepages"
			   : "OK: nothing left");
	return bad;
}
