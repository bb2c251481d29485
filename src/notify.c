/*
 * notify.c - the notify fd: an eventfd per event-loop consumer that becomes
 * readable when a producer publishes, for consumers that wait in epoll or
 * io_uring instead of pop_wait (rings created with SHMRING_F_BLOCKING only).
 *
 * Registration. shmring_notify_fd makes, once per handle, an eventfd
 * (EFD_NONBLOCK) and a random non-zero 64-bit id, binds a listening
 * abstract-namespace AF_UNIX socket named "shmring-notify-<generation>-<id>"
 * (both in hex), starts one service thread that answers connections on it,
 * and only then claims a free entry of hdr->notify[] by CAS of its id from 0
 * to ours. A producer that meets an id it has not cached connects to that
 * socket; the service thread checks with SO_PEERCRED that the peer runs with
 * our effective uid (others are refused), sends the eventfd with SCM_RIGHTS
 * and closes the connection; the producer checks the listener's uid the same
 * way and that what it got is an eventfd, and caches the fd per entry index
 * with the id it belongs to. A failed fetch is remembered: an id nobody
 * listens for (its consumer is gone) is never tried again, one that timed
 * out (FETCH_TIMEOUT_MS) is fetched again only after FETCH_RETRY_NS, so a
 * producer never waits on every push for a consumer that is slow to answer.
 *
 * No wake-up is lost on this slow path: only a producer with a publish to
 * announce connects (and a consumer looking for dead entries, below), so
 * the service thread counts every connection it accepts as a wake-up and
 * writes its own eventfd. A producer that gave up waiting for the reply
 * (the consumer stopped, or starved of CPU) has left its connection queued,
 * and the consumer is woken when its thread gets to it; until the next
 * fetch, the producer wakes that consumer with a non-blocking connect
 * instead of an eventfd write (service_poke), which never waits.
 *
 * Why SCM_RIGHTS and not pidfd_getfd(2): pidfd_getfd needs ptrace access to
 * the consumer (PTRACE_MODE_ATTACH_REALCREDS), and Yama's default
 * ptrace_scope=1 allows that only over one's own descendants, so it fails
 * between unrelated processes of one user, which is exactly the case here.
 * Passing the fd over a socket needs nothing but the same uid.
 *
 * Because the socket is in the abstract namespace, the kernel removes its
 * name when the last fd on it closes: a consumer that died no longer
 * listens, and connect() says ECONNREFUSED. That is how a consumer that finds
 * all SHMRING_NOTIFY_MAX entries taken tells a dead one's entry from a live
 * one's, and takes it over (by CAS from the dead id). The socket exists
 * before the id is published, so a live registration always answers. A
 * child made by fork() would keep the socket (and so the name) alive without
 * a thread to answer it, so an atfork handler closes it in the child.
 *
 * Wake protocol. hdr->notify_word bit 0 is NOTIFY_ARMED, shared by all
 * event-loop consumers of the ring, beside the data futex word on one line.
 *
 *   consumer (shmring_notify_arm)           producer (wake_waiters, wait.c)
 *   N0 fd readable: drain it (read), then   K1 publish (tail / FULL word,
 *      pop until -EAGAIN                       release)
 *   N1 fetch_or(notify_word, ARMED)         K2 seq_cst fence
 *      (seq_cst)                            K3 load notify_word (relaxed)
 *   N2 seq_cst fence                        K5 if ARMED: fetch_and(~ARMED)
 *   N3 look at the ring, taking nothing:       (seq_cst); if this call
 *      data: return -EAGAIN (pop again)        cleared it, write 1 to every
 *      none: return 0 (wait on the fd)         registered consumer's eventfd
 *
 * N2 pairs with K2 exactly as the futex waiter's W3 does (wait.c): in the
 * single order of seq_cst fences either K2 comes after N2, and then K3 reads
 * the ARMED set at N1 or a later value (ARMED still, or cleared by another
 * producer's K5, and that producer writes every eventfd), so the consumer's
 * eventfd is written; or N2 comes after K2, and then N3 sees the message
 * published at K1. Either way no consumer waits on its fd while a message
 * sits in the ring.
 *
 * Only the producer whose fetch_and actually cleared the bit writes. One
 * that finds it clear already needs no write of its own: the clearer's
 * writes wake the consumer, which pops and arms again; that later N1 comes
 * after this producer's K5 in notify_word's modification order, so (seq_cst
 * RMWs and fences lie in one order consistent with it) this producer's K2
 * precedes that arm's N2, and its N3 sees the message.
 *
 * Every write to notify_word is a read-modify-write, so the fetch_and at K5
 * (acquire) reads the end of a release sequence that contains every N1
 * before it: the registration CAS a consumer made before its first arm
 * happens before K5, which is why the producer may load the ids of
 * hdr->notify[] with relaxed loads.
 *
 * ARMED is cleared by the first publish after an arm, so a burst costs one
 * write per consumer, not one per message; the consumer re-arms after each
 * drain. A consumer that arms and then finds data (-EAGAIN) leaves the bit
 * set: at worst one spurious wake-up. One bit for all consumers means a
 * publish after any arm wakes every registered consumer (MPMC consumers that
 * compete for messages; a woken one may find nothing and arm again).
 *
 * The look at N3 mirrors what try_pop would find, without claiming: SPSC
 * compares tail with the consumer's head; MPSC/MPMC walk from the head hint
 * over slots already being read or skipped, as the claim does, to the first
 * slot that serves its position, and report data if it is FULL. A slot still
 * being written (WRITING) reads as empty, as it does to try_pop; its
 * producer's K1..K5 comes later and wakes the consumer. If that producer
 * died, nobody will: N3 then runs the liveness check of a sleeping pop_wait
 * (stuck_check), and the arm made after the consumer's bounded wait timed
 * out finds the claim released (SKIP) and returns -EAGAIN. An event-loop
 * consumer therefore gets past a dead producer's slot after two of its own
 * timeouts, where pop_wait, which sleeps in 2 ms slices while held up, takes
 * a few milliseconds.
 *
 * Limits (see also the API): both sides must share a network namespace (the
 * abstract socket lives there); a producer that dies between K5 and its
 * writes loses that one wake-up, and so does one that runs out of fds for
 * the poke, so a consumer should still wait with a bounded timeout, as
 * pop_wait sleeps at most one second at a time.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* How long a producer waits for a consumer's service thread, per step (connect,
 * receive): a push pays this at most once a second per consumer that does not answer. */
