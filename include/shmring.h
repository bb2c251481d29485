/*
 * shmring.h - lock-free shared-memory ring buffers between processes.
 *
 * This header is the contract. Every declaration says who may call it, what
 * progress it guarantees and every error it returns. Errors are negative errno
 * values; shmring_strerror() turns one into a sentence, and
 * shmring_last_error() gives this thread's detail of the last failure
 * ("ring /orders exists with msg_size 64, you asked for 128").
 *
 * Vocabulary used below:
 *   handle    - a struct shmring *, private to one process. A handle is used by
 *               one thread at a time; separate handles to one ring may be used
 *               from separate threads and processes at once.
 *   producer  - a handle that pushes; consumer - a handle that pops.
 *   wait-free - completes in a bounded number of its own steps whatever the
 *               other participants do.
 *   lock-free - some participant completes in a bounded number of steps; this
 *               one may retry while others make progress.
 *
 * Kinds and who may call the data operations:
 *   SHMRING_SPSC - one producer and one consumer at a time. Push and pop
 *                  are wait-free.
 *   SHMRING_MPSC - any number of producers, one consumer. Push is lock-free,
 *                  pop is wait-free except when it meets a slot still being
 *                  written (it then returns -EAGAIN: it never waits inside).
 *   SHMRING_MPMC - any number of producers and consumers. Push and pop are
 *                  lock-free.
 *
 * Roles and liveness: every handle is a participant, known alive by a lock
 * the kernel drops when its process dies (at most 47 handles per ring at
 * once). A handle claims the producer or consumer role with its first push or
 * pop; in SPSC (both roles) and MPSC (the consumer role) a second claimant
 * gets -EBUSY while the holder lives, and takes the role over once it is dead.
 * The claim is the first push or pop only: it makes a few fcntl calls, and
 * while another process is attaching to (or recovering) the dead holder's
 * participant entry it waits for that to finish, for at most 1 s (then
 * -EBUSY, saying so). Later pushes and pops make no such calls.
 * A producer that dies holding a claimed slot (MPSC/MPMC, mid-push, in a batch
 * or a reservation) loses that message only: the slot is passed over within
 * about a millisecond of someone waiting behind it, and counted; an MPMC
 * consumer that dies mid-pop frees its slot likewise (that message is lost,
 * and counted). A restarted SPSC or MPSC consumer resumes where the dead one
 * stopped: the message the dead one was copying when it died is delivered
 * again to its successor (at-least-once for that one message). A process
 * that is alive but stopped (SIGSTOP, a debugger) is not dead: the slots
 * behind its claim wait for it. No torn message is ever delivered. A fork
 * costs the child one close per inherited handle, and its first push or pop
 * on each a join (see shmring_create_anon).
 */
#ifndef SHMRING_H
#define SHMRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMRING_VERSION_MAJOR 0
#define SHMRING_VERSION_MINOR 1
#define SHMRING_VERSION_PATCH 0

#if defined(__GNUC__) || defined(__clang__)
#define SHMRING_MUST_CHECK __attribute__((warn_unused_result))
#else
#define SHMRING_MUST_CHECK
#endif

/* The longest accepted name, in bytes, leading slash included. */
#define SHMRING_NAME_MAX 200

/* Opaque per-process handle. */
struct shmring;

enum shmring_kind { SHMRING_SPSC = 1, SHMRING_MPSC = 2, SHMRING_MPMC = 3 };

#define SHMRING_F_BLOCKING    (1u << 0) /* waits may sleep on a futex; producers wake sleepers */
#define SHMRING_F_HUGEPAGE    (1u << 1) /* hugepages required: fail rather than fall back */
#define SHMRING_F_NO_HUGEPAGE (1u << 2) /* normal pages even where hugepages are available */
#define SHMRING_F_NO_MLOCK    (1u << 3) /* do not lock this process's mapping */
#define SHMRING_F_PERSIST     (1u << 4) /* the creator's close does not unlink */
/* Every flag bit defined above; any other bit is rejected with -EINVAL. */
#define SHMRING_F_ALL         0x1fu

