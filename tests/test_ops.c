/*
 * test_ops.c - every data operation of every ring kind in one process: FIFO
 * order, full and empty edges, sizes and capacities, slot alignment, indices
 * across wrap-around, waits with timeouts, queries and argument errors.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "internal.h"
#include "shmring.h"
#include "testutil.h"

static const enum shmring_kind kinds[] = {SHMRING_SPSC, SHMRING_MPSC, SHMRING_MPMC};
static const uint32_t sizes[] = {1, 8, 64, 200, 4096};
static const uint32_t caps[] = {2, 4};

static struct shmring *make(const char *name, enum shmring_kind kind, uint32_t msg_size,
			    uint32_t cap, uint32_t flags)
{
	struct shmring_config cfg = {.kind = kind, .msg_size = msg_size, .capacity = cap,
				     .flags = flags};
	struct shmring *r = NULL;
	int rc = shmring_create(name, &cfg, &r);
	if (rc)
		print_error("create %s: %s (%s)\n", name, shmring_strerror(rc), shmring_last_error());
	assert_int_equal(rc, 0);
	assert_non_null(r);
	return r;
}

/* Fill to capacity, see -EAGAIN, drain in order, see -EAGAIN: for one ring. */
static void fill_and_drain(struct shmring *r, uint32_t msg_size, uint32_t cap, uint64_t seq0)
{
	unsigned char in[4096 + 64], out[4096 + 64], want[4096 + 64];
	for (uint32_t i = 0; i < cap; i++) {
		msg_fill(in, msg_size, 1, seq0 + i);
		assert_int_equal(shmring_try_push(r, in), 0);
		assert_int_equal(shmring_size(r), i + 1);
	}
	msg_fill(in, msg_size, 1, 999999);
	assert_int_equal(shmring_try_push(r, in), -EAGAIN);
	assert_int_equal(shmring_size(r), cap);
	assert_false(shmring_empty(r));
	for (uint32_t i = 0; i < cap; i++) {
		memset(out, 0xee, sizeof(out));
		assert_int_equal(shmring_try_pop(r, out), 0);
		msg_fill(want, msg_size, 1, seq0 + i);
		assert_memory_equal(out, want, msg_size);
		assert_int_equal(out[msg_size], 0xee); /* nothing past msg_size written */
	}
	assert_int_equal(shmring_try_pop(r, out), -EAGAIN);
	assert_int_equal(shmring_size(r), 0);
	assert_true(shmring_empty(r));
}

static void test_every_kind_size_and_capacity_fills_and_drains_in_order(void **state)
{
	(void)state;
	for (size_t k = 0; k < 3; k++)
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
			for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
				const char *name = test_name();
				struct shmring *r = make(name, kinds[k], sizes[s], caps[c], 0);
				assert_int_equal(shmring_capacity(r), caps[c]);
				/* Three rounds: the second and third reuse every slot. */
				for (uint64_t round = 0; round < 3; round++)
					fill_and_drain(r, sizes[s], caps[c], round * 100);
				assert_int_equal(shmring_close(r), 0);
				assert_false(shm_exists(name));
			}
}

static void test_interleaved_push_pop_runs_many_laps(void **state)
{
	(void)state;
	for (size_t k = 0; k < 3; k++) {
		struct shmring *r = make(test_name(), kinds[k], 64, 8, 0);
		unsigned char in[64], out[64], want[64];
		uint64_t pushed = 0, popped = 0;
		for (int i = 0; i < 20000; i++) {
			/* Push up to 3, pop up to 2: the ring oscillates and wraps. */
			for (int j = 0; j < 3; j++) {
				msg_fill(in, 64, 2, pushed);
				int rc = shmring_try_push(r, in);
				if (rc == -EAGAIN)
					break;
				assert_int_equal(rc, 0);
				pushed++;
			}
			for (int j = 0; j < 2 + (i % 2); j++) {
				int rc = shmring_try_pop(r, out);
				if (rc == -EAGAIN)
					break;
				assert_int_equal(rc, 0);
				msg_fill(want, 64, 2, popped);
				assert_memory_equal(out, want, 64);
				popped++;
			}
			assert_int_equal(shmring_size(r), pushed - popped);
		}
		assert_true(popped > 20000);
		assert_int_equal(shmring_close(r), 0);
	}
}

