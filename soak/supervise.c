/*
 * supervise.c - one soak case: a ring, its producers and consumers (soakpeer
 * processes), faults injected while they run, optionally stress-ng beside
 * them, and at the end an exact account of every message.
 *
 * Life of a case:
 *   RUN     P producers and C consumers run; every process that dies is
 *           started again at once as a new instance. Fault events come at
 *           random times (exponential, mean --fault-ms): a random event
 *           SIGKILLs a random process; a point event asks a process to exit
 *           cleanly (its retire word) and starts its replacement from the
 *           kill-point build with SHMRING_KILL_AT="point:N", N drawn at
 *           random, rotating through the named points that this ring kind and
 *           role can reach. stress-ng, if asked for, runs in its own process
 *           group for exactly the RUN time (--timeout) and must exit 0.
 *   QUIET   no more faults; armed processes are asked to exit.
 *   STOP    the run's stop word: producers finish the push in hand and exit.
 *   SETTLE  50 ms of normal popping, so a claim left by a producer that died
 *           just before the stop is passed over before end of stream is asked
 *           for (pop_wait would otherwise see "no live producer" first).
 *   DRAIN   consumers pop with end of stream until -EPIPE and exit.
 *   CHECK   the delivery log against what every producer instance sent.
 *
 * What is checked (soak.h explains the records the peers keep):
 *   - every entry is a known producer instance and a seq it had started to
 *     push (below its hi mark): nothing delivered that was never sent;
 *   - no (instance, seq) twice; per consumer instance, each producer
 *     instance's seqs strictly increase; no message failed its checksum;
 *   - every missing message is explained by a death: a producer killed with a
 *     push in flight loses at most that push (at a point between its claim and
 *     its publish, exactly that, counted by the ring's `skipped` on MPSC and
 *     MPMC; on SPSC nothing was published); a consumer killed holding a
 *     message loses at most what it held (MPMC, killed between claim and
 *     release: exactly one, counted by `recovered`; any kind, killed after
 *     release and before its log write: exactly one; SPSC/MPSC, killed before
 *     release: none, its successor gets the message). The ring's skipped and
 *     recovered counters must fall in the ranges these deaths allow, which
 *     are exact when every death came at a named point;
 *   - after each death the consumers' delivered count moves within
 *     --recovery-ms (a death of the last producer waits for its restart);
 *   - nothing hangs: no progress for --hang-s while running, or a phase that
 *     overruns its bound, ends the case as failed; an alarm bounds the whole.
 *
 * Exit status: 0 all held, 1 a violation (the report says which), 2 usage or
 * setup error. A line "SOAK-SUMMARY key=value ..." is appended to --summary.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"
#include "soak.h"

#define MS INT64_C(1000000)
#define SEC INT64_C(1000000000)

enum role { PROD = 0, CONS = 1 };
static const char *const role_name[2] = {"producer", "consumer"};

enum cause { C_NONE = 0, C_CLEAN, C_RANDOM, C_POINT, C_ERROR };

enum point {
	P_PUSH_CLAIMED, P_PUSH_MID, P_PUSH_BEFORE, P_PUSH_AFTER,
	P_POP_CLAIMED, P_POP_MID, P_POP_BEFORE, P_POP_AFTER,
	P_WAIT, P_POP_HEAD, P_RECOVER, NPOINTS
};
static const char *const point_name[NPOINTS] = {
	"push_claimed", "push_mid_copy", "push_before_publish", "push_after_publish",
	"pop_claimed", "pop_mid_copy", "pop_before_release", "pop_after_release",
	"wait_sleeping", "pop_before_head", "recover_locked",
};

enum phase { PH_RUN, PH_QUIET, PH_STOP, PH_SETTLE, PH_DRAIN, PH_DONE };
static const char *const phase_name[] = {"run", "quiet", "stop", "settle", "drain", "done"};

/* ---- options ---- */

static struct {
	enum shmring_kind kind;
	const char *kind_name;
	unsigned producers, consumers;
	bool blocking, no_hugepage;
	unsigned capacity, msg_size;
	double duration_s;
	const char *peer, *peer_kp;
	enum { FM_NONE, FM_RANDOM, FM_POINTS, FM_MIXED } faults;
	unsigned fault_ms;
	unsigned random_pct;
	unsigned forms; /* bit mask of enum soak_form for unarmed instances */
	unsigned points; /* bit mask of enum point allowed */
	unsigned long kp_max;
	unsigned arm_timeout_ms;
	const char *stress;
	unsigned min_kills;
	unsigned recovery_ms;
	unsigned hang_s;
	double log_gib;
	const char *label;
	uint64_t seed;
	const char *summary;
	const char *base;
	bool verbose;
} opt = {
	.capacity = 256, .msg_size = 64, .duration_s = 30, .faults = FM_MIXED, .fault_ms = 100,
	.random_pct = 50, .forms = 7, .points = (1u << NPOINTS) - 1, .kp_max = 3000,
	.arm_timeout_ms = 3000, .recovery_ms = 1000, .hang_s = 10, .log_gib = 4,
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: supervise --kind spsc|mpsc|mpmc --peer PATH --peer-kp PATH [options]\n"
		"  --producers N --consumers N   processes of each role (spsc 1/1, mpsc 3/1, mpmc 4/4)\n"
		"  --blocking                     SHMRING_F_BLOCKING ring (waits sleep on a futex)\n"
		"  --no-hugepage                  SHMRING_F_NO_HUGEPAGE ring\n"
		"  --capacity N --msg-size N      ring shape (256, 64)\n"
		"  --duration S                   seconds of faults and stress (30)\n"
		"  --faults none|random|points|mixed   fault events (mixed)\n"
		"  --fault-ms N                   mean time between fault events (100)\n"
		"  --random-pct N                 mixed: share of random SIGKILLs, %% (50)\n"
		"  --forms LIST                   API forms of unarmed peers: copy,batch,zc (all)\n"
		"  --points LIST                  named points to use (all this ring can reach)\n"
		"  --kp-max N                     SHMRING_KILL_AT count drawn in [1, N] (3000)\n"
		"  --arm-timeout-ms N             an armed peer that has not died by then is retired (3000)\n"
		"  --stress 'ARGS'                run stress-ng ARGS --timeout <duration>s beside the ring\n"
		"  --min-kills N                  fail unless at least N processes were killed\n"
		"  --recovery-ms N                progress must follow each death within N ms (1000)\n"
		"  --hang-s N                     no progress for N s while running is a hang (10)\n"
		"  --log-gib G                    delivery log capacity (4 GiB = 512 Mi messages)\n"
		"  --base /NAME                   name prefix of the run's shm objects (/shmring-soak-PID)\n"
		"  --label TEXT --seed N --summary FILE --verbose\n");
}

static unsigned parse_list(const char *s, const char *const *names, int n, const char *what)
{
	unsigned mask = 0;
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int i;
		for (i = 0; i < n && strcmp(t, names[i]) != 0; i++)
			;
		if (i == n) {
			fprintf(stderr, "supervise: unknown %s '%s'\n", what, t);
			exit(2);
		}
		mask |= 1u << i;
	}
	return mask;
}

/* A whole non-negative number (or, for fnum, a decimal one), or exit 2 saying which option. */
static unsigned long num(const char *name, const char *v)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 0);
	if (errno || end == v || *end || v[0] == '-') {
		fprintf(stderr, "supervise: %s wants a whole number, not '%s'\n", name, v);
		exit(2);
	}
	return n;
}

