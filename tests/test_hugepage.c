/*
 * test_hugepage.c - kernel-assisted memory, checked in /proc, not trusted
 * from the library: hugetlbfs and memfd-hugetlb rings are backed by resident
 * hugepages (smaps KernelPageSize, *_Hugetlb), the pool's HugePages_Free falls
 * by the expected count and comes back; normal-page rings are mlocked (smaps
 * Locked); without hugepages the default falls back and SHMRING_F_HUGEPAGE
 * fails saying what to run; and producer and consumer processes take zero
 * page faults while they exchange 10^6 messages, on every backing.
 *
 * The tests that read or change the hugepage pool assume nobody else does at
 * the same time: the suite runs test binaries one at a time. A case that the
 * host truly cannot run (no hugepages can be reserved, not root where that is
 * needed) prints why and calls skip().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "backing.h"
#include "internal.h"
#include "shmring.h"
#include "testutil.h"

static char peer_path[PATH_MAX];

static long meminfo(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0 && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

/* The smaps field (in kB) of the mapping that contains addr, or -1. */
static long smaps_field(const void *addr, const char *field)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false;
	long v = -1;
	size_t n = strlen(field);
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
			continue;
		}
		if (in && strncmp(line, field, n) == 0 && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	}
	if (f)
		fclose(f);
	return v;
}

/* 1 if the mapping that contains addr has VmFlag flag (e.g. "lo": mlocked). */
static int smaps_has_flag(const void *addr, const char *flag)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false;
	int found = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
			continue;
		}
		if (in && strncmp(line, "VmFlags:", 8) == 0) {
			char want[8];
			snprintf(want, sizeof(want), " %s", flag);
			for (char *p = line + 8; (p = strstr(p, want)); p++)
				if (p[strlen(want)] == ' ' || p[strlen(want)] == '\n')
					found = 1;
			break;
		}
	}
	if (f)
		fclose(f);
	return found;
}

/*
 * Locked covers the mapping: every page resident (Rss == Size), the mapping
 * is VM_LOCKED, and smaps' Locked (a proportional count, like Pss) equals Pss.
 */
static void assert_locked(const void *addr)
{
	long size = smaps_field(addr, "Size");
	assert_true(size > 0);
	assert_int_equal(smaps_field(addr, "Rss"), size);
#ifdef __SANITIZE_ADDRESS__
	/* ASan's runtime replaces mlock() with a no-op that returns 0. */
	print_message("NOTE: AddressSanitizer build: mlock is a no-op here, so only "
		      "residency is checked; the normal build checks the lock\n");
	return;
#endif
	assert_int_equal(smaps_field(addr, "Locked"), smaps_field(addr, "Pss"));
	assert_true(smaps_has_flag(addr, "lo"));
}

static size_t hps(void)
{
	return default_hugepage_size();
}

/* Why hugetlbfs rings cannot be made here, or NULL if they can. */
static const char *hugetlbfs_unavailable(long pages)
{
	static char why[256];
	char dir[SHMRING_PATH_MAX];
	if (hps() == 0)
		return "the kernel offers no hugepages";
	if (hugetlbfs_dir_for(hps(), dir, sizeof(dir)) != 0)
		return "no hugetlbfs mount for the default hugepage size (the suite mounts one as root)";
	long free_now = hugepages_free(hps());
	if (free_now < pages) {
		snprintf(why, sizeof(why), "%ld free hugepages, %ld needed (the suite reserves them as root)",
			 free_now, pages);
		return why;
	}
	return NULL;
}

/* Print why (and why the suite could not set hugepages up, if it said), then skip. */
#define SKIP_UNLESS(cond_reason)                                                              \
	do {                                                                                  \
		const char *why_ = (cond_reason);                                             \
		if (why_) {                                                                   \
			const char *ci_ = getenv("SHMRING_CI_HUGEPAGES_SKIP");                \
			print_message("SKIP: %s%s%s\n", why_, ci_ ? "; hugepage setup: " : "", \
				      ci_ ? ci_ : "");                                        \
			skip();                                                               \
		}                                                                             \
	} while (0)

