/*
 * main.c - shmring-bench: options, the list of rows, and the run.
 *
 * One run measures every row between two pinned processes, each row framed
 * by a placement probe (a short cache-line ping-pong) before and after it,
 * then prints the table, the near/far summary, the JSON and the plot. Only
 * ratios between rows of one run mean much on a shared VM; the probes say
 * which rows ran with the two vCPUs on near physical cores.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "shmring.h"

struct bench_opts g_opt;
int g_argc;
char **g_argv;

/* Placement: a row is near when both its probes are within this factor of the run's lowest. */
#define NEAR_FACTOR 1.5

static void usage(FILE *f)
{
	fprintf(f,
"Usage: shmring-bench [options]\n"
"\n"
"Latency and throughput of shmring rings between two separate processes, in one\n"
"run with the physical limit (a bare cache-line ping-pong between the same two\n"
"CPUs), a textbook SPSC ring and kernel IPC (pipe, Unix socket, TCP loopback,\n"
"POSIX mq, eventfd, futex). Every row reports one-way latency from ping-pong\n"
"(RTT/2) and from timestamped streaming under load (p50/p99/p99.9/max),\n"
"throughput, its ratio to the physical limit and a placement probe before and\n"
"after it (near/far).\n"
"\n"
"Options:\n"
"  --cpus A,B          pin the producer side to CPU A, the consumer side to CPU B\n"
"                      (default 0,1); a CPU that does not exist or cannot be used\n"
"                      gives a note and that side runs unpinned\n"
"  --samples N         latency samples per row and phase, after warm-up (default 100000)\n"
"  --warmup N          messages or round trips before samples are kept\n"
"                      (default: 10%% of --samples)\n"
"  --msgs N            messages of the throughput phase of shared-memory rows\n"
"                      (default 5000000)\n"
"  --ipc-msgs N        messages of the throughput phase of kernel IPC rows (default 200000)\n"
"  --sizes LIST        message sizes of the ring rows, bytes (default 8,64,256,1024;\n"
"                      each >= 8 and <= %d)\n"
"  --ipc-sizes LIST    message sizes of the kernel IPC rows (default 64)\n"
"  --producers P       producers of the MPSC and MPMC streaming phases (default 1)\n"
"  --consumers C       consumers of the MPMC streaming phase (default 1; MPSC has one)\n"
"                      Producers share CPU A and consumers CPU B: more spinning processes\n"
"                      than CPUs measure the scheduler (a warning says so)\n"
"  --capacity N        ring and queue depth in messages, a power of two (default 1024)\n"
"  --batch N           messages per shmring_try_push_n/try_pop_n in the batch rows\n"
"                      (default 32); their ping-pong latency is that of a whole batch\n"
"  --probe-rt N        round trips of each placement probe (default 20000)\n"
"  --budget S          seconds a phase of a row may take (default 12): a phase that\n"
"                      passes it stops early and the row notes how many samples it\n"
"                      got (on a loaded VM a kernel wake-up can take milliseconds);\n"
"                      0 means no budget\n"
"  --time-limit S      aim to finish the whole run within S seconds: each row's phases\n"
"                      get at most an equal share of the time left (and --budget);\n"
"                      rows cut short say so (default 0: no limit)\n"
"  --row-timeout S     seconds after which a row's processes are killed and the row is\n"
"                      reported as failed (default 60; keep it above 3 x --budget)\n"
"  --rows LIST         run only these groups: phys, textbook, seqslot, spsc, mpsc, mpmc, batch,\n"
"                      zerocopy, hugepage, blocking, pipe, unix, tcp, mq, eventfd,\n"
"                      futex; or rings (textbook..zerocopy), ipc (pipe..futex),\n"
"                      all (default)\n"
"  --clock tsc|mono    timer: invariant TSC calibrated against CLOCK_MONOTONIC\n"
"                      (default, when the CPU has one) or clock_gettime(CLOCK_MONOTONIC)\n"
"  --json FILE         write the results as JSON (default build/bench-results/bench.json;\n"
"                      'none' to skip)\n"
"  --plot FILE         write a PNG of the latency percentiles with gnuplot\n"
"                      (default build/bench-results/latency.png; 'none' to skip)\n"
"  --table FILE        also write the table to FILE\n"
"  -h, --help          this text\n"
"\n"
"Exit status: 0 when every row was measured or skipped with a reason, 1 when a\n"
"row failed, 2 on a usage error, 130 when interrupted (workers killed, every\n"
"ring, queue and socket removed).\n",
		BENCH_MAX_MSG);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_list(const char *s, uint32_t *out, int *n, uint64_t min, uint64_t max)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	*n = 0;
	for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;
		if (*n >= BENCH_MAX_SIZES || parse_u64(tok, min, max, &v))
			return -1;
		out[(*n)++] = (uint32_t)v;
	}
	return *n ? 0 : -1;
}