static double fnum(const char *name, const char *v)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || !(d >= 0)) {
		fprintf(stderr, "supervise: %s wants a number, not '%s'\n", name, v);
		exit(2);
	}
	return d;
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && (v || (fprintf(stderr, "supervise: %s needs a value\n", name), exit(2), 0)) && ++i)
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (ARG("--kind")) {
			opt.kind_name = v;
			opt.kind = strcmp(v, "spsc") == 0 ? SHMRING_SPSC
				   : strcmp(v, "mpsc") == 0 ? SHMRING_MPSC
				   : strcmp(v, "mpmc") == 0 ? SHMRING_MPMC : 0;
		} else if (ARG("--producers")) {
			opt.producers = (unsigned)num(a, v);
		} else if (ARG("--consumers")) {
			opt.consumers = (unsigned)num(a, v);
		} else if (strcmp(a, "--blocking") == 0) {
			opt.blocking = true;
		} else if (strcmp(a, "--no-hugepage") == 0) {
			opt.no_hugepage = true;
		} else if (ARG("--capacity")) {
			opt.capacity = (unsigned)num(a, v);
		} else if (ARG("--msg-size")) {
			opt.msg_size = (unsigned)num(a, v);
		} else if (ARG("--duration")) {
			opt.duration_s = fnum(a, v);
		} else if (ARG("--faults")) {
			opt.faults = strcmp(v, "none") == 0     ? FM_NONE
				     : strcmp(v, "random") == 0 ? FM_RANDOM
				     : strcmp(v, "points") == 0 ? FM_POINTS
				     : strcmp(v, "mixed") == 0  ? FM_MIXED
								: (fprintf(stderr, "supervise: bad --faults\n"), exit(2), FM_NONE);
		} else if (ARG("--fault-ms")) {
			opt.fault_ms = (unsigned)num(a, v);
		} else if (ARG("--random-pct")) {
			opt.random_pct = (unsigned)num(a, v);
		} else if (ARG("--forms")) {
			opt.forms = parse_list(v, soak_form_name, FORM_N, "form");
		} else if (ARG("--points")) {
			opt.points = parse_list(v, point_name, NPOINTS, "point");
		} else if (ARG("--kp-max")) {
			opt.kp_max = num(a, v);
		} else if (ARG("--arm-timeout-ms")) {
			opt.arm_timeout_ms = (unsigned)num(a, v);
		} else if (ARG("--stress")) {
			opt.stress = v;
		} else if (ARG("--min-kills")) {
			opt.min_kills = (unsigned)num(a, v);
		} else if (ARG("--recovery-ms")) {
			opt.recovery_ms = (unsigned)num(a, v);
		} else if (ARG("--hang-s")) {
			opt.hang_s = (unsigned)num(a, v);
		} else if (ARG("--log-gib")) {
			opt.log_gib = fnum(a, v);
		} else if (ARG("--label")) {
			opt.label = v;
		} else if (ARG("--seed")) {
			opt.seed = num(a, v);
		} else if (ARG("--summary")) {
			opt.summary = v;
		} else if (ARG("--base")) {
			opt.base = v;
		} else if (ARG("--peer")) {
			opt.peer = v;
		} else if (ARG("--peer-kp")) {
			opt.peer_kp = v;
		} else if (strcmp(a, "--verbose") == 0) {
			opt.verbose = true;
		} else {
			fprintf(stderr, "supervise: unknown argument '%s'\n", a);
			usage(stderr);
			exit(2);
		}
#undef ARG
	}
	if (!opt.kind || !opt.peer || !opt.peer_kp || opt.duration_s <= 0 || opt.forms == 0 ||
	    opt.msg_size < SOAK_MSG_MIN || opt.msg_size > SOAK_MSG_MAX || opt.msg_size % 8 ||
	    opt.kp_max == 0 || opt.log_gib <= 0) {
		usage(stderr);
		exit(2);
	}
	if (!opt.producers)
		opt.producers = opt.kind == SHMRING_SPSC ? 1 : opt.kind == SHMRING_MPSC ? 3 : 4;
	if (!opt.consumers)
		opt.consumers = opt.kind == SHMRING_MPMC ? 4 : 1;
	if (opt.kind != SHMRING_MPMC && opt.consumers != 1) {
		fprintf(stderr, "supervise: %s rings have one consumer\n", opt.kind_name);
		exit(2);
	}
	if (opt.kind == SHMRING_SPSC && opt.producers != 1) {
		fprintf(stderr, "supervise: spsc rings have one producer\n");
		exit(2);
	}
	if (opt.producers + opt.consumers > 40) {
		fprintf(stderr, "supervise: at most 40 processes (the ring has 47 participant entries)\n");
		exit(2);
	}
	if (!opt.label)
		opt.label = opt.kind_name;
}

/* ---- small helpers ---- */

static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static int64_t rnd_exp_ns(unsigned mean_ms)
{
	double u = ((double)(rnd() >> 11) + 1.0) / 9007199254740993.0;
	return (int64_t)(-log(u) * mean_ms * (double)MS);
}

static char failures[32][256];
static unsigned nfail;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (nfail < 32)
		vsnprintf(failures[nfail], sizeof(failures[0]), fmt, ap);
	va_end(ap);
	if (nfail < 32)
		fprintf(stderr, "supervise[%s]: FAIL: %s\n", opt.label, failures[nfail]);
	nfail++;
}

/* ---- the run's shared objects ---- */

static char base[128], ctl_name[160], log_name[160], ring_name[160];
static char ctl_path[200], log_path[200], ring_path[200];
static struct soak_ctl *ctl;
static size_t ctl_len;
static uint64_t log_len;
static struct shmring *ring;

static void *make_shm(const char *name, size_t len)
{
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)len) != 0) {
		fprintf(stderr, "supervise: cannot create %s: %s\n", name, strerror(errno));
		exit(2);
	}
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		fprintf(stderr, "supervise: cannot map %s: %s\n", name, strerror(errno));
		exit(2);
	}
	return p;
}

/* The log's size: --log-gib, but at most a third of what /dev/shm and memory have free. */
static uint64_t log_capacity_bytes(void)
{
	uint64_t want = (uint64_t)(opt.log_gib * 1073741824.0);
	struct statvfs vfs;
	if (statvfs("/dev/shm", &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize / 3 < want)
		want = (uint64_t)vfs.f_bavail * vfs.f_frsize / 3;
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long kb;
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1 && kb * 1024 / 3 < want)
			want = kb * 1024 / 3;
	}
	if (f)
		fclose(f);
	uint64_t chunk = (uint64_t)SOAK_CHUNK * sizeof(uint64_t);
	want = want / chunk * chunk;
	return want < 16 * chunk ? 16 * chunk : want;
}

/* ---- processes ---- */

struct inst_info {
	uint8_t cause; /* enum cause once it is gone */
	int8_t point;  /* armed point, or -1 */
	uint8_t form;
	uint8_t phase; /* phase in which it went */
};
static struct inst_info info[2][SOAK_MAX_INST];
static uint32_t ninst[2];

struct proc {
	enum role role;
	pid_t pid;        /* 0: nothing running here */
	uint32_t inst;
	int point;        /* armed point, or -1 */
	int64_t start_ns;
	bool killed;      /* we sent SIGKILL */
	int64_t kill_ns;
	bool retiring;    /* its retire word is set */
	int next_point;   /* the replacement's armed point, or -1 */
	int next_form;
	bool finished;    /* exited at the end: not to be started again */
};
static struct proc procs[64];
static unsigned nprocs;

/*
 * Standby peers (soakpeer ... spare), one per role and build: started ahead
 * of need and already attached, a spare becomes the next replacement when
 * told its instance id, form and (kill-point build) its kill point through a
 * pipe, so that a death or a retirement is followed by a running replacement
 * in microseconds rather than after a fork and an exec on a loaded host. The
 * kill-point library reads SHMRING_KILL_AT at its first pass through a point,
 * which comes after the assignment.
 */
struct spare {
	pid_t pid;
	int fd;           /* write end of its assignment pipe; -1 once told to go away */
};
static struct spare spares[2][2]; /* [role][kill-point build] */

/*
 * A death, and how long the others took to go on. The clock runs from the
 * death, or, when the death left a role with nobody running (the one SPSC
 * producer, the one MPSC consumer, ...), from the moment its replacement is
 * running (attached): only then can the ring's recovery be asked of anyone.
 * "Going on" is the consumers' delivered count passing its value at that
 * moment.
 */
struct death {
	int64_t t;        /* when it died (our kill, or when we reaped a point death) */
	int64_t ready;    /* when both roles had someone running again; 0 not yet */
	uint64_t at;      /* delivered count at ready */
	int64_t took_ns;  /* from ready until the count moved; -1 pending, -2 not measured */
	uint8_t role, cause, point;
	bool late;
	bool shown;       /* a state dump was printed for it */
};
static struct death *deaths;
static size_t ndeaths, deaths_cap, first_pending;

static uint64_t kills[2][5];          /* [role][cause] */
static uint64_t point_kills[2][NPOINTS];
static uint64_t unreached[2][NPOINTS];
static uint64_t delivered_dead;
static enum phase phase;
static pid_t super_pid, stress_pid;
static int stress_status = -1;
static char stress_log[64];
static sigset_t orig_mask;

static bool point_valid(enum role role, int p)
{
	if (!(opt.points & (1u << p)))
		return false;
	if (p == P_WAIT)
		return opt.blocking;
	/* MPSC's one consumer, slot freed and head not moved: the message is lost. */
	if (p == P_POP_HEAD)
		return role == CONS && opt.kind == SHMRING_MPSC;
	/*
	 * Inside a recovery (stuck_check holds a dead claimant's byte): a consumer
	 * there has claimed nothing, a producer has not yet pushed (as at
	 * wait_sleeping); the dead claim it was recovering is left to the next
	 * recoverer, counted once, as before.
	 */
	if (p == P_RECOVER)
		return opt.kind != SHMRING_SPSC;
	return role == PROD ? p <= P_PUSH_AFTER : (p >= P_POP_CLAIMED && p <= P_POP_AFTER);
}

