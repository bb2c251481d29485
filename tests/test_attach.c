/*
 * test_attach.c - create and attach validation: each rejected create or
 * attach returns the exact code of DESIGN.md's table for its cause, and
 * attach waits (bounded) for a ring that does not exist or is initialising.
 * Also: hostile indices and slot words give -EBADMSG, not a wild access.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "internal.h"
#include "shmring.h"
#include "testutil.h"

static struct shmring *make(const char *name, enum shmring_kind kind, uint32_t msg_size,
			    uint32_t cap, uint32_t flags)
{
	struct shmring_config cfg = {.kind = kind, .msg_size = msg_size, .capacity = cap,
				     .flags = flags};
	struct shmring *r = NULL;
	assert_int_equal(shmring_create(name, &cfg, &r), 0);
	return r;
}

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Map a ring's file directly, as a hostile or broken peer would. */
static struct shmring_hdr *raw_map(const char *name, size_t *len)
{
	char path[300];
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	*len = (size_t)st.st_size;
	void *p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	close(fd);
	return p;
}

static int attach(const char *name, const struct shmring_config *expect, int64_t timeout,
		  struct shmring **out)
{
	*out = NULL;
	return shmring_attach(name, expect, timeout, out);
}

static void test_attach_with_matching_expect_works_and_null_expect_takes_any(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_MPSC, 64, 16, SHMRING_F_BLOCKING);
	struct shmring *a;
	struct shmring_config e = {.kind = SHMRING_MPSC, .msg_size = 64, .capacity = 16,
				   .flags = SHMRING_F_BLOCKING};
	assert_int_equal(attach(name, &e, 0, &a), 0);
	assert_int_equal(shmring_close(a), 0);
	assert_int_equal(attach(name, NULL, 0, &a), 0);
	assert_int_equal(shmring_capacity(a), 16);
	assert_int_equal(shmring_close(a), 0);
	struct shmring_config partial = {.msg_size = 64};
	assert_int_equal(attach(name, &partial, 0, &a), 0);
	assert_int_equal(shmring_close(a), 0);
	assert_int_equal(shmring_close(r), 0);
}

static void test_wrong_kind_msg_size_capacity_or_flag_is_edom(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 64, 16, 0);
	struct shmring *a;
	struct shmring_config e = {.kind = SHMRING_MPMC};
	assert_int_equal(attach(name, &e, 0, &a), -EDOM);
	assert_null(a);
	assert_non_null(strstr(shmring_last_error(), "SPSC"));
	e = (struct shmring_config){.msg_size = 128};
	assert_int_equal(attach(name, &e, 0, &a), -EDOM);
	assert_non_null(strstr(shmring_last_error(), "msg_size 64, you asked for 128"));
	e = (struct shmring_config){.capacity = 32};
	assert_int_equal(attach(name, &e, 0, &a), -EDOM);
	assert_non_null(strstr(shmring_last_error(), "capacity 16"));
	e = (struct shmring_config){.flags = SHMRING_F_BLOCKING};
	assert_int_equal(attach(name, &e, 0, &a), -EDOM);
	/* NO_MLOCK and NO_HUGEPAGE are this process's choices: applied, not matched. */
	e = (struct shmring_config){.flags = SHMRING_F_NO_MLOCK | SHMRING_F_NO_HUGEPAGE};
	assert_int_equal(attach(name, &e, 0, &a), 0);
	struct shmring_info info;
	assert_int_equal(shmring_info(a, &info), 0);
	assert_false(info.locked);
	assert_int_equal(shmring_close(a), 0);
	assert_int_equal(r->hdr->counters.attach_rejects, 4);
	assert_int_equal(shmring_close(r), 0);
}

static void test_bad_magic_or_other_layout_version_is_eproto(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_MPMC, 8, 4, 0);
	size_t len;
	struct shmring_hdr *h = raw_map(name, &len);
	struct shmring *a;

	h->magic ^= 0xff;
	assert_int_equal(attach(name, NULL, 0, &a), -EPROTO);
	assert_non_null(strstr(shmring_last_error(), "not a shmring"));
	h->magic ^= 0xff;
	atomic_store(&h->version, SHMRING_LAYOUT_VERSION + 1);
	assert_int_equal(attach(name, NULL, 0, &a), -EPROTO);
	assert_non_null(strstr(shmring_last_error(), "layout version"));
	atomic_store(&h->version, SHMRING_LAYOUT_VERSION);
	assert_int_equal(attach(name, NULL, 0, &a), 0);
	assert_int_equal(shmring_close(a), 0);
	munmap(h, len);
	assert_int_equal(shmring_close(r), 0);
}