static void test_capacity_below_two_or_not_power_of_two_is_einval(void **state)
{
	(void)state;
	const uint32_t bad[] = {0, 1, 3, 6, 1000};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 8, .capacity = bad[i]};
		struct shmring *r = NULL;
		assert_int_equal(shmring_create(test_name(), &cfg, &r), -EINVAL);
		assert_null(r);
	}
	struct shmring_config zero = {.kind = SHMRING_MPMC, .msg_size = 0, .capacity = 4};
	struct shmring *r = NULL;
	assert_int_equal(shmring_create(test_name(), &zero, &r), -EINVAL);
}

/* Messages start 16-aligned, 64-aligned when msg_size is a multiple of 64. */
static void test_slots_are_aligned_as_promised(void **state)
{
	(void)state;
	const uint32_t msz[] = {1, 8, 24, 64, 100, 128, 200, 4096};
	for (size_t k = 0; k < 3; k++)
		for (size_t s = 0; s < sizeof(msz) / sizeof(msz[0]); s++) {
			struct shmring *r = make(test_name(), kinds[k], msz[s], 16, 0);
			uintptr_t want = msz[s] % 64 == 0 ? 64 : 16;
			for (uint64_t i = 0; i < 16; i++)
				assert_int_equal((uintptr_t)slot_at(r, i) % want, 0);
			if (kinds[k] != SHMRING_SPSC)
				for (uint64_t i = 0; i < 16; i++)
					assert_int_equal((uintptr_t)slot_word(r, i) % 8, 0);
			assert_int_equal(shmring_close(r), 0);
		}
}

/* Indices start just below 2^64 and run across it (and across 2^48 for slot words). */
static void test_indices_cross_wraparound(void **state)
{
	(void)state;
	for (size_t k = 0; k < 3; k++) {
		struct shmring *r = make(test_name(), kinds[k], 32, 4, 0);
		assert_int_equal(shmring_test_set_index(r, UINT64_MAX - 5), 0);
		unsigned char in[32], out[32], want[32];
		uint64_t pushed = 0, popped = 0;
		for (int i = 0; i < 40; i++) {
			msg_fill(in, 32, 3, pushed);
			if (shmring_try_push(r, in) == 0)
				pushed++;
			if (i % 3 == 2) {
				while (shmring_try_pop(r, out) == 0) {
					msg_fill(want, 32, 3, popped);
					assert_memory_equal(out, want, 32);
					popped++;
				}
			}
			assert_int_equal(shmring_size(r), pushed - popped);
		}
		/* The ring still fills to exactly its capacity after the wrap. */
		while (shmring_try_pop(r, out) == 0)
			popped++;
		fill_and_drain(r, 32, 4, 500);
		assert_true(load_relaxed64(&r->hdr->tail) < 100); /* wrapped past 0 */
		assert_int_equal(pushed, popped);
		assert_int_equal(shmring_close(r), 0);
	}
}

static int64_t elapsed_ns(struct timespec a)
{
	struct timespec b;
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (int64_t)(b.tv_sec - a.tv_sec) * 1000000000 + (b.tv_nsec - a.tv_nsec);
}

static void test_waits_time_out_on_full_and_empty(void **state)
{
	(void)state;
	for (size_t k = 0; k < 3; k++) {
		struct shmring *r = make(test_name(), kinds[k], 16, 2, 0);
		unsigned char m[16] = {0};
		struct timespec t0;
		assert_int_equal(shmring_pop_wait(r, m, 0), -ETIMEDOUT);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(shmring_pop_wait(r, m, 5000000), -ETIMEDOUT);
		int64_t e = elapsed_ns(t0);
		assert_true(e >= 5000000 && e < 5000000 + 50000000);
		assert_int_equal(shmring_push_wait(r, m, 0), 0);
		assert_int_equal(shmring_push_wait(r, m, 1000), 0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(shmring_push_wait(r, m, 5000000), -ETIMEDOUT);
		e = elapsed_ns(t0);
		assert_true(e >= 5000000 && e < 5000000 + 50000000);
		assert_int_equal(shmring_pop_wait(r, m, -1), 0); /* data there: returns at once */
		assert_int_equal(shmring_close(r), 0);
	}
}

static void test_null_arguments_are_einval(void **state)
{
	(void)state;
	struct shmring *r = make(test_name(), SHMRING_MPMC, 8, 4, 0);
	unsigned char m[8] = {0};
	struct shmring_info info;
	assert_int_equal(shmring_try_push(NULL, m), -EINVAL);
	assert_int_equal(shmring_try_push(r, NULL), -EINVAL);
	assert_int_equal(shmring_try_pop(NULL, m), -EINVAL);
	assert_int_equal(shmring_try_pop(r, NULL), -EINVAL);
	assert_int_equal(shmring_push_wait(NULL, m, 0), -EINVAL);
	assert_int_equal(shmring_pop_wait(r, NULL, 0), -EINVAL);
	assert_int_equal(shmring_info(NULL, &info), -EINVAL);
	assert_int_equal(shmring_info(r, NULL), -EINVAL);
	assert_int_equal(shmring_size(NULL), 0);
	assert_true(shmring_empty(NULL));
	assert_int_equal(shmring_capacity(NULL), 0);
	assert_int_equal(shmring_close(NULL), 0);
	struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 8, .capacity = 4};
	struct shmring *o = NULL;
	assert_int_equal(shmring_create(NULL, &cfg, &o), -EINVAL);
	assert_int_equal(shmring_create(test_name(), NULL, &o), -EINVAL);
	assert_int_equal(shmring_create(test_name(), &cfg, NULL), -EINVAL);
	assert_int_equal(shmring_attach(NULL, NULL, 0, &o), -EINVAL);
	assert_int_equal(shmring_attach(test_name(), NULL, 0, NULL), -EINVAL);
	assert_int_equal(shmring_close(r), 0);
}

