/*
 * soakpeer.c - one producer or consumer process of a soak run. The
 * supervisor (supervise.c) starts it, kills it, and starts it again as a new
 * instance; everything the checker needs to know about what it did is in the
 * run's shared control region and delivery log (soak.h), written as it goes,
 * so that it survives SIGKILL at any instruction.
 *
 *   soakpeer produce BASE RING INSTANCE FORM
 *   soakpeer consume BASE RING INSTANCE FORM
 *   soakpeer produce|consume BASE RING spare -
 *
 * BASE names the run's shm objects (BASE-ctl, BASE-log); RING is the ring's
 * name; INSTANCE this process's instance id (its record in the control
 * region, and the producer id inside its messages); FORM the API form of its
 * data operations: copy (try_push / try_pop), batch (try_push_n / try_pop_n,
 * 1..16 messages a call) or zc (reserve/commit, peek/release).
 *
 * Producer: pushes seq 0, 1, 2, ... with the send time in each message; when
 * the ring is full it yields the CPU (spin rings: the VM has two cores) or
 * waits in push_wait for at most WAIT_NS (blocking rings). It stops when the
 * run's stop word or its own retire word is set, and exits 0 after a close.
 * Consumer: pops, checks every message (checksum and pattern), logs (instance,
 * seq) right after the pop returns and tracks the end-to-end latency. When
 * the drain word is set it asks for end of stream and pops with pop_wait until
 * -EPIPE: the ring is empty and no producer lives.
 *
 * A spare is a standby the supervisor starts ahead of need, so that a death is
 * followed by a replacement at once rather than after a fork and exec: it
 * maps the run's objects and attaches to the ring (taking a participant
 * entry, no role), then waits on fd 3 for its assignment (struct
 * soak_assign: instance id, form, and for the kill-point build the
 * SHMRING_KILL_AT value, which it puts in its environment before its first
 * push or pop) and runs as that instance; end of file on fd 3 means "not
 * needed": it closes and exits 0.
 *
 * Every wait is bounded (WAIT_NS), and every loop gives up at the run's
 * deadline (exit 3). The environment variable SOAK_SPIN_NS sets the spin time
 * of blocking waits (default 5000 ns: on two cores a long spin only delays the
 * process that would fill or empty the ring).
 *
 * Built twice: against the normal library and (soakpeer-kp) against the
 * kill-point build, where SHMRING_KILL_AT="point:N" makes the library SIGKILL
 * this process at the N-th pass through a named point.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmring.h"
#include "soak.h"

#define WAIT_NS INT64_C(20000000)   /* one bounded push_wait / pop_wait */
#define ATTACH_NS INT64_C(10000000000)
#define DEADLINE_EVERY 1023u       /* loop turns between deadline checks */

static struct soak_ctl *ctl;
static _Atomic uint64_t *logv;
static uint64_t log_entries;
static const char *me = "soakpeer";

static void die(int status, const char *what, int rc)
{
	fprintf(stderr, "%s: %s: %s (%s)\n", me, what, shmring_strerror(rc), shmring_last_error());
	exit(status);
}

static void *map_shm(const char *name, size_t *len)
{
	int fd = shm_open(name, O_RDWR, 0);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "%s: cannot open %s: %s\n", me, name, strerror(errno));
		exit(PEER_EXIT_USAGE);
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		fprintf(stderr, "%s: cannot map %s: %s\n", me, name, strerror(errno));
		exit(PEER_EXIT_USAGE);
	}
	*len = (size_t)st.st_size;
	return p;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void past_deadline(void)
{
	if (soak_now_ns() > ctl->deadline_ns) {
		fprintf(stderr, "%s: the run's deadline passed; giving up\n", me);
		exit(PEER_EXIT_DEADLINE);
	}
}

/* Single-writer counters in shared memory: a load and a store, no locked RMW. */
static inline void bump(_Atomic uint64_t *c, uint64_t by)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
			      memory_order_relaxed);
}