struct shmring_config {
	enum shmring_kind kind;
	uint32_t msg_size;    /* bytes per message, > 0 */
	uint32_t capacity;    /* messages, a power of two (>= 2) */
	uint32_t flags;       /* SHMRING_F_*; unknown bits are an error */
	mode_t mode;          /* 0 means 0600; applied exactly, whatever the umask */
	size_t page_size;     /* 0: the system's default hugepage size */
	uint64_t reserved[4]; /* must be zero: room to grow without breaking the ABI */
};

/*
 * shmring_create - create a named ring and return a handle to it.
 *
 * @name: "/something": one leading slash, no other slash, at most
 *        SHMRING_NAME_MAX bytes. Names share one namespace (the one of
 *        shm_open) whatever the backing.
 * @cfg:  the ring's shape; see struct shmring_config. The file is created
 *        unnamed (O_TMPFILE) with cfg->mode (0600 when 0), initialised and
 *        locked, and only then linked at the name (never replacing a file or
 *        following a symlink there): of two creators of one name exactly one
 *        succeeds, and a stopped creator keeps the other waiting for nothing
 *        (-EEXIST at once). The memory is pre-faulted and, unless SHMRING_F_NO_MLOCK,
 *        locked.
 *
 * Backing (shmring_info() reports which one a ring got): the control block is
 * always the file /dev/shm/<name>, which makes names one namespace. The slots
 * go, in order of preference, to
 *   1. a file "shmring.<name>" in a hugetlbfs mount for the page size
 *      (cfg->page_size, or the system's default hugepage size), found with
 *      libhugetlbfs or named by the environment variable SHMRING_HUGETLBFS_DIR
 *      (libhugetlbfs reads the mount table when the process starts; the
 *      variable covers mounts made later);
 *   2. /dev/shm/<name> itself with MADV_HUGEPAGE, where shmem transparent
 *      hugepages are enabled (not "never"/"deny") and the slots fill at least
 *      one hugepage;
 *   3. /dev/shm/<name> with normal pages.
 * SHMRING_F_HUGEPAGE allows only 1 and fails otherwise; SHMRING_F_NO_HUGEPAGE
 * allows only 3.
 * @out:  receives the handle on success; untouched on failure.
 *
 * Caller: any thread. Blocking: it makes system calls (open, mmap, mlock) and
 * returns in bounded time.
 *
 * Returns 0, or:
 *   -EINVAL        NULL argument; bad name; msg_size 0; capacity not a power
 *                  of two or < 2; unknown kind or flag bits; non-zero
 *                  reserved fields; HUGEPAGE with NO_HUGEPAGE; page_size not
 *                  a power of two; HUGEPAGE with a page size the kernel lacks
 *   -ENAMETOOLONG  name longer than SHMRING_NAME_MAX
 *   -EEXIST        a ring with live participants (the detail names their
 *                  pids), a SHMRING_F_PERSIST ring, or a file that is not a
 *                  ring stands at the name. A ring whose participants are
 *                  all dead, or one left half-initialised by a crashed
 *                  creator, is removed and created anew instead.
 *   -ELOOP         a symlink stands at the name
 *   -ENOMEM        the ring does not fit (msg_size x capacity overflows);
 *                  mmap/mlock failed for lack of memory or of RLIMIT_MEMLOCK
 *                  (the detail says by how much); or SHMRING_F_HUGEPAGE and no
 *                  hugetlbfs mount or too few free hugepages (the detail says
 *                  what to run: hugepage/setup.sh --pages N --size S)
 *   others         from the system, unchanged (-EACCES, -EPERM, -ENOSPC, ...)
 */
int shmring_create(const char *name, const struct shmring_config *cfg, struct shmring **out);