static int __attribute__((noreturn)) bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "shmring-bench: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(see shmring-bench --help)\n");
	exit(2);
}

static void parse_options(int argc, char **argv)
{
	enum { O_CPUS = 256, O_SAMPLES, O_WARMUP, O_MSGS, O_IPC_MSGS, O_SIZES, O_IPC_SIZES,
	       O_PROD, O_CONS, O_CAP, O_BATCH, O_PROBE, O_TIMEOUT, O_ROWS, O_CLOCK, O_JSON,
	       O_PLOT, O_TABLE, O_BUDGET, O_LIMIT };
	static const struct option longopts[] = {
		{"cpus", required_argument, NULL, O_CPUS},
		{"samples", required_argument, NULL, O_SAMPLES},
		{"warmup", required_argument, NULL, O_WARMUP},
		{"msgs", required_argument, NULL, O_MSGS},
		{"ipc-msgs", required_argument, NULL, O_IPC_MSGS},
		{"sizes", required_argument, NULL, O_SIZES},
		{"ipc-sizes", required_argument, NULL, O_IPC_SIZES},
		{"producers", required_argument, NULL, O_PROD},
		{"consumers", required_argument, NULL, O_CONS},
		{"capacity", required_argument, NULL, O_CAP},
		{"batch", required_argument, NULL, O_BATCH},
		{"probe-rt", required_argument, NULL, O_PROBE},
		{"row-timeout", required_argument, NULL, O_TIMEOUT},
		{"budget", required_argument, NULL, O_BUDGET},
		{"time-limit", required_argument, NULL, O_LIMIT},
		{"rows", required_argument, NULL, O_ROWS},
		{"clock", required_argument, NULL, O_CLOCK},
		{"json", required_argument, NULL, O_JSON},
		{"plot", required_argument, NULL, O_PLOT},
		{"table", required_argument, NULL, O_TABLE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool warm_set = false;
	uint64_t v;

	g_opt = (struct bench_opts){
		.cpu = {0, 1},
		.samples = 100000,
		.msgs = 5000000,
		.ipc_msgs = 200000,
		.sizes = {8, 64, 256, 1024},
		.nsizes = 4,
		.ipc_sizes = {64},
		.nipc_sizes = 1,
		.producers = 1,
		.consumers = 1,
		.capacity = 1024,
		.batch = 32,
		.probe_rt = 20000,
		.row_timeout_s = 60,
		.budget_s = 12,
		.json_path = "build/bench-results/bench.json",
		.plot_path = "build/bench-results/latency.png",
		.want_tsc = true,
	};
	for (;;) {
		int c = getopt_long(argc, argv, "h", longopts, NULL);
		if (c == -1)
			break;
		switch (c) {
		case O_CPUS: {
			char *end;
			long a = strtol(optarg, &end, 10), b;
			if (end == optarg || *end != ',')
				bad_usage("--cpus wants A,B: '%s'", optarg);
			char *p = end + 1;
			b = strtol(p, &end, 10);
			if (end == p || *end || a < 0 || b < 0 || a >= CPU_SETSIZE || b >= CPU_SETSIZE)
				bad_usage("--cpus wants two CPU numbers A,B: '%s'", optarg);
			g_opt.cpu[0] = (int)a;
			g_opt.cpu[1] = (int)b;
			break;
		}
		case O_SAMPLES:
			if (parse_u64(optarg, 100, UINT32_MAX / 2, &g_opt.samples))
				bad_usage("--samples wants a number >= 100: '%s'", optarg);
			break;
		case O_WARMUP:
			if (parse_u64(optarg, 0, UINT32_MAX / 2, &g_opt.warmup))
				bad_usage("--warmup wants a number: '%s'", optarg);
			warm_set = true;
			break;
		case O_MSGS:
			if (parse_u64(optarg, 1, UINT64_C(1) << 40, &g_opt.msgs))
				bad_usage("--msgs wants a number >= 1: '%s'", optarg);
			break;
		case O_IPC_MSGS:
			if (parse_u64(optarg, 1, UINT64_C(1) << 40, &g_opt.ipc_msgs))
				bad_usage("--ipc-msgs wants a number >= 1: '%s'", optarg);
			break;
		case O_SIZES:
			if (parse_list(optarg, g_opt.sizes, &g_opt.nsizes, 8, BENCH_MAX_MSG))
				bad_usage("--sizes wants up to 8 sizes, each 8..65536: '%s'", optarg);
			break;
		case O_IPC_SIZES:
			if (parse_list(optarg, g_opt.ipc_sizes, &g_opt.nipc_sizes, 8, 8192))
				bad_usage("--ipc-sizes wants up to 8 sizes, each 8..8192: '%s'", optarg);
			break;
		case O_PROD:
			if (parse_u64(optarg, 1, BENCH_MAX_PROCS - 1, &v))
				bad_usage("--producers wants 1..15: '%s'", optarg);
			g_opt.producers = (int)v;
			break;
		case O_CONS:
			if (parse_u64(optarg, 1, BENCH_MAX_PROCS - 1, &v))
				bad_usage("--consumers wants 1..15: '%s'", optarg);
			g_opt.consumers = (int)v;
			break;
		case O_CAP:
			if (parse_u64(optarg, 2, UINT64_C(1) << 24, &v) || (v & (v - 1)))
				bad_usage("--capacity wants a power of two, 2..16M: '%s'", optarg);
			g_opt.capacity = (uint32_t)v;
			break;
		case O_BATCH:
			if (parse_u64(optarg, 1, 4096, &v))
				bad_usage("--batch wants 1..4096: '%s'", optarg);
			g_opt.batch = (uint32_t)v;
			break;
		case O_PROBE:
			if (parse_u64(optarg, 100, UINT32_MAX / 2, &g_opt.probe_rt))
				bad_usage("--probe-rt wants a number >= 100: '%s'", optarg);
			break;
		case O_TIMEOUT:
			if (parse_u64(optarg, 1, 86400, &v))
				bad_usage("--row-timeout wants seconds, 1..86400: '%s'", optarg);
			g_opt.row_timeout_s = (double)v;
			break;
		case O_BUDGET:
			if (parse_u64(optarg, 0, 86400, &v))
				bad_usage("--budget wants seconds, 0..86400: '%s'", optarg);
			g_opt.budget_s = (double)v;
			break;
		case O_LIMIT:
			if (parse_u64(optarg, 0, 86400 * 7, &v))
				bad_usage("--time-limit wants seconds: '%s'", optarg);
			g_opt.time_limit_s = (double)v;
			break;
		case O_ROWS:
			g_opt.rows = optarg;
			break;
		case O_CLOCK:
			if (strcmp(optarg, "tsc") != 0 && strcmp(optarg, "mono") != 0)
				bad_usage("--clock wants tsc or mono: '%s'", optarg);
			g_opt.want_tsc = strcmp(optarg, "tsc") == 0;
			break;
		case O_JSON:
			g_opt.json_path = optarg;
			break;
		case O_PLOT:
			g_opt.plot_path = optarg;
			break;
		case O_TABLE:
			g_opt.table_path = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		bad_usage("unexpected argument '%s'", argv[optind]);
	if (!warm_set)
		g_opt.warmup = g_opt.samples / 10;
	if (g_opt.samples + g_opt.warmup >= PP_STOP)
		bad_usage("%s", "--samples + --warmup must stay below 2^31 - 1");
	for (int i = 0; i < g_opt.nsizes; i++)
		if ((uint64_t)g_opt.batch * g_opt.sizes[i] > (UINT64_C(16) << 20))
			bad_usage("%s", "--batch x message size must stay within 16 MiB");
	if (g_opt.producers + g_opt.consumers > BENCH_MAX_PROCS)
		bad_usage("%s", "--producers + --consumers must be at most 16");
}

/* Is each CPU one this process may run on? Otherwise that side runs unpinned. */
static void check_cpus(void)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) != 0) {
		fprintf(stderr, "note: sched_getaffinity failed (%s): running unpinned\n",
			errtext(errno));
		g_opt.cpu[0] = g_opt.cpu[1] = -1;
		g_opt.ncpus_avail = (int)sysconf(_SC_NPROCESSORS_ONLN);
		return;
	}
	g_opt.ncpus_avail = CPU_COUNT(&set);
	for (int i = 0; i < 2; i++) {
		if (!CPU_ISSET(g_opt.cpu[i], &set)) {
			fprintf(stderr, "note: CPU %d does not exist or is not available to this "
					"process (%d CPUs available): the %s side runs unpinned\n",
				g_opt.cpu[i], g_opt.ncpus_avail, i ? "consumer" : "producer");
			g_opt.cpu[i] = -1;
		}
	}
	if (g_opt.cpu[0] >= 0 && g_opt.cpu[0] == g_opt.cpu[1])
		fprintf(stderr, "warning: both sides on CPU %d: spinning rows then measure the "
				"scheduler's time slice, not IPC\n", g_opt.cpu[0]);
}

/* ------------------------------------------------------------ the rows */

struct entry {
	struct row row;
	struct plan plan;
};

static struct entry *g_rows;
static int g_nrows;

static bool group_selected(const char *group)
{
	static const char *ring_groups[] = {"textbook", "seqslot", "spsc", "mpsc", "mpmc", "batch", "zerocopy",
					    NULL};
	static const char *ipc_groups[] = {"pipe", "unix", "tcp", "mq", "eventfd", "futex", NULL};
	char buf[512];
	if (!g_opt.rows)
		return true;
	snprintf(buf, sizeof(buf), "%s", g_opt.rows);
	for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "all") || !strcmp(tok, group))
			return true;
		const char **list = !strcmp(tok, "rings") ? ring_groups
				    : !strcmp(tok, "ipc") ? ipc_groups : NULL;
		for (; list && *list; list++)
			if (!strcmp(*list, group))
				return true;
	}
	return false;
}