static int produce(struct shmring *r, uint32_t inst, enum soak_form form)
{
	struct soak_prod *rec = &ctl->prod[inst];
	size_t msz = ctl->msg_size;
	bool blocking = ctl->blocking;
	static unsigned char buf[SOAK_BATCH * SOAK_MSG_MAX];
	uint64_t seq = 0, rnd = ((uint64_t)inst << 32) ^ (uint64_t)getpid() ^ 0x5bd1e995u;
	unsigned turn = 0;

	atomic_store_explicit(&rec->state, ST_RUNNING, memory_order_relaxed);
	while (!atomic_load_explicit(&ctl->stop, memory_order_relaxed) &&
	       !atomic_load_explicit(&rec->retire, memory_order_relaxed)) {
		if ((++turn & DEADLINE_EVERY) == 0)
			past_deadline();
		int64_t now = soak_now_ns();
		int rc;
		if (form == FORM_BATCH) {
			unsigned n = 1 + (unsigned)(xorshift(&rnd) % SOAK_BATCH);
			for (unsigned i = 0; i < n; i++)
				soak_fill(buf + i * msz, msz, inst, seq + i, now);
			atomic_store_explicit(&rec->hi, seq + n, memory_order_release);
			rc = shmring_try_push_n(r, buf, n);
		} else if (form == FORM_ZC) {
			void *slot;
			atomic_store_explicit(&rec->hi, seq + 1, memory_order_release);
			rc = shmring_reserve(r, &slot);
			if (rc == 0) {
				soak_fill(slot, msz, inst, seq, now); /* written in place */
				rc = shmring_commit(r);
				rc = rc == 0 ? 1 : rc;
			}
		} else {
			soak_fill(buf, msz, inst, seq, now);
			atomic_store_explicit(&rec->hi, seq + 1, memory_order_release);
			rc = shmring_try_push(r, buf);
			rc = rc == 0 ? 1 : rc;
		}
		if (rc == -EAGAIN) {
			bump(&rec->full, 1);
			if (!blocking) {
				sched_yield();
				continue;
			}
			/* Wait for room with the message at seq (its in-flight mark stands). */
			soak_fill(buf, msz, inst, seq, soak_now_ns());
			rc = shmring_push_wait(r, buf, WAIT_NS);
			if (rc == -ETIMEDOUT || rc == -EINTR)
				continue;
			rc = rc == 0 ? 1 : rc;
		}
		if (rc < 0) {
			rec->last_err = rc;
			die(PEER_EXIT_ERROR, "push", rc);
		}
		seq += (uint64_t)rc;
		atomic_store_explicit(&rec->done, seq, memory_order_release);
	}
	atomic_store_explicit(&rec->hi, seq, memory_order_release); /* nothing in flight */
	int rc = shmring_close(r);
	if (rc)
		die(PEER_EXIT_ERROR, "close", rc);
	atomic_store_explicit(&rec->state, ST_EXITED, memory_order_release);
	return 0;
}

/* The consumer's place in the delivery log: its current chunk. */
static uint64_t log_pos, log_end;

static void log_append(uint32_t cinst, uint32_t pinst, uint64_t seq)
{
	if (log_pos == log_end) {
		uint64_t c = atomic_fetch_add_explicit(&ctl->chunks_used, 1, memory_order_relaxed);
		if (c >= ctl->nchunks || (c + 1) * SOAK_CHUNK > log_entries) {
			fprintf(stderr, "%s: the delivery log is full (%u chunks)\n", me, ctl->nchunks);
			exit(PEER_EXIT_LOGFULL);
		}
		atomic_store_explicit(&ctl->chunk_owner[c], cinst + 1, memory_order_relaxed);
		log_pos = c * SOAK_CHUNK;
		log_end = log_pos + SOAK_CHUNK;
	}
	atomic_store_explicit(&logv[log_pos++], soak_log_entry(pinst, seq), memory_order_relaxed);
}

/* A received message, examined where it lies (a copy, or the slot itself). */
struct got {
	bool ok;
	uint32_t pinst;
	uint64_t seq;
	int64_t lat_ns;
	uint64_t head[4]; /* its first words, to show a bad one */
};

static void examine(const void *msg, size_t msz, struct got *g)
{
	int64_t sent = 0;
	g->ok = soak_check(msg, msz, &g->pinst, &g->seq, &sent) && g->pinst < SOAK_MAX_INST &&
		g->seq <= SOAK_SEQ_MASK;
	g->lat_ns = soak_now_ns() - sent;
	if (!g->ok)
		memcpy(g->head, msg, sizeof(g->head));
}