/*
 * shmring_attach - attach to a named ring, waiting for it to appear.
 *
 * Attach trusts nothing in the file: its size comes from fstat and every header
 * field is checked. Attach takes no role.
 *
 * @expect: may be NULL. Its non-zero kind, msg_size and capacity must match the
 *          ring; SHMRING_F_BLOCKING set in expect must be set in the ring;
 *          NO_MLOCK and NO_HUGEPAGE in expect are this process's own choices and
 *          are applied, not matched. Other flag bits are matched if set; unknown
 *          bits and non-zero reserved fields are -EINVAL.
 * @timeout_ns: how long to wait for the ring to exist and be initialised:
 *          0 tries once, < 0 waits without end (only if the caller asks).
 *
 * Caller: any thread. Blocking: sleeps in short steps up to the timeout.
 *
 * Returns 0, or:
 *   -EINVAL        NULL name or out; bad name; bad expect (see above)
 *   -ENAMETOOLONG  name longer than SHMRING_NAME_MAX
 *   -ENOENT        no ring of that name appeared before the timeout
 *   -EINPROGRESS   the ring exists but was not initialised before the timeout
 *   -ELOOP         a symlink stands at the name
 *   -EPROTO        not a shmring ring, or another layout version
 *   -EDOM          the ring differs from expect (kind, msg_size, capacity or a
 *                  ring flag); shmring_last_error() says how
 *   -EBADMSG       the header is inconsistent: sizes disagree with the file,
 *                  capacity not a power of two, unknown kind, ...
 *   -ENOSPC        all participant entries are held by live handles
 *   others         from the system, unchanged (-EACCES, -ENOMEM, ...)
 */
int shmring_attach(const char *name, const struct shmring_config *expect, int64_t timeout_ns,
		   struct shmring **out);

/*
 * shmring_close - release a handle: its roles and participant entry are
 * released; a reservation never committed is passed over (MPSC/MPMC) and a
 * peeked slot is released. The creator's handle also unlinks the name,
 * unless the ring was created with SHMRING_F_PERSIST. Processes still
 * attached keep working on the (now nameless) ring until they close.
 *
 * Caller: the thread using the handle; the handle is invalid afterwards.
 * NULL is accepted and does nothing. Bounded.
 *
 * Returns 0, or a negative errno from munmap/close/unlink (the handle is freed
 * in every case; a name already unlinked by someone else is not an error).
 */
int shmring_close(struct shmring *r);

/*
 * shmring_unlink - remove a ring's name. Attached processes keep working; a
 * later create of the same name makes a new ring.
 *
 * Returns 0, or -EINVAL / -ENAMETOOLONG (bad name), -ENOENT (no such name),
 * others from unlink (-EACCES, -EPERM).
 */
int shmring_unlink(const char *name);

/*
 * shmring_create_anon - create an unnamed ring, for sharing with children
 * made by fork() or with other processes by passing its fd (SCM_RIGHTS).
 *
 * The ring lives in one memfd: made with MFD_HUGETLB (hugepages of
 * cfg->page_size or the default size; backing SHMRING_BACKING_HUGETLB_ANON)
 * unless SHMRING_F_NO_HUGEPAGE or none are free, else normal pages (backing
 * SHMRING_BACKING_SHM). SHMRING_F_HUGEPAGE makes the fallback an error.
 * cfg->mode and SHMRING_F_PERSIST have no effect (there is no name).
 *
 * A child made by fork() may use the handle it inherited: at fork the child's
 * copy of every handle lets go of its parent's liveness lock (one close) and
 * has no participant entry, no role, no outstanding zero-copy slot, and is
 * not the creator (its close does not unlink). Its first push or pop joins
 * as a participant of its own (one open of /proc/self/fd and a lock; -ENOSPC
 * if the table is full, and the next call tries again), so idle children
 * take no entry, in SPSC a child cannot push while its parent is the live
 * producer (-EBUSY), and a dead parent is not kept "alive" by its children.
 * Nothing is mapped, faulted or locked again at fork: the child uses the
 * parent's mappings, is not mlocked (locks are not inherited), and takes a
 * minor page fault on its first touch of each page; a latency-critical child
 * attaches anew (shmring_attach_fd(shmring_fd(r), ...)) instead.
 * Caller: any thread. Bounded.
 *
 * Returns 0, or -EINVAL, -ENOMEM as for shmring_create, or others from the
 * system (memfd_create, mmap, mlock).
 */
int shmring_create_anon(const struct shmring_config *cfg, struct shmring **out);