static void test_version_never_set_is_einprogress_after_the_timeout(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 8, 4, 0);
	size_t len;
	struct shmring_hdr *h = raw_map(name, &len);
	atomic_store(&h->version, 0);
	struct shmring *a;
	int64_t t0 = now_ns();
	assert_int_equal(attach(name, NULL, 50000000, &a), -EINPROGRESS);
	int64_t e = now_ns() - t0;
	assert_true(e >= 50000000 && e < 50000000 + 100000000);
	/* A file too short to hold a header is also "not initialised yet". */
	char path[300];
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	assert_int_equal(truncate(path, 100), 0);
	assert_int_equal(attach(name, NULL, 0, &a), -EINPROGRESS);
	munmap(h, len);
	assert_int_equal(shmring_close(r), 0);
}

static void test_no_such_ring_is_enoent_after_about_the_timeout(void **state)
{
	(void)state;
	struct shmring *a;
	int64_t t0 = now_ns();
	assert_int_equal(attach(test_name(), NULL, 0, &a), -ENOENT);
	assert_true(now_ns() - t0 < 20000000);
	t0 = now_ns();
	assert_int_equal(attach(test_name(), NULL, 100000000, &a), -ENOENT);
	int64_t e = now_ns() - t0;
	assert_true(e >= 100000000 && e < 100000000 + 100000000);
	assert_null(a);
}

/* Inconsistent headers and short files, on the backing that flags choose. */
static void bad_headers_are_ebadmsg(uint32_t flags)
{
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_MPMC, 64, 64, flags);
	size_t len;
	struct shmring_hdr *h = raw_map(name, &len);
	struct shmring *a;
	bool huge = h->backing == SHMRING_BACKING_HUGETLBFS;

	h->capacity = 48;
	assert_int_equal(attach(name, NULL, 0, &a), -EBADMSG);
	assert_non_null(strstr(shmring_last_error(), "capacity 48"));
	h->capacity = 64;
	h->kind = 7;
	assert_int_equal(attach(name, NULL, 0, &a), -EBADMSG);
	h->kind = SHMRING_MPMC;
	uint64_t off = h->data_offset;
	h->data_offset = len + 4096; /* slots beyond the end of the file */
	assert_int_equal(attach(name, NULL, 0, &a), -EBADMSG);
	h->data_offset = off;
	h->slot_size = 8; /* slots overlapping: does not fit msg_size */
	assert_int_equal(attach(name, NULL, 0, &a), -EBADMSG);
	h->slot_size = r->slot_size;
	assert_int_equal(attach(name, NULL, 0, &a), 0);
	assert_int_equal(shmring_close(a), 0);

	char path[SHMRING_PATH_MAX];
	if (huge) {
		/* The header names a file that is not on hugetlbfs: refused. */
		char saved[SHMRING_PATH_MAX];
		memcpy(saved, h->data_path, sizeof(saved));
		snprintf(h->data_path, sizeof(h->data_path), "/dev/shm%s", name);
		assert_int_equal(attach(name, NULL, 0, &a), -EBADMSG);
		memcpy(h->data_path, saved, sizeof(saved));
		snprintf(path, sizeof(path), "%s", h->data_path); /* shorten the slot file */
	} else {
		snprintf(path, sizeof(path), "/dev/shm%s", name);
	}
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, huge ? 0 : st.st_size - 4096), 0);
	assert_int_equal(attach(name, NULL, 0, &a), -EBADMSG);
	assert_non_null(strstr(shmring_last_error(), huge ? "size" : "the file has"));
	munmap(h, len);
	assert_int_equal(shmring_close(r), 0);
}

static void test_short_file_or_bad_capacity_in_header_is_ebadmsg(void **state)
{
	(void)state;
	bad_headers_are_ebadmsg(SHMRING_F_NO_HUGEPAGE);
}

static void test_short_hugetlbfs_file_or_bad_header_is_ebadmsg(void **state)
{
	(void)state;
	struct shmring_config cfg = {.kind = SHMRING_MPMC, .msg_size = 64, .capacity = 64,
				     .flags = SHMRING_F_HUGEPAGE};
	struct shmring *probe = NULL;
	if (shmring_create(test_name(), &cfg, &probe) != 0) {
		print_message("SKIP: no hugetlbfs ring can be made here: %s\n", shmring_last_error());
		skip();
	}
	assert_int_equal(shmring_close(probe), 0);
	bad_headers_are_ebadmsg(SHMRING_F_HUGEPAGE);
}

