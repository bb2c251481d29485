/*
 * fuzz_attach.c - libFuzzer target: a ring whose bytes are hostile.
 *
 * Each input is the content of a ring's file: the 4 KiB control page, then
 * the slots. It is written into a memfd, attached with shmring_attach_fd(),
 * and, if attach accepts it, used: a short script of pops, batch pops,
 * peeks, pushes, batch pushes, reservations and waits, then a bounded drain.
 * The promise under test (DESIGN.md, "Shared memory is an ABI"): whatever the
 * bytes, every call returns a documented value (-EBADMSG when the state is
 * inconsistent), nothing outside the mapping is read or written, and every
 * call returns (libFuzzer's -timeout reports a call that does not).
 *
 * How an input becomes a file:
 *   - the file is the input's bytes; an input shorter than the control page
 *     must be refused cleanly;
 *   - except when the input's length is even and the header's file_size
 *     field (offset 64) lies in [4096, 1 MiB]: then the file is truncated or
 *     zero-padded to that size, so that mutations which change the length
 *     still reach the checks behind the size check. Odd lengths keep the
 *     size mismatch reachable.
 *   - bytes SCRIPT_OFF.. of the control page are reserved in the layout
 *     (attach ignores them); this target reads its operation script there,
 *     so the fuzzer can mutate what is done as well as the ring.
 *   - a hugetlbfs ring names its slot file by path in the header. So that
 *     the fuzzer cannot make attach open an arbitrary file of this host
 *     (as root), such a path is rewritten to a name inside a private
 *     directory ($SHMRING_FUZZ_JAIL, else a temporary one) that holds one
 *     empty regular file, "f"; the checks on the path still run.
 *
 * Oracles beyond the sanitizers: ASan does not see mmap'd memory, so the
 * slot array the handle computed is checked against the mapping (white box:
 * internal.h), every pointer peek/reserve hand out is checked to be a slot of
 * that array, and buffers given to the library are heap blocks of exactly
 * the size the API promises to touch, so an overrun is an ASan report.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "layout.h"
#include "shmring.h"

/* Where in the control page the operation script lives (reserved bytes). */
#define SCRIPT_OFF 4032u
#define SCRIPT_LEN 64u
/* The largest file an input may ask for through its header's file_size. */
#define MAX_FILE (1u << 20)
/* Pops in the final drain, at most. */
#define DRAIN_MAX 256u
/* Messages per batch call, at most. */
#define BATCH_MAX 8u

static int ring_fd = -1;
/* Private directory for hugetlbfs slot paths: $SHMRING_FUZZ_JAIL, or a temporary one. */
static char jail[128];
static bool jail_is_temp;

static void fail(const char *what, long rc)
{
	fprintf(stderr, "fuzz_attach: %s returned %ld (%s); last error: %s\n", what, rc,
		shmring_strerror((int)rc), shmring_last_error());
	abort();
}