/*
 * shmring_attach_fd - attach to an unnamed ring by its fd (received over a
 * Unix socket, or inherited). The handle opens its own file description of
 * the fd; the caller still owns @fd and may close it. Checks as
 * shmring_attach; does not wait.
 *
 * Returns 0, or -EINVAL (bad fd, NULL, bad expect), -EINPROGRESS (not
 * initialised), -EPROTO, -EDOM, -EBADMSG as for shmring_attach, or others
 * from the system.
 */
int shmring_attach_fd(int fd, const struct shmring_config *expect, struct shmring **out);

/*
 * shmring_fd - the file descriptor behind a handle: the memfd of an unnamed
 * ring (to pass to another process), or the control file of a named one. It
 * stays owned by the handle: do not close it. It carries no liveness lock
 * (a handle locks a private description), so whoever keeps a copy, or a copy
 * unread in a socket, never keeps a dead participant alive. Returns the fd,
 * or -EINVAL.
 */
int shmring_fd(const struct shmring *r);

/*
 * shmring_try_push - copy one message (msg_size bytes from @msg) into the ring.
 *
 * Caller: a producer (SPSC: the one producer; MPSC/MPMC: any number).
 * Progress: SPSC wait-free; MPSC/MPMC lock-free. No system call, no fence on
 * rings without SHMRING_F_BLOCKING. On a blocking ring a push also makes one
 * seq_cst fence and reads the consumers' futex and notify words (one cache
 * line), calls FUTEX_WAKE only if a consumer sleeps, and writes the notify
 * eventfds only if an event-loop consumer armed (system calls). The first
 * time a producer handle must wake a notify consumer it fetches that
 * consumer's eventfd (a connect and a receive on a Unix socket, each bounded
 * at 20 ms; a consumer that does not answer costs that at most once a second).
 *
 * Returns 0, or:
 *   -EAGAIN   the ring is full
 *   -EBUSY    SPSC: another live handle holds the producer role
 *   -EINVAL   NULL argument
 *   -EBADMSG  the shared indices are inconsistent (corrupt or hostile peer);
 *             detected in bounded steps, nothing written outside the ring
 */
SHMRING_MUST_CHECK int shmring_try_push(struct shmring *r, const void *msg);

/*
 * shmring_push_wait - like try_push, but while the ring is full waits up to
 * @timeout_ns (0: one try, < 0: without end).
 *
 * How it waits: on a ring without SHMRING_F_BLOCKING it busy-spins with a CPU
 * relax hint (no system call; it cannot see signals, so pass a bounded
 * timeout if you must react to one). On a SHMRING_F_BLOCKING ring it spins
 * for the handle's spin time (shmring_set_spin_ns), then sleeps on a shared
 * futex until a consumer frees a slot; no wake-up is lost.
 *
 * Returns 0, or -ETIMEDOUT (still full at the deadline), -EINTR (blocking
 * rings: a signal handler ran while it slept), -EBUSY, -EINVAL, -EBADMSG.
 */
int shmring_push_wait(struct shmring *r, const void *msg, int64_t timeout_ns);

/*
 * shmring_try_pop - copy the oldest message into @msg (msg_size bytes).
 *
 * Caller: a consumer (SPSC, MPSC: the one consumer; MPMC: any number).
 * Progress: SPSC wait-free; MPSC wait-free (a slot still being written reads
 * as empty); MPMC lock-free. A message is never delivered torn. On a
 * blocking ring a pop wakes sleeping producers as a push wakes consumers.
 *
 * Returns 0, or:
 *   -EAGAIN   the ring is empty (or its oldest slot is still being written)
 *   -EBUSY    SPSC, MPSC: another live handle holds the consumer role
 *   -EINVAL   NULL argument
 *   -EBADMSG  the shared state is inconsistent (corrupt or hostile peer);
 *             detected in bounded steps, nothing read outside the ring
 */
SHMRING_MUST_CHECK int shmring_try_pop(struct shmring *r, void *msg);

