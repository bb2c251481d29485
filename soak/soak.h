/*
 * soak.h - what the soak supervisor (supervise.c) and its peers (soakpeer.c)
 * share: the run's control region, the delivery log, and checkable messages.
 *
 * Control region: one POSIX shm object per run, "<base>-ctl", made by the
 * supervisor. It holds one record per producer instance and one per consumer
 * instance (an instance is one process; a restarted process is a new
 * instance with a new id), each written only by its own process, with relaxed
 * or release stores, and read by the supervisor after the process is gone or
 * as a progress gauge while it runs. Because the region outlives every peer,
 * what a peer recorded before SIGKILL is exactly what it had done.
 *
 * Producer record: a producer instance pushes seq 0, 1, 2, ... and keeps
 *   done  seqs < done have been pushed (the push call returned success)
 *   hi    seqs in [done, hi) are in flight: a push of them has started
 * hi is stored (release) before the push starts and done after it returns,
 * so at any kill point done <= hi and the fate of every seq is known: below
 * done sent, in [done, hi) in flight (sent or not, depending on where the
 * process died), at or above hi never sent.
 *
 * Delivery log: a second shm object, "<base>-log", of 64-bit entries, one per
 * message a consumer received, written right after the pop returns. The log
 * is handed out in chunks of SOAK_CHUNK entries: a consumer takes the next
 * chunk with one atomic add on chunks_used and records itself as the chunk's
 * owner, then fills it in order. A chunk's entries are therefore one
 * consumer's receptions in the order it received them, and a consumer's
 * chunks in index order are its whole history: the checker gets per-consumer
 * order from the layout, with no per-entry consumer id. An entry is
 * ((producer instance + 1) << 40) | seq; 0 is "never written" (a consumer
 * killed between a pop and its log write leaves no entry: that message is
 * lost, and the checker charges it to that consumer's death).
 */
#ifndef SOAK_H
#define SOAK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define SOAK_MAGIC UINT64_C(0x314b414f53524853) /* "SHRSOAK1" */
#define SOAK_MAX_INST 32768u                     /* instances per role and run */
#define SOAK_CHUNK 4096u                         /* log entries per chunk */
#define SOAK_BATCH 16u                           /* messages per batch call */
#define SOAK_MSG_MIN 32u
#define SOAK_MSG_MAX 1024u
#define SOAK_SEQ_BITS 40
#define SOAK_SEQ_MASK ((UINT64_C(1) << SOAK_SEQ_BITS) - 1)
#define SOAK_LAT_BUCKETS 48 /* log2 buckets of end-to-end latency in ns */

/* API forms a peer uses for its data operations. */
enum soak_form { FORM_COPY = 0, FORM_BATCH = 1, FORM_ZC = 2, FORM_N };
static const char *const soak_form_name[FORM_N] = {"copy", "batch", "zc"};

/* What a spare peer is told when it is needed (supervise.c writes, soakpeer.c reads). */
struct soak_assign {
	uint32_t inst;
	uint32_t form;     /* enum soak_form */
	uint32_t point;    /* 0: none; else a named kill point + 1 (kill-point build) */
	uint32_t count;
	char kill_at[48];  /* SHMRING_KILL_AT value when point != 0 */
};

/* Instance states, in the record's state word. */
enum { ST_NONE = 0, ST_STARTED, ST_RUNNING, ST_EXITED };

/* Peer exit statuses other than 0. */
enum {
	PEER_EXIT_ERROR = 1,   /* a ring call failed unexpectedly */
	PEER_EXIT_USAGE = 2,   /* bad arguments, or attach / mapping failed */
	PEER_EXIT_DEADLINE = 3,/* the run's deadline passed: the supervisor is gone or stuck */
	PEER_EXIT_LOGFULL = 4, /* no chunk left in the delivery log */
};

struct soak_prod {
	_Alignas(64) _Atomic uint64_t done;   /* seqs below were pushed */
	_Atomic uint64_t hi;     /* seqs in [done, hi) are in flight */
	_Atomic uint64_t full;   /* pushes that found the ring full */
	_Atomic uint32_t state;
	_Atomic uint32_t retire; /* set by the supervisor: finish the push in hand, exit 0 */
	uint32_t form;
	int32_t pid;
	int32_t last_err;        /* the ring error that made it exit 1 */
	uint32_t pad[3];
};