static bool known_group(const char *g)
{
	static const char *all[] = {"phys", "textbook", "seqslot", "spsc", "mpsc", "mpmc", "batch", "zerocopy",
				    "hugepage",
				    "blocking", "pipe", "unix", "tcp", "mq", "eventfd", "futex",
				    "rings", "ipc", "all", NULL};
	for (const char **p = all; *p; p++)
		if (!strcmp(*p, g))
			return true;
	return false;
}

static void check_rows_option(void)
{
	char buf[512];
	if (!g_opt.rows)
		return;
	snprintf(buf, sizeof(buf), "%s", g_opt.rows);
	for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		if (!known_group(tok))
			bad_usage("--rows: unknown group '%s'", tok);
}

static struct entry *add_row(const char *group, const char *mech, const char *mode, uint32_t size,
			     const struct mech_ops *ops, unsigned long param, bool ipc, int np,
			     int nc)
{
	if (!group_selected(group))
		return NULL;
	struct entry *e = realloc(g_rows, (size_t)(g_nrows + 1) * sizeof(*e));
	if (!e) {
		perror("shmring-bench: realloc");
		exit(1);
	}
	g_rows = e;
	e = &g_rows[g_nrows];
	memset(e, 0, sizeof(*e));
	snprintf(e->row.group, sizeof(e->row.group), "%s", group);
	snprintf(e->row.mech, sizeof(e->row.mech), "%s", mech);
	if (np > 1 || nc > 1)
		snprintf(e->row.mode, sizeof(e->row.mode), "%dP/%dC, %s", np, nc, mode);
	else
		snprintf(e->row.mode, sizeof(e->row.mode), "%s", mode);
	e->row.size = size;
	e->row.producers = np;
	e->row.consumers = nc;
	e->row.has_stream = true;
	e->plan = (struct plan){
		.ops = ops,
		.size = size,
		.producers = np,
		.consumers = nc,
		.pp_warm = g_opt.warmup,
		.pp_msgs = g_opt.warmup + g_opt.samples,
		.st_warm = g_opt.warmup,
		.st_msgs = g_opt.warmup + g_opt.samples,
		.tput_msgs = ipc ? g_opt.ipc_msgs : g_opt.msgs,
		.tag = g_nrows,
		.param = param,
	};
	g_nrows++;
	return e;
}

