/*
 * harness.c - run one row: fork the workers, pin them, start them together,
 * wait for them with a deadline, and turn what they recorded into numbers.
 *
 * Bounds. Every worker is killed when the row's deadline (--row-timeout)
 * passes or when any other worker of the row fails, and the row is reported
 * as failed with the phase it hung in. Workers die with the parent
 * (PR_SET_PDEATHSIG). The parent's SIGINT/SIGTERM handler only sets a flag;
 * the waiting loop sees it, kills the workers and lets the mechanism's
 * teardown remove every name it made before the program exits.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

_Alignas(64) unsigned char g_msg_a[BENCH_MAX_MSG];
_Alignas(64) unsigned char g_msg_b[BENCH_MAX_MSG];

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

void harness_install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a sleeping wait loop returns early and sees the flag. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN); /* a dead peer is an error return, not a death */
}

bool harness_interrupted(void)
{
	return interrupted != 0;
}

void *shared_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0, len);
	return p;
}

void shared_free(void *p, size_t len)
{
	if (p)
		munmap(p, len);
}

int worker_fail(struct worker *w, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	/* clang-analyzer 14 reports this va_list as uninitialized; it is not. */
	vsnprintf(w->err, sizeof(w->sh->res[0].err), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	return rc;
}

void worker_barrier(struct worker *w)
{
	struct bench_shared *sh = w->sh;
	unsigned n = (unsigned)(w->plan->producers + w->plan->consumers);
	unsigned gen = atomic_load(&sh->bar_gen);

	if (atomic_fetch_add(&sh->bar_count, 1) + 1 == n) {
		atomic_store(&sh->bar_count, 0);
		atomic_fetch_add(&sh->bar_gen, 1);
		return;
	}
	for (unsigned i = 1; atomic_load(&sh->bar_gen) == gen; i++) {
		cpu_pause();
		if (i % 256 == 0)
			sched_yield(); /* more workers than CPUs must not starve the last one */
	}
}

static void pin(struct worker *w)
{
	if (w->cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		snprintf(w->sh->res[w->id].note, sizeof(w->sh->res[0].note),
			 "pinning to CPU %d failed (%s): unpinned", w->cpu, errtext(errno));
}

static void wait_go(struct worker *w)
{
	for (unsigned i = 1; !atomic_load(&w->sh->go); i++) {
		cpu_pause();
		if (i % 256 == 0)
			sched_yield();
	}
}

static __attribute__((noreturn)) void worker_main(struct worker *w, pid_t parent)
{
	struct plan *p = w->plan;
	struct worker_result *res = &w->sh->res[w->id];

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(3);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	pin(w);
	/* Take every page fault of the measured arrays now, not in the loops. */
	if (w->samples)
		memset(w->samples, 0, w->sample_cap * sizeof(*w->samples));
	memset(g_msg_a, 0, sizeof(g_msg_a));
	memset(g_msg_b, 0, sizeof(g_msg_b));

	res->phase = PH_INIT;
	int rc = p->ops->init(w);
	if (rc) {
		res->rc = rc;
		_exit(1);
	}
	/* mlock is not inherited across fork; lock what we have now, rings included. */
	(void)mlockall(MCL_CURRENT);
	atomic_fetch_add(&w->sh->ready, 1);
	wait_go(w);

	for (int ph = PH_PINGPONG; ph < PH_DONE; ph++) {
		if (ph != PH_PINGPONG && p->tput_msgs == 0)
			break;
		res->phase = ph;
		rc = p->ops->phase(w, (enum phase)ph);
		if (rc) {
			res->rc = rc;
			if (!res->err[0])
				snprintf(res->err, sizeof(res->err), "%s", errtext(rc));
			_exit(1);
		}
		worker_barrier(w);
	}
	res->phase = PH_DONE;
	_exit(0);
}

static const char *phase_name(int ph)
{
	static const char *names[] = {"init", "ping-pong", "streaming", "throughput", "done"};
	return ph >= 0 && ph <= PH_DONE ? names[ph] : "?";
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL); /* EINTR is fine: the caller looks at the flag */
}

/*
 * Wait until pred() holds, every child has exited (when pred is NULL), a child
 * failed, the deadline passed or a signal came. Returns 0, or -ETIMEDOUT,
 * -EINTR, -ECHILD (a child failed; *failed is its index).
 */
static int wait_children(pid_t *pids, int n, bool *exited, int64_t deadline,
			 bool (*pred)(struct bench_shared *, int), struct bench_shared *sh,
			 int *failed)
{
	for (unsigned spins = 0;; spins++) {
		int live = 0;
		for (int i = 0; i < n; i++) {
			if (exited[i])
				continue;
			int st;
			pid_t r = waitpid(pids[i], &st, WNOHANG);
			if (r == pids[i]) {
				exited[i] = true;
				if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
					*failed = i;
					if (WIFSIGNALED(st) && !sh->res[i].err[0])
						snprintf(sh->res[i].err, sizeof(sh->res[i].err),
							 "killed by signal %d", WTERMSIG(st));
					return -ECHILD;
				}
			} else {
				live++;
			}
		}
		if (pred ? pred(sh, n) : live == 0)
			return 0;
		if (interrupted)
			return -EINTR;
		if (mono_now_ns() > deadline)
			return -ETIMEDOUT;
		/* Sleep, but briefly at first: short rows should not wait for the poll. */
		sleep_ms(spins < 50 ? 1 : 10);
	}
}