struct soak_cons {
	_Alignas(64) _Atomic uint64_t delivered;  /* entries this instance wrote to the log */
	_Atomic uint64_t bad;        /* messages that failed the check (torn, garbage) */
	_Atomic uint64_t max_lat_ns; /* largest end-to-end latency seen */
	_Atomic uint64_t empty;      /* pops that found the ring empty */
	_Atomic uint32_t state;
	_Atomic uint32_t retire;
	uint32_t form;
	int32_t pid;
	int32_t last_err;
	uint32_t pad[17];
	_Atomic uint64_t lat[SOAK_LAT_BUCKETS]; /* bucket b: latency in [2^b, 2^(b+1)) ns */
};

struct soak_ctl {
	uint64_t magic;
	uint32_t msg_size;
	uint32_t nchunks;            /* chunks in the log */
	int64_t deadline_ns;         /* CLOCK_MONOTONIC: peers give up after this */
	uint32_t blocking;           /* the ring has SHMRING_F_BLOCKING */
	uint32_t pad0[8];
	_Atomic uint32_t stop;       /* producers: finish the push in hand and exit */
	_Atomic uint32_t drain;      /* consumers: pop to end of stream, then exit */
	uint32_t pad1[14];
	_Atomic uint64_t chunks_used;/* chunks handed out (may exceed nchunks: overflow) */
	uint64_t pad2[7];
	struct soak_prod prod[SOAK_MAX_INST];
	struct soak_cons cons[SOAK_MAX_INST];
	_Atomic uint32_t chunk_owner[]; /* nchunks entries: consumer instance + 1, 0 none */
};

/* Records are whole cache lines: peers running side by side never share one. */
_Static_assert(sizeof(struct soak_prod) == 64, "producer record is one line");
_Static_assert(sizeof(struct soak_cons) == 512, "consumer record is eight lines");
_Static_assert(offsetof(struct soak_ctl, prod) == 192, "control header is three lines");

static inline size_t soak_ctl_size(uint32_t nchunks)
{
	return sizeof(struct soak_ctl) + (size_t)nchunks * sizeof(uint32_t);
}

static inline int64_t soak_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline uint64_t soak_log_entry(uint32_t inst, uint64_t seq)
{
	return ((uint64_t)(inst + 1) << SOAK_SEQ_BITS) | (seq & SOAK_SEQ_MASK);
}

/*
 * Messages. Words: 0 = instance | checksum << 32, 1 = seq, 2 = send time
 * (CLOCK_MONOTONIC ns), 3.. = a pattern derived from (instance, seq, index).
 * The checksum covers every word with its own field zero, so a torn copy or a
 * copy mixed from two messages fails; the pattern is also compared exactly.
 */
static inline uint64_t soak_pattern(uint32_t inst, uint64_t seq, size_t i)
{
	uint64_t x = (seq + 1) * UINT64_C(0x9e3779b97f4a7c15) ^ ((uint64_t)inst << 43) ^ i;
	x ^= x >> 29;
	return x * UINT64_C(0xbf58476d1ce4e5b9);
}

static inline uint32_t soak_sum(const uint64_t *w, size_t nw)
{
	uint64_t h = UINT64_C(0x84222325cbf29ce4);
	for (size_t i = 0; i < nw; i++) {
		uint64_t v = i == 0 ? (w[0] & 0xffffffffu) : w[i];
		h = (h ^ v) * UINT64_C(0xff51afd7ed558ccd);
		h ^= h >> 32;
	}
	return (uint32_t)(h ^ (h >> 31));
}

/* Fill a message of size bytes (a multiple of 8, >= SOAK_MSG_MIN) at buf. */
static inline void soak_fill(void *buf, size_t size, uint32_t inst, uint64_t seq, int64_t sent_ns)
{
	uint64_t w[SOAK_MSG_MAX / 8];
	size_t nw = size / 8;
	w[0] = inst;
	w[1] = seq;
	w[2] = (uint64_t)sent_ns;
	for (size_t i = 3; i < nw; i++)
		w[i] = soak_pattern(inst, seq, i);
	w[0] |= (uint64_t)soak_sum(w, nw) << 32;
	memcpy(buf, w, size);
}

/* 1 if buf holds a whole message; its instance, seq and send time then. */
static inline int soak_check(const void *buf, size_t size, uint32_t *inst, uint64_t *seq,
			     int64_t *sent_ns)
{
	uint64_t w[SOAK_MSG_MAX / 8];
	size_t nw = size / 8;
	memcpy(w, buf, size);
	if ((uint32_t)(w[0] >> 32) != soak_sum(w, nw))
		return 0;
	uint32_t in = (uint32_t)w[0];
	for (size_t i = 3; i < nw; i++)
		if (w[i] != soak_pattern(in, w[1], i))
			return 0;
	*inst = in;
	*seq = w[1];
	*sent_ns = (int64_t)w[2];
	return 1;
}

#endif /* SOAK_H */