#define FETCH_TIMEOUT_MS 20L
/* After a fetch that timed out, the producer tries that consumer again this much later. */
#define FETCH_RETRY_NS INT64_C(1000000000)
/* The service thread does little: a small stack, so mlockall(MCL_FUTURE) pins little. */
#define SERVICE_STACK ((size_t)64 * 1024)
/* Connections a consumer's socket queues while its service thread is busy. */
#define SERVICE_BACKLOG 64
/* New ids tried when a bind finds the name taken. */
#define BIND_TRIES 4

/* A consumer handle's registration, eventfd and service thread. */
struct notify_self {
	int efd;       /* the eventfd shmring_notify_fd returns */
	int listen_fd; /* the abstract socket producers fetch efd from */
	int stop_fd;   /* eventfd: notify_close writes it to end the service thread */
	bool running;  /* the service thread was started */
	unsigned slot; /* our entry in hdr->notify[] */
	uint64_t id;
	pid_t pid;     /* the process that made it: a forked child's copy is not its own */
	pthread_t thread;
	struct notify_self *next; /* in this process's list, for the atfork handler */
};

/* ---- this process's consumer registrations, for fork ---------------------- */

static pthread_mutex_t selves_lock = PTHREAD_MUTEX_INITIALIZER;
static struct notify_self *selves;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&selves_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&selves_lock);
}

/*
 * In a child made by fork(): close the inherited listening sockets, so that
 * a consumer that dies leaves no name behind that nobody answers. The
 * child's copies of the registrations are not its own (their pid differs):
 * notify_close there only closes fds.
 */
static void atfork_child(void)
{
	for (struct notify_self *s = selves; s; s = s->next) {
		if (s->listen_fd >= 0)
			close(s->listen_fd);
		s->listen_fd = -1;
	}
	selves = NULL;
	pthread_mutex_unlock(&selves_lock);
}