/* Log it (right after the pop returned) and account its latency. */
static void record(struct soak_cons *rec, uint32_t cinst, const struct got *g)
{
	if (!g->ok) {
		if (atomic_load_explicit(&rec->bad, memory_order_relaxed) < 5)
			fprintf(stderr, "%s: BAD MESSAGE: words %016llx %016llx %016llx %016llx\n",
				me, (unsigned long long)g->head[0], (unsigned long long)g->head[1],
				(unsigned long long)g->head[2], (unsigned long long)g->head[3]);
		bump(&rec->bad, 1);
		return;
	}
	log_append(cinst, g->pinst, g->seq);
	bump(&rec->delivered, 1);
	uint64_t l = g->lat_ns > 0 ? (uint64_t)g->lat_ns : 1;
	unsigned b = 63u - (unsigned)__builtin_clzll(l);
	bump(&rec->lat[b < SOAK_LAT_BUCKETS ? b : SOAK_LAT_BUCKETS - 1], 1);
	if (l > atomic_load_explicit(&rec->max_lat_ns, memory_order_relaxed))
		atomic_store_explicit(&rec->max_lat_ns, l, memory_order_relaxed);
}

static void take(struct soak_cons *rec, uint32_t cinst, const void *msg, size_t msz)
{
	struct got g;
	examine(msg, msz, &g);
	record(rec, cinst, &g);
}

static int consume(struct shmring *r, uint32_t inst, enum soak_form form)
{
	struct soak_cons *rec = &ctl->cons[inst];
	size_t msz = ctl->msg_size;
	bool blocking = ctl->blocking, eos = false;
	static unsigned char buf[SOAK_BATCH * SOAK_MSG_MAX];
	unsigned turn = 0;
	int rc;

	atomic_store_explicit(&rec->state, ST_RUNNING, memory_order_relaxed);
	while (!atomic_load_explicit(&rec->retire, memory_order_relaxed)) {
		if ((++turn & DEADLINE_EVERY) == 0)
			past_deadline();
		if (!eos && atomic_load_explicit(&ctl->drain, memory_order_acquire)) {
			shmring_set_end_of_stream(r, true);
			eos = true;
		}
		if (eos) {
			/* Draining: pop_wait returns -EPIPE once empty with no live producer. */
			rc = shmring_pop_wait(r, buf, WAIT_NS);
			if (rc == -EPIPE)
				break;
			if (rc == 0)
				take(rec, inst, buf, msz);
			else if (rc != -ETIMEDOUT && rc != -EINTR)
				goto fail;
			continue;
		}
		if (form == FORM_BATCH) {
			rc = shmring_try_pop_n(r, buf, SOAK_BATCH);
			for (int i = 0; i < rc; i++)
				take(rec, inst, buf + (size_t)i * msz, msz);
			rc = rc > 0 ? 0 : rc;
		} else if (form == FORM_ZC) {
			const void *slot;
			rc = shmring_peek(r, &slot);
			if (rc == 0) {
				/* Checked in place, released, then logged. */
				struct got g;
				examine(slot, msz, &g);
				rc = shmring_release(r);
				if (rc)
					goto fail;
				record(rec, inst, &g);
			}
		} else {
			rc = shmring_try_pop(r, buf);
			if (rc == 0)
				take(rec, inst, buf, msz);
		}
		if (rc == 0)
			continue;
		if (rc != -EAGAIN)
			goto fail;
		bump(&rec->empty, 1);
		if (!blocking) {
			sched_yield();
			continue;
		}
		rc = shmring_pop_wait(r, buf, WAIT_NS);
		if (rc == 0)
			take(rec, inst, buf, msz);
		else if (rc != -ETIMEDOUT && rc != -EINTR)
			goto fail;
	}
	rc = shmring_close(r);
	if (rc)
		die(PEER_EXIT_ERROR, "close", rc);
	atomic_store_explicit(&rec->state, ST_EXITED, memory_order_release);
	return 0;
fail:
	rec->last_err = rc;
	die(PEER_EXIT_ERROR, "pop", rc);
	return PEER_EXIT_ERROR;
}

static void mark_started(bool producer, uint32_t inst, enum soak_form form)
{
	if (producer) {
		ctl->prod[inst].pid = (int32_t)getpid();
		ctl->prod[inst].form = (uint32_t)form;
		atomic_store_explicit(&ctl->prod[inst].state, ST_STARTED, memory_order_release);
	} else {
		ctl->cons[inst].pid = (int32_t)getpid();
		ctl->cons[inst].form = (uint32_t)form;
		atomic_store_explicit(&ctl->cons[inst].state, ST_STARTED, memory_order_release);
	}
}

