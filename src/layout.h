/*
 * layout.h - the shared memory layout. This is an ABI between processes that
 * may run different builds: every offset is fixed and checked with
 * static_assert, and any change to it bumps SHMRING_LAYOUT_VERSION.
 *
 *   file (named rings: /dev/shm/<name>)
 *   +--------------------------------------------------------------+ 0
 *   | line 0   identity, written once by the creator, then read-only |
 *   |          (magic, version, kind, sizes, flags, backing, ...)   |
 *   +--------------------------------------------------------------+ 128
 *   | line 1   tail: the producers' index                           |
 *   +--------------------------------------------------------------+ 256
 *   | line 2   head: the consumers' index                           |
 *   +--------------------------------------------------------------+ 384
 *   | line 3   data futex word (consumers sleeping for data), and   |
 *   |          the notify word (event-loop consumers armed for data)|
 *   +--------------------------------------------------------------+ 512
 *   | line 4   space futex word (producers sleeping for space)      |
 *   +--------------------------------------------------------------+ 640
 *   | 640..1023   slow-path counters                               |
 *   | 1024..1279  notify-fd registrations (16 x 16 bytes)          |
 *   | 1280..2047  roles, then 47 participants (16 bytes each)      |
 *   | 2048..2303  path of a separate data file (hugetlbfs), or ""  |
 *   | ..4095      reserved, zero                                   |
 *   +--------------------------------------------------------------+ 4096
 *   | slots: capacity x slot_size bytes, at data_offset            |
 *   +--------------------------------------------------------------+
 *
 * Fields written by different sides sit 128 bytes apart, not 64: x86 CPUs
 * prefetch cache lines in adjacent pairs, and a producer's tail store would
 * otherwise drag the consumer's head line along with it.
 *
 * Indices (head, tail) are free-running 64-bit counters, masked with
 * capacity - 1 on access. The count is tail - head in unsigned arithmetic,
 * which is right across wrap-around as long as it is <= capacity; a larger
 * difference can only come from a corrupt or hostile peer and is reported as
 * -EBADMSG. At 10^9 messages a second a 64-bit index wraps after 584 years,
 * but the code does not rely on that: tests start the indices just below 2^64.
 *
 * Slot state word (MPSC and MPMC only; SPSC slots hold just the message):
 *
 *   63                          16 15   12 11          0
 *   +-----------------------------+-------+------------+
 *   |  position (index mod 2^48)  | state |   owner    |
 *   +-----------------------------+-------+------------+
 *
 * The word says which position the slot currently serves and in what state:
 * EMPTY (a producer of that position may claim it), WRITING (claimed by owner,
 * being filled), FULL (a consumer of that position may take it), READING
 * (MPMC: claimed by owner, being copied out) and SKIP (a dead producer's slot,
 * to be passed over). A consumer frees a slot by moving it to EMPTY at
 * position + capacity. The owner field names the participant that holds a
 * claim, so that the claim and its owner change in one atomic step; this is
 * what lets a dead owner's slot be recovered later (see mpmc.c).
 */
#ifndef SHMRING_LAYOUT_H
#define SHMRING_LAYOUT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "atomics.h"

#define SHMRING_MAGIC UINT64_C(0x31474e49524d4853) /* "SHMRING1" in memory order */
#define SHMRING_LAYOUT_VERSION 1u
#define SHMRING_LINE 128u
#define SHMRING_CTL_SIZE 4096u
#define SHMRING_PATH_MAX 256u

/* Upper bound of a ring's slot array, to keep size arithmetic far from overflow. */
#define SHMRING_MAX_DATA_SIZE (UINT64_C(1) << 40)

enum slot_state {
	ST_EMPTY = 0,
	ST_WRITING = 1,
	ST_FULL = 2,
	ST_READING = 3,
	ST_SKIP = 4,
};

