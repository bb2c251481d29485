/*
 * ringpeer.c - a producer or consumer process for the multi-process tests
 * (test_mp.c forks and execs it, so each side is a real separate process).
 *
 *   ringpeer produce NAME ID COUNT
 *       attach, push COUNT messages {ID, seq 0..COUNT-1, checksum}
 *   ringpeer consume NAME NPRODUCERS COUNT MODE [OUTFILE]
 *       attach, pop and check every message's checksum and per-producer order;
 *       MODE "exact": stop after NPRODUCERS*COUNT messages, each producer's
 *       sequence must be exactly 0,1,2,... (SPSC, MPSC: nothing lost,
 *       duplicated or reordered). MODE "stop": stop at the first stop message
 *       (producer id STOP_ID); sequences must increase per producer, and every
 *       (producer, seq) received is written to OUTFILE for the parent to check
 *       exactly-once across consumers (MPMC).
 *
 * SHMRING_PEER_MODE: "copy" (default: try_push/try_pop), "batch"
 * (try_push_n/try_pop_n, 16 at a time) or "zerocopy" (reserve/commit,
 * peek/release).
 *
 * On a full or empty ring both sides call sched_yield(): the test machine has
 * two cores and more processes than that may spin. Every loop is bounded by
 * PEER_DEADLINE_S; exit status 0 = all checks held, 1 = a check failed,
 * 2 = usage or attach error, 3 = deadline passed.
 */
#include <errno.h>
#include <stdbool.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include "shmring.h"
#include "testutil.h"

#define PEER_DEADLINE_S 240
#define STOP_ID 0xffffffffu
#define MAX_PRODUCERS 64

static time_t deadline;

/*
 * SHMRING_PEER_FAULTS=1: count this process's page faults over its message
 * loop (after attach, buffers touched) and fail if there were any.
 */
static struct rusage ru0;

static void faults_begin(void)
{
	const char *env = getenv("SHMRING_PEER_FAULTS");
	if (env && strcmp(env, "1") == 0) {
		/*
		 * The ring's pages were made resident by attach; this process's own
		 * code, stack and libc pages are faulted in lazily on first use, as
		 * in any program. Lock them now (what a latency-sensitive process
		 * does) and touch the clock's vDSO page, so that a fault counted
		 * below can only come from the ring.
		 */
		if (mlockall(MCL_CURRENT) != 0)
			perror("ringpeer: mlockall");
		(void)time(NULL);
		sched_yield();
	}
	getrusage(RUSAGE_SELF, &ru0);
}

static int faults_end(const char *who)
{
	struct rusage ru1;
	getrusage(RUSAGE_SELF, &ru1);
	const char *env = getenv("SHMRING_PEER_FAULTS");
	if (!env || strcmp(env, "1") != 0)
		return 0;
	long minor = ru1.ru_minflt - ru0.ru_minflt, major = ru1.ru_majflt - ru0.ru_majflt;
	printf("%s: page faults in the message loop: minor %ld, major %ld\n", who, minor, major);
#ifdef __SANITIZE_ADDRESS__
	/* ASan makes mlockall a no-op and faults in its own shadow pages: counted, not judged. */
	printf("%s: AddressSanitizer build: faults not judged (the normal build judges them)\n", who);
	return 0;
#else
	return minor || major;
#endif
}

/* NAME is a ring name, or "fd:N" for an unnamed ring's fd inherited across exec. */
static int attach(const char *name, struct shmring **r)
{
	int rc = strncmp(name, "fd:", 3) == 0
			 ? shmring_attach_fd(atoi(name + 3), NULL, r)
			 : shmring_attach(name, NULL, 10LL * 1000000000, r);
	if (rc) {
		fprintf(stderr, "ringpeer: attach %s: %s (%s)\n", name, shmring_strerror(rc),
			shmring_last_error());
		exit(2);
	}
	return 0;
}

enum mode { MODE_COPY, MODE_BATCH, MODE_ZEROCOPY };
#define BATCH 16
static enum mode peer_mode;
static unsigned char batch[BATCH * 8192];
static unsigned batch_have, batch_next;

/* One message into msg, by the API form SHMRING_PEER_MODE names. */
static int get_one(struct shmring *r, unsigned char *msg, size_t size)
{
	if (peer_mode == MODE_BATCH) {
		if (batch_next == batch_have) {
			int rc = shmring_try_pop_n(r, batch, BATCH);
			if (rc < 0)
				return rc;
			batch_have = (unsigned)rc;
			batch_next = 0;
		}
		memcpy(msg, batch + (size_t)batch_next++ * size, size);
		return 0;
	}
	if (peer_mode == MODE_ZEROCOPY) {
		const void *slot;
		int rc = shmring_peek(r, &slot);
		if (rc)
			return rc;
		memcpy(msg, slot, size); /* read in place, kept for the checks below */
		return shmring_release(r);
	}
	return shmring_try_pop(r, msg);
}