static void test_info_describes_the_ring(void **state)
{
	(void)state;
	struct shmring *r = make(test_name(), SHMRING_MPSC, 200, 64,
				 SHMRING_F_BLOCKING | SHMRING_F_NO_HUGEPAGE);
	struct shmring_info info;
	assert_int_equal(shmring_info(r, &info), 0);
	assert_int_equal(info.kind, SHMRING_MPSC);
	assert_int_equal(info.msg_size, 200);
	assert_int_equal(info.capacity, 64);
	assert_int_equal(info.flags & SHMRING_F_BLOCKING, SHMRING_F_BLOCKING);
	assert_int_equal(info.backing, SHMRING_BACKING_SHM);
	assert_true(info.page_size >= 4096);
	assert_true(info.map_size >= 4096 + 64 * 200);
	assert_true(info.locked);
	assert_int_equal(shmring_close(r), 0);

	struct shmring *u = make(test_name(), SHMRING_SPSC, 8, 4, SHMRING_F_NO_MLOCK);
	assert_int_equal(shmring_info(u, &info), 0);
	assert_false(info.locked);
	assert_int_equal(shmring_close(u), 0);
}

static void test_errors_have_sentences_and_details(void **state)
{
	(void)state;
	const int codes[] = {EINVAL, ENAMETOOLONG, EEXIST, ELOOP, ENOENT, EINPROGRESS, EPROTO,
			     EDOM, EBADMSG, EAGAIN, ETIMEDOUT, EINTR, EBUSY, ENOMEM, 12345};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		assert_non_null(shmring_strerror(-codes[i]));
		assert_true(strlen(shmring_strerror(-codes[i])) > 5);
	}
	struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 8, .capacity = 3};
	struct shmring *r = NULL;
	assert_int_equal(shmring_create(test_name(), &cfg, &r), -EINVAL);
	assert_non_null(strstr(shmring_last_error(), "capacity 3"));
}

static void test_creator_close_unlinks_unless_persist(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 8, 4, SHMRING_F_PERSIST);
	assert_int_equal(shmring_close(r), 0);
	assert_true(shm_exists(name));
	struct shmring *a = NULL;
	assert_int_equal(shmring_attach(name, NULL, 0, &a), 0);
	assert_int_equal(shmring_close(a), 0);
	assert_true(shm_exists(name)); /* an attacher's close never unlinks */
	assert_int_equal(shmring_unlink(name), 0);
	assert_false(shm_exists(name));
	assert_int_equal(shmring_unlink(name), -ENOENT);
	assert_int_equal(shmring_unlink("bad"), -EINVAL);
}

/* A ring unlinked and made again is a new ring; the old creator's close leaves it alone. */
static void test_old_creator_close_does_not_unlink_a_new_ring(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *old = make(name, SHMRING_SPSC, 8, 4, 0);
	assert_int_equal(shmring_unlink(name), 0);
	struct shmring *fresh = make(name, SHMRING_SPSC, 8, 4, 0);
	assert_int_equal(shmring_close(old), 0);
	assert_true(shm_exists(name));
	assert_int_equal(shmring_close(fresh), 0);
	assert_false(shm_exists(name));
}