static void test_bad_names_are_einval_or_enametoolong(void **state)
{
	(void)state;
	struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 8, .capacity = 4};
	struct shmring *r = NULL;
	const char *bad[] = {"", "/", "noslash", "/a/b", "/.", "/.."};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(shmring_create(bad[i], &cfg, &r), -EINVAL);
		assert_int_equal(shmring_attach(bad[i], NULL, 0, &r), -EINVAL);
	}
	char longname[SHMRING_NAME_MAX + 2];
	memset(longname, 'x', sizeof(longname));
	longname[0] = '/';
	longname[SHMRING_NAME_MAX + 1] = 0;
	assert_int_equal(shmring_create(longname, &cfg, &r), -ENAMETOOLONG);
	assert_int_equal(shmring_attach(longname, NULL, 0, &r), -ENAMETOOLONG);
	/* Exactly SHMRING_NAME_MAX bytes is fine. */
	snprintf(longname, 32, "/shmring-t-%d-", (int)getpid());
	longname[strlen(longname)] = 'y';
	longname[SHMRING_NAME_MAX] = 0;
	assert_int_equal(strlen(longname), SHMRING_NAME_MAX);
	assert_int_equal(shmring_create(longname, &cfg, &r), 0);
	assert_int_equal(shmring_close(r), 0);
}

static void test_existing_name_is_eexist_and_symlink_is_eloop(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 8, 4, 0), *o = NULL;
	struct shmring_config cfg = {.kind = SHMRING_MPMC, .msg_size = 16, .capacity = 8};
	assert_int_equal(shmring_create(name, &cfg, &o), -EEXIST);
	assert_null(o);
	assert_int_equal(shmring_close(r), 0);

	const char *link = test_name();
	char lpath[300];
	snprintf(lpath, sizeof(lpath), "/dev/shm%s", link);
	assert_int_equal(symlink("/tmp/shmring-nowhere", lpath), 0);
	assert_int_equal(shmring_create(link, &cfg, &o), -ELOOP);
	assert_int_equal(shmring_attach(link, NULL, 0, &o), -ELOOP);
	unlink(lpath);
}

static void test_unknown_flags_or_reserved_fields_are_einval(void **state)
{
	(void)state;
	struct shmring *r = NULL;
	struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 8, .capacity = 4,
				     .flags = 1u << 20};
	assert_int_equal(shmring_create(test_name(), &cfg, &r), -EINVAL);
	cfg.flags = 0;
	cfg.reserved[3] = 1;
	assert_int_equal(shmring_create(test_name(), &cfg, &r), -EINVAL);
	cfg.reserved[3] = 0;
	cfg.kind = (enum shmring_kind)9;
	assert_int_equal(shmring_create(test_name(), &cfg, &r), -EINVAL);
	cfg.kind = SHMRING_SPSC;
	cfg.flags = SHMRING_F_HUGEPAGE | SHMRING_F_NO_HUGEPAGE;
	assert_int_equal(shmring_create(test_name(), &cfg, &r), -EINVAL);

	const char *name = test_name();
	struct shmring *c = make(name, SHMRING_SPSC, 8, 4, 0);
	struct shmring_config e = {.flags = 1u << 30};
	assert_int_equal(shmring_attach(name, &e, 0, &r), -EINVAL);
	e = (struct shmring_config){.reserved = {0, 5, 0, 0}};
	assert_int_equal(shmring_attach(name, &e, 0, &r), -EINVAL);
	assert_int_equal(shmring_close(c), 0);
}

static mode_t file_mode(const char *name)
{
	char path[300];
	struct stat st;
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static void test_mode_is_exact_whatever_the_umask(void **state)
{
	(void)state;
	mode_t old = umask(0);
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 8, 4, 0);
	assert_int_equal(file_mode(name), 0600);
	assert_int_equal(shmring_close(r), 0);
	umask(077);
	name = test_name();
	struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 8, .capacity = 4,
				     .mode = 0640};
	assert_int_equal(shmring_create(name, &cfg, &r), 0);
	assert_int_equal(file_mode(name), 0640);
	assert_int_equal(shmring_close(r), 0);
	umask(old);
}

struct delayed {
	const char *name;
	int delay_ms;
	struct shmring_hdr *hdr; /* when set: only publish the version late */
	struct shmring *made;
};

static void *create_later(void *arg)
{
	struct delayed *d = arg;
	struct timespec ts = {.tv_sec = 0, .tv_nsec = d->delay_ms * 1000000L};
	nanosleep(&ts, NULL);
	if (d->hdr) {
		atomic_store(&d->hdr->version, SHMRING_LAYOUT_VERSION);
		return NULL;
	}
	struct shmring_config cfg = {.kind = SHMRING_MPMC, .msg_size = 32, .capacity = 8};
	if (shmring_create(d->name, &cfg, &d->made) != 0)
		d->made = NULL;
	return NULL;
}

