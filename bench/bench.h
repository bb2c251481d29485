/*
 * bench.h - private header of shmring-bench: the clock, the row and worker
 * types, the mechanism interface and the measuring loops every mechanism
 * shares.
 *
 * How a row runs (harness.c). The parent process sets the row up (creates
 * rings, pipes, sockets, ...), forks one process per role, each pinned to its
 * CPU, and waits for them with a deadline. The workers go through three
 * phases, separated by barriers in a shared control block:
 *
 *   PH_PINGPONG  worker A sends message i on channel 0, worker B receives it
 *                and sends it back on channel 1; A timestamps each return.
 *                One-way latency = RTT / 2.
 *   PH_STREAM    every producer stamps the clock into each message and sends
 *                as fast as the channel takes; consumers compute now - stamp.
 *                Latency under load: it includes the time spent queued.
 *   PH_TPUT      the same without stamps (the payload carries producer id and
 *                sequence, checked by the consumers), N messages; throughput
 *                is N / (last receive - first send).
 *
 * Each phase stops early at its time budget (plan.budget_ticks) and says so;
 * the harness kills a row that passes its hard deadline.
 *
 * The loops below are static inline and always inlined: each mechanism calls
 * run_phase() with its own send/recv functions, so the compiler turns them
 * into direct calls and no mechanism pays an indirect call the others do not.
 */
#ifndef SHMRING_BENCH_H
#define SHMRING_BENCH_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define BENCH_MAX_PROCS 16     /* producers + consumers in one row */
#define BENCH_MAX_SIZES 8
#define BENCH_MAX_MSG 65536    /* largest message size accepted */
#define BENCH_REASON_MAX 256
#define BENCH_LINE 128         /* distance between words written by different CPUs */

/* A stamp or tag value that no real message carries: "producers are done". */
#define MSG_STOP UINT64_MAX
/*
 * The ping-pong's "A stopped early" value: above every round-trip number
 * (samples + warm-up stay below it), and still distinct after the +1 that the
 * eventfd and 32-bit futex ping-pongs add.
 */
#define PP_STOP UINT64_C(0x7fffffff)

/* ---------------------------------------------------------------- clock.c */

/*
 * Ticks are TSC cycles (x86-64 with an invariant TSC, calibrated against
 * CLOCK_MONOTONIC at start) or nanoseconds of CLOCK_MONOTONIC (--clock mono,
 * or when the TSC is not usable).
 */
struct bench_clock {
	bool tsc;
	double ns_per_tick;
	double read_ns;        /* cost of one clk_now(), measured */
	double skew_ns;        /* estimated TSC offset between the two CPUs (B - A) */
	double skew_bound_ns;  /* +- uncertainty of that estimate */
	bool skew_checked;
	char desc[200];        /* one line for the header */
};
extern struct bench_clock g_clk;