static void build_rows(void)
{
	int P = g_opt.producers, C = g_opt.consumers;
	char batch_mode[40];
	snprintf(batch_mode, sizeof(batch_mode), "try_*_n x%u, pp per batch", g_opt.batch);
	struct entry *e = add_row("phys", "cache line", "PAUSE spin, 2 lines 128 B apart", 8,
				  &phys_ops, 0, false, 1, 1);
	if (e) {
		e->row.has_stream = false;
		e->plan.tput_msgs = 0;
	}
	for (int i = 0; i < g_opt.nsizes; i++) {
		uint32_t s = g_opt.sizes[i];
		add_row("textbook", "textbook spsc", "", s, &textbook_ops, 0, false, 1, 1);
		add_row("seqslot", "slot-seq spsc", "", s, &slotseq_ops, 1, false, 1, 1);
		add_row("spsc", "shmring spsc", "spin", s, &shmring_spin_ops,
			RING_PARAM(SHMRING_SPSC, 0), false, 1, 1);
		add_row("mpsc", "shmring mpsc", "spin", s, &shmring_spin_ops,
			RING_PARAM(SHMRING_MPSC, 0), false, P, 1);
		add_row("mpmc", "shmring mpmc", "spin", s, &shmring_spin_ops,
			RING_PARAM(SHMRING_MPMC, 0), false, P, C);
		add_row("batch", "spsc batch", batch_mode, s, &shmring_batch_ops,
			RING_PARAM(SHMRING_SPSC, 0), false, 1, 1);
		add_row("zerocopy", "spsc zero-copy", "reserve/commit, peek/release", s,
			&shmring_zc_ops, RING_PARAM(SHMRING_SPSC, 0), false, 1, 1);
	}
	/* The multi-producer kinds' batch and zero-copy forms at one size (64 B when asked for). */
	uint32_t mp_size = g_opt.sizes[0];
	for (int i = 0; i < g_opt.nsizes; i++)
		if (g_opt.sizes[i] == 64)
			mp_size = 64;
	add_row("batch", "mpsc batch", batch_mode, mp_size, &shmring_batch_ops,
		RING_PARAM(SHMRING_MPSC, 0), false, P, 1);
	add_row("batch", "mpmc batch", batch_mode, mp_size, &shmring_batch_ops,
		RING_PARAM(SHMRING_MPMC, 0), false, P, 1);
	add_row("zerocopy", "mpsc zero-copy", "reserve/commit, peek/release", mp_size,
		&shmring_zc_ops, RING_PARAM(SHMRING_MPSC, 0), false, P, 1);
	add_row("zerocopy", "mpmc zero-copy", "reserve/commit, peek/release", mp_size,
		&shmring_zc_ops, RING_PARAM(SHMRING_MPMC, 0), false, P, 1);
	add_row("hugepage", "spsc hugetlb", "spin, F_HUGEPAGE", 64, &shmring_spin_ops,
		RING_PARAM(SHMRING_SPSC, SHMRING_F_HUGEPAGE), false, 1, 1);
	add_row("hugepage", "spsc 4k pages", "spin, F_NO_HUGEPAGE", 64, &shmring_spin_ops,
		RING_PARAM(SHMRING_SPSC, SHMRING_F_NO_HUGEPAGE), false, 1, 1);
	add_row("blocking", "spsc spin-only", "spin, flags 0", 64, &shmring_spin_ops,
		RING_PARAM(SHMRING_SPSC, 0), false, 1, 1);
	add_row("blocking", "spsc blk-cap", "spin, F_BLOCKING", 64, &shmring_spin_ops,
		RING_PARAM(SHMRING_SPSC, SHMRING_F_BLOCKING), false, 1, 1);
	add_row("blocking", "spsc futex", "*_wait spin 0, F_BLOCKING", 64, &shmring_wait_ops,
		RING_PARAM(SHMRING_SPSC, SHMRING_F_BLOCKING), false, 1, 1);
	for (int i = 0; i < g_opt.nipc_sizes; i++) {
		uint32_t s = g_opt.ipc_sizes[i];
		add_row("pipe", "pipe", "", s, &pipe_ops, 0, true, 1, 1);
		add_row("unix", "unix socket", "", s, &unix_ops, 0, true, 1, 1);
		add_row("tcp", "tcp loopback", "", s, &tcp_ops, 0, true, 1, 1);
		add_row("mq", "posix mq", "", s, &mq_ops, 0, true, 1, 1);
		add_row("eventfd", "eventfd", "", s, &eventfd_ops, 0, true, 1, 1);
		add_row("futex", "futex", "", s, &futex_ops, 0, true, 1, 1);
	}
}