static struct shmring *make(const char *name, enum shmring_kind kind, uint32_t msg_size,
			    uint32_t cap, uint32_t flags)
{
	struct shmring_config cfg = {.kind = kind, .msg_size = msg_size, .capacity = cap,
				     .flags = flags};
	struct shmring *r = NULL;
	int rc = shmring_create(name, &cfg, &r);
	if (rc)
		print_error("create: %s (%s)\n", shmring_strerror(rc), shmring_last_error());
	assert_int_equal(rc, 0);
	return r;
}

/* smaps of this process agree that slots are on resident hugepages of size page. */
static void assert_hugetlb_resident(const void *slots, size_t page, size_t len)
{
	assert_int_equal(smaps_field(slots, "KernelPageSize"), (long)(page / 1024));
	long res = smaps_field(slots, "Shared_Hugetlb") + smaps_field(slots, "Private_Hugetlb");
	assert_int_equal(res, (long)(len / 1024));
}

static void test_hugetlbfs_ring_is_on_resident_hugepages_and_returns_them(void **state)
{
	(void)state;
	/* 2 hugepages of slots: 65536 SPSC slots of 64 bytes = 4 MiB with 2 MiB pages. */
	size_t page = hps();
	long pages = page ? (long)((65536 * 64 + page - 1) / page) : 0;
	SKIP_UNLESS(hugetlbfs_unavailable(pages));
	long free0 = meminfo("HugePages_Free");
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 64, 65536, SHMRING_F_HUGEPAGE);
	struct shmring_info info;
	assert_int_equal(shmring_info(r, &info), 0);
	assert_int_equal(info.backing, SHMRING_BACKING_HUGETLBFS);
	assert_int_equal(info.page_size, page);
	assert_true(info.locked);
	assert_int_equal(meminfo("HugePages_Free"), free0 - pages);
	assert_hugetlb_resident(r->slots, page, (size_t)pages * page);

	/* Another process attaches by the same name and gets the same resident pages. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct shmring *a = NULL;
		int ok = shmring_attach(name, NULL, 0, &a) == 0 &&
			 smaps_field(a->slots, "KernelPageSize") == (long)(page / 1024) &&
			 smaps_field(a->slots, "Shared_Hugetlb") +
					 smaps_field(a->slots, "Private_Hugetlb") ==
				 pages * (long)(page / 1024);
		unsigned char m[64] = {7};
		ok = ok && shmring_try_push(a, m) == 0;
		shmring_close(a);
		_exit(ok ? 0 : 1);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	unsigned char m[64];
	assert_int_equal(shmring_try_pop(r, m), 0);
	assert_int_equal(m[0], 7);
	assert_int_equal(meminfo("HugePages_Free"), free0 - pages);

	char data_path[SHMRING_PATH_MAX];
	snprintf(data_path, sizeof(data_path), "%s", r->data_path);
	assert_int_equal(access(data_path, F_OK), 0);
	assert_int_equal(shmring_close(r), 0);
	assert_int_equal(meminfo("HugePages_Free"), free0);
	assert_int_not_equal(access(data_path, F_OK), 0);
	assert_false(shm_exists(name));
}

static void test_unlink_removes_the_hugetlbfs_file_too(void **state)
{
	(void)state;
	SKIP_UNLESS(hugetlbfs_unavailable(1));
	long free0 = meminfo("HugePages_Free");
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_MPMC, 64, 1024, SHMRING_F_HUGEPAGE | SHMRING_F_PERSIST);
	char data_path[SHMRING_PATH_MAX];
	snprintf(data_path, sizeof(data_path), "%s", r->data_path);
	assert_int_equal(shmring_close(r), 0);
	assert_int_equal(access(data_path, F_OK), 0); /* PERSIST: both files stay */
	assert_int_equal(shmring_unlink(name), 0);
	assert_int_not_equal(access(data_path, F_OK), 0);
	assert_int_equal(meminfo("HugePages_Free"), free0);
}