/*
 * shmring_pop_wait - like try_pop, but while the ring is empty waits up to
 * @timeout_ns (0: one try, < 0: without end).
 *
 * How it waits: as shmring_push_wait. On a SHMRING_F_BLOCKING ring an idle
 * consumer costs no CPU after its spin time: it sleeps on a shared futex and
 * a producer wakes it (one FUTEX_WAKE, made only when a sleeper announced
 * itself). Several consumers may sleep at once (MPMC); all are woken.
 *
 * Returns 0, or -ETIMEDOUT (still empty at the deadline), -EINTR (blocking
 * rings: a signal handler ran while it slept), -EPIPE (end of stream, if
 * asked for with shmring_set_end_of_stream), -EBUSY, -EINVAL, -EBADMSG.
 */
int shmring_pop_wait(struct shmring *r, void *msg, int64_t timeout_ns);

/*
 * shmring_set_end_of_stream - when @on, this handle's pop_wait returns -EPIPE
 * once the ring is empty and no live producer is attached (a producer is a
 * participant that has pushed; one that closed or died is gone). Checked at
 * most every millisecond; a sleeping wait looks every 2 ms, since a dead
 * producer wakes nobody. Caller: the consumer's thread.
 *
 * Returns 0, or -EINVAL (NULL handle).
 */
int shmring_set_end_of_stream(struct shmring *r, bool on);

/*
 * shmring_set_spin_ns - how long this handle's push_wait/pop_wait spin on a
 * SHMRING_F_BLOCKING ring before they sleep (default 20000 ns; 0 sleeps at
 * once). No effect on spin-only rings. Caller: the thread using the handle.
 *
 * Returns 0, or -EINVAL (NULL handle, negative time).
 */
int shmring_set_spin_ns(struct shmring *r, int64_t spin_ns);

/*
 * shmring_try_push_n - copy up to @n messages (n x msg_size contiguous bytes
 * from @msgs) into the ring, as many as fit, in order. The shared index moves
 * once for the whole batch (SPSC: one tail store; MPSC/MPMC: one CAS claim per
 * slot on the slot's own line, one move of the tail hint).
 *
 * Caller and progress: as shmring_try_push. On a blocking ring, sleepers are
 * woken once per batch.
 *
 * Returns the number pushed (1..n), or -EAGAIN (full: none pushed), -EBUSY
 * (SPSC: another live handle holds the producer role), -EINVAL (NULL,
 * n == 0), -EBADMSG.
 */
SHMRING_MUST_CHECK int shmring_try_push_n(struct shmring *r, const void *msgs, unsigned n);

/*
 * shmring_try_pop_n - copy up to @n of the oldest messages into @msgs
 * (room for n x msg_size bytes), in order, moving the shared index once.
 *
 * Caller and progress: as shmring_try_pop.
 *
 * Returns the number popped (1..n), or -EAGAIN (empty), -EBUSY (SPSC, MPSC:
 * another live handle holds the consumer role), -EINVAL (NULL, n == 0),
 * -EBADMSG.
 */
SHMRING_MUST_CHECK int shmring_try_pop_n(struct shmring *r, void *msgs, unsigned n);

/*
 * Zero-copy. shmring_reserve hands out the next free slot (msg_size bytes,
 * 16-byte aligned, 64-byte aligned when msg_size is a multiple of 64) for the
 * caller to write in place; shmring_commit
 * publishes it. shmring_peek hands out the oldest message in place, read-only;
 * shmring_release frees its slot. Until commit (release) the slot is this
 * handle's alone: consumers do not see it (producers do not reuse it), and in
 * MPSC/MPMC rings a consumer of a later position waits behind it (returns
 * -EAGAIN), so keep the window short. One reservation and one peek at a time
 * per handle; while one is outstanding, that handle's copying pushes (pops)
 * return -EINVAL.
 *
 * Caller: reserve/commit a producer, peek/release a consumer, with the same
 * progress as try_push/try_pop. commit and release are wait-free.
 *
 * reserve, peek return 0 with *slot set, or -EAGAIN (full / empty), -EBUSY
 * (the role is held by another live handle, as for try_push / try_pop),
 * -EINVAL (NULL, or one already outstanding on this handle), -EBADMSG.
 * commit, release return 0, or -EINVAL (nothing outstanding).
 */
