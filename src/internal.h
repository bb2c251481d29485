/*
 * internal.h - the per-process handle and the functions the library's files
 * share. Nothing here is exported.
 */
#ifndef SHMRING_INTERNAL_H
#define SHMRING_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "layout.h"
#include "shmring.h"

#define SHMRING_HIDDEN __attribute__((visibility("hidden")))

struct shmring {
	/* Hot: read by every push and pop. */
	struct shmring_hdr *hdr;
	unsigned char *slots;
	uint64_t mask;        /* capacity - 1 */
	uint32_t capacity;
	uint32_t msg_size;
	uint32_t slot_size;
	uint32_t word_off;    /* MPSC/MPMC: offset of the state word within a slot */
	uint32_t kind;
	uint32_t owner;       /* this handle's id in slot claims (0 until liveness assigns one) */
	bool blocking;        /* SHMRING_F_BLOCKING: wake sleepers after each push and pop */

	/*
	 * SPSC: each side keeps its own index and a cached copy of the other
	 * side's, so it reads the other side's line only when the cache says
	 * the ring is full (producer) or empty (consumer).
	 */
	uint64_t p_tail;       /* producer: next position to write */
	uint64_t p_head_cache; /* producer: last head seen */
	uint64_t c_head;       /* consumer: next position to read */
	uint64_t c_tail_cache; /* consumer: last tail seen */
	bool p_ready;          /* p_tail/p_head_cache loaded from the ring */
	bool c_ready;

	/* Zero-copy: the slot handed out by reserve (push side) and peek (pop side). */
	bool zc_push;
	bool zc_pop;
	uint64_t zc_push_pos;
	uint64_t zc_pop_pos;

	/* Cold. */
	int64_t spin_ns;      /* blocking waits: spin this long before sleeping */
	bool creator;
	bool locked;
	uint32_t ring_flags;  /* as created */
	uint32_t local_flags; /* this process's choices: NO_MLOCK, NO_HUGEPAGE */
	uint32_t backing;
	int fd;
	void *map;            /* the control file's mapping (and slots, when in one file) */
	size_t map_len;
	void *data_map;       /* a separate slot mapping (hugetlbfs), or NULL */
	size_t data_len;
	char data_path[SHMRING_PATH_MAX]; /* its file, "" if none */
	dev_t data_dev;       /* and that file's identity, to unlink only our own */
	ino_t data_ino;
	size_t page_size;
	uint64_t generation;
	char name[SHMRING_NAME_MAX + 1];
};

/* error.c: the one place where errno becomes a return value. */
SHMRING_HIDDEN int err_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
SHMRING_HIDDEN int err_sys(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* clock.c */
SHMRING_HIDDEN int64_t mono_ns(void);
SHMRING_HIDDEN int64_t deadline_from(int64_t timeout_ns);

/* wait.c: wake the other side's sleepers after publishing (blocking rings). */
SHMRING_HIDDEN void wake_waiters(struct shmring *r, atomic_u32 *word);

/* Default spin before a blocking wait sleeps: tens of microseconds. */
#define SHMRING_DEFAULT_SPIN_NS 20000

/* spsc.c */
SHMRING_HIDDEN int spsc_push(struct shmring *r, const void *msg);
SHMRING_HIDDEN int spsc_pop(struct shmring *r, void *msg);

/* mpmc.c */
SHMRING_HIDDEN int mp_claim(struct shmring *r, uint64_t *pos, bool move_hint);
SHMRING_HIDDEN int mpsc_peek(struct shmring *r, uint64_t *pos);
SHMRING_HIDDEN int mpmc_claim(struct shmring *r, uint64_t *pos, bool move_hint);
SHMRING_HIDDEN int mp_push(struct shmring *r, const void *msg);
SHMRING_HIDDEN int mpsc_pop(struct shmring *r, void *msg);
SHMRING_HIDDEN int mpmc_pop(struct shmring *r, void *msg);
SHMRING_HIDDEN void mp_init_slots(struct shmring *r, uint64_t base);

static inline unsigned char *slot_at(const struct shmring *r, uint64_t pos)
{
	return r->slots + (size_t)(pos & r->mask) * r->slot_size;
}

static inline atomic_u64 *slot_word(const struct shmring *r, uint64_t pos)
{
	return (atomic_u64 *)(void *)(slot_at(r, pos) + r->word_off);
}

/* Test hook (not exported from the shared library): start all indices at base. */
int shmring_test_set_index(struct shmring *r, uint64_t base);

#endif /* SHMRING_INTERNAL_H */