static bool all_ready(struct bench_shared *sh, int n)
{
	return atomic_load(&sh->ready) == (unsigned)n;
}

static void kill_all(pid_t *pids, int n, bool *exited)
{
	for (int i = 0; i < n; i++)
		if (!exited[i] && pids[i] > 0)
			kill(pids[i], SIGKILL);
	for (int i = 0; i < n; i++) {
		if (!exited[i] && pids[i] > 0) {
			while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
				;
			exited[i] = true;
		}
	}
}

/* Put every consumer's stream samples side by side at the start of the array. */
static uint64_t gather(int64_t *dst, struct bench_shared *sh, int first, int n, uint64_t cap)
{
	uint64_t total = 0;
	for (int i = 0; i < n; i++) {
		uint64_t k = sh->res[first + i].nsamples;
		if (k > cap)
			k = cap;
		memmove(dst + total, dst + (uint64_t)i * cap, k * sizeof(*dst));
		total += k;
	}
	return total;
}

static int results(struct plan *p, struct bench_shared *sh, int64_t *pp, int64_t *st,
		   uint64_t st_cap)
{
	struct row *row = p->row;
	int np = p->producers, nc = p->consumers;
	double half = g_clk.ns_per_tick / 2;

	lat_from_ticks(pp, sh->res[0].nsamples, half, &row->pp);
	if (p->tput_msgs == 0) {
		/* Ping-pong only: two one-way messages per round trip. */
		row->msgs_per_s = row->pp.n ? 1e9 / (row->pp.mean) : 0;
		row->bytes_per_s = row->msgs_per_s * p->size;
		return 0;
	}
	uint64_t n = gather(st, sh, np, nc, st_cap);
	lat_from_ticks(st, n, g_clk.ns_per_tick, &row->st);
	for (int c = 0; c < nc; c++)
		row->neg_stamps += sh->res[np + c].neg;

	uint64_t t0 = UINT64_MAX, t1 = 0, count = 0, sum = 0, bad = 0, want_sum = 0;
	uint64_t want = 0;
	for (int i = 0; i < np; i++) {
		if (sh->res[i].t_start < t0)
			t0 = sh->res[i].t_start;
		uint64_t k = sh->res[i].sent; /* fewer than its share if the budget stopped it */
		want += k;
		want_sum += ((uint64_t)i << 48) * k + k * (k - 1) / 2;
	}
	for (int c = 0; c < nc; c++) {
		struct worker_result *r = &sh->res[np + c];
		if (r->t_end > t1)
			t1 = r->t_end;
		count += r->count;
		sum += r->sum;
		bad += r->order_errors;
	}
	row->tput_msgs = count;
	if (count != want || sum != want_sum || bad) {
		snprintf(row->reason, sizeof(row->reason),
			 "throughput phase: %llu of %llu messages, checksum %s, %llu out of order",
			 (unsigned long long)count, (unsigned long long)want,
			 sum == want_sum ? "ok" : "WRONG", (unsigned long long)bad);
		return -EBADMSG;
	}
	double secs = t1 > t0 ? ticks_to_ns((double)(t1 - t0)) / 1e9 : 0;
	row->msgs_per_s = secs > 0 ? (double)count / secs : 0;
	row->bytes_per_s = row->msgs_per_s * p->size;
	return 0;
}