static int produce(const char *name, uint32_t id, uint64_t count)
{
	struct shmring *r;
	attach(name, &r);
	struct shmring_info info;
	shmring_info(r, &info);
	size_t size = info.msg_size;
	unsigned char msg[8192];
	memset(msg, 0, sizeof(msg));
	faults_begin();
	for (uint64_t seq = 0; seq < count;) {
		int rc;
		unsigned n = 1;
		void *slot = NULL;
		if (peer_mode == MODE_BATCH) {
			n = count - seq < BATCH ? (unsigned)(count - seq) : BATCH;
			for (unsigned i = 0; i < n; i++)
				msg_fill(batch + (size_t)i * size, size, id, seq + i);
		} else if (peer_mode == MODE_COPY) {
			msg_fill(msg, size, id, seq);
		}
		for (unsigned done = 0; done < n;) {
			if (peer_mode == MODE_BATCH)
				rc = shmring_try_push_n(r, batch + (size_t)done * size, n - done);
			else if (peer_mode == MODE_ZEROCOPY)
				rc = shmring_reserve(r, &slot);
			else
				rc = shmring_try_push(r, msg);
			if (rc == -EAGAIN) {
				sched_yield();
				if (time(NULL) > deadline) {
					fprintf(stderr, "ringpeer: producer %u: deadline at seq %llu\n", id,
						(unsigned long long)seq);
					return 3;
				}
				continue;
			}
			if (rc < 0) {
				fprintf(stderr, "ringpeer: push: %s (%s)\n", shmring_strerror(rc),
					shmring_last_error());
				return 1;
			}
			if (peer_mode == MODE_ZEROCOPY) {
				msg_fill(slot, size, id, seq); /* written in place */
				if (shmring_commit(r) != 0)
					return 1;
			}
			done += peer_mode == MODE_BATCH ? (unsigned)rc : 1;
		}
		seq += n;
	}
	if (faults_end("producer"))
		return 1;
	shmring_close(r);
	return 0;
}

static int consume(const char *name, uint32_t nprod, uint64_t count, const char *mode,
		   const char *outfile)
{
	struct shmring *r;
	attach(name, &r);
	struct shmring_info info;
	shmring_info(r, &info);
	size_t size = info.msg_size;
	bool exact = strcmp(mode, "exact") == 0;
	FILE *out = NULL;
	if (!exact) {
		out = fopen(outfile, "wb");
		if (!out) {
			perror("ringpeer: outfile");
			return 2;
		}
	}
	uint64_t next[MAX_PRODUCERS] = {0}, errors = 0, received = 0;
	int64_t last[MAX_PRODUCERS];
	for (int i = 0; i < MAX_PRODUCERS; i++)
		last[i] = -1;
	unsigned char msg[8192];
	memset(msg, 0, sizeof(msg));
	uint64_t spins = 0;
	faults_begin();
	for (;;) {
		if (exact && received == (uint64_t)nprod * count)
			break;
		int rc = get_one(r, msg, size);
		if (rc == -EAGAIN) {
			sched_yield();
			if ((++spins & 1023) == 0 && time(NULL) > deadline) {
				fprintf(stderr, "ringpeer: consumer: deadline after %llu messages\n",
					(unsigned long long)received);
				return 3;
			}
			continue;
		}
		if (rc) {
			fprintf(stderr, "ringpeer: pop: %s (%s)\n", shmring_strerror(rc),
				shmring_last_error());
			return 1;
		}
		uint32_t p = 0;
		uint64_t seq = 0;
		if (!msg_check(msg, size, &p, &seq)) {
			if (errors++ < 5)
				fprintf(stderr, "ringpeer: checksum error after %llu messages\n",
					(unsigned long long)received);
			continue;
		}
		if (p == STOP_ID) {
			/*
			 * One stop per consumer: stops are the last messages, so any
			 * left in a popped batch belong to other consumers. Hand them
			 * back (MPMC consumers may push).
			 */
			while (peer_mode == MODE_BATCH && batch_next < batch_have)
				if (shmring_push_wait(r, batch + (size_t)batch_next++ * size,
						      10LL * 1000000000) != 0)
					errors++;
			break;
		}
		if (p >= nprod) {
			if (errors++ < 5)
				fprintf(stderr, "ringpeer: unknown producer %u\n", p);
			continue;
		}
		received++;
		if (exact) {
			if (seq != next[p] && errors++ < 5)
				fprintf(stderr, "ringpeer: producer %u: got seq %llu, expected %llu\n", p,
					(unsigned long long)seq, (unsigned long long)next[p]);
			next[p] = seq + 1;
		} else {
			if ((int64_t)seq <= last[p] && errors++ < 5)
				fprintf(stderr, "ringpeer: producer %u: seq %llu after %lld\n", p,
					(unsigned long long)seq, (long long)last[p]);
			last[p] = (int64_t)seq;
			uint64_t rec[2] = {p, seq};
			fwrite(rec, sizeof(rec), 1, out);
		}
	}
	if (faults_end("consumer"))
		errors++;
	if (exact)
		for (uint32_t p = 0; p < nprod; p++)
			if (next[p] != count && errors++ < 5)
				fprintf(stderr, "ringpeer: producer %u: last seq %llu of %llu\n", p,
					(unsigned long long)next[p], (unsigned long long)count);
	if (out)
		fclose(out);
	printf("consumer: received %llu, errors %llu\n", (unsigned long long)received,
	       (unsigned long long)errors);
	shmring_close(r);
	return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
	deadline = time(NULL) + PEER_DEADLINE_S;
	const char *m = getenv("SHMRING_PEER_MODE");
	peer_mode = !m ? MODE_COPY : strcmp(m, "batch") == 0 ? MODE_BATCH
			      : strcmp(m, "zerocopy") == 0 ? MODE_ZEROCOPY : MODE_COPY;
	if (argc >= 5 && strcmp(argv[1], "produce") == 0)
		return produce(argv[2], (uint32_t)strtoul(argv[3], NULL, 0),
			       strtoull(argv[4], NULL, 0));
	if (argc >= 6 && strcmp(argv[1], "consume") == 0)
		return consume(argv[2], (uint32_t)strtoul(argv[3], NULL, 0),
			       strtoull(argv[4], NULL, 0), argv[5], argc > 6 ? argv[6] : "");
	fprintf(stderr, "usage: ringpeer produce NAME ID COUNT | consume NAME NPROD COUNT MODE [OUT]\n");
	return 2;
}