static void jail_remove(void)
{
	char f[sizeof(jail) + 4];
	snprintf(f, sizeof(f), "%s/f", jail);
	unlink(f);
	if (jail_is_temp)
		rmdir(jail);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	ring_fd = memfd_create("fuzz_attach", MFD_CLOEXEC);
	if (ring_fd < 0) {
		perror("memfd_create");
		exit(1);
	}
	const char *env = getenv("SHMRING_FUZZ_JAIL");
	if (env && *env) {
		if (strlen(env) >= sizeof(jail) - 8 || (mkdir(env, 0700) != 0 && errno != EEXIST)) {
			fprintf(stderr, "fuzz_attach: SHMRING_FUZZ_JAIL %s: too long or not a directory\n",
				env);
			exit(1);
		}
		snprintf(jail, sizeof(jail), "%s", env);
	} else {
		snprintf(jail, sizeof(jail), "/tmp/shmring-fuzz-XXXXXX");
		if (!mkdtemp(jail)) {
			perror("mkdtemp");
			exit(1);
		}
		jail_is_temp = true;
	}
	/* One regular file inside, so that a path can reach the file-system check. */
	char f[sizeof(jail) + 4];
	snprintf(f, sizeof(f), "%s/f", jail);
	int fd = open(f, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	atexit(jail_remove);
	return 0;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* Point a terminated absolute data path into the jail: "/x/y" -> "<jail>/x_y". */
static void jail_data_path(uint8_t *hdr)
{
	char *path = (char *)hdr + offsetof(struct shmring_hdr, data_path);
	if (get32(hdr + offsetof(struct shmring_hdr, backing)) != SHMRING_BACKING_HUGETLBFS ||
	    path[0] != '/' || !memchr(path, 0, SHMRING_PATH_MAX))
		return;
	char out[SHMRING_PATH_MAX];
	size_t n = (size_t)snprintf(out, sizeof(out), "%s/", jail);
	for (size_t i = 1; path[i] && n < sizeof(out) - 1; i++) {
		unsigned char c = (unsigned char)path[i];
		out[n++] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? (char)c : '_';
	}
	out[n] = 0;
	memcpy(path, out, n + 1);
}

/* Write the file for this input; false if the host refused (not the library). */
static bool write_file(const uint8_t *data, size_t size)
{
	size_t file = size;
	if (size % 2 == 0 && size >= SHMRING_CTL_SIZE) {
		uint64_t want = get64(data + offsetof(struct shmring_hdr, file_size));
		if (want >= SHMRING_CTL_SIZE && want <= MAX_FILE)
			file = (size_t)want;
	}
	size_t n = size < file ? size : file;
	if (ftruncate(ring_fd, 0) != 0)
		return false;
	if (n >= SHMRING_CTL_SIZE) {
		uint8_t hdr[SHMRING_CTL_SIZE];
		memcpy(hdr, data, sizeof(hdr));
		jail_data_path(hdr);
		if (pwrite(ring_fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
		    (n > sizeof(hdr) && pwrite(ring_fd, data + sizeof(hdr), n - sizeof(hdr),
					       sizeof(hdr)) != (ssize_t)(n - sizeof(hdr))))
			return false;
	} else if (n && pwrite(ring_fd, data, n, 0) != (ssize_t)n) {
		return false;
	}
	return ftruncate(ring_fd, (off_t)file) == 0;
}

/* The slot array the handle computed lies inside its mapping. */
static void check_geometry(const struct shmring *r)
{
	const unsigned char *base = r->data_map ? r->data_map : r->map;
	size_t len = r->data_map ? r->data_len : r->map_len;
	size_t span = (size_t)r->capacity * r->slot_size;
	bool ok = r->capacity >= 2 && (r->capacity & (r->capacity - 1)) == 0 &&
		  r->mask == (uint64_t)r->capacity - 1 && r->msg_size > 0 &&
		  r->msg_size <= r->slot_size && r->slots >= base && span <= len &&
		  (size_t)(r->slots - base) <= len - span && (uintptr_t)r->slots % 16 == 0;
	if (ok && r->kind != SHMRING_SPSC)
		ok = r->word_off >= r->msg_size && r->word_off % 8 == 0 &&
		     (uint64_t)r->word_off + 8 <= r->slot_size;
	if (!ok) {
		fprintf(stderr, "fuzz_attach: handle geometry outside the mapping: cap %u msg %u "
			"slot %u word %u, slots at +%td of %zu bytes\n", r->capacity, r->msg_size,
			r->slot_size, r->word_off, r->slots - base, len);
		abort();
	}
}

/* A pointer handed out by peek or reserve is one of the ring's slots. */
static void check_slot(const struct shmring *r, const void *p, const char *what)
{
	const unsigned char *s = p;
	size_t span = (size_t)r->capacity * r->slot_size;
	if (s < r->slots || s >= r->slots + span || (size_t)(s - r->slots) % r->slot_size) {
		fprintf(stderr, "fuzz_attach: %s handed out %p, not a slot of [%p, +%zu)\n", what, p,
			(const void *)r->slots, span);
		abort();
	}
}

static void check_rc(int rc, const char *what)
{
	if (rc != 0 && rc != -EAGAIN && rc != -EBADMSG && rc != -EINVAL)
		fail(what, rc);
}

static void check_batch(int rc, unsigned n, const char *what)
{
	if (rc > 0 ? (unsigned)rc > n : (rc != -EAGAIN && rc != -EBADMSG))
		fail(what, rc);
}

static void check_size(const struct shmring *r)
{
	size_t n = shmring_size(r);
	if (n > r->capacity)
		fail("shmring_size (above capacity)", (long)n);
	if (shmring_empty(r) && shmring_size(r) > r->capacity)
		fail("shmring_empty", 0);
}

/* One scripted operation. */
static void step(struct shmring *r, uint8_t op, unsigned char *buf)
{
	unsigned n = 1u + (op >> 3) % BATCH_MAX;
	int rc;
	switch (op & 7) {
	case 0:
		check_rc(shmring_try_pop(r, buf), "try_pop");
		break;
	case 1:
		rc = shmring_try_pop_n(r, buf, n);
		check_batch(rc, n, "try_pop_n");
		break;
	case 2: {
		const void *p = NULL;
		rc = shmring_peek(r, &p);
		check_rc(rc, "peek");
		if (rc == 0) {
			check_slot(r, p, "peek");
			memcpy(buf, p, r->msg_size); /* the whole message is readable */
			check_rc(shmring_release(r), "release");
		}
		break;
	}
	case 3:
		memset(buf, op, r->msg_size);
		check_rc(shmring_try_push(r, buf), "try_push");
		break;
	case 4:
		memset(buf, op, (size_t)n * r->msg_size);
		rc = shmring_try_push_n(r, buf, n);
		check_batch(rc, n, "try_push_n");
		break;
	case 5: {
		void *p = NULL;
		rc = shmring_reserve(r, &p);
		check_rc(rc, "reserve");
		if (rc == 0) {
			check_slot(r, p, "reserve");
			memset(p, op, r->msg_size); /* the whole slot is writable */
			check_rc(shmring_commit(r), "commit");
		}
		break;
	}
	case 6: {
		struct shmring_info info;
		if ((rc = shmring_info(r, &info)) != 0)
			fail("info", rc);
		if (info.capacity != r->capacity || shmring_capacity(r) != r->capacity)
			fail("info (capacity changed)", (long)info.capacity);
		break;
	}
	default:
		/* A wait that finds nothing must time out (or see corruption), never hang. */
		rc = (op & 8) ? shmring_pop_wait(r, buf, (op & 16) ? 2000 : 0)
			      : shmring_push_wait(r, buf, (op & 16) ? 2000 : 0);
		if (rc != 0 && rc != -ETIMEDOUT && rc != -EBADMSG)
			fail("push_wait/pop_wait", rc);
		break;
	}
	check_size(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_FILE || !write_file(data, size))
		return -1;
	struct shmring *r = NULL;
	int rc = shmring_attach_fd(ring_fd, NULL, &r);
	if (rc) {
		if (rc > 0 || r)
			fail("attach_fd (failure with a handle or a positive code)", rc);
		if (size < SHMRING_CTL_SIZE && rc != -EINPROGRESS)
			fail("attach_fd of a file shorter than the control page", rc);
		return 0;
	}
	check_geometry(r);
	check_size(r);

	/* Exactly what the API may touch: BATCH_MAX messages. */
	unsigned char *buf = malloc((size_t)BATCH_MAX * r->msg_size);
	if (!buf)
		abort();
	static const uint8_t no_script[SCRIPT_LEN];
	const uint8_t *script = size >= SCRIPT_OFF + SCRIPT_LEN ? data + SCRIPT_OFF : no_script;
	for (unsigned i = 0; i < SCRIPT_LEN; i++)
		step(r, script[i], buf);

	/* Drain: a bounded number of pops, stopping at the first that finds nothing. */
	unsigned limit = 2 * r->capacity + 4 < DRAIN_MAX ? 2 * r->capacity + 4 : DRAIN_MAX;
	for (unsigned i = 0; i < limit; i++) {
		rc = shmring_try_pop(r, buf);
		check_rc(rc, "try_pop (drain)");
		check_size(r);
		if (rc)
			break;
	}
	free(buf);
	if ((rc = shmring_close(r)) != 0)
		fail("close", rc);
	return 0;
}