#define W_POS_SHIFT 16
#define W_STATE_SHIFT 12
#define W_OWNER_MASK UINT64_C(0xfff)
#define W_POS_MASK ((UINT64_C(1) << 48) - 1)

struct shmring_counters {
	atomic_u64 futex_sleeps;   /* waits that went to sleep in the kernel */
	atomic_u64 futex_wakes;    /* wake calls made by the other side */
	atomic_u64 wait_timeouts;  /* waits that returned -ETIMEDOUT */
	atomic_u64 skipped;        /* slots of dead producers passed over */
	atomic_u64 recovered;      /* claims of dead processes released */
	atomic_u64 takeovers;      /* roles taken over from dead processes */
	atomic_u64 attach_rejects; /* attaches that failed validation */
	uint64_t spare[41];
};

/*
 * One consumer's notify-fd registration: id 0 means the entry is free. A
 * producer that sees an id it has not cached fetches that consumer's eventfd
 * (see notify.c); pid is informational.
 */
#define SHMRING_NOTIFY_MAX 16
struct shmring_notify_reg {
	atomic_u64 id;
	int32_t pid;
	uint32_t spare;
};

/*
 * A participant: one handle attached to the ring. Its id is its index + 1
 * (0 means nobody, in roles and in slot owners). Whether it is alive is not
 * read from here: the handle holds an OFD write lock on byte
 * SHMRING_LOCK_BASE + index of the ring's file, which the kernel drops when
 * the process dies (PIDs are reused and differ across namespaces). pid is
 * what a person sees; roles record what the handle has done. The lock bytes
 * are part of the ABI like the layout: SHMRING_LOCK_BASE - 1 is held (write)
 * while a ring is created or reclaimed (ring.c), SHMRING_LOCK_BASE - 2 is
 * held shared by every join, recovery or role takeover in progress
 * (liveness.c, "Transitions").
 */
#define SHMRING_PARTICIPANTS_MAX 47
#define SHMRING_LOCK_BASE (INT64_C(1) << 40) /* lock bytes lie past any file's end */
#define PART_PRODUCER 1u
#define PART_CONSUMER 2u
struct shmring_participant {
	atomic_u32 state; /* 0 free, 1 in use (the lock decides whether it is alive) */
	_Atomic int32_t pid;
	atomic_u32 roles; /* PART_PRODUCER | PART_CONSUMER: what it has done */
	uint32_t spare;
};

struct shmring_hdr {
	/* line 0: identity; written by the creator before version, read-only after */
	uint64_t magic;
	atomic_u32 version;   /* written last, with release; 0 while initialising */
	uint32_t ctl_size;    /* SHMRING_CTL_SIZE */
	uint32_t kind;        /* enum shmring_kind */
	uint32_t msg_size;
	uint32_t capacity;    /* power of two, >= 2 */
	uint32_t slot_size;   /* stride between slots */
	uint32_t flags;       /* the ring's SHMRING_F_* as created */
	uint32_t backing;     /* enum shmring_backing */
	uint64_t page_size;   /* page size backing the slots */
	uint64_t data_offset; /* offset of the slot array in its file */
	uint64_t data_size;   /* capacity * slot_size */
	uint64_t file_size;   /* size of the file holding this header */
	int32_t creator_pid;
	uint32_t creator_uid;
	uint64_t generation;  /* unique per create: a ring made again under the same name differs */
	uint64_t created_ns;  /* CLOCK_REALTIME at create */
	uint8_t pad0[SHMRING_LINE - 96];

	/* line 1: written by producers */
	atomic_u64 tail;
	uint8_t pad1[SHMRING_LINE - 8];

	/* line 2: written by consumers */
	atomic_u64 head;
	uint8_t pad2[SHMRING_LINE - 8];

	/* line 3: consumers sleeping for data (SHMRING_F_BLOCKING) */
	atomic_u32 data_futex;
	atomic_u32 notify_word; /* read with data_futex by the same waker: one line */
	uint8_t pad3[SHMRING_LINE - 8];