static inline uint64_t clk_now(void)
{
#if defined(__x86_64__)
	if (g_clk.tsc) {
		/* lfence: the read happens after the loads before it have completed. */
		__builtin_ia32_lfence();
		return __builtin_ia32_rdtsc();
	}
#endif
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline double ticks_to_ns(double t)
{
	return t * g_clk.ns_per_tick;
}

/* strerror without the shared buffer: the description of errno value e (sign ignored). */
static inline const char *errtext(int e)
{
	const char *s = strerrordesc_np(e < 0 ? -e : e);
	return s ? s : "unknown error";
}

static inline void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

int clk_init(bool want_tsc);
int64_t mono_now_ns(void);

/* --------------------------------------------------------------- options */

struct bench_opts {
	int cpu[2];               /* -1: unpinned */
	uint64_t samples;         /* latency samples per row and phase */
	uint64_t warmup;          /* messages sent before samples are kept */
	uint64_t msgs;            /* throughput phase, shared-memory rows */
	uint64_t ipc_msgs;        /* throughput phase, kernel IPC rows */
	uint32_t sizes[BENCH_MAX_SIZES];
	int nsizes;
	uint32_t ipc_sizes[BENCH_MAX_SIZES];
	int nipc_sizes;
	int producers, consumers;
	uint32_t capacity;        /* ring and queue depth, messages */
	uint32_t batch;
	uint64_t probe_rt;        /* round trips of each placement probe */
	double row_timeout_s;
	double budget_s;          /* longest a phase may run before it stops early */
	double time_limit_s;      /* whole run; shrinks the phase budgets (0: none) */
	const char *rows;         /* comma list of groups, NULL = all */
	const char *json_path;    /* NULL or "" = none */
	const char *plot_path;
	const char *table_path;
	bool want_tsc;
	int ncpus_avail;          /* CPUs this process may run on */
};
extern struct bench_opts g_opt;

/* ------------------------------------------------------------------ rows */

enum row_status { ROW_OK = 0, ROW_SKIPPED, ROW_FAILED };

struct lat {
	double p50, p99, p999, max; /* one-way, ns */
	double mean;
	uint64_t n;
};

struct row {
	/* what */
	char group[16];      /* --rows selector: phys, textbook, spsc, ... */
	char mech[32];       /* table name */
	char mode[40];       /* how it was driven, backing */
	uint32_t size;       /* message bytes */
	int producers, consumers;
	bool has_stream;     /* physical limit: ping-pong only */

	/* results */
	enum row_status status;
	char reason[BENCH_REASON_MAX];
	char note[BENCH_REASON_MAX];
	struct lat pp, st;
	double msgs_per_s, bytes_per_s;
	uint64_t tput_msgs;
	double probe_before, probe_after; /* cache-line one-way p50, ns */
	bool near;
	double ratio_phys;   /* pp.p50 / physical limit p50 */
	double ratio_probe;  /* pp.p50 / mean of this row's probes */
	double seconds;      /* wall time of the row, probes excluded */
	uint64_t neg_stamps; /* streaming samples with receive before stamp (clock skew) */
	bool truncated;      /* a phase stopped at its time budget */
};

/* ---------------------------------------------------------- the workers */

enum phase { PH_INIT = 0, PH_PINGPONG, PH_STREAM, PH_TPUT, PH_DONE };
enum role { ROLE_PROD, ROLE_CONS };

/* What one worker reports back, in the shared control block. */
struct worker_result {
	int rc;                  /* 0, or -errno */
	int phase;               /* where it is (or was when it failed) */
	char err[160];
	char note[96];           /* e.g. pinning failed */
	uint64_t t_start, t_end; /* PH_TPUT: first send / last receive, ticks */
	uint64_t count, sum;     /* PH_TPUT consumer: messages and sum of tags */
	uint64_t order_errors;   /* PH_TPUT consumer: per-producer sequence went back */
	uint64_t nsamples;       /* PH_STREAM consumer / PH_PINGPONG A: samples kept */
	uint64_t neg;            /* PH_STREAM: negative one-way values (clock skew) */
	uint64_t sent;           /* PH_TPUT producer: messages sent */
	unsigned truncated;      /* bit per phase that stopped at its time budget */
};

/* The shared control block of one row. */
struct bench_shared {
	_Alignas(BENCH_LINE) atomic_uint ready;
	_Alignas(BENCH_LINE) atomic_uint go;
	_Alignas(BENCH_LINE) atomic_uint bar_count;
	_Alignas(BENCH_LINE) atomic_uint bar_gen;
	_Alignas(BENCH_LINE) atomic_uint prod_done[PH_DONE];
	_Alignas(BENCH_LINE) struct worker_result res[BENCH_MAX_PROCS];
};

struct plan;

/* One process of a row. */
struct worker {
	enum role role;
	int idx;                 /* producer or consumer index; 0 is A / B */
	int id;                  /* 0 .. nprocs-1, index of res[] */
	int cpu;
	struct plan *plan;
	struct bench_shared *sh;
	int64_t *samples;        /* this worker's sample array (A: ping-pong, consumers: stream) */
	uint64_t sample_cap;
	void *priv;              /* the mechanism's per-process state */
	char *err;               /* = sh->res[id].err */
};

/*
 * A mechanism. setup/attached/teardown run in the parent; init and phase in
 * each worker after fork (a worker exits after its row, and the kernel closes
 * what it held). setup returns 0, or ROW_SKIPPED (positive) / -errno with
 * plan->row->reason filled.
 */
struct mech_ops {
	int (*setup)(struct plan *p);
	void (*attached)(struct plan *p);  /* all workers initialised: drop names */
	void (*teardown)(struct plan *p);  /* always called after setup, also on failure */
	int (*init)(struct worker *w);
	int (*phase)(struct worker *w, enum phase ph);
};

/* Everything the harness needs to run one row. */
struct plan {
	struct row *row;
	const struct mech_ops *ops;
	uint32_t size;
	int producers, consumers;
	uint64_t pp_msgs, pp_warm;   /* round trips: warm-up + samples */
	uint64_t st_msgs, st_warm;   /* streaming messages: warm-up + samples */
	uint64_t tput_msgs;          /* 0: no streaming phases */
	void *state;                 /* the mechanism's parent-side state */
	int tag;                     /* unique per row: names */
	double timeout_s;            /* 0: --row-timeout */
	uint64_t budget_ticks;       /* longest a phase may run (0: no bound); set by the harness */
	double budget_s;             /* 0: --budget */
	unsigned long param;         /* mechanism-specific: flags, kind, ... */
};

/* plan->param of the shmring rows: ring kind in the low byte, SHMRING_F_* above. */
#define RING_PARAM(kind, flags) ((unsigned long)(kind) | ((unsigned long)(flags) << 8))

/* harness.c */
int harness_run(struct plan *p);          /* fills p->row; 0 or -errno */
void harness_install_signals(void);
bool harness_interrupted(void);
int worker_fail(struct worker *w, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void *shared_alloc(size_t len);           /* MAP_SHARED anonymous, populated, zeroed */
void shared_free(void *p, size_t len);

/* stats.c */
void lat_from_ticks(int64_t *v, uint64_t n, double scale, struct lat *out);

/* probe.c: cache-line ping-pong */
extern const struct mech_ops phys_ops;
int probe_run(uint64_t round_trips, double *p50_ns);
int probe_clock_skew(void);

/* textbook.c: the classic Lamport SPSC ring with cached indices */
struct tb_ring;
struct tb_end {
	struct tb_ring *r;
	uint64_t pos;    /* producer: tail; consumer: head */
	uint64_t cache;  /* producer: last head seen; consumer: last tail seen */
	uint32_t mask, size, stride;
};
size_t tb_bytes(uint32_t size, uint32_t capacity, bool seq);
void tb_init(struct tb_ring *r);
void tb_end_init(struct tb_end *e, struct tb_ring *r, uint32_t size, uint32_t capacity, bool seq);
int tb_push(struct tb_end *e, const void *msg);
int tb_pop(struct tb_end *e, void *msg);
/* The slot-sequence variant (an experiment, see textbook.c): its own push and pop. */
int seq_push(struct tb_end *e, const void *msg);
int seq_pop(struct tb_end *e, void *msg);

/* rings.c, batch.c, kernel_ipc.c: the rows they offer */
extern const struct mech_ops textbook_ops, slotseq_ops, shmring_spin_ops, shmring_wait_ops;
extern const struct mech_ops shmring_batch_ops, shmring_zc_ops;

/* rings.c: named rings shared by the shmring drives (channel 0 and 1 of a row) */
struct shmring;
extern struct shmring *g_h[2];
int ring_setup(struct plan *p);
void ring_attached(struct plan *p);
void ring_teardown(struct plan *p);
int ring_init(struct worker *w);
int ring_error(struct worker *w, int rc, const char *what);
extern const struct mech_ops pipe_ops, unix_ops, tcp_ops, mq_ops, eventfd_ops, futex_ops;

/* output.c */
void out_header(char *buf, size_t len);
void out_table_head(void);
void out_table_row(const struct row *r);
void out_summary(struct row *rows, int n);
int out_json(const char *path, const char *header, struct row *rows, int n, double total_s);
int out_plot(const char *path, struct row *rows, int n, const char *header);
void out_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int out_open_table(const char *path);
void out_close_table(void);

/* ------------------------------------------------- payload helpers */

static inline void put64(void *msg, uint64_t v)
{
	memcpy(msg, &v, sizeof(v));
}

static inline uint64_t get64(const void *msg)
{
	uint64_t v;
	memcpy(&v, msg, sizeof(v));
	return v;
}

/* Throughput-phase payload: producer index in the top 16 bits, sequence below. */
static inline uint64_t tag_make(int prod, uint64_t seq)
{
	return ((uint64_t)prod << 48) | seq;
}

typedef int (*send_fn)(struct worker *w, int chan, const void *msg);
typedef int (*recv_fn)(struct worker *w, int chan, void *msg);

/* Wait until every worker of the row arrives (not measured; yields to be fair). */
void worker_barrier(struct worker *w);

/* Messages of this producer in a phase of n messages in all. */
static inline uint64_t share_of(uint64_t n, int nprod, int idx)
{
	return n / (uint64_t)nprod + ((uint64_t)idx < n % (uint64_t)nprod ? 1 : 0);
}

/* The producer that finishes last tells every consumer to stop. */
static inline __attribute__((always_inline)) int
send_stops(struct worker *w, enum phase ph, send_fn snd, void *msg)
{
	if (atomic_fetch_add(&w->sh->prod_done[ph], 1) + 1 != (unsigned)w->plan->producers)
		return 0;
	put64(msg, MSG_STOP);
	for (int c = 0; c < w->plan->consumers; c++) {
		int rc = snd(w, 0, msg);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * Time budget of a phase (--budget): on a loaded VM a kernel wake-up can take
 * a millisecond, and 10^5 round trips of that would not end. A phase that
 * passes its budget stops early, says so (res.truncated) and the row reports
 * how many samples it got.
 */
static inline uint64_t phase_until(const struct worker *w)
{
	return w->plan->budget_ticks ? clk_now() + w->plan->budget_ticks : UINT64_MAX;
}

/* Warm-up ends after its message count or a tenth of the budget, whichever comes first. */
static inline uint64_t warm_until(const struct worker *w)
{
	return w->plan->budget_ticks ? clk_now() + w->plan->budget_ticks / 10 : UINT64_MAX;
}

static inline void mark_truncated(struct worker *w, enum phase ph)
{
	w->sh->res[w->id].truncated |= 1u << ph;
}

static inline __attribute__((always_inline)) int
pp_initiator(struct worker *w, send_fn snd, recv_fn rcv, void *out, void *in)
{
	struct plan *p = w->plan;
	uint64_t n = p->pp_msgs, warm = p->pp_warm, kept = 0;
	uint64_t t_prev = clk_now(), until = phase_until(w), warm_end = warm_until(w);

	for (uint64_t i = 0; i < n; i++) {
		put64(out, i);
		int rc = snd(w, 0, out);
		if (rc)
			return rc;
		rc = rcv(w, 1, in);
		if (rc)
			return rc;
		uint64_t t = clk_now();
		if (get64(in) != i)
			return worker_fail(w, -EBADMSG, "ping-pong: sent %llu, got %llu back",
					   (unsigned long long)i, (unsigned long long)get64(in));
		if ((i >= warm || t > warm_end) && kept < w->sample_cap)
			w->samples[kept++] = (int64_t)(t - t_prev);
		t_prev = t;
		if (t > until && i + 1 < n) {
			mark_truncated(w, PH_PINGPONG);
			put64(out, PP_STOP);
			rc = snd(w, 0, out);
			if (rc)
				return rc;
			break;
		}
	}
	w->sh->res[w->id].nsamples = kept;
	return 0;
}

static inline __attribute__((always_inline)) int
pp_echoer(struct worker *w, send_fn snd, recv_fn rcv, void *buf)
{
	for (uint64_t i = 0; i < w->plan->pp_msgs; i++) {
		int rc = rcv(w, 0, buf);
		if (rc)
			return rc;
		if (get64(buf) == PP_STOP)
			break;
		rc = snd(w, 1, buf);
		if (rc)
			return rc;
	}
	return 0;
}

static inline __attribute__((always_inline)) int
stream_producer(struct worker *w, send_fn snd, void *msg)
{
	struct plan *p = w->plan;
	uint64_t mine = share_of(p->st_msgs, p->producers, w->idx), until = phase_until(w);

	for (uint64_t i = 0; i < mine; i++) {
		uint64_t now = clk_now();
		if (now > until) {
			mark_truncated(w, PH_STREAM);
			break;
		}
		put64(msg, now);
		int rc = snd(w, 0, msg);
		if (rc)
			return rc;
	}
	return send_stops(w, PH_STREAM, snd, msg);
}

static inline __attribute__((always_inline)) int
tput_producer(struct worker *w, send_fn snd, void *msg)
{
	struct plan *p = w->plan;
	uint64_t mine = share_of(p->tput_msgs, p->producers, w->idx), i;
	struct worker_result *res = &w->sh->res[w->id];

	res->t_start = clk_now();
	uint64_t until = phase_until(w);
	for (i = 0; i < mine; i++) {
		if ((i & 1023) == 1023 && clk_now() > until) {
			mark_truncated(w, PH_TPUT);
			break;
		}
		put64(msg, tag_make(w->idx, i));
		int rc = snd(w, 0, msg);
		if (rc)
			return rc;
	}
	res->sent = i;
	return send_stops(w, PH_TPUT, snd, msg);
}

/*
 * What a consumer keeps: streaming latency samples (after its share of the
 * warm-up), or for throughput the count, the sum of the tags and whether each
 * producer's sequence only went up (a consumer sees one producer's messages in
 * increasing order; gaps are other consumers' messages).
 */
struct consume_acc {
	uint64_t skip, warm_end, seen, kept, neg;
	uint64_t count, sum, bad, t_end;
	int64_t last[BENCH_MAX_PROCS];
};

static inline void acc_init(struct consume_acc *a, const struct worker *w, uint64_t skip)
{
	memset(a, 0, sizeof(*a));
	a->skip = skip;
	a->warm_end = warm_until(w);
	for (int i = 0; i < BENCH_MAX_PROCS; i++)
		a->last[i] = -1;
}

static inline void acc_stamp(struct worker *w, struct consume_acc *a, uint64_t now, uint64_t stamp)
{
	int64_t d = (int64_t)(now - stamp);
	if (d < 0) {
		a->neg++; /* read before it was stamped: the CPUs' clocks disagree */
		d = 0;
	}
	if ((a->seen++ >= a->skip || now > a->warm_end) && a->kept < w->sample_cap)
		w->samples[a->kept++] = d;
}

static inline void acc_tag(struct consume_acc *a, uint64_t now, uint64_t tag)
{
	unsigned prod = (unsigned)(tag >> 48);
	int64_t seq = (int64_t)(tag & ((UINT64_C(1) << 48) - 1));
	if (prod >= BENCH_MAX_PROCS || seq <= a->last[prod])
		a->bad++;
	else
		a->last[prod] = seq;
	a->count++;
	a->sum += tag;
	a->t_end = now;
}

static inline void acc_report(struct worker *w, const struct consume_acc *a, enum phase ph)
{
	struct worker_result *res = &w->sh->res[w->id];
	if (ph == PH_STREAM) {
		res->nsamples = a->kept;
		res->neg = a->neg;
	} else {
		res->t_end = a->t_end;
		res->count = a->count;
		res->sum = a->sum;
		res->order_errors = a->bad;
	}
}

static inline __attribute__((always_inline)) int
stream_consumer(struct worker *w, recv_fn rcv, void *buf)
{
	struct consume_acc a;
	acc_init(&a, w, w->plan->st_warm / (uint64_t)w->plan->consumers);
	for (;;) {
		int rc = rcv(w, 0, buf);
		if (rc)
			return rc;
		uint64_t t = clk_now(), stamp = get64(buf);
		if (stamp == MSG_STOP)
			break;
		acc_stamp(w, &a, t, stamp);
	}
	acc_report(w, &a, PH_STREAM);
	return 0;
}

static inline __attribute__((always_inline)) int
tput_consumer(struct worker *w, recv_fn rcv, void *buf)
{
	struct consume_acc a;
	acc_init(&a, w, 0);
	for (;;) {
		int rc = rcv(w, 0, buf);
		if (rc)
			return rc;
		uint64_t tag = get64(buf);
		if (tag == MSG_STOP)
			break;
		acc_tag(&a, clk_now(), tag);
	}
	acc_report(w, &a, PH_TPUT);
	return 0;
}

/*
 * The phase loops for one mechanism's send and receive. Ping-pong runs
 * between producer 0 (A) and consumer 0 (B) only; the others wait at the
 * barrier after it.
 */
static inline __attribute__((always_inline)) int
run_phase(struct worker *w, enum phase ph, send_fn snd, recv_fn rcv, void *a, void *b)
{
	switch (ph) {
	case PH_PINGPONG:
		if (w->idx != 0)
			return 0;
		return w->role == ROLE_PROD ? pp_initiator(w, snd, rcv, a, b) : pp_echoer(w, snd, rcv, a);
	case PH_STREAM:
		return w->role == ROLE_PROD ? stream_producer(w, snd, a) : stream_consumer(w, rcv, a);
	case PH_TPUT:
		return w->role == ROLE_PROD ? tput_producer(w, snd, a) : tput_consumer(w, rcv, a);
	default:
		return 0;
	}
}

/* Per-process message buffers, aligned for any payload. */
extern _Alignas(64) unsigned char g_msg_a[BENCH_MAX_MSG];
extern _Alignas(64) unsigned char g_msg_b[BENCH_MAX_MSG];

#endif /* SHMRING_BENCH_H */