static void test_normal_page_ring_is_resident_and_mlocked(void **state)
{
	(void)state;
	struct shmring *r = make(test_name(), SHMRING_MPSC, 200, 4096, SHMRING_F_NO_HUGEPAGE);
	struct shmring_info info;
	assert_int_equal(shmring_info(r, &info), 0);
	assert_int_equal(info.backing, SHMRING_BACKING_SHM);
	assert_int_equal(info.page_size, system_page_size());
	assert_true(info.locked);
	assert_int_equal(smaps_field(r->map, "Size"), (long)(info.map_size / 1024));
	assert_locked(r->map);
#ifndef __SANITIZE_ADDRESS__
	assert_int_equal(smaps_field(r->map, "Locked"), (long)(info.map_size / 1024));
#endif
	assert_int_equal(shmring_close(r), 0);

	/* An attacher locks its own mapping too, unless it says NO_MLOCK. */
	const char *name = test_name();
	r = make(name, SHMRING_SPSC, 64, 1024, SHMRING_F_NO_HUGEPAGE);
	struct shmring *a = NULL;
	assert_int_equal(shmring_attach(name, NULL, 0, &a), 0);
	assert_locked(a->map);
	assert_int_equal(shmring_close(a), 0);
	struct shmring_config e = {.flags = SHMRING_F_NO_MLOCK};
	assert_int_equal(shmring_attach(name, &e, 0, &a), 0);
	assert_false(smaps_has_flag(a->map, "lo"));
	assert_int_equal(shmring_close(a), 0);
	assert_int_equal(shmring_close(r), 0);
}

static void test_anon_hugetlb_ring_is_shared_with_a_forked_child(void **state)
{
	(void)state;
	SKIP_UNLESS(hps() && hugepages_free(hps()) >= 1 ? NULL
		    : "no free hugepages for a memfd (the suite reserves them as root)");
	long free0 = meminfo("HugePages_Free");
	struct shmring_config cfg = {.kind = SHMRING_MPSC, .msg_size = 64, .capacity = 1024,
				     .flags = SHMRING_F_HUGEPAGE};
	struct shmring *r = NULL;
	assert_int_equal(shmring_create_anon(&cfg, &r), 0);
	struct shmring_info info;
	assert_int_equal(shmring_info(r, &info), 0);
	assert_int_equal(info.backing, SHMRING_BACKING_HUGETLB_ANON);
	assert_int_equal(info.page_size, hps());
	assert_true(info.locked);
	assert_int_equal(meminfo("HugePages_Free"), free0 - 1);
	assert_hugetlb_resident(r->map, hps(), hps());

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The inherited handle, and a fresh one from the fd: both work in the child. */
		int ok = smaps_field(r->map, "KernelPageSize") == (long)(hps() / 1024);
		struct shmring *a = NULL;
		ok = ok && shmring_attach_fd(shmring_fd(r), &cfg, &a) == 0 &&
		     smaps_field(a->map, "KernelPageSize") == (long)(hps() / 1024);
		unsigned char m[64];
		for (int i = 0; ok && i < 100; i++) {
			msg_fill(m, sizeof(m), 1, (uint64_t)i);
			ok = shmring_try_push(i % 2 ? a : r, m) == 0;
		}
		shmring_close(a);
		_exit(ok ? 0 : 1);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	unsigned char m[64];
	for (uint64_t i = 0; i < 100; i++) {
		uint32_t p;
		uint64_t seq;
		assert_int_equal(shmring_try_pop(r, m), 0);
		assert_true(msg_check(m, sizeof(m), &p, &seq));
		assert_int_equal(seq, i);
	}
	assert_int_equal(shmring_close(r), 0);
	assert_int_equal(meminfo("HugePages_Free"), free0);
}

/* Write a sysfs/procfs value; 0 on success. */
static int write_file(const char *path, long v)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	int ok = fprintf(f, "%ld\n", v) > 0;
	return (fclose(f) == 0 && ok) ? 0 : -1;
}