static void test_batches_move_as_many_as_fit_in_order(void **state)
{
	(void)state;
	/*
	 * 24-byte messages sit in 32-byte slots (copied one by one); 32-byte
	 * messages fill their slots (an SPSC batch is one copy each side of the
	 * wrap): both shapes, across wrap-around.
	 */
	for (size_t k = 0; k < 6; k++) {
		const size_t S = k < 3 ? 24 : 32;
		struct shmring *r = make(test_name(), kinds[k % 3], (uint32_t)S, 8, 0);
		unsigned char in[12 * 32], out[12 * 32], want[32];
		for (unsigned i = 0; i < 12; i++)
			msg_fill(in + i * S, S, 4, i);
		assert_int_equal(shmring_try_push_n(r, in, 5), 5);
		assert_int_equal(shmring_try_push_n(r, in + 5 * S, 7), 3); /* only 3 fit */
		assert_int_equal(shmring_try_push_n(r, in, 1), -EAGAIN);
		assert_int_equal(shmring_size(r), 8);
		assert_int_equal(shmring_try_pop_n(r, out, 3), 3);
		assert_int_equal(shmring_try_pop_n(r, out + 3 * S, 10), 5);
		assert_int_equal(shmring_try_pop_n(r, out, 1), -EAGAIN);
		for (unsigned i = 0; i < 8; i++) {
			msg_fill(want, S, 4, i);
			assert_memory_equal(out + i * S, want, S);
		}
		/* Batches and single operations interleave across wrap-around. */
		uint64_t pushed = 0, popped = 0;
		for (int round = 0; round < 500; round++) {
			unsigned char b[5 * 32];
			unsigned n = 1 + (unsigned)round % 5;
			for (unsigned i = 0; i < n; i++)
				msg_fill(b + i * S, S, 4, pushed + i);
			int got = round % 3 ? shmring_try_push_n(r, b, n) : shmring_try_push(r, b) == 0;
			if (got > 0)
				pushed += (uint64_t)got;
			int m = shmring_try_pop_n(r, b, 1 + (unsigned)round % 4);
			for (int i = 0; i < m; i++) {
				msg_fill(want, S, 4, popped++);
				assert_memory_equal(b + i * S, want, S);
			}
		}
		assert_true(popped > 500);
		/*
		 * A batch across the wrap read back one by one, and single pushes read
		 * back by a batch across the wrap: an error made the same way on both
		 * batch sides would cancel out in the loop above, not here.
		 */
		for (int dir = 0; dir < 2; dir++) {
			unsigned char one[32];
			while (shmring_try_pop(r, one) == 0)
				;
			/* Empty, 6 positions into a lap of 8: the next 5 messages wrap. */
			while ((load_relaxed64(&r->hdr->tail) & 7) != 6) {
				assert_int_equal(shmring_try_push(r, in), 0);
				assert_int_equal(shmring_try_pop(r, one), 0);
			}
			for (unsigned i = 0; i < 5; i++)
				msg_fill(in + i * S, S, 5, i);
			if (dir == 0) {
				assert_int_equal(shmring_try_push_n(r, in, 5), 5);
				for (unsigned i = 0; i < 5; i++)
					assert_int_equal(shmring_try_pop(r, out + i * S), 0);
			} else {
				for (unsigned i = 0; i < 5; i++)
					assert_int_equal(shmring_try_push(r, in + i * S), 0);
				assert_int_equal(shmring_try_pop_n(r, out, 5), 5);
			}
			assert_memory_equal(out, in, 5 * S);
		}
		assert_int_equal(shmring_try_push_n(r, NULL, 1), -EINVAL);
		assert_int_equal(shmring_try_pop_n(r, out, 0), -EINVAL);
		assert_int_equal(shmring_close(r), 0);
	}
}