static void test_attach_before_create_waits_for_the_creator(void **state)
{
	(void)state;
	struct delayed d = {.name = test_name(), .delay_ms = 50};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, create_later, &d), 0);
	struct shmring *a;
	int64_t t0 = now_ns();
	assert_int_equal(attach(d.name, NULL, 2000000000, &a), 0);
	assert_true(now_ns() - t0 >= 40000000);
	pthread_join(t, NULL);
	assert_non_null(d.made);
	assert_int_equal(shmring_capacity(a), 8);
	assert_int_equal(shmring_close(a), 0);
	assert_int_equal(shmring_close(d.made), 0);
}

static void test_attach_waits_while_the_ring_is_initialising(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 8, 4, 0);
	size_t len;
	struct shmring_hdr *h = raw_map(name, &len);
	atomic_store(&h->version, 0);
	struct delayed d = {.name = name, .delay_ms = 50, .hdr = h};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, create_later, &d), 0);
	struct shmring *a;
	assert_int_equal(attach(name, NULL, 2000000000, &a), 0);
	pthread_join(t, NULL);
	assert_int_equal(shmring_close(a), 0);
	munmap(h, len);
	assert_int_equal(shmring_close(r), 0);
}

static void test_hostile_indices_give_ebadmsg_not_a_wild_access(void **state)
{
	(void)state;
	unsigned char m[64] = {0};
	/* SPSC: tail far ahead of head, and head past tail. */
	struct shmring *r = make(test_name(), SHMRING_SPSC, 64, 8, 0);
	atomic_store(&r->hdr->tail, 1000);
	assert_int_equal(shmring_try_pop(r, m), -EBADMSG);
	atomic_store(&r->hdr->tail, 0);
	atomic_store(&r->hdr->head, 5000);
	assert_int_equal(shmring_try_push(r, m), -EBADMSG);
	/* Head moved backwards under a producer that had cached a sane value. */
	atomic_store(&r->hdr->head, 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(shmring_try_push(r, m), 0);
	atomic_store(&r->hdr->head, 5000);
	assert_int_equal(shmring_try_push(r, m), -EBADMSG);
	assert_int_equal(shmring_close(r), 0);

	/* MPSC/MPMC: garbage state words, and positions that never match. */
	const enum shmring_kind k[] = {SHMRING_MPSC, SHMRING_MPMC};
	for (int i = 0; i < 2; i++) {
		r = make(test_name(), k[i], 64, 8, 0);
		for (uint64_t p = 0; p < 8; p++)
			atomic_store(slot_word(r, p), UINT64_C(0xdeadbeefdeadffff));
		assert_int_equal(shmring_try_pop(r, m), -EBADMSG);
		assert_int_equal(shmring_try_push(r, m), -EBADMSG);
		/* Every slot "ahead" of every position: bounded helping, then -EBADMSG. */
		for (uint64_t p = 0; p < 8; p++)
			atomic_store(slot_word(r, p), word_make(p + (UINT64_C(1) << 40), ST_FULL, 0));
		assert_int_equal(shmring_try_pop(r, m), -EBADMSG);
		assert_int_equal(shmring_try_push(r, m), -EBADMSG);
		assert_int_equal(shmring_close(r), 0);
	}
}

int main(void)
{
	watchdog_start(TEST_WATCHDOG_S);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attach_with_matching_expect_works_and_null_expect_takes_any),
		cmocka_unit_test(test_wrong_kind_msg_size_capacity_or_flag_is_edom),
		cmocka_unit_test(test_bad_magic_or_other_layout_version_is_eproto),
		cmocka_unit_test(test_version_never_set_is_einprogress_after_the_timeout),
		cmocka_unit_test(test_no_such_ring_is_enoent_after_about_the_timeout),
		cmocka_unit_test(test_short_file_or_bad_capacity_in_header_is_ebadmsg),
		cmocka_unit_test(test_short_hugetlbfs_file_or_bad_header_is_ebadmsg),
		cmocka_unit_test(test_bad_names_are_einval_or_enametoolong),
		cmocka_unit_test(test_existing_name_is_eexist_and_symlink_is_eloop),
		cmocka_unit_test(test_unknown_flags_or_reserved_fields_are_einval),
		cmocka_unit_test(test_mode_is_exact_whatever_the_umask),
		cmocka_unit_test(test_attach_before_create_waits_for_the_creator),
		cmocka_unit_test(test_attach_waits_while_the_ring_is_initialising),
		cmocka_unit_test(test_hostile_indices_give_ebadmsg_not_a_wild_access),
	};
	return cmocka_run_group_tests_name("attach", tests, NULL, NULL);
}