static void atfork_install(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void selves_add(struct notify_self *s)
{
	pthread_mutex_lock(&selves_lock);
	s->next = selves;
	selves = s;
	pthread_mutex_unlock(&selves_lock);
}

static void selves_remove(struct notify_self *s)
{
	pthread_mutex_lock(&selves_lock);
	for (struct notify_self **p = &selves; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	pthread_mutex_unlock(&selves_lock);
}

/* ---- sockets ---------------------------------------------------------------- */

/* The abstract address of consumer id's service on the ring of this generation. */
static socklen_t service_addr(struct sockaddr_un *a, uint64_t generation, uint64_t id)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	/* sun_path[0] = 0: the abstract namespace; the name is the bytes after it, no NUL. */
	int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "shmring-notify-%016llx-%016llx",
			 (unsigned long long)generation, (unsigned long long)id);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* Connect to consumer id's service, bounded: the socket, or -errno (-ECONNREFUSED: no one listens). */
static int service_connect(uint64_t generation, uint64_t id)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	/* SO_SNDTIMEO bounds a connect that waits for room in a full backlog. */
	struct timeval tv = {.tv_sec = 0, .tv_usec = FETCH_TIMEOUT_MS * 1000};
	struct sockaddr_un a;
	socklen_t len = service_addr(&a, generation, id);
	if (setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
	    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    connect(s, (struct sockaddr *)&a, len) != 0) {
		int e = -errno;
		close(s);
		return e;
	}
	return s;
}

/*
 * Wake consumer id without waiting for it: a non-blocking connect that the
 * service thread counts as a wake-up when it accepts it (the connection
 * stays queued after we close our end). A full queue (EAGAIN) holds
 * wake-ups already.
 */
static void service_poke(uint64_t generation, uint64_t id)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	struct sockaddr_un a;
	socklen_t len = service_addr(&a, generation, id);
	(void)connect(s, (struct sockaddr *)&a, len);
	close(s);
}

/* The uid of the process at the other end of a connected AF_UNIX socket, or -1. */
static long peer_uid(int s)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 || len != sizeof(cr))
		return -1;
	return (long)cr.uid;
}

/* True if fd is an eventfd (or if /proc cannot tell: the peer's uid was checked). */
static bool is_eventfd(int fd)
{
	char path[64], target[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return errno == ENOENT && access("/proc/self/fd", F_OK) != 0;
	target[n] = 0;
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

/*
 * Fetch consumer id's eventfd from its service thread: the fd (close-on-exec),
 * or -errno with *gone set when that consumer no longer exists (nobody
 * listens) or will never answer us (another uid, or not an eventfd).
 */
static int fetch_efd(uint64_t generation, uint64_t id, bool *gone)
{
	*gone = false;
	int s = service_connect(generation, id);
	if (s < 0) {
		*gone = s == -ECONNREFUSED || s == -ENOENT;
		return s;
	}
	if (peer_uid(s) != (long)geteuid()) {
		close(s);
		*gone = true;
		return -EPERM;
	}
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(4 * sizeof(int))]; /* room to see (and close) extra fds */
	} u;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			   .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	int tries = 0;
	do /* bounded by SO_RCVTIMEO; a signal handler may cut one try short */
		n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR && ++tries < 3);
	int e = n < 0 ? -errno : 0;
	close(s);
	int fd = -1;
	for (struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&m) : NULL; c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int got;
			memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (fd < 0)
				fd = got;
			else
				close(got);
		}
	}
	if (n < 0)
		return e == -EAGAIN || e == -EWOULDBLOCK ? -ETIMEDOUT : e;
	if (fd < 0 || !is_eventfd(fd)) {
		/* EOF without an fd: the consumer refused us, or is closing. */
		if (fd >= 0)
			close(fd);
		*gone = true;
		return -EPROTO;
	}
	return fd;
}

/* ---- the consumer's service thread ------------------------------------------ */