/* ------------------------------------------------------------ the run */

static int make_parent_dir(const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

static bool wanted(const char *path)
{
	return path && path[0] && strcmp(path, "none") != 0;
}

static void clock_setup(void)
{
	clk_init(g_opt.want_tsc);
	if (!g_clk.tsc || (g_opt.cpu[0] >= 0 && g_opt.cpu[0] == g_opt.cpu[1]))
		return; /* one CPU: one TSC */
	int rc = probe_clock_skew();
	if (rc) {
		fprintf(stderr, "warning: clock check failed (%s): using CLOCK_MONOTONIC\n",
			errtext(rc));
		clk_init(false);
		return;
	}
	/*
	 * A stamp from one CPU read on the other is off by the TSC offset; when
	 * the offset cannot be told from zero within the bound, the TSCs agree
	 * as far as anything here can measure.
	 */
	if (g_clk.skew_ns - g_clk.skew_bound_ns > 20 || g_clk.skew_ns + g_clk.skew_bound_ns < -20) {
		fprintf(stderr, "warning: the TSCs of CPUs %d and %d differ by %.0f ns (+- %.0f): "
				"using CLOCK_MONOTONIC\n",
			g_opt.cpu[0], g_opt.cpu[1], g_clk.skew_ns, g_clk.skew_bound_ns);
		clk_init(false);
		return;
	}
	size_t len = strlen(g_clk.desc);
	snprintf(g_clk.desc + len, sizeof(g_clk.desc) - len,
		 "; TSC offset between the CPUs %.0f ns +- %.0f", g_clk.skew_ns, g_clk.skew_bound_ns);
}

static void warn_crowding(void)
{
	int P = g_opt.producers, C = g_opt.consumers;
	if (P == 1 && C == 1)
		return;
	if (P + C > g_opt.ncpus_avail)
		fprintf(stderr, "warning: %d producers + %d consumers busy-spin on %d CPUs: the MPSC and "
				"MPMC streaming rows measure the scheduler as much as the ring\n",
			P, C, g_opt.ncpus_avail);
	else if (g_opt.cpu[0] >= 0 || g_opt.cpu[1] >= 0)
		fprintf(stderr, "warning: producers share CPU %d and consumers CPU %d: more than one "
				"spinning process per CPU measures the scheduler\n",
			g_opt.cpu[0], g_opt.cpu[1]);
}

/*
 * The time budget of each phase of the next row: --budget, or less under
 * --time-limit, an equal share of the time left among the rows left (three
 * phases each, and the two probes). Fast rows leave their share to later ones.
 */
#define PROBES_COST_S 0.2
#define MIN_PHASE_S 0.3

static double phase_budget(int64_t t0, int rows_left)
{
	if (g_opt.time_limit_s <= 0)
		return g_opt.budget_s;
	double left = g_opt.time_limit_s - (double)(mono_now_ns() - t0) / 1e9;
	double b = (left / rows_left - PROBES_COST_S) / 3;
	if (b < MIN_PHASE_S)
		b = MIN_PHASE_S;
	return g_opt.budget_s > 0 && g_opt.budget_s < b ? g_opt.budget_s : b;
}

static double placement(struct entry *rows, int n, double phys_p50)
{
	double lowest = 0;
	for (int i = 0; i < n; i++) {
		struct row *r = &rows[i].row;
		double lo = r->probe_before < r->probe_after ? r->probe_before : r->probe_after;
		if (lo > 0 && (lowest == 0 || lo < lowest))
			lowest = lo;
	}
	for (int i = 0; i < n; i++) {
		struct row *r = &rows[i].row;
		double hi = r->probe_before > r->probe_after ? r->probe_before : r->probe_after;
		r->near = lowest > 0 && r->probe_before > 0 && r->probe_after > 0 &&
			  hi <= NEAR_FACTOR * lowest;
		r->ratio_phys = phys_p50 > 0 ? r->pp.p50 / phys_p50 : 0;
		double mid = (r->probe_before + r->probe_after) / 2;
		r->ratio_probe = mid > 0 ? r->pp.p50 / mid : 0;
	}
	return lowest;
}

int main(int argc, char **argv)
{
	g_argc = argc;
	g_argv = argv;
	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_options(argc, argv);
	check_rows_option();
	check_cpus();
	harness_install_signals();
	(void)mlockall(MCL_CURRENT);
	warn_crowding();
	clock_setup();
	build_rows();

	char header[4096];
	out_header(header, sizeof(header));
	if (g_opt.table_path) {
		make_parent_dir(g_opt.table_path);
		if (out_open_table(g_opt.table_path))
			fprintf(stderr, "warning: cannot write %s: %s\n", g_opt.table_path,
				errtext(errno));
	}
	out_printf("%s\n%s\n", header, g_clk.desc);
	out_printf("samples %llu after %llu warm-up, ring capacity %u, throughput %llu msgs "
		   "(kernel IPC %llu), probes %llu round trips, phase budget %.0f s, time limit %.0f s, "
		   "row timeout %.0f s\n\n",
		   (unsigned long long)g_opt.samples, (unsigned long long)g_opt.warmup,
		   g_opt.capacity, (unsigned long long)g_opt.msgs,
		   (unsigned long long)g_opt.ipc_msgs, (unsigned long long)g_opt.probe_rt,
		   g_opt.budget_s, g_opt.time_limit_s, g_opt.row_timeout_s);

	int64_t t0 = mono_now_ns();
	int done = 0;
	double phys_p50 = 0;
	for (int i = 0; i < g_nrows && !harness_interrupted(); i++) {
		struct entry *e = &g_rows[i];
		e->plan.row = &e->row;
		e->plan.budget_s = phase_budget(t0, g_nrows - i);
		fprintf(stderr, "[%2d/%d] %-14s %5u ...", i + 1, g_nrows, e->row.mech, e->row.size);
		probe_run(g_opt.probe_rt, &e->row.probe_before);
		int64_t ts = mono_now_ns();
		harness_run(&e->plan);
		double secs = (double)(mono_now_ns() - ts) / 1e9;
		probe_run(g_opt.probe_rt, &e->row.probe_after);
		if (e->plan.ops == &phys_ops && e->row.status == ROW_OK && phys_p50 == 0)
			phys_p50 = e->row.pp.p50;
		fprintf(stderr, " %s %.1f s (probes %.0f/%.0f ns)%s%s\n",
			e->row.status == ROW_OK ? "ok" : e->row.status == ROW_SKIPPED ? "skipped"
										: "FAILED",
			secs, e->row.probe_before, e->row.probe_after, e->row.reason[0] ? ": " : "",
			e->row.reason);
		done = i + 1;
	}
	double total = (double)(mono_now_ns() - t0) / 1e9;

	if (phys_p50 == 0) {
		/* No physical-limit row in this run: the lowest probe is the same measurement. */
		for (int i = 0; i < done; i++) {
			double p = g_rows[i].row.probe_before;
			if (p > 0 && (phys_p50 == 0 || p < phys_p50))
				phys_p50 = p;
		}
	}
	double lowest = placement(g_rows, done, phys_p50);
	struct row *rows = malloc((size_t)(done ? done : 1) * sizeof(*rows));
	if (!rows)
		return 1;
	for (int i = 0; i < done; i++)
		rows[i] = g_rows[i].row;
	out_table_head();
	for (int i = 0; i < done; i++)
		out_table_row(&rows[i]);
	out_printf("\nPlacement: lowest probe %.0f ns; a row is near when both its probes are "
		   "<= %.0f ns (%.1f x lowest). x phys = ping-pong p50 / cache-line p50 (%.0f ns)\n",
		   lowest, NEAR_FACTOR * lowest, NEAR_FACTOR, phys_p50);
	out_printf("Near and far are relative to this run's lowest probe: a run that never had "
		   "the vCPUs on near cores marks its best rows near.\n");
	out_summary(rows, done);
	for (int i = 0; i < done; i++)
		if (rows[i].neg_stamps)
			out_printf("warning: %s %u: %llu streaming samples read before they were "
				   "stamped (clock offset between CPUs)\n",
				   rows[i].mech, rows[i].size, (unsigned long long)rows[i].neg_stamps);
	out_printf("total %.1f s\n", total);

	int status = 0;
	for (int i = 0; i < done; i++)
		if (rows[i].status == ROW_FAILED)
			status = 1;
	if (harness_interrupted()) {
		fprintf(stderr, "interrupted: workers killed, rings and queues removed\n");
		out_close_table();
		free(rows);
		return 130;
	}
	if (wanted(g_opt.json_path)) {
		make_parent_dir(g_opt.json_path);
		int rc = out_json(g_opt.json_path, header, rows, done, total);
		if (rc) {
			fprintf(stderr, "error: cannot write %s: %s\n", g_opt.json_path, errtext(rc));
			status = 1;
		} else {
			out_printf("JSON: %s\n", g_opt.json_path);
		}
	}
	if (wanted(g_opt.plot_path)) {
		make_parent_dir(g_opt.plot_path);
		int rc = out_plot(g_opt.plot_path, rows, done, header);
		if (rc) {
			fprintf(stderr, "error: gnuplot could not draw %s: %s\n", g_opt.plot_path,
				errtext(rc));
			status = 1;
		} else {
			out_printf("plot: %s\n", g_opt.plot_path);
		}
	}
	out_close_table();
	free(rows);
	free(g_rows);
	return status;
}