static void test_without_hugepages_default_falls_back_and_hugepage_flag_says_what_to_run(void **state)
{
	(void)state;
	size_t page = hps();
	char nr_path[128];
	snprintf(nr_path, sizeof(nr_path), "/sys/kernel/mm/hugepages/hugepages-%zukB/nr_hugepages",
		 page / 1024);
	long total = page ? hugepages_count(page, "nr_hugepages") : 0;
	long free_now = page ? hugepages_free(page) : 0;
	bool emptied = false;
	if (free_now > 0) {
		/*
		 * Take the pool down to the pages in use, so none is free (pages
		 * another process still maps stay its own), then put it back.
		 */
		if (geteuid() != 0) {
			print_message("SKIP: %ld hugepages are free and only root can take them away "
				      "for this test\n", free_now);
			skip();
		}
		assert_int_equal(write_file(nr_path, total - free_now), 0);
		emptied = true;
		if (hugepages_free(page) != 0) {
			assert_int_equal(write_file(nr_path, total), 0);
			print_message("SKIP: the kernel kept free hugepages after the pool was lowered\n");
			skip();
		}
	}
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 64, 65536, 0);
	struct shmring_info info;
	assert_int_equal(shmring_info(r, &info), 0);
	assert_true(info.backing == SHMRING_BACKING_SHM || info.backing == SHMRING_BACKING_SHM_THP);
	assert_int_equal(shmring_close(r), 0);

	struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 64, .capacity = 65536,
				     .flags = SHMRING_F_HUGEPAGE};
	r = NULL;
	int rc = shmring_create(name, &cfg, &r);
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", shmring_last_error());
	struct shmring *anon = NULL;
	int rc_anon = shmring_create_anon(&cfg, &anon);
	if (emptied)
		assert_int_equal(write_file(nr_path, total), 0);
	assert_null(r);
	assert_null(anon);
	assert_false(shm_exists(name)); /* a failed create leaves no name behind */
	if (page) {
		assert_int_equal(rc, -ENOMEM);
		assert_non_null(strstr(msg, "hugepage/setup.sh --pages"));
		assert_int_equal(rc_anon, -ENOMEM);
	} else {
		assert_int_equal(rc, -EINVAL);
	}
	if (emptied)
		assert_int_equal(hugepages_count(page, "nr_hugepages"), total);
}

/*
 * Zero page faults on the hot path: a producer and a consumer process
 * (ringpeer with SHMRING_PEER_FAULTS=1 measures getrusage around its loop and
 * fails on any fault) exchange 10^6 messages through a ring of this backing.
 */
static void exchange_without_faults(const char *ring_arg)
{
	char *cargv[] = {"ringpeer", "consume", (char *)ring_arg, "1", "1000000", "exact", NULL};
	char *pargv[] = {"ringpeer", "produce", (char *)ring_arg, "0", "1000000", NULL};
	char *const *argvs[2] = {cargv, pargv};
	pid_t pids[2];
	for (int i = 0; i < 2; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			setenv("SHMRING_PEER_FAULTS", "1", 1);
			execv(peer_path, (char *const *)argvs[i]);
			_exit(127);
		}
	}
	time_t end = time(NULL) + 120;
	for (int i = 0; i < 2; i++) {
		int st = 0;
		pid_t w;
		while ((w = waitpid(pids[i], &st, WNOHANG)) == 0 && time(NULL) < end) {
			struct timespec ts = {0, 10000000};
			nanosleep(&ts, NULL);
		}
		if (w == 0) {
			kill(pids[0], SIGKILL);
			kill(pids[1], SIGKILL);
			fail_msg("peers did not finish in 120 s");
		}
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
}

static void test_no_page_faults_while_exchanging_on_normal_pages(void **state)
{
	(void)state;
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 64, 4096, SHMRING_F_NO_HUGEPAGE);
	exchange_without_faults(name);
	assert_int_equal(shmring_close(r), 0);
}

static void test_no_page_faults_while_exchanging_on_hugetlbfs(void **state)
{
	(void)state;
	SKIP_UNLESS(hugetlbfs_unavailable(1));
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 64, 4096, SHMRING_F_HUGEPAGE);
	exchange_without_faults(name);
	assert_int_equal(shmring_close(r), 0);
}

static void test_no_page_faults_while_exchanging_on_anon_hugetlb(void **state)
{
	(void)state;
	SKIP_UNLESS(hps() && hugepages_free(hps()) >= 1 ? NULL
		    : "no free hugepages for a memfd (the suite reserves them as root)");
	struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 64, .capacity = 4096,
				     .flags = SHMRING_F_HUGEPAGE};
	struct shmring *r = NULL;
	assert_int_equal(shmring_create_anon(&cfg, &r), 0);
	/* The peers get the memfd across exec, as "fd:N". */
	int fd = dup(shmring_fd(r));
	assert_true(fd >= 0);
	char arg[32];
	snprintf(arg, sizeof(arg), "fd:%d", fd);
	exchange_without_faults(arg);
	close(fd);
	assert_int_equal(shmring_close(r), 0);
}