static void send_fd(int sock, int fd)
{
	char byte = 'N';
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			   .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	/* A fresh connection has room for one byte: this never blocks. A peer gone already is fine. */
	(void)sendmsg(sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/*
 * Answer producers until notify_close writes stop_fd. The thread touches
 * only its notify_self, which notify_close frees after joining it.
 */
static void *service(void *arg)
{
	const struct notify_self *s = arg;
	uid_t me = geteuid();
	struct pollfd p[2] = {{.fd = s->stop_fd, .events = POLLIN},
			      {.fd = s->listen_fd, .events = POLLIN}};
	for (;;) {
		int n = poll(p, 2, -1);
		if (n < 0 && errno != EINTR)
			break;
		if (n <= 0)
			continue;
		if (p[0].revents)
			break;
		if (p[1].revents & (POLLERR | POLLHUP | POLLNVAL))
			break;
		int c = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c < 0) {
			/* Out of fds, say (the connection stays queued): back off, do not spin. */
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				(void)poll(p, 1, 10);
			continue;
		}
		if (peer_uid(c) == (long)me) {
			/*
			 * Only a producer with a publish to announce (or a consumer
			 * probing for dead entries) connects: the connection is a
			 * wake-up in itself, so one whose producer gave up waiting
			 * for the reply is not lost.
			 */
			uint64_t one = 1;
			ssize_t k = write(s->efd, &one, sizeof(one));
			(void)k; /* EAGAIN: the count is saturated, readable anyway */
			send_fd(c, s->efd);
		}
		close(c); /* others get EOF without an fd */
	}
	return NULL;
}

static uint64_t new_id(void)
{
	uint64_t id = 0;
	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != (ssize_t)sizeof(id))
		id = (uint64_t)mono_ns() * UINT64_C(0x9e3779b97f4a7c15) ^ ((uint64_t)getpid() << 32);
	return id ? id : 1;
}

/* Stop the service thread (if this process runs it), close the fds, free. */
static void self_free(struct notify_self *s)
{
	bool own = s->pid == getpid();
	if (own && s->running) {
		uint64_t one = 1;
		ssize_t n = write(s->stop_fd, &one, sizeof(one));
		(void)n; /* an eventfd write of 1 cannot fail while the count is that low */
		pthread_join(s->thread, NULL);
	}
	if (own)
		selves_remove(s);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	if (s->efd >= 0)
		close(s->efd);
	free(s);
}

/* The eventfds and the listening socket, bound under a fresh id. */
static int self_open(struct notify_self *s, uint64_t generation)
{
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0)
		return err_sys("notify_fd: cannot create an eventfd");
	s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->stop_fd < 0)
		return err_sys("notify_fd: cannot create an eventfd");
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0)
		return err_sys("notify_fd: cannot create a Unix socket");
	for (int i = 0;; i++) {
		struct sockaddr_un a;
		s->id = new_id();
		socklen_t len = service_addr(&a, generation, s->id);
		if (bind(s->listen_fd, (struct sockaddr *)&a, len) == 0)
			break;
		if (errno != EADDRINUSE || i + 1 == BIND_TRIES)
			return err_sys("notify_fd: cannot bind the abstract socket %s", a.sun_path + 1);
	}
	if (listen(s->listen_fd, SERVICE_BACKLOG) != 0)
		return err_sys("notify_fd: cannot listen on the notify socket");
	return 0;
}

/* Start the service thread with every signal blocked: signals stay with the caller's threads. */
static int self_start(struct notify_self *s)
{
	pthread_attr_t attr;
	sigset_t all, old;
	long min = sysconf(_SC_THREAD_STACK_MIN);
	size_t stack = min > 0 && (size_t)min > SERVICE_STACK ? (size_t)min : SERVICE_STACK;
	int rc = pthread_attr_init(&attr);
	if (rc == 0)
		rc = pthread_attr_setstacksize(&attr, stack);
	if (rc == 0) {
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		rc = pthread_create(&s->thread, &attr, service, s);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&attr);
	}
	if (rc != 0) {
		errno = rc;
		return err_sys("notify_fd: cannot start the notify service thread");
	}
	s->running = true;
	pthread_setname_np(s->thread, "shmring-notify");
	return 0;
}