SHMRING_MUST_CHECK int shmring_reserve(struct shmring *r, void **slot);
int shmring_commit(struct shmring *r);
SHMRING_MUST_CHECK int shmring_peek(struct shmring *r, const void **slot);
int shmring_release(struct shmring *r);

/*
 * Notify fd: for a consumer that waits in an event loop (epoll, poll,
 * io_uring) instead of in shmring_pop_wait. On a ring created with
 * SHMRING_F_BLOCKING, a consumer handle gets its own eventfd, and producers
 * write to it when they publish after the consumer armed it. Producer and
 * consumer may be unrelated processes; they must run with the same
 * effective uid and share a network namespace (the eventfd is handed over an
 * abstract-namespace Unix socket). The loop:
 *
 *   int fd = shmring_notify_fd(r);       // once; add fd to epoll / io_uring
 *   for (;;) {
 *       drain fd (read its 8-byte count; EAGAIN is fine)
 *       while (shmring_try_pop(r, msg) == 0) handle(msg);
 *       if (shmring_notify_arm(r) == -EAGAIN) continue;  // data came: pop again
 *       wait until fd is readable (with a timeout; see below)
 *   }
 *
 * Cost to producers on a blocking ring: a push already reads the futex word
 * after its fence; it also reads the notify word on the same cache line.
 * Only the first push after an arm makes system calls: one eventfd write per
 * registered consumer (all of them: the armed bit is shared), and, the first
 * time a producer handle meets a consumer, a connect and a receive on that
 * consumer's socket (bounded by 100 ms each). A consumer that does not answer
 * in time (stopped, starved of CPU) still gets that wake-up when it catches
 * up; for the next second producers wake it with a non-blocking connect
 * (no waiting), then fetch its eventfd again. One that is gone is skipped.
 */

/*
 * shmring_notify_fd - this consumer handle's notification eventfd.
 *
 * The first call creates an eventfd (EFD_NONBLOCK | EFD_CLOEXEC), registers it
 * in the ring (at most 16 consumers per ring; the entry of a consumer process
 * that died is taken over), and starts one service thread in this process
 * that hands the eventfd (SCM_RIGHTS) to producers of the same uid. The
 * thread has every signal blocked, so signals go to the caller's threads. Later
 * calls return the same fd. The fd belongs to the handle: do not close it;
 * shmring_close unregisters, stops the thread and closes it. A child made by
 * fork() that uses an inherited handle calls this again to get its own.
 *
 * Caller: a consumer (the thread using the handle). Bounded: the first call
 * makes a few system calls, and if all entries are taken, one connect per
 * entry to see whether its consumer is alive.
 *
 * Returns the fd (>= 0), or:
 *   -EINVAL   NULL handle, or the ring was created without SHMRING_F_BLOCKING
 *   -ENOSPC   all 16 registrations are held by live consumers
 *   others    from the system, unchanged (-EMFILE, -ENOMEM, -EAGAIN from
 *             pthread_create, ...)
 */
int shmring_notify_fd(struct shmring *r);

/*
 * shmring_notify_arm - announce that this consumer is about to wait on its
 * notify fd, and look at the ring once more.
 *
 * Call it after draining the fd and popping until -EAGAIN, right before
 * waiting on the fd (with no peek outstanding). It sets the ring's armed bit
 * (an atomic read-modify-write and a seq_cst fence), then looks whether a pop
 * would find a message, taking nothing. A return of 0 means the next publish
 * will make the fd readable: no wake-up is lost between the last pop and the
 * wait. Still wait with a timeout (a second, say) and pop when it expires: a
 * producer that dies between a publish and its eventfd write leaves the fd
 * quiet, and so does a dead producer's claim on the oldest slot (below). The
 * fd may also become readable with nothing to pop (another consumer took
 * it; a new consumer probed this one): drain it, pop, arm, wait again.
 *
 * Caller: the consumer that got the fd from shmring_notify_fd. Wait-free; no
 * system call, except when the oldest slot is still claimed by a producer
 * (MPSC/MPMC): then, at most once a millisecond, a check whether that
 * producer is alive. A dead producer's claim is released by the first arm
 * that finds it held the ring up for a millisecond, so a consumer that waits
 * with a timeout gets past it after two timeouts.
 *
 * Returns 0 (armed, the ring looked empty: wait on the fd), or:
 *   -EAGAIN   a message is there already: pop again instead of waiting
 *   -EINVAL   NULL handle, or no shmring_notify_fd on this handle yet
 */
