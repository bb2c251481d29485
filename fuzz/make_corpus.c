/*
 * make_corpus.c - seed corpus for fuzz_attach: real rings, as files.
 *
 * Random bytes almost never pass attach's checks, so the fuzzer starts from
 * rings the library made itself: every kind, a few small shapes, some
 * messages in them, head and tail moved on (one ring just before the 2^48
 * wrap of slot-word positions), blocking and spin-only. Each ring is made
 * with shmring_create_anon (normal pages, so its file is the whole ring) and
 * its memfd's bytes are written out as one corpus file of 8-16 KiB. One more
 * file is the control page alone of a ring that says its slots are in a
 * hugetlbfs file, so that the checks of that path are reached too. Bytes
 * 4032..4095 of the control page (reserved in the layout) get an operation
 * script for fuzz_attach (see there), different per file.
 *
 * Usage: make_corpus DIR   (DIR must exist; files are overwritten)
 * Build: with the library's sources (or build/libshmring.a), not the shared
 * library: it uses the test hook shmring_test_set_index, which libshmring.so
 * does not export. fuzz/run.sh builds it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "shmring.h"

#define SCRIPT_OFF 4032u
#define SCRIPT_LEN 64u

struct seed {
	const char *name;
	bool hugetlbfs; /* rewrite the header as a hugetlbfs ring's control page */
	enum shmring_kind kind;
	uint32_t msg_size;
	uint32_t capacity;
	uint32_t flags;
	uint64_t base;   /* starting index (0, or near a wrap) */
	unsigned pushed; /* messages pushed */
	unsigned popped; /* of which popped again */
	unsigned peeked; /* then one peek left outstanding (MPMC: a READING slot) */
};

static const struct seed seeds[] = {
	{"spsc-8x4-half", false, SHMRING_SPSC, 8, 4, 0, 0, 3, 1, 0},
	{"spsc-64x16-full", false, SHMRING_SPSC, 64, 16, SHMRING_F_BLOCKING, 0, 16, 0, 0},
	{"spsc-24x8-wrap64", false, SHMRING_SPSC, 24, 8, 0, UINT64_MAX - 5, 7, 3, 0},
	{"mpsc-8x4-half", false, SHMRING_MPSC, 8, 4, 0, 0, 5, 3, 0},
	{"mpsc-64x16-blocking", false, SHMRING_MPSC, 64, 16, SHMRING_F_BLOCKING, 0, 20, 10, 0},
	{"mpsc-200x32-wrap48", false, SHMRING_MPSC, 200, 32, 0, (UINT64_C(1) << 48) - 7, 30, 12, 0},
	{"mpmc-8x4-empty", false, SHMRING_MPMC, 8, 4, 0, 0, 6, 4, 0},
	{"mpmc-64x16-reading", false, SHMRING_MPMC, 64, 16, 0, 0, 12, 2, 1},
	{"mpmc-24x8-blocking", false, SHMRING_MPMC, 24, 8, SHMRING_F_BLOCKING, 1000, 8, 0, 0},
	{"mpmc-200x32-wrap64", false, SHMRING_MPMC, 200, 32, 0, UINT64_MAX - 9, 31, 13, 0},
	{"hugetlbfs-ctl-mpsc-64x16", true, SHMRING_MPSC, 64, 16, 0, 0, 4, 1, 0},
};

static int make_one(const char *dir, const struct seed *s, unsigned idx)
{
	struct shmring_config cfg = {.kind = s->kind, .msg_size = s->msg_size,
				     .capacity = s->capacity,
				     .flags = s->flags | SHMRING_F_NO_HUGEPAGE | SHMRING_F_NO_MLOCK};
	struct shmring *r = NULL;
	int rc = shmring_create_anon(&cfg, &r);
	if (rc) {
		fprintf(stderr, "%s: create_anon: %s (%s)\n", s->name, shmring_strerror(rc),
			shmring_last_error());
		return 1;
	}
	if (s->base && shmring_test_set_index(r, s->base) != 0)
		return 1;
	unsigned char msg[256];
	for (unsigned i = 0; i < s->pushed; i++) {
		memset(msg, (int)(i + 1), sizeof(msg));
		memcpy(msg, &i, sizeof(i));
		rc = shmring_try_push(r, msg);
		if (rc && rc != -EAGAIN) {
			fprintf(stderr, "%s: push: %s\n", s->name, shmring_strerror(rc));
			return 1;
		}
	}
	for (unsigned i = 0; i < s->popped; i++)
		if ((rc = shmring_try_pop(r, msg)) != 0) {
			fprintf(stderr, "%s: pop: %s\n", s->name, shmring_strerror(rc));
			return 1;
		}
	const void *slot;
	if (s->peeked && (rc = shmring_peek(r, &slot)) != 0) {
		fprintf(stderr, "%s: peek: %s\n", s->name, shmring_strerror(rc));
		return 1;
	}

	/* The ring's bytes, as another process would find them in its file. */
	int fd = shmring_fd(r);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < (off_t)SHMRING_CTL_SIZE) {
		fprintf(stderr, "%s: cannot stat the ring's memfd\n", s->name);
		return 1;
	}
	size_t len = (size_t)st.st_size;
	unsigned char *bytes = malloc(len);
	if (!bytes || pread(fd, bytes, len, 0) != (ssize_t)len) {
		fprintf(stderr, "%s: cannot read the ring's memfd\n", s->name);
		return 1;
	}
	if (s->hugetlbfs) {
		/* As create writes it for slots in hugetlbfs: the control page alone. */
		struct shmring_hdr *h = (struct shmring_hdr *)(void *)bytes;
		len = SHMRING_CTL_SIZE;
		h->backing = SHMRING_BACKING_HUGETLBFS;
		h->page_size = UINT64_C(2) << 20;
		h->data_offset = 0;
		h->file_size = len;
		snprintf(h->data_path, sizeof(h->data_path), "/dev/hugepages/shmring.seed");
	}
	/* A different operation script per file, from a small LCG. */
	uint32_t x = 2463534242u + idx * 7919u;
	for (unsigned i = 0; i < SCRIPT_LEN; i++) {
		x = x * 1103515245u + 12345u;
		bytes[SCRIPT_OFF + i] = (unsigned char)(x >> 16);
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, s->name);
	FILE *f = fopen(path, "wbe");
	if (!f || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "%s: cannot write %s\n", s->name, path);
		return 1;
	}
	free(bytes);
	/* An outstanding peek is abandoned with the handle, as a crashed consumer's would be. */
	return shmring_close(r) != 0;
}

int main(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: %s DIR\n  writes one seed ring file per shape into DIR\n",
			argv[0]);
		return 2;
	}
	int bad = 0;
	for (unsigned i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		bad |= make_one(argv[1], &seeds[i], i);
	if (!bad)
		printf("make_corpus: %zu seed rings in %s\n", sizeof(seeds) / sizeof(seeds[0]),
		       argv[1]);
	return bad;
}