/* A spare's assignment: block on fd 3 (bounded by the run's deadline). */
static bool await_assignment(uint32_t *inst, enum soak_form *form)
{
	struct soak_assign msg = {0};
	size_t got = 0;
	while (got < sizeof(msg)) {
		struct pollfd pfd = {.fd = 3, .events = POLLIN};
		if (poll(&pfd, 1, 100) == 0) {
			past_deadline();
			continue;
		}
		ssize_t n = read(3, (char *)&msg + got, sizeof(msg) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false; /* not needed */
		got += (size_t)n;
	}
	*inst = msg.inst;
	*form = msg.form < FORM_N ? (enum soak_form)msg.form : FORM_N;
	/* Read by the kill-point library at its first pass through a point: after this. */
	msg.kill_at[sizeof(msg.kill_at) - 1] = 0;
	if (msg.point)
		setenv("SHMRING_KILL_AT", msg.kill_at, 1);
	return true;
}

int main(int argc, char **argv)
{
	if (argc != 6 || (strcmp(argv[1], "produce") != 0 && strcmp(argv[1], "consume") != 0)) {
		fprintf(stderr, "usage: soakpeer produce|consume BASE RING INSTANCE|spare copy|batch|zc|-\n");
		return PEER_EXIT_USAGE;
	}
	bool producer = argv[1][0] == 'p';
	bool spare = strcmp(argv[4], "spare") == 0;
	uint32_t inst = spare ? 0 : (uint32_t)strtoul(argv[4], NULL, 10);
	enum soak_form form = spare ? FORM_COPY : FORM_N;
	for (int f = 0; f < FORM_N; f++)
		if (strcmp(argv[5], soak_form_name[f]) == 0)
			form = (enum soak_form)f;
	if (inst >= SOAK_MAX_INST || form == FORM_N) {
		fprintf(stderr, "soakpeer: bad instance or form\n");
		return PEER_EXIT_USAGE;
	}
	static char who[80];
	snprintf(who, sizeof(who), "soakpeer %s %s (pid %d)", producer ? "producer" : "consumer",
		 spare ? "spare" : argv[4], (int)getpid());
	me = who;
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* also set by the supervisor before exec */

	char name[256];
	size_t len;
	snprintf(name, sizeof(name), "%s-ctl", argv[2]);
	ctl = map_shm(name, &len);
	if (len < sizeof(*ctl) || ctl->magic != SOAK_MAGIC || len < soak_ctl_size(ctl->nchunks) ||
	    ctl->msg_size < SOAK_MSG_MIN || ctl->msg_size > SOAK_MSG_MAX || ctl->msg_size % 8) {
		fprintf(stderr, "%s: %s is not a soak control region\n", me, name);
		return PEER_EXIT_USAGE;
	}
	if (!producer) {
		snprintf(name, sizeof(name), "%s-log", argv[2]);
		logv = map_shm(name, &len);
		log_entries = len / sizeof(uint64_t);
	}

	if (!spare)
		mark_started(producer, inst, form);
	struct shmring *r = NULL;
	int rc = shmring_attach(argv[3], NULL, ATTACH_NS, &r);
	if (rc)
		die(PEER_EXIT_USAGE, "attach", rc);
	struct shmring_info info;
	if (shmring_info(r, &info) != 0 || info.msg_size != ctl->msg_size) {
		fprintf(stderr, "%s: ring %s has msg_size %u, the run %u\n", me, argv[3],
			info.msg_size, ctl->msg_size);
		return PEER_EXIT_USAGE;
	}
	if (spare) {
		if (!await_assignment(&inst, &form)) {
			rc = shmring_close(r);
			return rc ? PEER_EXIT_ERROR : 0;
		}
		if (inst >= SOAK_MAX_INST || form == FORM_N) {
			fprintf(stderr, "%s: bad assignment\n", me);
			return PEER_EXIT_USAGE;
		}
		snprintf(who, sizeof(who), "soakpeer %s #%u (pid %d, was a spare)",
			 producer ? "producer" : "consumer", inst, (int)getpid());
		mark_started(producer, inst, form);
	}
	const char *spin = getenv("SOAK_SPIN_NS");
	if (ctl->blocking)
		shmring_set_spin_ns(r, spin ? strtoll(spin, NULL, 10) : 5000);
	return producer ? produce(r, inst, form) : consume(r, inst, form);
}
