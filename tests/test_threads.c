/*
 * test_threads.c - the same rings used by threads of one process, each
 * thread with its own handle (a handle is used by one thread at a time).
 * Built a second time with ThreadSanitizer in the suite: the ring code uses
 * no standalone fences, so TSan sees every synchronising edge it relies on.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "shmring.h"
#include "testutil.h"

#define MAX_THREADS 8
#define STOP_ID 0xffffffffu

struct shared {
	const char *name;
	uint64_t count;       /* per producer */
	int nprod;
	atomic_int failures;
	atomic_uint_fast64_t received;
	unsigned char *seen;  /* [nprod * count]: times each message was received */
};

struct worker {
	struct shared *s;
	uint32_t id;
};

static struct shmring *open_ring(const char *name)
{
	struct shmring *r = NULL;
	if (shmring_attach(name, NULL, 5000000000LL, &r) != 0)
		return NULL;
	return r;
}

/*
 * More threads than cores: never spin, yield the CPU on full or empty. Bounded
 * at 60 s per message (the watchdog catches a hang before).
 */
static int try_or_yield(struct shmring *r, unsigned char *msg, bool push)
{
	time_t end = time(NULL) + 60;
	for (unsigned i = 0;; i++) {
		int rc = push ? shmring_try_push(r, msg) : shmring_try_pop(r, msg);
		if (rc != -EAGAIN)
			return rc;
		sched_yield();
		if (i % 1024 == 1023 && time(NULL) > end)
			return -ETIMEDOUT;
	}
}

static void *producer(void *arg)
{
	struct worker *w = arg;
	struct shmring *r = open_ring(w->s->name);
	if (!r) {
		atomic_fetch_add(&w->s->failures, 1);
		return NULL;
	}
	unsigned char msg[64];
	for (uint64_t seq = 0; seq < w->s->count; seq++) {
		msg_fill(msg, sizeof(msg), w->id, seq);
		if (try_or_yield(r, msg, true) != 0) {
			atomic_fetch_add(&w->s->failures, 1);
			break;
		}
	}
	shmring_close(r);
	return NULL;
}

static void *consumer(void *arg)
{
	struct worker *w = arg;
	struct shmring *r = open_ring(w->s->name);
	if (!r) {
		atomic_fetch_add(&w->s->failures, 1);
		return NULL;
	}
	int64_t last[MAX_THREADS];
	for (int i = 0; i < MAX_THREADS; i++)
		last[i] = -1;
	unsigned char msg[64];
	for (;;) {
		if (try_or_yield(r, msg, false) != 0) {
			atomic_fetch_add(&w->s->failures, 1);
			break;
		}
		uint32_t p = 0;
		uint64_t seq = 0;
		if (!msg_check(msg, sizeof(msg), &p, &seq)) {
			atomic_fetch_add(&w->s->failures, 1);
			continue;
		}
		if (p == STOP_ID)
			break;
		if (p >= (uint32_t)w->s->nprod || seq >= w->s->count || (int64_t)seq <= last[p]) {
			atomic_fetch_add(&w->s->failures, 1);
			continue;
		}
		last[p] = (int64_t)seq;
		w->s->seen[p * w->s->count + seq]++; /* each message goes to one consumer only */
		atomic_fetch_add(&w->s->received, 1);
	}
	shmring_close(r);
	return NULL;
}

static void run(enum shmring_kind kind, int nprod, int ncons, uint64_t count)
{
	struct shared s = {.name = test_name(), .count = count, .nprod = nprod};
	s.seen = calloc((size_t)nprod * count, 1);
	assert_non_null(s.seen);
	struct shmring_config cfg = {.kind = kind, .msg_size = 64, .capacity = 64};
	struct shmring *r = NULL;
	assert_int_equal(shmring_create(s.name, &cfg, &r), 0);
	pthread_t tp[MAX_THREADS], tc[MAX_THREADS];
	struct worker wp[MAX_THREADS], wc[MAX_THREADS];
	for (int i = 0; i < ncons; i++) {
		wc[i] = (struct worker){.s = &s, .id = (uint32_t)i};
		assert_int_equal(pthread_create(&tc[i], NULL, consumer, &wc[i]), 0);
	}
	for (int i = 0; i < nprod; i++) {
		wp[i] = (struct worker){.s = &s, .id = (uint32_t)i};
		assert_int_equal(pthread_create(&tp[i], NULL, producer, &wp[i]), 0);
	}
	for (int i = 0; i < nprod; i++)
		pthread_join(tp[i], NULL);
	/* One stop message per consumer, after every real message. SPSC: the
	 * producers are done, so this handle may take the producer role. */
	unsigned char stop[64];
	msg_fill(stop, sizeof(stop), STOP_ID, 0);
	for (int i = 0; i < ncons; i++)
		assert_int_equal(shmring_push_wait(r, stop, 60000000000LL), 0);
	for (int i = 0; i < ncons; i++)
		pthread_join(tc[i], NULL);
	assert_int_equal(atomic_load(&s.failures), 0);
	assert_int_equal(atomic_load(&s.received), (uint64_t)nprod * count);
	for (uint64_t i = 0; i < (uint64_t)nprod * count; i++)
		if (s.seen[i] != 1) {
			print_error("message %llu seen %u times\n", (unsigned long long)i, s.seen[i]);
			fail();
		}
	free(s.seen);
	assert_int_equal(shmring_close(r), 0);
}

static void test_spsc_threads_deliver_in_order(void **state)
{
	(void)state;
	run(SHMRING_SPSC, 1, 1, 200000);
}

static void test_mpsc_threads_deliver_in_order(void **state)
{
	(void)state;
	run(SHMRING_MPSC, 3, 1, 100000);
}

static void test_mpmc_threads_deliver_each_message_once(void **state)
{
	(void)state;
	run(SHMRING_MPMC, 3, 3, 100000);
}

int main(void)
{
	watchdog_start(TEST_WATCHDOG_S);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spsc_threads_deliver_in_order),
		cmocka_unit_test(test_mpsc_threads_deliver_in_order),
		cmocka_unit_test(test_mpmc_threads_deliver_each_message_once),
	};
	return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
