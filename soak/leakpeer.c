/*
 * leakpeer.c - create/attach/close/unlink cycles with random kills, for
 * tests/test_leaks.sh: nothing a ring owns may outlive its last user, however
 * its users die.
 *
 *   leakpeer run --cycles N --prefix /NAME [--names K] [--seed S]
 *   leakpeer victim NAME|fd:N create|attach KIND FLAGS OPS
 *
 * run: the surviving process. N cycles over a pool of K ring names (K = 4);
 * each cycle picks a name, a kind and flags (hugepages or not, blocking,
 * no-mlock, now and then persist) and one of:
 *   own     it creates the ring, takes a second handle, starts 1-2 victims
 *           that attach and push/pop, kills them at a random moment (or lets
 *           them finish), pushes/pops itself, closes both handles (unlink);
 *   theirs  a victim creates the ring and is killed at a random moment (maybe
 *           inside create); the survivor attaches (no wait) and closes. A
 *           ring left by a killed creator is reclaimed by the next create of
 *           that name;
 *   anon    it creates an unnamed ring, hands its fd to a victim through
 *           exec, kills it or lets it finish, closes;
 *   notify  a blocking ring on which it takes a notify fd (an eventfd and a
 *           service thread) while a victim pushes, then closes.
 * Victims are killed with SIGKILL after 0..4 ms (a third of them run to
 * their end). After the cycles a cleanup pass creates and closes every pool
 * name: what a user does to get a name back (a dead ring is reclaimed by
 * create; -EEXIST there counts as an error). The survivor compares its own open fds, mappings and threads
 * with what it had after a warm-up cycle, and counts hugetlbfs slot files it
 * saw with no ring file beside them (orphans left by a creator killed inside
 * create). Exit 0 when its own counts are back, 1 otherwise, 2 on usage.
 * /dev/shm, the hugetlbfs mounts and the hugepage pool are checked by the
 * script, which sees them from outside.
 *
 * victim: create (exit 0 if the name is taken) or attach (no wait) NAME, or
 * attach the unnamed ring fd:N, then OPS pushes and pops, close, exit 0.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"

#define MSG 64

static const char *self_exe;
static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t rnd_below(uint64_t n)
{
	return rnd() % n;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	int n = 0;
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n; /* for /proc/self/fd: including the one that reads the list */
}

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, c;
	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* A few pushes and pops; role conflicts (-EBUSY) and full/empty are expected. */
static void churn(struct shmring *r, unsigned ops)
{
	unsigned char m[MSG] = {0};
	for (unsigned i = 0; i < ops; i++) {
		int rc = i & 1 ? shmring_try_pop(r, m) : shmring_try_push(r, m);
		(void)rc;
	}
}

static int victim(int argc, char **argv)
{
	if (argc != 7)
		return 2;
	const char *name = argv[2];
	bool create = strcmp(argv[3], "create") == 0;
	struct shmring_config cfg = {.kind = (enum shmring_kind)atoi(argv[4]), .msg_size = MSG,
				     .capacity = 64, .flags = (uint32_t)strtoul(argv[5], NULL, 0)};
	unsigned ops = (unsigned)atoi(argv[6]);
	struct shmring *r = NULL;
	int rc;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (strncmp(name, "fd:", 3) == 0)
		rc = shmring_attach_fd(atoi(name + 3), NULL, &r);
	else if (create)
		rc = shmring_create(name, &cfg, &r);
	else
		rc = shmring_attach(name, NULL, 0, &r);
	if (rc)
		return 0; /* taken, gone, not yet there: all fine for a victim */
	churn(r, ops);
	shmring_close(r);
	return 0;
}