/*
 * The THP fallback (/dev/shm advised MADV_HUGEPAGE) on this host needs shmem
 * THP enabled, which it is not by default: as root, switch it to "advise" and
 * take the free hugetlb pages away for the test (so the ring falls back), then
 * put both back.
 */
static char thp_old[32];
static long thp_total = -1;
static char thp_nr_path[128];

/* Put shmem THP and the hugetlb pool back, whatever the test did (teardown). */
static int thp_restore(void **state)
{
	(void)state;
	if (thp_total >= 0)
		write_file(thp_nr_path, thp_total);
	if (thp_old[0]) {
		FILE *w = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "w");
		if (w) {
			fprintf(w, "%s\n", thp_old);
			fclose(w);
		}
	}
	thp_total = -1;
	thp_old[0] = 0;
	return 0;
}

static void test_no_page_faults_while_exchanging_on_shmem_thp(void **state)
{
	(void)state;
	const char *thp = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";
	char cur[128] = "";
	if (geteuid() != 0 || hps() == 0 || access(thp, R_OK | W_OK) != 0) {
		print_message("SKIP: shmem THP cannot be switched here (not root, or no THP)\n");
		skip();
		return;
	}
	FILE *f = fopen(thp, "r");
	assert_non_null(f);
	size_t n = fread(cur, 1, sizeof(cur) - 1, f);
	fclose(f);
	cur[n] = 0;
	char *lb = strchr(cur, '['), *rb = lb ? strchr(lb, ']') : NULL;
	assert_non_null(rb);
	*rb = 0;
	snprintf(thp_old, sizeof(thp_old), "%s", lb + 1);
	snprintf(thp_nr_path, sizeof(thp_nr_path),
		 "/sys/kernel/mm/hugepages/hugepages-%zukB/nr_hugepages", hps() / 1024);
	long total = hugepages_count(hps(), "nr_hugepages"), free_now = hugepages_free(hps());
	FILE *w = fopen(thp, "w");
	assert_non_null(w);
	fputs("advise\n", w);
	assert_int_equal(fclose(w), 0);
	if (free_now > 0) {
		thp_total = total;
		assert_int_equal(write_file(thp_nr_path, total - free_now), 0);
	}
	const char *name = test_name();
	struct shmring *r = make(name, SHMRING_SPSC, 64, 65536, 0);
	struct shmring_info info;
	assert_int_equal(shmring_info(r, &info), 0);
	assert_int_equal(info.backing, SHMRING_BACKING_SHM_THP);
	exchange_without_faults(name);
	assert_int_equal(shmring_close(r), 0);
}

int main(void)
{
	watchdog_start(TEST_WATCHDOG_S);
	ssize_t n = readlink("/proc/self/exe", peer_path, sizeof(peer_path) - 16);
	peer_path[n > 0 ? n : 0] = 0;
	char *slash = strrchr(peer_path, '/');
	strcpy(slash ? slash + 1 : peer_path, "ringpeer");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hugetlbfs_ring_is_on_resident_hugepages_and_returns_them),
		cmocka_unit_test(test_unlink_removes_the_hugetlbfs_file_too),
		cmocka_unit_test(test_normal_page_ring_is_resident_and_mlocked),
		cmocka_unit_test(test_anon_hugetlb_ring_is_shared_with_a_forked_child),
		cmocka_unit_test(test_without_hugepages_default_falls_back_and_hugepage_flag_says_what_to_run),
		cmocka_unit_test(test_no_page_faults_while_exchanging_on_normal_pages),
		cmocka_unit_test(test_no_page_faults_while_exchanging_on_hugetlbfs),
		cmocka_unit_test(test_no_page_faults_while_exchanging_on_anon_hugetlb),
		cmocka_unit_test_teardown(test_no_page_faults_while_exchanging_on_shmem_thp, thp_restore),
	};
	return cmocka_run_group_tests_name("hugepage", tests, NULL, NULL);
}