int harness_run(struct plan *p)
{
	struct row *row = p->row;
	int np = p->producers, nc = p->consumers, n = np + nc;
	int rc;

	row->status = ROW_FAILED;
	if (np < 1 || nc < 1 || n > BENCH_MAX_PROCS) {
		snprintf(row->reason, sizeof(row->reason), "%d producers + %d consumers: at most %d",
			 np, nc, BENCH_MAX_PROCS);
		return -EINVAL;
	}
	uint64_t pp_cap = p->pp_msgs - p->pp_warm;
	uint64_t st_cap = p->tput_msgs ? p->st_msgs : 0;
	size_t sh_len = sizeof(struct bench_shared);
	size_t smp_len = (pp_cap + st_cap * (uint64_t)nc) * sizeof(int64_t);
	struct bench_shared *sh = shared_alloc(sh_len);
	int64_t *smp = shared_alloc(smp_len);
	if (!sh || !smp) {
		shared_free(sh, sh_len);
		shared_free(smp, smp_len);
		snprintf(row->reason, sizeof(row->reason), "out of memory for %zu bytes of samples",
			 smp_len);
		return -ENOMEM;
	}

	rc = p->ops->setup(p);
	if (rc) {
		p->ops->teardown(p); /* whatever setup made before it failed */
		if (rc == ROW_SKIPPED) {
			row->status = ROW_SKIPPED;
			rc = 0;
		} else if (!row->reason[0]) {
			snprintf(row->reason, sizeof(row->reason), "setup: %s", errtext(rc));
		}
		shared_free(sh, sh_len);
		shared_free(smp, smp_len);
		return rc;
	}

	pid_t pids[BENCH_MAX_PROCS];
	bool exited[BENCH_MAX_PROCS];
	pid_t parent = getpid();
	int64_t t_begin = mono_now_ns();
	double limit_s = p->timeout_s > 0 ? p->timeout_s : g_opt.row_timeout_s;
	double budget_s = p->budget_s > 0 ? p->budget_s : g_opt.budget_s;
	p->budget_ticks = budget_s > 0 ? (uint64_t)(budget_s * 1e9 / g_clk.ns_per_tick) : 0;
	int64_t deadline = t_begin + (int64_t)(limit_s * 1e9);
	int failed = -1;

	fflush(NULL); /* children must not flush the parent's buffered output again */
	for (int i = 0; i < n; i++) {
		struct worker w = {
			.role = i < np ? ROLE_PROD : ROLE_CONS,
			.idx = i < np ? i : i - np,
			.id = i,
			.cpu = g_opt.cpu[i < np ? 0 : 1],
			.plan = p,
			.sh = sh,
			.err = sh->res[i].err,
		};
		if (i == 0) {
			w.samples = smp;
			w.sample_cap = pp_cap;
		} else if (i >= np && st_cap) {
			w.samples = smp + pp_cap + (uint64_t)(i - np) * st_cap;
			w.sample_cap = st_cap;
		}
		exited[i] = false;
		pids[i] = fork();
		if (pids[i] == 0)
			worker_main(&w, parent);
		if (pids[i] < 0) {
			rc = -errno;
			exited[i] = true;
			snprintf(row->reason, sizeof(row->reason), "fork: %s", errtext(errno));
			kill_all(pids, i, exited);
			goto out;
		}
	}

	rc = wait_children(pids, n, exited, deadline, all_ready, sh, &failed);
	if (rc == 0) {
		if (p->ops->attached)
			p->ops->attached(p);
		atomic_store(&sh->go, 1);
		rc = wait_children(pids, n, exited, deadline, NULL, sh, &failed);
	}
	if (rc) {
		kill_all(pids, n, exited);
		if (rc == -ECHILD) {
			struct worker_result *r = &sh->res[failed];
			snprintf(row->reason, sizeof(row->reason), "%s %d, %s: %s",
				 failed < np ? "producer" : "consumer", failed < np ? failed : failed - np,
				 phase_name(r->phase), r->err[0] ? r->err : "failed");
		} else if (rc == -ETIMEDOUT) {
			int ph = PH_DONE;
			for (int i = 0; i < n; i++)
				if (sh->res[i].phase < ph)
					ph = sh->res[i].phase;
			snprintf(row->reason, sizeof(row->reason),
				 "timed out after %.0f s in the %s phase: killed", limit_s,
				 phase_name(ph));
		} else {
			snprintf(row->reason, sizeof(row->reason), "interrupted");
		}
		goto out;
	}
	row->seconds = (double)(mono_now_ns() - t_begin) / 1e9;
	unsigned cut = 0;
	for (int i = 0; i < n; i++) {
		cut |= sh->res[i].truncated;
		if (sh->res[i].note[0] && !row->note[0])
			snprintf(row->note, sizeof(row->note), "%s", sh->res[i].note);
	}
	rc = results(p, sh, smp, smp + pp_cap, st_cap);
	if (cut) {
		size_t len = strlen(row->note);
		row->truncated = true;
		snprintf(row->note + len, sizeof(row->note) - len,
			 "%sstopped at the %.0f s budget:%s%s%s (%llu ping-pong, %llu streaming samples, "
			 "%llu messages)", len ? "; " : "", budget_s,
			 cut & (1u << PH_PINGPONG) ? " ping-pong" : "",
			 cut & (1u << PH_STREAM) ? " streaming" : "",
			 cut & (1u << PH_TPUT) ? " throughput" : "", (unsigned long long)row->pp.n,
			 (unsigned long long)row->st.n, (unsigned long long)row->tput_msgs);
	}
	if (rc == 0)
		row->status = ROW_OK;
out:
	p->ops->teardown(p);
	shared_free(sh, sh_len);
	shared_free(smp, smp_len);
	return rc;
}