/* Forms that can reach a point: only copy forms pass most points (src/batch.c). */
static int form_for_point(enum role role, int p)
{
	unsigned ok = 1u << FORM_COPY;
	if (role == PROD && p == P_PUSH_CLAIMED && opt.kind != SHMRING_SPSC)
		ok |= 1u << FORM_BATCH;
	if (role == PROD && p == P_PUSH_BEFORE)
		ok |= 1u << FORM_ZC;
	ok &= opt.forms | (1u << FORM_COPY);
	int pick[FORM_N] = {0}, n = 0;
	for (int f = 0; f < FORM_N; f++)
		if (ok & (1u << f))
			pick[n++] = f;
	return pick[rnd_below((uint64_t)n)];
}

static int random_form(void)
{
	int pick[FORM_N] = {0}, n = 0;
	for (int f = 0; f < FORM_N; f++)
		if (opt.forms & (1u << f))
			pick[n++] = f;
	return pick[rnd_below((uint64_t)n)];
}

static void child_setup(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != super_pid)
		_exit(125);
	setpriority(PRIO_PROCESS, 0, 0);
	signal(SIGPIPE, SIG_DFL);
	sigprocmask(SIG_SETMASK, &orig_mask, NULL);
}

static void start_spare(enum role role, int kp)
{
	if (spares[role][kp].pid)
		return;
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		fail("pipe: %s", strerror(errno));
		return;
	}
	const char *path = kp ? opt.peer_kp : opt.peer;
	pid_t pid = fork();
	if (pid < 0) {
		fail("fork: %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return;
	}
	if (pid == 0) {
		child_setup();
		unsetenv("SHMRING_KILL_AT");
		if (pfd[0] == 3 ? fcntl(3, F_SETFD, 0) != 0 : dup2(pfd[0], 3) != 3)
			_exit(127);
		execl(path, path, role == PROD ? "produce" : "consume", base, ring_name, "spare", "-",
		      (char *)NULL);
		fprintf(stderr, "supervise: exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	close(pfd[0]);
	spares[role][kp] = (struct spare){.pid = pid, .fd = pfd[1]};
}

/* Tell a role's spares they are not needed: they close their handles and exit 0. */
static void dismiss_spares(enum role role)
{
	for (int kp = 0; kp < 2; kp++)
		if (spares[role][kp].pid && spares[role][kp].fd >= 0) {
			close(spares[role][kp].fd);
			spares[role][kp].fd = -1;
		}
}

static bool take_spare(struct proc *p, uint32_t inst, int form, int point, uint32_t n)
{
	struct spare *sp = &spares[p->role][point >= 0];
	if (!sp->pid || sp->fd < 0)
		return false;
	struct soak_assign a = {.inst = inst, .form = (uint32_t)form,
				.point = point >= 0 ? (uint32_t)point + 1 : 0, .count = n};
	if (point >= 0)
		snprintf(a.kill_at, sizeof(a.kill_at), "%s:%u", point_name[point], n);
	bool ok = write(sp->fd, &a, sizeof(a)) == (ssize_t)sizeof(a);
	close(sp->fd);
	sp->fd = -1;
	if (!ok)
		return false; /* it died meanwhile: reaped as a spare, and a new one is made */
	p->pid = sp->pid;
	sp->pid = 0;
	return true;
}

static void spawn(struct proc *p, int point, int form, int64_t now)
{
	uint32_t inst = ninst[p->role];
	if (inst >= SOAK_MAX_INST)
		return; /* the RUN phase ends before this (see the main loop) */
	ninst[p->role]++;
	info[p->role][inst] = (struct inst_info){.cause = C_NONE, .point = (int8_t)point,
						 .form = (uint8_t)form};
	p->inst = inst;
	p->point = point;
	p->start_ns = now;
	p->killed = false;
	p->retiring = false;
	p->next_point = -1;
	/* Rare points (a sleep, a recovery) are armed for one of their first passes. */
	uint32_t n = (uint32_t)(point == P_WAIT || point == P_RECOVER ? 1 + rnd_below(3)
								   : 1 + rnd_below(opt.kp_max));
	if (take_spare(p, inst, form, point, n)) {
		if (opt.verbose)
			fprintf(stderr, "supervise: spare pid %d is %s #%u, form %s, point %s:%u\n",
				p->pid, role_name[p->role], inst, soak_form_name[form],
				point >= 0 ? point_name[point] : "-", n);
		start_spare(p->role, point >= 0);
		return;
	}
	char instbuf[16], killat[96];
	snprintf(instbuf, sizeof(instbuf), "%u", inst);
	if (point >= 0)
		snprintf(killat, sizeof(killat), "%s:%u", point_name[point], n);
	const char *path = point >= 0 ? opt.peer_kp : opt.peer;
	pid_t pid = fork();
	if (pid < 0) {
		fail("fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		child_setup();
		if (point >= 0)
			setenv("SHMRING_KILL_AT", killat, 1);
		else
			unsetenv("SHMRING_KILL_AT");
		execl(path, path, p->role == PROD ? "produce" : "consume", base, ring_name, instbuf,
		      soak_form_name[form], (char *)NULL);
		fprintf(stderr, "supervise: exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	p->pid = pid;
	if (opt.verbose)
		fprintf(stderr, "supervise: start %s #%u pid %d form %s%s%s\n", role_name[p->role],
			inst, pid, soak_form_name[form], point >= 0 ? " armed " : "",
			point >= 0 ? killat : "");
}

static _Atomic uint32_t *retire_word(const struct proc *p)
{
	return p->role == PROD ? &ctl->prod[p->inst].retire : &ctl->cons[p->inst].retire;
}

static void retire(struct proc *p)
{
	atomic_store_explicit(retire_word(p), 1, memory_order_release);
	p->retiring = true;
}

static uint64_t delivered_total(void)
{
	uint64_t n = delivered_dead;
	for (unsigned i = 0; i < nprocs; i++)
		if (procs[i].role == CONS && procs[i].pid)
			n += atomic_load_explicit(&ctl->cons[procs[i].inst].delivered,
						  memory_order_relaxed);
	return n;
}

static bool roles_running(void)
{
	bool prod = false, cons = false;
	for (unsigned i = 0; i < nprocs; i++) {
		const struct proc *p = &procs[i];
		if (!p->pid || p->retiring)
			continue; /* one on its way out does not count */
		uint32_t st = p->role == PROD ? atomic_load(&ctl->prod[p->inst].state)
					      : atomic_load(&ctl->cons[p->inst].state);
		if (st == ST_RUNNING)
			*(p->role == PROD ? &prod : &cons) = true;
	}
	return prod && cons;
}

static void add_death(int64_t t, enum role role, enum cause cause, int point)
{
	if (ndeaths == deaths_cap) {
		deaths_cap = deaths_cap ? 2 * deaths_cap : 1024;
		deaths = realloc(deaths, deaths_cap * sizeof(*deaths));
		if (!deaths) {
			perror("supervise: realloc");
			exit(2);
		}
	}
	/* Measured only while producers run: at the end there may be nothing left to move. */
	bool measured = phase <= PH_QUIET;
	bool ready = roles_running();
	deaths[ndeaths++] = (struct death){.t = t, .ready = ready ? t : 0, .at = delivered_total(),
					   .took_ns = measured ? -1 : -2, .role = (uint8_t)role,
					   .cause = (uint8_t)cause,
					   .point = (uint8_t)(point < 0 ? NPOINTS : point)};
}

static struct proc *proc_of(pid_t pid)
{
	for (unsigned i = 0; i < nprocs; i++)
		if (procs[i].pid == pid)
			return &procs[i];
	return NULL;
}

static void reaped(pid_t pid, int status, int64_t now)
{
	if (pid == stress_pid) {
		stress_status = status;
		stress_pid = 0;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail("stress-ng ended with %s %d (log: %s)",
			     WIFEXITED(status) ? "status" : "signal",
			     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), stress_log);
		return;
	}
	for (int r = 0; r < 4; r++) {
		struct spare *sp = &spares[r / 2][r % 2];
		if (pid != sp->pid)
			continue;
		bool dismissed = sp->fd < 0;
		if (sp->fd >= 0)
			close(sp->fd);
		*sp = (struct spare){.fd = -1};
		if (!dismissed || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail("%s spare (pid %d) ended with %s %d", role_name[r / 2], pid,
			     WIFEXITED(status) ? "status" : "signal",
			     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		return;
	}
	struct proc *p = proc_of(pid);
	if (!p)
		return;
	struct inst_info *ii = &info[p->role][p->inst];
	enum cause cause;
	int64_t t = now;
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
		if (p->killed) {
			cause = C_RANDOM;
			t = p->kill_ns;
		} else if (p->point >= 0) {
			cause = C_POINT;
			point_kills[p->role][p->point]++;
		} else {
			cause = C_ERROR;
			fail("%s #%u (pid %d) was killed by a SIGKILL the supervisor did not send "
			     "(the OOM killer?)", role_name[p->role], p->inst, pid);
		}
	} else if (WIFSIGNALED(status)) {
		cause = C_ERROR;
		fail("%s #%u (pid %d) crashed: signal %d (%s)", role_name[p->role], p->inst, pid,
		     WTERMSIG(status), strsignal(WTERMSIG(status)));
	} else if (WEXITSTATUS(status) != 0) {
		cause = C_ERROR;
		int err = p->role == PROD ? ctl->prod[p->inst].last_err : ctl->cons[p->inst].last_err;
		/*
		 * -EBUSY on a role only one process holds: the supervisor starts a
		 * replacement only after reaping its predecessor, so no other live
		 * process of this role existed (tests/test_role_handover.sh).
		 */
		bool exclusive = p->role == CONS ? opt.kind != SHMRING_MPMC : opt.kind == SHMRING_SPSC;
		fail("%s #%u (pid %d) exited with status %d%s%s%s", role_name[p->role], p->inst, pid,
		     WEXITSTATUS(status), err ? ": " : "", err ? shmring_strerror(err) : "",
		     err == -EBUSY && exclusive ? " (no other live process had this role: a spurious "
						  "-EBUSY from the library)" : "");
	} else {
		cause = C_CLEAN;
	}
	ii->cause = (uint8_t)cause;
	ii->phase = (uint8_t)phase;
	kills[p->role][cause]++;
	if (p->role == CONS)
		delivered_dead += atomic_load_explicit(&ctl->cons[p->inst].delivered,
						       memory_order_relaxed);
	p->pid = 0;
	if (cause == C_RANDOM || cause == C_POINT)
		add_death(t, p->role, cause, cause == C_POINT ? p->point : -1);
	if (cause == C_CLEAN && ((p->role == PROD && phase >= PH_STOP) ||
				 (p->role == CONS && phase >= PH_DRAIN)))
		p->finished = true;
	if (p->role == PROD && phase >= PH_STOP)
		p->finished = true; /* producers are not started again once stopped */
}

static void reap_all(int64_t now)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		reaped(pid, status, now);
}

static void start_missing(int64_t now)
{
	for (unsigned i = 0; i < nprocs; i++) {
		struct proc *p = &procs[i];
		if (p->pid || p->finished)
			continue;
		if (p->role == PROD && phase >= PH_STOP)
			continue;
		int point = phase == PH_RUN ? p->next_point : -1;
		int form = point >= 0 ? p->next_form : random_form();
		spawn(p, point, form, now);
	}
}

/* ---- faults ---- */

static unsigned rotation[2];

static bool has_points(enum role role)
{
	for (int pt = 0; pt < NPOINTS; pt++)
		if (point_valid(role, pt))
			return true;
	return false;
}

static int next_point_for(enum role role)
{
	for (int tries = 0; tries < NPOINTS; tries++) {
		int pt = (int)(rotation[role]++ % NPOINTS);
		if (point_valid(role, pt))
			return pt;
	}
	return -1;
}

static bool candidate(const struct proc *p, int64_t now)
{
	return p->pid && !p->killed && !p->retiring && p->point < 0 && now - p->start_ns > 2 * MS;
}

static void fault_event(int64_t now)
{
	bool random = opt.faults == FM_RANDOM ||
		      (opt.faults == FM_MIXED && rnd_below(100) < opt.random_pct);
	unsigned cand[64] = {0}, n = 0;
	static unsigned turn;
	enum role want = (enum role)(turn++ & 1);
	if (!random && !has_points(want))
		want = (enum role)!want;
	for (int pass = 0; pass < 2 && n == 0; pass++)
		for (unsigned i = 0; i < nprocs; i++)
			if (candidate(&procs[i], now) && (random || pass || procs[i].role == want))
				cand[n++] = i;
	if (n == 0)
		return;
	struct proc *p = &procs[cand[rnd_below(n)]];
	if (random) {
		if (kill(p->pid, SIGKILL) == 0) {
			p->killed = true;
			p->kill_ns = now;
		}
		return;
	}
	int pt = next_point_for(p->role);
	if (pt < 0)
		return;
	p->next_point = pt;
	p->next_form = form_for_point(p->role, pt);
	retire(p);
}

static void arm_timeouts(int64_t now)
{
	for (unsigned i = 0; i < nprocs; i++) {
		struct proc *p = &procs[i];
		if (p->pid && p->point >= 0 && !p->retiring &&
		    now - p->start_ns > (int64_t)opt.arm_timeout_ms * MS) {
			unreached[p->role][p->point]++;
			p->next_point = -1;
			retire(p);
		}
	}
}

/* ---- stress-ng ---- */

static void start_stress(double seconds)
{
	if (!opt.stress)
		return;
	char *args[64];
	int n = 0;
	static char buf[1024], tmo[32];
	snprintf(buf, sizeof(buf), "%s", opt.stress);
	args[n++] = "stress-ng";
	for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && n < 58;
	     t = strtok_r(NULL, " ", &save))
		args[n++] = t;
	snprintf(tmo, sizeof(tmo), "%ds", (int)(seconds + 0.5) < 1 ? 1 : (int)(seconds + 0.5));
	args[n++] = "--timeout";
	args[n++] = tmo;
	args[n] = NULL;
	snprintf(stress_log, sizeof(stress_log), "/tmp/soak-stress-%d.log", (int)getpid());
	pid_t pid = fork();
	if (pid < 0) {
		fail("fork stress-ng: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		setpriority(PRIO_PROCESS, 0, 0);
		sigprocmask(SIG_SETMASK, &orig_mask, NULL);
		FILE *f = fopen("/proc/self/oom_score_adj", "w"); /* the OOM killer may take stress-ng */
		if (f) {
			fputs("0\n", f);
			fclose(f);
		}
		int fd = open(stress_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execvp("stress-ng", args);
		fprintf(stderr, "exec stress-ng: %s\n", strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);
	stress_pid = pid;
}

static void show_stress_log(void)
{
	FILE *f = fopen(stress_log, "r");
	char line[512];
	if (!f)
		return;
	fprintf(stderr, "--- stress-ng output (%s):\n", stress_log);
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fclose(f);
}

/* ---- teardown on a hang or a signal ---- */

static void kill_everything(void)
{
	for (unsigned i = 0; i < nprocs; i++)
		if (procs[i].pid > 0)
			kill(procs[i].pid, SIGKILL);
	for (int r = 0; r < 4; r++)
		if (spares[r / 2][r % 2].pid > 0)
			kill(spares[r / 2][r % 2].pid, SIGKILL);
	if (stress_pid > 0)
		kill(-stress_pid, SIGKILL);
}

static void remove_objects(void)
{
	unlink(ctl_path);
	unlink(log_path);
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "\nsupervise: WATCHDOG: the case overran its time bound; killing "
				  "everything and failing\n";
	ssize_t n = write(2, msg, sizeof(msg) - 1);
	(void)n;
	kill_everything();
	remove_objects();
	unlink(ring_path); /* a hugetlbfs slot file is left to run.sh's cleanup */
	_exit(1);
}

static void on_term(int sig)
{
	kill_everything();
	remove_objects();
	unlink(ring_path);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void dump_state(const char *why)
{
	char load[128] = "?";
	FILE *lf = fopen("/proc/loadavg", "r");
	if (lf) {
		if (!fgets(load, sizeof(load), lf))
			load[0] = 0;
		fclose(lf);
		load[strcspn(load, "\n")] = 0;
	}
	fprintf(stderr, "supervise[%s]: state dump (%s), phase %s, loadavg %s:\n", opt.label, why,
		phase_name[phase], load);
	struct shmring_stats st;
	if (shmring_stats(ring, &st) == 0)
		fprintf(stderr,
			"supervise[%s]:   ring: head %" PRIu64 " tail %" PRIu64 " depth %zu skipped %" PRIu64
			" recovered %" PRIu64 " takeovers %" PRIu64 " futex sleeps %" PRIu64
			" wakes %" PRIu64 " participants %u alive %u producers %u consumers %u\n",
			opt.label, st.head, st.tail, st.depth, st.skipped, st.recovered, st.takeovers,
			st.futex_sleeps, st.futex_wakes, st.participants, st.alive,
			st.producers_alive, st.consumers_alive);
	for (unsigned i = 0; i < nprocs; i++) {
		const struct proc *p = &procs[i];
		if (!p->pid)
			continue;
		char path[64], wchan[64] = "?", stat[256] = "?";
		snprintf(path, sizeof(path), "/proc/%d/wchan", p->pid);
		FILE *f = fopen(path, "r");
		if (f) {
			if (!fgets(wchan, sizeof(wchan), f))
				wchan[0] = 0;
			fclose(f);
		}
		snprintf(path, sizeof(path), "/proc/%d/stat", p->pid);
		f = fopen(path, "r");
		if (f) {
			if (!fgets(stat, sizeof(stat), f))
				stat[0] = 0;
			fclose(f);
			stat[strcspn(stat, "\n")] = 0;
		}
		if (p->role == PROD)
			fprintf(stderr, "supervise[%s]:   producer #%u pid %d%s%s: done %" PRIu64 " hi %" PRIu64
				" full %" PRIu64 " wchan %s stat %.60s\n", opt.label, p->inst, p->pid,
				p->point >= 0 ? " armed " : "", p->point >= 0 ? point_name[p->point] : "",
				ctl->prod[p->inst].done, ctl->prod[p->inst].hi, ctl->prod[p->inst].full,
				wchan, stat);
		else
			fprintf(stderr, "supervise[%s]:   consumer #%u pid %d%s%s: delivered %" PRIu64 " empty %" PRIu64
				" wchan %s stat %.60s\n", opt.label, p->inst, p->pid,
				p->point >= 0 ? " armed " : "", p->point >= 0 ? point_name[p->point] : "",
				ctl->cons[p->inst].delivered, ctl->cons[p->inst].empty, wchan, stat);
	}
}

/* ---- the checker ---- */

struct account {
	uint64_t entries, received, dup, reorder, phantom, unknown, holes, count_mismatch;
	uint64_t missing_sent;          /* seqs a producer finished pushing, not received */
	uint64_t lost_unsent;           /* in flight at a point before publish (nothing published) */
	uint64_t lost_skipped;          /* in flight at a claim-window point on MPSC/MPMC */
	uint64_t lost_prod_random;      /* in flight at a random kill, not received */
	uint64_t inflight_delivered_bad;/* received although its producer died before publishing */
	uint64_t skip_min, skip_max, rec_min, rec_max;
	uint64_t cons_must_lose, cons_may_lose, redelivered;
	uint64_t bad, harness;
};

static uint64_t popcount_range(const uint64_t *bm, uint64_t a, uint64_t b)
{
	uint64_t n = 0;
	while (a < b && (a & 63)) {
		n += (bm[a >> 6] >> (a & 63)) & 1;
		a++;
	}
	for (; a + 64 <= b; a += 64)
		n += (uint64_t)__builtin_popcountll(bm[a >> 6]);
	for (; a < b; a++)
		n += (bm[a >> 6] >> (a & 63)) & 1;
	return n;
}

#define SHOW_MAX 5

static void check_log(struct account *ac)
{
	uint32_t np = ninst[PROD], nc = ninst[CONS];
	uint64_t *hi = calloc(np + 1, sizeof(uint64_t)), *off = calloc(np + 1, sizeof(uint64_t));
	uint32_t *lastc = calloc(np + 1, sizeof(uint32_t));
	uint64_t *lasts = calloc(np + 1, sizeof(uint64_t));
	if (!hi || !off || !lastc || !lasts) {
		perror("supervise: checker memory");
		exit(2);
	}
	uint64_t words = 0;
	for (uint32_t p = 0; p < np; p++) {
		hi[p] = atomic_load(&ctl->prod[p].hi);
		uint64_t done = atomic_load(&ctl->prod[p].done);
		if (hi[p] < done) {
			ac->harness++;
			fail("harness: producer #%u has done %" PRIu64 " > hi %" PRIu64, p, done, hi[p]);
			hi[p] = done;
		}
		off[p] = words;
		words += (hi[p] + 63) / 64;
	}
	uint64_t *bm = calloc(words + 1, sizeof(uint64_t));
	if (!bm) {
		perror("supervise: checker bitmap");
		exit(2);
	}

	/* The log, read-only; chunks grouped by owner, each group in index order. */
	int fd = shm_open(log_name, O_RDONLY, 0);
	const uint64_t *lg = fd >= 0 ? mmap(NULL, log_len, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
	if (fd >= 0)
		close(fd);
	if (lg == MAP_FAILED) {
		perror("supervise: map log");
		exit(2);
	}
	uint64_t used = atomic_load(&ctl->chunks_used);
	if (used > ctl->nchunks)
		used = ctl->nchunks;
	uint64_t *start = calloc(nc + 2, sizeof(uint64_t));
	uint32_t *order = calloc(used + 1, sizeof(uint32_t));
	if (!start || !order) {
		perror("supervise: checker memory");
		exit(2);
	}
	for (uint64_t c = 0; c < used; c++) {
		uint32_t o = atomic_load(&ctl->chunk_owner[c]);
		if (o && o <= nc)
			start[o]++;
	}
	for (uint32_t i = 1; i <= nc + 1; i++)
		start[i] += start[i - 1];
	uint64_t *fillp = calloc(nc + 2, sizeof(uint64_t));
	memcpy(fillp, start, (nc + 2) * sizeof(uint64_t));
	for (uint64_t c = 0; c < used; c++) {
		uint32_t o = atomic_load(&ctl->chunk_owner[c]);
		if (o && o <= nc)
			order[fillp[o - 1]++] = (uint32_t)c;
	}

	unsigned shown_dup = 0, shown_reorder = 0, shown_phantom = 0;
	for (uint32_t c = 0; c < nc; c++) {
		uint64_t n = 0;
		bool ended = false;
		for (uint64_t k = start[c]; k < start[c + 1]; k++) {
			const uint64_t *e = lg + (uint64_t)order[k] * SOAK_CHUNK;
			for (unsigned j = 0; j < SOAK_CHUNK; j++) {
				uint64_t v = e[j];
				if (!v) {
					ended = true;
					continue;
				}
				if (ended) {
					ac->holes++;
					ended = false;
				}
				n++;
				uint64_t p = (v >> SOAK_SEQ_BITS) - 1, s = v & SOAK_SEQ_MASK;
				if (p >= np) {
					ac->unknown++;
					continue;
				}
				if (s >= hi[p]) {
					if (shown_phantom++ < SHOW_MAX)
						fprintf(stderr, "  PHANTOM: consumer #%u got producer #%" PRIu64
							" seq %" PRIu64 ", which it never started to push "
							"(done %" PRIu64 ", hi %" PRIu64 ")\n", c, p, s,
							(uint64_t)ctl->prod[p].done, hi[p]);
					ac->phantom++;
					continue;
				}
				uint64_t bit = off[p] * 64 + s;
				if (bm[bit >> 6] & (UINT64_C(1) << (bit & 63))) {
					if (shown_dup++ < SHOW_MAX)
						fprintf(stderr, "  DUPLICATE: producer #%" PRIu64 " seq %" PRIu64
							" again, at consumer #%u\n", p, s, c);
					ac->dup++;
				} else {
					bm[bit >> 6] |= UINT64_C(1) << (bit & 63);
					ac->received++;
				}
				if (lastc[p] == c + 1 && s <= lasts[p]) {
					if (shown_reorder++ < SHOW_MAX)
						fprintf(stderr, "  REORDER: consumer #%u got producer #%" PRIu64
							" seq %" PRIu64 " after seq %" PRIu64 "\n", c, p, s,
							lasts[p]);
					ac->reorder++;
				}
				lastc[p] = c + 1;
				lasts[p] = s;
			}
		}
		ac->entries += n;
		/* The entry is written before the count: a death between leaves one more entry. */
		uint64_t d = atomic_load(&ctl->cons[c].delivered);
		if (n != d && !(n == d + 1 && info[CONS][c].cause != C_CLEAN))
			ac->count_mismatch++;
		ac->bad += atomic_load(&ctl->cons[c].bad);
	}
	if (ac->holes)
		fail("harness: %" PRIu64 " holes inside consumers' log chunks", ac->holes);
	if (ac->count_mismatch)
		fail("harness: %" PRIu64 " consumers' log entries differ from their counts",
		     ac->count_mismatch);

	/* Producers: what each sent, what was in flight at its death, what arrived. */
	bool mp = opt.kind != SHMRING_SPSC;
	unsigned shown_missing = 0;
	for (uint32_t p = 0; p < np; p++) {
		const struct inst_info *ii = &info[PROD][p];
		uint64_t done = atomic_load(&ctl->prod[p].done);
		const uint64_t *b = bm + off[p];
		uint64_t got_sent = popcount_range(b, 0, done);
		uint64_t n_if = hi[p] - done, got_if = popcount_range(b, done, hi[p]);
		uint64_t m_if = n_if - got_if;
		uint64_t miss = done - got_sent;
		if (miss && shown_missing < SHOW_MAX && opt.verbose) {
			for (uint64_t s = 0; s < done && shown_missing < SHOW_MAX; s++)
				if (!((b[s >> 6] >> (s & 63)) & 1)) {
					fprintf(stderr, "  missing: producer #%u seq %" PRIu64 " (done %" PRIu64
						", cause %d)\n", p, s, done, ii->cause);
					shown_missing++;
				}
		}
		ac->missing_sent += miss;
		switch (ii->cause) {
		case C_CLEAN:
			if (n_if) {
				ac->harness++;
				fail("harness: producer #%u exited cleanly with %" PRIu64 " in flight", p,
				     n_if);
			}
			break;
		case C_POINT:
			if (ii->point == P_PUSH_AFTER) {
				ac->missing_sent += m_if; /* published: a consumer must have it */
				break;
			}
			if (n_if == 0) {
				ac->harness++;
				fail("harness: producer #%u died at %s with nothing in flight", p,
				     point_name[ii->point]);
			}
			if (got_if) {
				ac->inflight_delivered_bad += got_if;
				fail("producer #%u died at %s, before publishing, yet %" PRIu64
				     " of its in-flight messages were delivered", p,
				     point_name[ii->point], got_if);
			}
			if (mp && ii->point != P_WAIT && ii->point != P_RECOVER) {
				ac->lost_skipped += m_if;
				ac->skip_min += m_if ? 1 : 0; /* a batch claims 1..n slots */
				ac->skip_max += m_if;
			} else {
				ac->lost_unsent += m_if;
			}
			break;
		default: /* random kill or error: anything in flight may or may not have gone */
			ac->lost_prod_random += m_if;
			if (mp)
				ac->skip_max += m_if;
			break;
		}
	}

	/* Consumers: what a death can cost. */
	for (uint32_t c = 0; c < nc; c++) {
		const struct inst_info *ii = &info[CONS][c];
		unsigned most = ii->form == FORM_BATCH ? SOAK_BATCH : 1;
		if (ii->cause == C_POINT) {
			switch (ii->point) {
			case P_POP_CLAIMED:
			case P_POP_MID:
			case P_POP_BEFORE:
				if (opt.kind == SHMRING_MPMC) {
					ac->cons_must_lose++;
					ac->rec_min++;
					ac->rec_max++;
				} else {
					ac->redelivered++;
				}
				break;
			case P_POP_AFTER:
			case P_POP_HEAD:
				ac->cons_must_lose++;
				break;
			default:
				break;
			}
		} else if (ii->cause == C_RANDOM || ii->cause == C_ERROR) {
			ac->cons_may_lose += most;
			if (opt.kind == SHMRING_MPMC)
				ac->rec_max += most;
		}
	}
	munmap((void *)lg, log_len);
	free(hi);
	free(off);
	free(lastc);
	free(lasts);
	free(bm);
	free(start);
	free(order);
	free(fillp);
}

/* ---- report ---- */

static void print_lat(const char *what, uint64_t ns)
{
	if (ns < 10 * 1000)
		printf("%s %.1f us", what, ns / 1e3);
	else if (ns < 10 * MS)
		printf("%s %.0f us", what, ns / 1e3);
	else
		printf("%s %.0f ms", what, ns / 1e6);
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	super_pid = getpid();
	rng = opt.seed ? opt.seed : ((uint64_t)time(NULL) << 20) ^ (uint64_t)super_pid;
	if (!rng)
		rng = 1;
	uint64_t seed = rng;
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* Root: keep the OOM killer off the ring processes, and sample on time. */
	FILE *oom = fopen("/proc/self/oom_score_adj", "w");
	if (oom) {
		fputs("-1000\n", oom);
		fclose(oom);
	}
	setpriority(PRIO_PROCESS, 0, -10);

	if (opt.base && (opt.base[0] != '/' || strchr(opt.base + 1, '/') || strlen(opt.base) > 100)) {
		fprintf(stderr, "supervise: --base must be /NAME, without another slash, short\n");
		return 2;
	}
	if (opt.base)
		snprintf(base, sizeof(base), "%s", opt.base);
	else
		snprintf(base, sizeof(base), "/shmring-soak-%d", (int)super_pid);
	snprintf(ctl_name, sizeof(ctl_name), "%s-ctl", base);
	snprintf(log_name, sizeof(log_name), "%s-log", base);
	snprintf(ring_name, sizeof(ring_name), "%s-ring", base);
	snprintf(ctl_path, sizeof(ctl_path), "/dev/shm%s", ctl_name);
	snprintf(log_path, sizeof(log_path), "/dev/shm%s", log_name);
	snprintf(ring_path, sizeof(ring_path), "/dev/shm%s", ring_name);

	log_len = log_capacity_bytes();
	uint32_t nchunks = (uint32_t)(log_len / (SOAK_CHUNK * sizeof(uint64_t)));
	ctl_len = soak_ctl_size(nchunks);
	ctl = make_shm(ctl_name, ctl_len);
	atexit(remove_objects);
	void *lg = make_shm(log_name, log_len);
	munmap(lg, log_len); /* the supervisor reads it only at the end */
	ctl->msg_size = opt.msg_size;
	ctl->nchunks = nchunks;
	ctl->blocking = opt.blocking;
	int64_t bound_s = (int64_t)opt.duration_s + 150;
	ctl->deadline_ns = soak_now_ns() + bound_s * SEC;
	atomic_store_explicit((_Atomic uint64_t *)&ctl->magic, SOAK_MAGIC, memory_order_release);

	struct shmring_config cfg = {
		.kind = opt.kind, .msg_size = opt.msg_size, .capacity = opt.capacity,
		.flags = (opt.blocking ? SHMRING_F_BLOCKING : 0) |
			 (opt.no_hugepage ? SHMRING_F_NO_HUGEPAGE : 0),
	};
	int rc = shmring_create(ring_name, &cfg, &ring);
	if (rc) {
		fprintf(stderr, "supervise: create %s: %s (%s)\n", ring_name, shmring_strerror(rc),
			shmring_last_error());
		return 2;
	}
	struct shmring_info rinfo;
	shmring_info(ring, &rinfo);
	static const char *const backing_name[] = {"?", "shm", "shm+THP", "hugetlbfs", "hugetlb-anon"};

	/* SIGCHLD is taken with sigtimedwait: a death is seen within microseconds. */
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &orig_mask);
	signal(SIGALRM, on_alarm);
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGHUP, on_term);
	alarm((unsigned)bound_s);

	for (unsigned i = 0; i < opt.producers; i++)
		procs[nprocs++] = (struct proc){.role = PROD, .next_point = -1, .point = -1};
	for (unsigned i = 0; i < opt.consumers; i++)
		procs[nprocs++] = (struct proc){.role = CONS, .next_point = -1, .point = -1};

	printf("=== soak case %s: %s ring %s (capacity %u, %u-byte messages, %s, %s), "
	       "%u producers + %u consumers, faults %s every ~%u ms, seed %#" PRIx64 "%s%s\n",
	       opt.label, opt.kind_name, ring_name, opt.capacity, opt.msg_size,
	       opt.blocking ? "blocking" : "spin", backing_name[rinfo.backing <= 4 ? rinfo.backing : 0],
	       opt.producers, opt.consumers,
	       (const char *[]){"none", "random", "points", "mixed"}[opt.faults], opt.fault_ms, seed,
	       opt.stress ? ", stress-ng " : "", opt.stress ? opt.stress : "");

	int64_t t0 = soak_now_ns();
	int64_t run_end = t0 + (int64_t)(opt.duration_s * SEC);
	int64_t next_event = t0 + rnd_exp_ns(opt.fault_ms);
	int64_t last_progress = t0, phase_deadline = 0, phase_start = t0, run_ns = 0;
	uint64_t last_total = 0;
	bool aborted = false;
	const char *ended_early = NULL;
	signal(SIGPIPE, SIG_IGN); /* a spare that died: write() says so */
	start_stress(opt.duration_s);
	for (int r = 0; r < 4; r++)
		if (r % 2 == 0 || opt.faults == FM_POINTS || opt.faults == FM_MIXED)
			start_spare((enum role)(r / 2), r % 2);
	start_missing(t0);

	while (phase != PH_DONE) {
		struct timespec tick = {0, 1 * MS};
		siginfo_t si;
		(void)sigtimedwait(&chld, &si, &tick);
		int64_t now = soak_now_ns();
		reap_all(now);

		uint64_t total = delivered_total();
		if (total != last_total) {
			last_total = total;
			last_progress = now;
		}
		bool ready = first_pending < ndeaths && roles_running();
		for (size_t i = first_pending; i < ndeaths; i++) {
			struct death *d = &deaths[i];
			if (d->took_ns != -1)
				continue;
			if (!d->ready) {
				if (!ready)
					continue;
				d->ready = now;
				d->at = total;
			} else if (total > d->at) {
				d->took_ns = now - d->ready;
				continue;
			}
			/* Slow: show what everyone is doing (runnable? asleep where?), a few times. */
			static unsigned dumps;
			if (!d->shown && dumps < 3 && now - d->ready > (int64_t)opt.recovery_ms * MS / 4) {
				char why[160];
				snprintf(why, sizeof(why), "no progress %.0f ms after a %s died (%s%s)",
					 (double)(now - d->ready) / 1e6, role_name[d->role],
					 d->cause == C_RANDOM ? "random SIGKILL" : "at ",
					 d->cause == C_POINT ? point_name[d->point] : "");
				dump_state(why);
				d->shown = true;
				dumps++;
			}
			if (!d->late && now - d->ready > (int64_t)opt.recovery_ms * MS) {
				d->late = true;
				fail("no progress within %u ms after a %s died (%s%s)", opt.recovery_ms,
				     role_name[d->role], d->cause == C_RANDOM ? "random SIGKILL" : "at ",
				     d->cause == C_POINT ? point_name[d->point] : "");
			}
		}
		while (first_pending < ndeaths && deaths[first_pending].took_ns != -1)
			first_pending++;

		switch (phase) {
		case PH_RUN:
		case PH_QUIET:
			if (now - last_progress > (int64_t)opt.hang_s * SEC) {
				fail("HANG: no message delivered for %u s in phase %s", opt.hang_s,
				     phase_name[phase]);
				dump_state("hang");
				aborted = true;
				phase = PH_DONE;
				break;
			}
			if (phase == PH_RUN) {
				uint64_t used = atomic_load(&ctl->chunks_used);
				if (used * 10 >= (uint64_t)ctl->nchunks * 9)
					ended_early = "the delivery log is 90% full";
				else if (ninst[PROD] + 64 >= SOAK_MAX_INST || ninst[CONS] + 64 >= SOAK_MAX_INST)
					ended_early = "instance ids are running out";
				if (now >= run_end || ended_early) {
					run_ns = now - t0;
					phase = PH_QUIET;
					phase_start = now;
					for (unsigned i = 0; i < nprocs; i++) {
						procs[i].next_point = -1;
						if (procs[i].pid && procs[i].point >= 0 && !procs[i].retiring)
							retire(&procs[i]);
					}
					break;
				}
				if (opt.faults != FM_NONE && now >= next_event) {
					fault_event(now);
					next_event = now + rnd_exp_ns(opt.fault_ms);
				}
				arm_timeouts(now);
			} else {
				bool armed = false;
				for (unsigned i = 0; i < nprocs; i++)
					armed |= procs[i].pid && procs[i].point >= 0;
				if ((now - phase_start > 300 * MS && !armed) || now - phase_start > 3 * SEC) {
					atomic_store_explicit(&ctl->stop, 1, memory_order_release);
					dismiss_spares(PROD);
					phase = PH_STOP;
					phase_start = now;
					phase_deadline = now + 15 * SEC;
				}
			}
			break;
		case PH_STOP: {
			bool any = false;
			for (unsigned i = 0; i < nprocs; i++)
				any |= procs[i].role == PROD && procs[i].pid;
			if (!any) {
				phase = PH_SETTLE;
				phase_start = now;
			} else if (now > phase_deadline) {
				fail("HANG: producers did not stop within 15 s");
				dump_state("stop");
				aborted = true;
				phase = PH_DONE;
			}
			break;
		}
		case PH_SETTLE:
			if (now - phase_start >= 50 * MS) {
				atomic_store_explicit(&ctl->drain, 1, memory_order_release);
				dismiss_spares(CONS);
				phase = PH_DRAIN;
				phase_start = now;
				phase_deadline = now + 15 * SEC;
			}
			break;
		case PH_DRAIN: {
			bool any = false;
			for (unsigned i = 0; i < nprocs; i++)
				any |= procs[i].role == CONS && procs[i].pid;
			if (!any) {
				phase = PH_DONE;
			} else if (now > phase_deadline) {
				fail("HANG: consumers did not drain within 15 s");
				dump_state("drain");
				aborted = true;
				phase = PH_DONE;
			}
			break;
		}
		case PH_DONE:
			break;
		}
		if (phase != PH_DONE)
			start_missing(now);
	}
	if (!run_ns)
		run_ns = soak_now_ns() - t0;

	if (aborted) {
		kill_everything();
		int status;
		while (waitpid(-1, &status, 0) > 0)
			;
		stress_pid = 0;
	}

	/* Dismissed spares close their handles and exit. */
	dismiss_spares(PROD);
	dismiss_spares(CONS);
	int64_t spare_deadline = soak_now_ns() + 10 * SEC;
	while ((spares[PROD][0].pid || spares[PROD][1].pid || spares[CONS][0].pid ||
		spares[CONS][1].pid) && soak_now_ns() < spare_deadline) {
		struct timespec tick = {0, 5 * MS};
		siginfo_t si;
		(void)sigtimedwait(&chld, &si, &tick);
		reap_all(soak_now_ns());
	}
	for (int r = 0; r < 4; r++) {
		struct spare *sp = &spares[r / 2][r % 2];
		if (sp->pid) {
			fail("%s spare (pid %d) did not exit when dismissed", role_name[r / 2], sp->pid);
			kill(sp->pid, SIGKILL);
			waitpid(sp->pid, NULL, 0);
		}
	}

	/* stress-ng must end by itself (its --timeout) and exit 0. */
	int64_t stress_deadline = soak_now_ns() + 60 * SEC;
	while (stress_pid > 0 && soak_now_ns() < stress_deadline) {
		struct timespec tick = {0, 10 * MS};
		siginfo_t si;
		(void)sigtimedwait(&chld, &si, &tick);
		reap_all(soak_now_ns());
	}
	if (stress_pid > 0) {
		fail("stress-ng did not end within 60 s of its timeout");
		kill(-stress_pid, SIGKILL);
		int status;
		waitpid(stress_pid, &status, 0);
		stress_pid = 0;
	}
	if (opt.stress && (stress_status == -1 || !WIFEXITED(stress_status) ||
			   WEXITSTATUS(stress_status) != 0))
		show_stress_log();
	else if (opt.stress)
		unlink(stress_log);

	struct shmring_stats st;
	shmring_stats(ring, &st);
	struct account ac = {0};
	if (!aborted)
		check_log(&ac);

	/* Verdicts beyond the per-message ones. */
	uint64_t kills_random = kills[PROD][C_RANDOM] + kills[CONS][C_RANDOM];
	uint64_t kills_point = kills[PROD][C_POINT] + kills[CONS][C_POINT];
	uint64_t cons_hi = ac.cons_must_lose + ac.cons_may_lose;
	uint64_t cons_lo = ac.cons_must_lose > ac.lost_prod_random ? ac.cons_must_lose - ac.lost_prod_random : 0;
	uint64_t unexplained = ac.missing_sent > cons_hi ? ac.missing_sent - cons_hi : 0;
	uint64_t lost_cons = ac.missing_sent - unexplained;
	if (!aborted) {
		if (st.depth != 0)
			fail("the ring still holds %zu messages after the drain (head %" PRIu64
			     ", tail %" PRIu64 ")", st.depth, st.head, st.tail);
		if (unexplained)
			fail("%" PRIu64 " messages lost that no death explains (missing %" PRIu64
			     ", consumer deaths explain at most %" PRIu64 ")", unexplained,
			     ac.missing_sent, cons_hi);
		if (ac.missing_sent < cons_lo)
			fail("accounting: %" PRIu64 " messages missing, but consumers killed holding one "
			     "imply at least %" PRIu64, ac.missing_sent, cons_lo);
		if (ac.dup)
			fail("%" PRIu64 " messages delivered twice", ac.dup);
		if (ac.reorder)
			fail("%" PRIu64 " messages out of order (per producer, per consumer)", ac.reorder);
		if (ac.bad)
			fail("%" PRIu64 " messages failed their checksum", ac.bad);
		if (ac.phantom || ac.unknown)
			fail("%" PRIu64 " delivered messages were never sent (%" PRIu64
			     " of unknown producers)", ac.phantom + ac.unknown, ac.unknown);
		bool mp = opt.kind != SHMRING_SPSC;
		uint64_t smin = mp ? ac.skip_min : 0, smax = mp ? ac.skip_max : 0;
		if (st.skipped < smin || st.skipped > smax)
			fail("ring counter skipped = %" PRIu64 ", the producer deaths allow %" PRIu64
			     "..%" PRIu64, st.skipped, smin, smax);
		if (st.recovered < ac.rec_min || st.recovered > ac.rec_max)
			fail("ring counter recovered = %" PRIu64 ", the consumer deaths allow %" PRIu64
			     "..%" PRIu64, st.recovered, ac.rec_min, ac.rec_max);
		uint64_t holders = (opt.kind == SHMRING_SPSC ? kills[PROD][C_RANDOM] + kills[PROD][C_POINT] +
							       kills[PROD][C_ERROR] : 0) +
				   (opt.kind != SHMRING_MPMC ? kills[CONS][C_RANDOM] + kills[CONS][C_POINT] +
							       kills[CONS][C_ERROR] : 0);
		if (st.takeovers > holders)
			fail("ring counter takeovers = %" PRIu64 ", more than the %" PRIu64
			     " role holders that died", st.takeovers, holders);
		if (kills_random + kills_point < opt.min_kills)
			fail("only %" PRIu64 " kills, fewer than the %u asked for",
			     kills_random + kills_point, opt.min_kills);
	}

	/* Latency over all consumer instances. */
	uint64_t hist[SOAK_LAT_BUCKETS] = {0}, lat_n = 0, lat_max = 0;
	for (uint32_t c = 0; c < ninst[CONS]; c++) {
		for (int b = 0; b < SOAK_LAT_BUCKETS; b++) {
			hist[b] += ctl->cons[c].lat[b];
			lat_n += ctl->cons[c].lat[b];
		}
		if (ctl->cons[c].max_lat_ns > lat_max)
			lat_max = ctl->cons[c].max_lat_ns;
	}
	uint64_t pct_ns[3] = {0};
	const double pct[3] = {0.50, 0.99, 0.999};
	for (int k = 0; k < 3; k++) {
		uint64_t want = (uint64_t)(pct[k] * (double)lat_n), acc = 0;
		for (int b = 0; b < SOAK_LAT_BUCKETS; b++) {
			acc += hist[b];
			if (acc > want || b == SOAK_LAT_BUCKETS - 1) {
				pct_ns[k] = UINT64_C(2) << b;
				break;
			}
		}
	}
	int64_t worst = 0, worst_wait = 0;
	uint64_t measured = 0, late = 0, unmeasured = 0, waited = 0;
	int worst_i = -1;
	for (size_t i = 0; i < ndeaths; i++) {
		if (deaths[i].ready > deaths[i].t) {
			waited++;
			if (deaths[i].ready - deaths[i].t > worst_wait)
				worst_wait = deaths[i].ready - deaths[i].t;
		}
		if (deaths[i].took_ns >= 0) {
			measured++;
			if (deaths[i].took_ns > worst) {
				worst = deaths[i].took_ns;
				worst_i = (int)i;
			}
		} else {
			unmeasured++;
		}
		late += deaths[i].late;
	}

	double secs = (double)run_ns / 1e9;
	printf("  run:        %.1f s%s%s%s, %" PRIu64 " messages moved (%.0f/s), %u producer and %u "
	       "consumer instances\n", secs, ended_early ? " (ended early: " : "",
	       ended_early ? ended_early : "", ended_early ? ")" : "", ac.received,
	       secs > 0 ? (double)ac.received / secs : 0.0, ninst[PROD], ninst[CONS]);
	printf("  kills:      %" PRIu64 " (random SIGKILL: producers %" PRIu64 ", consumers %" PRIu64
	       "; at named points: producers %" PRIu64 ", consumers %" PRIu64 "); clean exits %" PRIu64
	       "\n", kills_random + kills_point, kills[PROD][C_RANDOM], kills[CONS][C_RANDOM],
	       kills[PROD][C_POINT], kills[CONS][C_POINT], kills[PROD][C_CLEAN] + kills[CONS][C_CLEAN]);
	if (kills_point || opt.faults == FM_POINTS || opt.faults == FM_MIXED) {
		printf("  points:    ");
		for (int pt = 0; pt < NPOINTS; pt++) {
			uint64_t k = point_kills[PROD][pt] + point_kills[CONS][pt];
			if (point_valid(PROD, pt) || point_valid(CONS, pt))
				printf(" %s %" PRIu64, point_name[pt], k);
			if ((pt == P_WAIT || pt == P_RECOVER) && k)
				printf(" (producers %" PRIu64 ", consumers %" PRIu64 ")",
				       point_kills[PROD][pt], point_kills[CONS][pt]);
		}
		printf("\n");
		uint64_t un = 0;
		for (int pt = 0; pt < NPOINTS; pt++)
			un += unreached[PROD][pt] + unreached[CONS][pt];
		if (un) {
			printf("              armed but not reached in %u ms (retired):", opt.arm_timeout_ms);
			for (int r = 0; r < 2; r++)
				for (int pt = 0; pt < NPOINTS; pt++)
					if (unreached[r][pt])
						printf(" %s %s %" PRIu64, role_name[r], point_name[pt],
						       unreached[r][pt]);
			printf("\n");
		}
	}
	printf("  ring:       skipped %" PRIu64 " (deaths allow %" PRIu64 "..%" PRIu64 "), recovered %" PRIu64
	       " (allow %" PRIu64 "..%" PRIu64 "), takeovers %" PRIu64 ", futex sleeps %" PRIu64
	       ", wakes %" PRIu64 ", wait timeouts %" PRIu64 "\n",
	       st.skipped, opt.kind != SHMRING_SPSC ? ac.skip_min : 0,
	       opt.kind != SHMRING_SPSC ? ac.skip_max : 0, st.recovered, ac.rec_min, ac.rec_max,
	       st.takeovers, st.futex_sleeps, st.futex_wakes, st.wait_timeouts);
	printf("  lost:       %" PRIu64 " explained (in flight at a producer's death: %" PRIu64
	       " skipped + %" PRIu64 " never published + %" PRIu64 " at random kills; held by a "
	       "killed consumer: %" PRIu64 ", of which %" PRIu64 " certain and at most %" PRIu64
	       " more), %" PRIu64 " unexplained\n",
	       ac.lost_skipped + ac.lost_unsent + ac.lost_prod_random + lost_cons, ac.lost_skipped,
	       ac.lost_unsent, ac.lost_prod_random, lost_cons, ac.cons_must_lose, ac.cons_may_lose,
	       unexplained);
	printf("  duplicated: %" PRIu64 " (re-delivered once to a successor after a consumer died "
	       "before release: %" PRIu64 ")\n", ac.dup, ac.redelivered);
	printf("  reordered:  %" PRIu64 "; checksum errors %" PRIu64 "; never sent %" PRIu64
	       "; delivered although unpublished %" PRIu64 "\n", ac.reorder, ac.bad,
	       ac.phantom + ac.unknown, ac.inflight_delivered_bad);
	printf("  latency:    %" PRIu64 " samples,", lat_n);
	print_lat(" p50 <", pct_ns[0]);
	print_lat(", p99 <", pct_ns[1]);
	print_lat(", p99.9 <", pct_ns[2]);
	print_lat(", max", lat_max);
	printf(" (end to end; includes waits for a killed peer's successor)\n");
	printf("  recovery:   %" PRIu64 " deaths measured, worst %.1f ms", measured, worst / 1e6);
	if (worst_i >= 0)
		printf(" (%s, %s%s)", role_name[deaths[worst_i].role],
		       deaths[worst_i].cause == C_RANDOM ? "random SIGKILL" : "at ",
		       deaths[worst_i].cause == C_POINT ? point_name[deaths[worst_i].point] : "");
	printf(", limit %u ms, %" PRIu64 " over it%s\n", opt.recovery_ms, late,
	       unmeasured ? " (deaths after the stop are not measured)" : "");
	printf("              %" PRIu64 " deaths left a role with nobody running: measured from its "
	       "replacement's attach (restart took at most %.1f ms)\n", waited, worst_wait / 1e6);
	if (opt.stress)
		printf("  stress-ng:  %s %s\n", opt.stress,
		       stress_status >= 0 && WIFEXITED(stress_status) && WEXITSTATUS(stress_status) == 0
			       ? "(exit 0)" : "(FAILED)");
	for (unsigned i = 0; i < nfail && i < 32; i++)
		printf("  FAIL: %s\n", failures[i]);
	if (nfail > 32)
		printf("  ... and %u more failures\n", nfail - 32);
	printf("  RESULT: %s\n", nfail ? "FAIL" : "PASS");

	if (opt.summary) {
		FILE *f = fopen(opt.summary, "a");
		if (f) {
			fprintf(f, "SOAK-SUMMARY label=%s kind=%s result=%s run_s=%.1f moved=%" PRIu64
				" kills=%" PRIu64 " kills_random=%" PRIu64 " kills_point=%" PRIu64
				" skipped=%" PRIu64 " recovered=%" PRIu64 " takeovers=%" PRIu64
				" lost_explained=%" PRIu64 " lost_unexplained=%" PRIu64 " dup=%" PRIu64
				" redelivered=%" PRIu64 " reorder=%" PRIu64 " bad=%" PRIu64
				" max_lat_ns=%" PRIu64 " worst_recovery_ns=%" PRId64 " worst_restart_ns=%" PRId64
				" late=%" PRIu64,
				opt.label, opt.kind_name, nfail ? "FAIL" : "PASS", secs, ac.received,
				kills_random + kills_point, kills_random, kills_point, st.skipped,
				st.recovered, st.takeovers,
				ac.lost_skipped + ac.lost_unsent + ac.lost_prod_random + lost_cons,
				unexplained, ac.dup, ac.redelivered, ac.reorder, ac.bad, lat_max, worst,
				worst_wait, late);
			for (int pt = 0; pt < NPOINTS; pt++)
				fprintf(f, " pk_%s=%" PRIu64, point_name[pt],
					point_kills[PROD][pt] + point_kills[CONS][pt]);
			fprintf(f, "\n");
			fclose(f);
		}
	}
	rc = shmring_close(ring);
	if (rc)
		fprintf(stderr, "supervise: close: %s\n", shmring_strerror(rc));
	free(deaths);
	return nfail ? 1 : 0;
}