/* Start a victim; keep_fd >= 0 is an fd to leave open across exec. */
static pid_t start_victim(const char *name, const char *mode, int kind, uint32_t flags,
			  unsigned ops, int keep_fd)
{
	char kb[16], fb[16], ob[16];
	snprintf(kb, sizeof(kb), "%d", kind);
	snprintf(fb, sizeof(fb), "%#x", flags);
	snprintf(ob, sizeof(ob), "%u", ops);
	pid_t pid = fork();
	if (pid == 0) {
		if (keep_fd >= 0)
			fcntl(keep_fd, F_SETFD, 0);
		execl(self_exe, self_exe, "victim", name, mode, kb, fb, ob, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Kill it after 0..4 ms, or (a third of the time) let it finish; reap it, bounded. */
static void end_victim(pid_t pid, unsigned *killed)
{
	if (pid <= 0)
		return;
	if (rnd_below(3) != 0) {
		struct timespec ts = {0, (long)rnd_below(4000000)};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		(*killed)++;
	}
	for (int i = 0; i < 2000; i++) {
		int status;
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			return;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL); /* a victim that did not finish in 2 s */
	waitpid(pid, NULL, 0);
	(*killed)++;
}

static char huge_dir[256];

static void find_hugetlbfs(void)
{
	const char *env = getenv("SHMRING_HUGETLBFS_DIR");
	if (env) {
		snprintf(huge_dir, sizeof(huge_dir), "%s", env);
		return;
	}
	FILE *f = fopen("/proc/mounts", "r");
	char dev[256], dir[256], type[64];
	while (f && fscanf(f, "%255s %255s %63s %*[^\n]", dev, dir, type) == 3)
		if (strcmp(type, "hugetlbfs") == 0 && !huge_dir[0])
			snprintf(huge_dir, sizeof(huge_dir), "%s", dir);
	if (f)
		fclose(f);
}

/* A hugetlbfs slot file "shmring.<name>" with no ring file at /dev/shm/<name>. */
static bool orphaned(const char *name)
{
	char path[512];
	struct stat st;
	if (!huge_dir[0])
		return false;
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	if (lstat(path, &st) == 0)
		return false;
	snprintf(path, sizeof(path), "%s/shmring.%s", huge_dir, name + 1);
	return lstat(path, &st) == 0;
}

struct counts {
	unsigned cycles, victims, killed, own, theirs, anon, notify, persist, hugepage_rings,
		orphans, errors;
};

static void report_error(struct counts *c, const char *what, int rc)
{
	if (c->errors++ < 10)
		fprintf(stderr, "leakpeer: %s: %s (%s)\n", what, shmring_strerror(rc),
			shmring_last_error());
}

/*
 * Create name. Every victim is dead and reaped and every persist ring was
 * unlinked by the cycle that made it, so whatever stands at the name is dead
 * and create must reclaim it: -EEXIST is an error (counted), after which the
 * name is unlinked so that the run goes on.
 */
static int create_named(const char *name, const struct shmring_config *cfg, struct shmring **r,
			struct counts *c)
{
	int rc = shmring_create(name, cfg, r);
	if (rc == -EEXIST) {
		report_error(c, "create did not reclaim a dead ring", rc);
		shmring_unlink(name);
		rc = shmring_create(name, cfg, r);
	}
	return rc;
}

static void cycle(const char *name, struct counts *c, int scenario)
{
	int kind = 1 + (int)rnd_below(3);
	uint32_t flags = 0;
	if (rnd_below(2))
		flags |= SHMRING_F_NO_HUGEPAGE;
	if (rnd_below(2))
		flags |= SHMRING_F_BLOCKING;
	if (rnd_below(5) == 0)
		flags |= SHMRING_F_NO_MLOCK;
	struct shmring_config cfg = {.kind = (enum shmring_kind)kind, .msg_size = MSG,
				     .capacity = 64, .flags = flags};
	struct shmring *r = NULL, *r2 = NULL;
	struct shmring_info info;
	int rc;
	c->orphans += orphaned(name);
	c->cycles++;

	switch (scenario) {
	case 0: { /* own */
		bool persist = rnd_below(10) == 0;
		if (persist)
			cfg.flags |= SHMRING_F_PERSIST;
		if ((rc = create_named(name, &cfg, &r, c))) {
			report_error(c, "create", rc);
			return;
		}
		c->own++;
		c->persist += persist;
		if (shmring_info(r, &info) == 0 && info.backing == SHMRING_BACKING_HUGETLBFS)
			c->hugepage_rings++;
		pid_t v1 = start_victim(name, "attach", kind, flags, 2000, -1);
		pid_t v2 = rnd_below(2) ? start_victim(name, "attach", kind, flags, 2000, -1) : 0;
		c->victims += 1 + (v2 > 0);
		if ((rc = shmring_attach(name, NULL, 0, &r2)) == 0) {
			churn(r2, 100);
			shmring_close(r2);
		} else {
			report_error(c, "attach", rc);
		}
		churn(r, 100);
		end_victim(v1, &c->killed);
		end_victim(v2, &c->killed);
		if ((rc = shmring_close(r)))
			report_error(c, "close", rc);
		if (persist && (rc = shmring_unlink(name)))
			report_error(c, "unlink", rc);
		break;
	}
	case 1: { /* theirs */
		c->theirs++;
		pid_t v = start_victim(name, "create", kind, flags, 2000, -1);
		c->victims++;
		struct timespec ts = {0, (long)rnd_below(2000000)};
		nanosleep(&ts, NULL);
		if (shmring_attach(name, NULL, 0, &r2) == 0) {
			churn(r2, 50);
			shmring_close(r2);
		}
		end_victim(v, &c->killed);
		break;
	}
	case 2: { /* anon */
		if ((rc = shmring_create_anon(&cfg, &r))) {
			report_error(c, "create_anon", rc);
			return;
		}
		c->anon++;
		int fd = shmring_fd(r);
		char fdname[32];
		snprintf(fdname, sizeof(fdname), "fd:%d", fd);
		pid_t v = start_victim(fdname, "attach", kind, flags, 2000, fd);
		c->victims++;
		churn(r, 100);
		end_victim(v, &c->killed);
		if ((rc = shmring_close(r)))
			report_error(c, "close", rc);
		break;
	}
	default: { /* notify */
		cfg.flags |= SHMRING_F_BLOCKING;
		if ((rc = create_named(name, &cfg, &r, c))) {
			report_error(c, "create", rc);
			return;
		}
		c->notify++;
		unsigned char m[MSG];
		if ((rc = shmring_try_pop(r, m)) != -EAGAIN && rc != -EBUSY && rc != 0)
			report_error(c, "pop", rc);
		int nfd = shmring_notify_fd(r);
		if (nfd < 0) {
			report_error(c, "notify_fd", nfd);
		} else {
			pid_t v = start_victim(name, "attach", kind == 3 ? 3 : kind, cfg.flags, 2000, -1);
			c->victims++;
			struct pollfd pfd = {.fd = nfd, .events = POLLIN};
			if (shmring_notify_arm(r) == 0)
				(void)poll(&pfd, 1, 2);
			end_victim(v, &c->killed);
		}
		if ((rc = shmring_close(r)))
			report_error(c, "close", rc);
		break;
	}
	}
}

static int run(int argc, char **argv)
{
	unsigned cycles = 1000, names = 4;
	const char *prefix = NULL;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--cycles") == 0)
			cycles = (unsigned)atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--prefix") == 0)
			prefix = argv[i + 1];
		else if (strcmp(argv[i], "--names") == 0)
			names = (unsigned)atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--seed") == 0)
			rng = strtoull(argv[i + 1], NULL, 0) | 1;
		else
			return 2;
	}
	if (!prefix || names == 0 || names > 64 || prefix[0] != '/') {
		fprintf(stderr, "usage: leakpeer run --cycles N --prefix /NAME [--names K] [--seed S]\n");
		return 2;
	}
	char pool[64][128];
	for (unsigned i = 0; i < names; i++)
		snprintf(pool[i], sizeof(pool[i]), "%s-%u", prefix, i);
	find_hugetlbfs();
	signal(SIGPIPE, SIG_IGN);

	/* Warm-up: the first use of each path may load or open things once for good. */
	struct counts c = {0};
	for (int s = 0; s < 4; s++)
		cycle(pool[0], &c, s);
	int fds0 = count_dir("/proc/self/fd"), maps0 = count_lines("/proc/self/maps"),
	    tasks0 = count_dir("/proc/self/task");

	for (unsigned i = 0; i < cycles; i++)
		cycle(pool[rnd_below(names)], &c, (int)rnd_below(4));

	/* Cleanup: take every name back the way a user would, then let it go. */
	unsigned orphans_left = 0;
	for (unsigned i = 0; i < names; i++) {
		struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = MSG, .capacity = 64};
		struct shmring *r = NULL;
		int rc = create_named(pool[i], &cfg, &r, &c);
		if (rc)
			report_error(&c, "cleanup create", rc);
		else if ((rc = shmring_close(r)))
			report_error(&c, "cleanup close", rc);
		orphans_left += orphaned(pool[i]);
	}
	int fds1 = count_dir("/proc/self/fd"), maps1 = count_lines("/proc/self/maps"),
	    tasks1 = count_dir("/proc/self/task");

	printf("leakpeer: %u cycles (own %u, theirs %u, anon %u, notify %u; persist %u; "
	       "on hugetlbfs %u), %u victims, %u killed\n", c.cycles, c.own, c.theirs, c.anon,
	       c.notify, c.persist, c.hugepage_rings, c.victims, c.killed);
	printf("leakpeer: survivor: fds %d -> %d, mappings %d -> %d, threads %d -> %d\n", fds0, fds1,
	       maps0, maps1, tasks0, tasks1);
	printf("leakpeer: hugetlbfs slot files seen without their ring (a creator killed inside "
	       "create): %u; left after cleanup: %u\n", c.orphans, orphans_left);
	printf("leakpeer: unexpected errors: %u\n", c.errors);
	return fds0 != fds1 || maps0 != maps1 || tasks0 != tasks1 || c.errors || orphans_left;
}

int main(int argc, char **argv)
{
	self_exe = "/proc/self/exe";
	static char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		self_exe = exe;
	}
	if (argc >= 2 && strcmp(argv[1], "victim") == 0)
		return victim(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "run") == 0)
		return run(argc, argv);
	fprintf(stderr, "usage: leakpeer run --cycles N --prefix /NAME [--names K] [--seed S]\n"
			"       leakpeer victim NAME|fd:N create|attach KIND FLAGS OPS\n");
	return 2;
}