static void test_zero_copy_writes_and_reads_in_place(void **state)
{
	(void)state;
	for (size_t k = 0; k < 3; k++) {
		struct shmring *r = make(test_name(), kinds[k], 64, 4, 0);
		void *w;
		const void *rd;
		assert_int_equal(shmring_commit(r), -EINVAL);
		assert_int_equal(shmring_release(r), -EINVAL);
		assert_int_equal(shmring_peek(r, &rd), -EAGAIN);
		for (uint64_t i = 0; i < 4; i++) {
			assert_int_equal(shmring_reserve(r, &w), 0);
			assert_int_equal((uintptr_t)w % 64, 0);
			assert_int_equal(shmring_reserve(r, &w), -EINVAL); /* one at a time */
			/* Not visible before commit. */
			if (i == 0)
				assert_int_equal(shmring_peek(r, &rd), -EAGAIN);
			msg_fill(w, 64, 5, i);
			assert_int_equal(shmring_commit(r), 0);
		}
		assert_int_equal(shmring_reserve(r, &w), -EAGAIN);
		unsigned char want[64];
		for (uint64_t i = 0; i < 4; i++) {
			assert_int_equal(shmring_peek(r, &rd), 0);
			assert_int_equal(shmring_peek(r, &rd), -EINVAL);
			msg_fill(want, 64, 5, i);
			assert_memory_equal(rd, want, 64);
			/* The slot is still held: the ring does not count it free. */
			assert_int_equal(shmring_reserve(r, &w), i == 0 ? -EAGAIN : 0);
			if (i > 0) {
				msg_fill(w, 64, 5, 100 + i);
				assert_int_equal(shmring_commit(r), 0);
			}
			assert_int_equal(shmring_release(r), 0);
		}
		/* Copying pop reads what zero-copy wrote, and the other way round. */
		unsigned char m[64];
		for (uint64_t i = 1; i < 4; i++) {
			assert_int_equal(shmring_try_pop(r, m), 0);
			msg_fill(want, 64, 5, 100 + i);
			assert_memory_equal(m, want, 64);
		}
		assert_int_equal(shmring_try_push(r, want), 0);
		assert_int_equal(shmring_peek(r, &rd), 0);
		assert_memory_equal(rd, want, 64);
		assert_int_equal(shmring_release(r), 0);
		assert_true(shmring_empty(r));
		assert_int_equal(shmring_close(r), 0);
	}
}

static void test_stats_count_known_events(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_MPSC, 16, 8, SHMRING_F_BLOCKING);
	struct shmring_stats st;
	unsigned char m[16] = {0};
	assert_int_equal(shmring_stats(r, &st), 0);
	assert_int_equal(st.participants, 1);
	assert_int_equal(st.alive, 1);
	assert_int_equal(st.producers_alive + st.consumers_alive, 0);
	assert_int_equal(shmring_set_spin_ns(r, 0), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(shmring_pop_wait(r, m, 1000000), -ETIMEDOUT);
	for (int i = 0; i < 2; i++)
		assert_int_equal(shmring_try_pop(r, m), -EAGAIN); /* the hot path: not counted */
	struct shmring_config bad = {.msg_size = 99};
	struct shmring *a = NULL;
	assert_int_equal(shmring_attach(name, &bad, 0, &a), -EDOM);
	assert_int_equal(shmring_attach(name, &bad, 0, &a), -EDOM);
	assert_int_equal(shmring_attach(name, NULL, 0, &a), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(shmring_try_push(a, m), 0);
	assert_int_equal(shmring_stats(r, &st), 0);
	assert_int_equal(st.wait_timeouts, 3);
	assert_true(st.futex_sleeps >= 3); /* each timed-out wait slept at least once */
	assert_int_equal(st.attach_rejects, 2);
	assert_int_equal(st.participants, 2);
	assert_int_equal(st.alive, 2);
	assert_int_equal(st.producers_alive, 1);
	assert_int_equal(st.consumers_alive, 1);
	assert_int_equal(st.depth, 5);
	assert_int_equal(st.tail - st.head, 5);
	assert_int_equal(st.skipped + st.recovered + st.takeovers, 0);
	assert_int_equal(shmring_close(a), 0);
	assert_int_equal(shmring_stats(r, &st), 0);
	assert_int_equal(st.participants, 1);
	assert_int_equal(shmring_stats(NULL, &st), -EINVAL);
	assert_int_equal(shmring_close(r), 0);
}

int main(void)
{
	watchdog_start(TEST_WATCHDOG_S);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_kind_size_and_capacity_fills_and_drains_in_order),
		cmocka_unit_test(test_interleaved_push_pop_runs_many_laps),
		cmocka_unit_test(test_capacity_below_two_or_not_power_of_two_is_einval),
		cmocka_unit_test(test_slots_are_aligned_as_promised),
		cmocka_unit_test(test_indices_cross_wraparound),
		cmocka_unit_test(test_waits_time_out_on_full_and_empty),
		cmocka_unit_test(test_null_arguments_are_einval),
		cmocka_unit_test(test_info_describes_the_ring),
		cmocka_unit_test(test_errors_have_sentences_and_details),
		cmocka_unit_test(test_creator_close_unlinks_unless_persist),
		cmocka_unit_test(test_old_creator_close_does_not_unlink_a_new_ring),
		cmocka_unit_test(test_batches_move_as_many_as_fit_in_order),
		cmocka_unit_test(test_zero_copy_writes_and_reads_in_place),
		cmocka_unit_test(test_stats_count_known_events),
	};
	return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