	/* line 4: producers sleeping for space (SHMRING_F_BLOCKING) */
	atomic_u32 space_futex;
	uint8_t pad4[SHMRING_LINE - 4];

	/* 640: slow-path counters, never touched per message */
	struct shmring_counters counters;
	uint8_t pad5[1024 - 640 - sizeof(struct shmring_counters)];

	/* 1024: notify-fd registrations (notify.c) */
	struct shmring_notify_reg notify[SHMRING_NOTIFY_MAX];

	/* 1280: roles, then participants (liveness.c) */
	atomic_u32 producer_role; /* SPSC: participant id holding the producer role, 0 = none */
	atomic_u32 consumer_role; /* SPSC, MPSC: participant id holding the consumer role */
	uint32_t role_spare[2];
	struct shmring_participant part[SHMRING_PARTICIPANTS_MAX];

	/* 2048: data file path for separate backings, NUL-terminated; "" if none */
	char data_path[SHMRING_PATH_MAX];

	uint8_t reserved[SHMRING_CTL_SIZE - 2048 - SHMRING_PATH_MAX];
};

static_assert(sizeof(struct shmring_counters) == 384, "counters fill three lines");
static_assert(offsetof(struct shmring_hdr, version) == 8, "version offset is ABI");
static_assert(offsetof(struct shmring_hdr, kind) == 16, "kind offset is ABI");
static_assert(offsetof(struct shmring_hdr, page_size) == 40, "page_size offset is ABI");
static_assert(offsetof(struct shmring_hdr, creator_pid) == 72, "creator_pid offset is ABI");
static_assert(offsetof(struct shmring_hdr, created_ns) == 88, "created_ns offset is ABI");
static_assert(offsetof(struct shmring_hdr, tail) == 128, "tail on its own line pair");
static_assert(offsetof(struct shmring_hdr, head) == 256, "head on its own line pair");
static_assert(offsetof(struct shmring_hdr, data_futex) == 384, "data futex on its own line");
static_assert(offsetof(struct shmring_hdr, space_futex) == 512, "space futex on its own line");
static_assert(offsetof(struct shmring_hdr, counters) == 640, "counters offset is ABI");
static_assert(offsetof(struct shmring_hdr, notify_word) == 388, "notify word beside the futex word");
static_assert(offsetof(struct shmring_hdr, notify) == 1024, "notify registrations offset is ABI");
static_assert(offsetof(struct shmring_hdr, producer_role) == 1280, "roles offset is ABI");
static_assert(offsetof(struct shmring_hdr, part) == 1296, "participants offset is ABI");
static_assert(sizeof(struct shmring_participant) == 16, "participant entry size is ABI");
static_assert(offsetof(struct shmring_hdr, data_path) == 2048, "data_path offset is ABI");
static_assert(sizeof(struct shmring_hdr) == SHMRING_CTL_SIZE, "control block is one 4 KiB page");
static_assert(sizeof(atomic_u64) == 8 && _Alignof(atomic_u64) == 8, "lock-free 64-bit atomics");

static inline uint64_t word_make(uint64_t pos, unsigned state, unsigned owner)
{
	return ((pos & W_POS_MASK) << W_POS_SHIFT) | ((uint64_t)state << W_STATE_SHIFT) |
	       ((uint64_t)owner & W_OWNER_MASK);
}

static inline unsigned word_state(uint64_t w)
{
	return (unsigned)((w >> W_STATE_SHIFT) & 0xf);
}

/* Signed distance from position pos to the position in w, modulo 2^48. */
static inline int64_t word_dist(uint64_t w, uint64_t pos)
{
	uint64_t d = ((w >> W_POS_SHIFT) - pos) & W_POS_MASK;
	return d >= (UINT64_C(1) << 47) ? (int64_t)d - (int64_t)(UINT64_C(1) << 48) : (int64_t)d;
}

#endif /* SHMRING_LAYOUT_H */