/* True if consumer id has no service listening (it died): its entry may be taken. */
static bool registration_dead(uint64_t generation, uint64_t id)
{
	int s = service_connect(generation, id);
	if (s >= 0)
		close(s);
	return s == -ECONNREFUSED || s == -ENOENT;
}

/* Claim an entry of hdr->notify[]: a free one, else a dead consumer's. */
static int self_register(struct shmring *r, struct notify_self *s)
{
	struct shmring_notify_reg *reg = r->hdr->notify;
	for (unsigned pass = 0; pass < 2; pass++) {
		for (unsigned i = 0; i < SHMRING_NOTIFY_MAX; i++) {
			uint64_t cur = atomic_load_explicit(&reg[i].id, memory_order_relaxed);
			if (cur != 0 && (pass == 0 || !registration_dead(r->generation, cur)))
				continue;
			/* seq_cst: ordered before our first N1, see the release-sequence note above. */
			if (atomic_compare_exchange_strong_explicit(&reg[i].id, &cur, s->id,
								    memory_order_seq_cst,
								    memory_order_relaxed)) {
				reg[i].pid = (int32_t)getpid(); /* informational only */
				s->slot = i;
				return 0;
			}
		}
	}
	return err_set(-ENOSPC, "notify_fd: ring %s has %d notify registrations, all held by live "
		       "consumers", r->name, SHMRING_NOTIFY_MAX);
}

int shmring_notify_fd(struct shmring *r)
{
	if (!r)
		return err_set(-EINVAL, "notify_fd: NULL handle");
	if (!r->blocking)
		return err_set(-EINVAL, "notify_fd: ring %s was created without SHMRING_F_BLOCKING",
			       r->name);
	struct notify_self *s = r->notify_self;
	if (s && s->pid == getpid())
		return s->efd;
	if (s) {
		/* Inherited across fork: the parent's registration. Make our own. */
		r->notify_self = NULL;
		self_free(s);
	}
	pthread_once(&atfork_once, atfork_install);
	s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(-ENOMEM, "notify_fd: out of memory");
	s->efd = s->listen_fd = s->stop_fd = -1;
	s->pid = getpid();
	selves_add(s);
	/* The service answers before the id is published: a registration seen is one that answers. */
	int rc = self_open(s, r->generation);
	if (rc == 0)
		rc = self_start(s);
	if (rc == 0)
		rc = self_register(r, s);
	if (rc) {
		self_free(s);
		return rc;
	}
	r->notify_self = s;
	return s->efd;
}

/* N3: is there a message for a pop to take? Takes nothing; relaxed loads after N2. */
static bool ring_has_data(struct shmring *r)
{
	struct shmring_hdr *h = r->hdr;
	if (r->kind == SHMRING_SPSC) {
		uint64_t head = r->c_ready ? r->c_head : load_relaxed64(&h->head);
		return load_relaxed64(&h->tail) != head;
	}
	uint64_t pos = load_relaxed64(&h->head);
	for (uint32_t n = 0; n < r->capacity; n++, pos++) {
		uint64_t w = load_relaxed64(slot_word(r, pos));
		int64_t d = word_dist(w, pos);
		unsigned st = word_state(w);
		if (d < 0 || (d == 0 && st == ST_EMPTY))
			return false; /* the slot still serves the previous lap, or is free */
		if (d == 0 && st == ST_WRITING) {
			/*
			 * Held up by a producer's claim, as a pop is: its publish will
			 * wake us, unless its owner died. Check that as a sleeping
			 * pop_wait does (liveness.c: once the same claim has held us
			 * up for a millisecond), so that an arm after the consumer's
			 * timed-out wait frees a dead producer's claim.
			 */
			bool was = r->sleeping;
			r->sleeping = true;
			bool freed = stuck_check(r, w);
			r->sleeping = was;
			return freed; /* freed: the slot is SKIP now, a pop passes it */
		}
		if (d == 0 && st == ST_FULL)
			return true;
		/* Being read or skipped, or the hint is behind: the claim would go on, so do we. */
	}
	return true; /* undecided in bounded steps (busy or corrupt): let a pop decide */
}