int shmring_notify_arm(struct shmring *r);

/*
 * shmring_size - the number of messages in the ring, a snapshot that may be
 * stale by the time it returns; always in [0, capacity]. Any thread holding a
 * handle; wait-free. NULL gives 0.
 */
size_t shmring_size(const struct shmring *r);

/* shmring_empty - shmring_size(r) == 0, with the same caveats. */
bool shmring_empty(const struct shmring *r);

/* shmring_capacity - the ring's capacity in messages (0 for NULL). Wait-free. */
size_t shmring_capacity(const struct shmring *r);

enum shmring_backing {
	SHMRING_BACKING_SHM = 1,      /* /dev/shm, normal pages */
	SHMRING_BACKING_SHM_THP,      /* /dev/shm with transparent huge pages */
	SHMRING_BACKING_HUGETLBFS,    /* a file in a hugetlbfs mount */
	SHMRING_BACKING_HUGETLB_ANON, /* MAP_HUGETLB / memfd MFD_HUGETLB */
};

struct shmring_info {
	enum shmring_kind kind;
	uint32_t msg_size;
	uint32_t capacity;
	uint32_t flags;               /* the ring's flags as created */
	enum shmring_backing backing;
	size_t page_size;             /* the page size actually backing the ring */
	size_t map_size;              /* bytes mapped by this process */
	bool locked;                  /* resident and unswappable: mlocked, or hugetlb */
	uint64_t reserved[8];
};

/*
 * shmring_info - describe the ring behind a handle, as this process maps it.
 * Any thread holding the handle; wait-free apart from no system call.
 *
 * Returns 0, or -EINVAL (NULL argument).
 */
int shmring_info(const struct shmring *r, struct shmring_info *out);

/*
 * Ring statistics. Depth and positions come from the shared indices; the
 * counters count slow-path events only, where they already happen (a futex
 * sleep, a wake call, a wait that timed out, a slot recovered, a role taken
 * over, an attach rejected): no push or pop writes a shared counter, and a
 * failed try_push/try_pop (the spinning hot path) is not counted.
 */
struct shmring_stats {
	uint64_t head;              /* consumers' index (free-running) */
	uint64_t tail;              /* producers' index (free-running) */
	size_t depth;               /* messages in the ring, as shmring_size */
	uint64_t futex_sleeps;      /* blocking waits that went to sleep in the kernel */
	uint64_t futex_wakes;       /* FUTEX_WAKE calls made for sleepers */
	uint64_t wait_timeouts;     /* push_wait/pop_wait that returned -ETIMEDOUT */
	uint64_t skipped;           /* slots of dead producers passed over (messages lost) */
	uint64_t recovered;         /* slots of dead MPMC consumers freed (messages lost) */
	uint64_t takeovers;         /* roles taken over from dead handles */
	uint64_t attach_rejects;    /* attaches refused for -EDOM or -EBADMSG */
	uint32_t participants;      /* entries in use (alive or dead) */
	uint32_t alive;             /* of those, held by a live process */
	uint32_t producers_alive;   /* live handles that have pushed */
	uint32_t consumers_alive;   /* live handles that have popped */
	uint64_t reserved[8];
};

/*
 * shmring_stats - read the ring's statistics. Any thread holding a handle.
 * Lock-free reads of shared words plus one F_OFD_GETLK per participant entry
 * in use (system calls: not for the hot path).
 *
 * Returns 0, or -EINVAL (NULL argument).
 */
int shmring_stats(const struct shmring *r, struct shmring_stats *out);

/*
 * shmring_strerror - a sentence for an error code (negative or positive).
 * Never NULL; the string is static.
 */
const char *shmring_strerror(int err);

/*
 * shmring_last_error - this thread's detail of the last failed shmring call
 * ("" if none yet). Valid until this thread's next failing shmring call.
 */
const char *shmring_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* SHMRING_H */
