/*
 * internal.h - the per-process handle and the functions the library's files
 * share. Nothing here is exported.
 */
#ifndef SHMRING_INTERNAL_H
#define SHMRING_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
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
	uint32_t owner;       /* this handle's participant id, in slot claims and roles */
	bool blocking;        /* SHMRING_F_BLOCKING: wake sleepers after each push and pop */
	bool is_producer;     /* role claimed (liveness.c): tested once per push */
	bool is_consumer;     /* role claimed: tested once per pop */

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
	pid_t pid;            /* the process that made this handle: a forked copy is not it */
	struct shmring *next, *prev; /* this process's handles (liveness.c, for fork) */
	bool tracked;
	int64_t spin_ns;      /* blocking waits: spin this long before sleeping */
	int64_t sleep_slice_ns; /* longest single futex sleep (wait.c); tests lengthen it */
	bool sleeping;        /* inside a blocking wait: stuck_check reads the clock each time */
	bool eos;             /* pop_wait returns -EPIPE when empty with no live producer */
	bool blocked;         /* the last try was held up by a claim (stuck_check ran) */
	int64_t eos_next_ns;  /* when to look for live producers next */
	uint64_t stuck_word;  /* the claim that last held a push or pop up (liveness.c) */
	uint32_t stuck_seen;
	int64_t stuck_since;
	bool creator;
	bool locked;
	uint32_t ring_flags;  /* as created */
	uint32_t local_flags; /* this process's choices: NO_MLOCK, NO_HUGEPAGE */
	uint32_t backing;
	int fd;               /* the ring's file: mapped, and handed out by shmring_fd */
	int lock_fd;          /* private description for this handle's locks (liveness.c) */
	int data_fd;          /* create: the unnamed hugetlbfs slot file until it is named */
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

	/*
	 * Notify fd (notify.c). Consumer side: this handle's own registration,
	 * eventfd and service thread, NULL until shmring_notify_fd. Producer
	 * side: per registration index, the id of the consumer whose eventfd
	 * this handle fetched and that fd. Zeroed (calloc) means "nothing
	 * cached": id 0 is a free entry, which is never fetched, so fd is
	 * meaningful only while id != 0 (then -1 if the fetch failed, to be
	 * tried again at retry_ns, never when the consumer was gone).
	 */
	struct notify_self *notify_self;
	struct notify_cached {
		uint64_t id;      /* the registration this fd belongs to; 0: none */
		int64_t retry_ns; /* fd < 0: when to fetch again (INT64_MAX: never) */
		int fd;           /* that consumer's eventfd, or -1 */
	} notify_cache[SHMRING_NOTIFY_MAX];
};

/* notify.c: bit 0 of hdr->notify_word, set by an event-loop consumer about to wait. */
#define NOTIFY_ARMED 1u
/* Write every registered consumer's eventfd; the producer saw NOTIFY_ARMED (wait.c). */
SHMRING_HIDDEN void notify_wake(struct shmring *r);
/* Unregister, stop the service thread, close every notify fd of the handle. */
SHMRING_HIDDEN void notify_close(struct shmring *r);

/* liveness.c */
SHMRING_HIDDEN int part_join(struct shmring *r);
SHMRING_HIDDEN void handle_track(struct shmring *r, bool add);
SHMRING_HIDDEN void part_leave(struct shmring *r);
SHMRING_HIDDEN bool part_alive(const struct shmring *r, uint32_t id);
SHMRING_HIDDEN int role_claim_producer(struct shmring *r);
SHMRING_HIDDEN int role_claim_consumer(struct shmring *r);
SHMRING_HIDDEN bool stuck_check(struct shmring *r, uint64_t w);
SHMRING_HIDDEN bool any_live_producer(const struct shmring *r);
SHMRING_HIDDEN bool ring_file_dead(int fd, const struct shmring_hdr *h, size_t len, char *pids,
				   size_t plen);

/* The first push (pop) of a handle claims its role; later ones test one flag. */
static inline int ensure_producer(struct shmring *r)
{
	return __builtin_expect(r->is_producer, 1) ? 0 : role_claim_producer(r);
}

static inline int ensure_consumer(struct shmring *r)
{
	return __builtin_expect(r->is_consumer, 1) ? 0 : role_claim_consumer(r);
}

/* killpoint.c: fault-injection points, compiled in only by make SAN=killpoints. */
#ifdef SHMRING_KILL_POINTS
SHMRING_HIDDEN void kill_point(const char *name);
#define KILL_POINT(name) kill_point(name)
#else
#define KILL_POINT(name) ((void)0)
#endif

/*
 * Copy a message; the kill-point build stops halfway for tests to die mid-copy.
 * Common sizes get a copy of constant size, which the compiler turns into a
 * few vector moves: glibc's memcpy of a variable size uses "rep movsb" on this
 * CPU (FSRM), which measured much slower on lines another core just wrote
 * (shmring-bench, 64 B SPSC streaming, same run: 16-24 -> 28 Mmsg/s; my
 * stream test: 7.5 -> 10.6 Mmsg/s).
 */
static inline void copy_msg(void *dst, const void *src, size_t n, const char *mid_point)
{
#ifdef SHMRING_KILL_POINTS
	memcpy(dst, src, n / 2);
	kill_point(mid_point);
	memcpy((char *)dst + n / 2, (const char *)src + n / 2, n - n / 2);
#else
	(void)mid_point;
	switch (n) {
	case 8: memcpy(dst, src, 8); break;
	case 16: memcpy(dst, src, 16); break;
	case 32: memcpy(dst, src, 32); break;
	case 64: memcpy(dst, src, 64); break;
	default: memcpy(dst, src, n); break;
	}
#endif
}

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
/* Default longest single futex sleep (wait.c explains why there is one). */
#define SHMRING_SLEEP_SLICE_NS INT64_C(250000000)

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