int shmring_notify_arm(struct shmring *r)
{
	/* No getpid() here (a system call per wait): a forked child calls notify_fd anew. */
	if (!r || !r->blocking || !r->notify_self)
		return err_set(-EINVAL, "notify_arm: NULL handle, or no notify fd on this handle");
#ifdef SHMRING_BROKEN_WAKE
	/*
	 * Test-only broken protocol (make SAN=broken-wake): the last look comes
	 * before the announcement, with a delay between that widens the race,
	 * so that test_notify's lost-wake-up torture can show it catches it.
	 */
	if (ring_has_data(r))
		return -EAGAIN;
	for (int64_t until = mono_ns() + 20000; mono_ns() < until;)
		cpu_relax();
	atomic_fetch_or_explicit(&r->hdr->notify_word, NOTIFY_ARMED, memory_order_seq_cst);
	return 0;
#else
	atomic_fetch_or_explicit(&r->hdr->notify_word, NOTIFY_ARMED, memory_order_seq_cst); /* N1 */
	atomic_thread_fence(memory_order_seq_cst); /* N2, pairs with K2 (wait.c) */
	return ring_has_data(r) ? -EAGAIN : 0;     /* N3 */
#endif
}

/* Bring the producer's cached fd for entry i up to date with the entry's current id. */
static void cache_refresh(struct shmring *r, unsigned i, uint64_t id)
{
	struct notify_cached *c = &r->notify_cache[i];
	if (id == c->id && c->fd < 0 && c->retry_ns == INT64_MAX)
		return; /* gone, or not ours to wake */
	if (id == c->id && c->fd < 0 && mono_ns() < c->retry_ns) {
		service_poke(r->generation, id); /* slow to answer: wake it, fetch later */
		return;
	}
	if (c->id != 0 && c->fd >= 0)
		close(c->fd);
	c->id = id;
	c->fd = -1;
	if (id == 0)
		return;
	bool gone;
	int fd = fetch_efd(r->generation, id, &gone);
	if (fd >= 0)
		c->fd = fd;
	else
		c->retry_ns = gone ? INT64_MAX : mono_ns() + FETCH_RETRY_NS;
}

/* K5: the producer saw ARMED after its K2 fence (wait.c). */
void notify_wake(struct shmring *r)
{
	/* Acquire (seq_cst): reads the end of the release sequence of every N1 before it. */
	uint32_t was = atomic_fetch_and_explicit(&r->hdr->notify_word, ~NOTIFY_ARMED,
						 memory_order_seq_cst);
	if (!(was & NOTIFY_ARMED))
		return; /* another producer cleared it and writes every eventfd */
	static const uint64_t one = 1;
	for (unsigned i = 0; i < SHMRING_NOTIFY_MAX; i++) {
		/* Relaxed: ordered by the acquire above (registration before the first N1). */
		uint64_t id = atomic_load_explicit(&r->hdr->notify[i].id, memory_order_relaxed);
		if (id != r->notify_cache[i].id || (id != 0 && r->notify_cache[i].fd < 0))
			cache_refresh(r, i, id);
		if (id != 0 && r->notify_cache[i].fd >= 0) {
			/* Never blocks (EFD_NONBLOCK); EAGAIN means a saturated count: readable anyway. */
			ssize_t n = write(r->notify_cache[i].fd, &one, sizeof(one));
			(void)n;
		}
	}
}

void notify_close(struct shmring *r)
{
	for (unsigned i = 0; i < SHMRING_NOTIFY_MAX; i++) {
		if (r->notify_cache[i].id != 0 && r->notify_cache[i].fd >= 0)
			close(r->notify_cache[i].fd);
		r->notify_cache[i].id = 0;
		r->notify_cache[i].fd = -1;
	}
	struct notify_self *s = r->notify_self;
	if (!s)
		return;
	r->notify_self = NULL;
	if (s->pid == getpid() && r->hdr) {
		/* Unregister first; by CAS, so an entry taken over from us is left alone. */
		uint64_t mine = s->id;
		atomic_compare_exchange_strong_explicit(&r->hdr->notify[s->slot].id, &mine, 0,
							memory_order_seq_cst, memory_order_relaxed);
	}
	self_free(s);
}
