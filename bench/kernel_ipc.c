/*
 * kernel_ipc.c - the kernel IPC rows, one producer and one consumer each:
 *
 *   pipe     two pipes (one per direction), write()/read() of whole messages
 *   unix     two SOCK_SEQPACKET socketpairs (message boundaries kept)
 *   tcp      two TCP connections over 127.0.0.1, TCP_NODELAY on every socket
 *   mq       two POSIX message queues; the names are unlinked right after
 *            mq_open, before any worker exists, so none can be left behind
 *   eventfd  ping-pong: two eventfds, the 8-byte counter carries the value;
 *            streaming: a counter holds no stream of stamps, so it is the
 *            classic bounded buffer (slots in shared memory, one semaphore
 *            eventfd for filled slots, one for free slots): two system calls
 *            per message on each side
 *   futex    ping-pong: FUTEX_WAIT/FUTEX_WAKE on a shared (non-private) word
 *            per direction, a wake on every message; streaming: the same
 *            bounded buffer with two futex semaphores that wake on every post
 *
 * Queue depth: pipes and sockets queue what their kernel buffers hold (64 KiB
 * pipe; socket buffers, autotuned for TCP), mq queues --capacity messages if
 * the kernel allows it, the bounded buffers --capacity slots. Streaming
 * latency under load is mostly time spent in that queue.
 *
 * Every descriptor is made by the parent before fork and closed by it once
 * the workers hold their copies; the kernel closes the workers' copies when
 * they exit, however they exit.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <mqueue.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

/* Bound of each futex sleep; the row timeout is the outer bound of the rest. */
#define FUTEX_BOUND_S 10

struct ipc_parent {
	int tx[2], rx[2];          /* channel c: A or B writes tx[c], the other reads rx[c] */
	int efd_items, efd_spaces; /* eventfd bounded buffer */
	void *shm;                 /* futex words, bounded-buffer slots */
	size_t shm_len;
};

/* The worker's copies. */
static int g_tx[2], g_rx[2];
static int g_items, g_spaces;
static uint64_t g_pos;         /* bounded buffer: producer or consumer position */
static uint32_t g_last[2];     /* futex ping-pong: last value seen per channel */
static struct ipc_parent *g_ip;

static struct ipc_parent *ipc_new(struct plan *p)
{
	struct ipc_parent *ip = calloc(1, sizeof(*ip));
	if (!ip)
		return NULL;
	for (int c = 0; c < 2; c++)
		ip->tx[c] = ip->rx[c] = -1;
	ip->efd_items = ip->efd_spaces = -1;
	p->state = ip;
	return ip;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void ipc_attached(struct plan *p)
{
	struct ipc_parent *ip = p->state;
	for (int c = 0; c < 2; c++) {
		if (ip->rx[c] == ip->tx[c])
			ip->rx[c] = -1; /* mq: one descriptor serves both ends */
		close_fd(&ip->tx[c]);
		close_fd(&ip->rx[c]);
	}
	close_fd(&ip->efd_items);
	close_fd(&ip->efd_spaces);
}

static void ipc_teardown(struct plan *p)
{
	struct ipc_parent *ip = p->state;
	if (!ip)
		return;
	ipc_attached(p);
	shared_free(ip->shm, ip->shm_len);
	free(ip);
	p->state = NULL;
}

static int sys_fail(struct plan *p, const char *what)
{
	int rc = -errno;
	snprintf(p->row->reason, sizeof(p->row->reason), "%s: %s", what, errtext(errno));
	return rc;
}

/* A worker keeps the ends it uses: A writes channel 0 and reads 1, B the opposite. */
static int fd_init(struct worker *w)
{
	struct ipc_parent *ip = w->plan->state;
	int mine_tx = w->role == ROLE_PROD ? 0 : 1;
	g_ip = ip;
	for (int c = 0; c < 2; c++) {
		g_tx[c] = ip->tx[c];
		g_rx[c] = ip->rx[c];
	}
	if (ip->tx[0] != ip->rx[0]) {
		close_fd(&g_rx[mine_tx]);
		close_fd(&g_tx[1 - mine_tx]);
	}
	g_items = ip->efd_items;
	g_spaces = ip->efd_spaces;
	return 0;
}

/* ---------------------------------------------- pipe, unix, tcp: whole writes */

static int write_full(struct worker *w, int chan, const void *msg)
{
	size_t len = w->plan->size, done = 0;
	while (done < len) {
		ssize_t n = write(g_tx[chan], (const char *)msg + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return worker_fail(w, n < 0 ? -errno : -EPIPE, "write: %s",
					   n < 0 ? errtext(errno) : "wrote nothing");
		done += (size_t)n;
	}
	return 0;
}

static int read_full(struct worker *w, int chan, void *msg)
{
	size_t len = w->plan->size, done = 0;
	while (done < len) {
		ssize_t n = read(g_rx[chan], (char *)msg + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return worker_fail(w, n < 0 ? -errno : -EPIPE, "read: %s",
					   n < 0 ? errtext(errno) : "end of file (peer gone)");
		done += (size_t)n;
	}
	return 0;
}

static int fd_phase(struct worker *w, enum phase ph)
{
	return run_phase(w, ph, write_full, read_full, g_msg_a, g_msg_b);
}

static int pipe_setup(struct plan *p)
{
	struct ipc_parent *ip = ipc_new(p);
	if (!ip)
		return -ENOMEM;
	for (int c = 0; c < 2; c++) {
		int fds[2];
		if (pipe2(fds, O_CLOEXEC) != 0)
			return sys_fail(p, "pipe2");
		ip->rx[c] = fds[0];
		ip->tx[c] = fds[1];
	}
	snprintf(p->row->mode, sizeof(p->row->mode), "write/read, 64k buffer");
	return 0;
}

static int unix_setup(struct plan *p)
{
	struct ipc_parent *ip = ipc_new(p);
	if (!ip)
		return -ENOMEM;
	for (int c = 0; c < 2; c++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
			return sys_fail(p, "socketpair");
		ip->tx[c] = sv[0];
		ip->rx[c] = sv[1];
	}
	snprintf(p->row->mode, sizeof(p->row->mode), "SEQPACKET socketpair");
	return 0;
}

static int tcp_setup(struct plan *p)
{
	struct ipc_parent *ip = ipc_new(p);
	if (!ip)
		return -ENOMEM;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t slen = sizeof(sa);
	int one = 1, rc = 0;
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0)
		return sys_fail(p, "socket");
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 4) != 0 ||
	    getsockname(ls, (struct sockaddr *)&sa, &slen) != 0) {
		rc = sys_fail(p, "bind/listen on 127.0.0.1");
		goto out;
	}
	for (int c = 0; c < 2; c++) {
		ip->tx[c] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (ip->tx[c] < 0 || connect(ip->tx[c], (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			rc = sys_fail(p, "connect to 127.0.0.1");
			goto out;
		}
		ip->rx[c] = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		if (ip->rx[c] < 0) {
			rc = sys_fail(p, "accept");
			goto out;
		}
		if (setsockopt(ip->tx[c], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
		    setsockopt(ip->rx[c], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
			rc = sys_fail(p, "TCP_NODELAY");
			goto out;
		}
	}
	snprintf(p->row->mode, sizeof(p->row->mode), "127.0.0.1, TCP_NODELAY");
out:
	close(ls);
	return rc;
}

/* ----------------------------------------------------- POSIX message queues */

static int mq_send_msg(struct worker *w, int chan, const void *msg)
{
	while (mq_send(g_tx[chan], msg, w->plan->size, 0) != 0) {
		if (errno != EINTR)
			return worker_fail(w, -errno, "mq_send: %s", errtext(errno));
	}
	return 0;
}

static int mq_recv_msg(struct worker *w, int chan, void *msg)
{
	for (;;) {
		ssize_t n = mq_receive(g_rx[chan], msg, w->plan->size, NULL);
		if (n == (ssize_t)w->plan->size)
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		return worker_fail(w, n < 0 ? -errno : -EBADMSG, "mq_receive: %s",
				   n < 0 ? errtext(errno) : "short message");
	}
}

static int mq_phase(struct worker *w, enum phase ph)
{
	return run_phase(w, ph, mq_send_msg, mq_recv_msg, g_msg_a, g_msg_b);
}

static long sysctl_long(const char *path, long fallback)
{
	FILE *f = fopen(path, "r");
	char buf[32];
	long v = fallback;
	if (f) {
		if (fgets(buf, sizeof(buf), f)) {
			char *end;
			long x = strtol(buf, &end, 10);
			if (end != buf && x >= 1)
				v = x;
		}
		fclose(f);
	}
	return v;
}

static int mq_setup(struct plan *p)
{
	struct ipc_parent *ip = ipc_new(p);
	if (!ip)
		return -ENOMEM;
	long depth = g_opt.capacity;
	for (int c = 0; c < 2; c++) {
		char name[64];
		snprintf(name, sizeof(name), "/shmring-bench-%d-%d-%d", (int)getpid(), p->tag, c);
		for (;;) {
			struct mq_attr at = {.mq_maxmsg = depth, .mq_msgsize = p->size};
			mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &at);
			if (q != (mqd_t)-1) {
				mq_unlink(name); /* the descriptors keep the queue; no name is left */
				ip->tx[c] = ip->rx[c] = q;
				break;
			}
			/* Above fs.mqueue.msg_max without CAP_SYS_RESOURCE: take that limit. */
			long max = sysctl_long("/proc/sys/fs/mqueue/msg_max", 10);
			if ((errno == EINVAL || errno == EMFILE || errno == ENOMEM) && depth > max) {
				depth = max;
				continue;
			}
			return sys_fail(p, "mq_open");
		}
	}
	snprintf(p->row->mode, sizeof(p->row->mode), "depth %ld", depth);
	return 0;
}

/* --------------------------------- bounded buffer shared by eventfd and futex */

/*
 * Slots after the futex words in the shared mapping. The producer writes slot
 * pos & mask, then posts "items"; the consumer takes an item, reads the slot,
 * then posts "spaces". The semaphore operations order the slot accesses: a
 * post is a release (futex: seq_cst RMW; eventfd: a fence before the write
 * system call) and a take an acquire.
 */
struct sync_shm {
	_Alignas(BENCH_LINE) _Atomic uint32_t word[2];  /* futex ping-pong, channel 0 */
	_Alignas(BENCH_LINE) _Atomic uint32_t word1;    /* channel 1, its own line */
	_Alignas(BENCH_LINE) _Atomic uint32_t items;
	_Alignas(BENCH_LINE) _Atomic uint32_t spaces;
	_Alignas(BENCH_LINE) unsigned char slots[];
};

static struct sync_shm *g_sync;

static _Atomic uint32_t *pp_word(int chan)
{
	return chan == 0 ? &g_sync->word[0] : &g_sync->word1;
}

static unsigned char *slot(uint64_t pos, uint32_t size)
{
	uint32_t stride = (size + 15) / 16 * 16;
	return g_sync->slots + (size_t)(pos & (g_opt.capacity - 1)) * stride;
}

static int sync_setup(struct plan *p, bool eventfd_kind)
{
	struct ipc_parent *ip = ipc_new(p);
	if (!ip)
		return -ENOMEM;
	ip->shm_len = sizeof(struct sync_shm) + (size_t)g_opt.capacity * (((size_t)p->size + 15) / 16 * 16);
	ip->shm = shared_alloc(ip->shm_len);
	if (!ip->shm)
		return -ENOMEM;
	struct sync_shm *s = ip->shm;
	atomic_init(&s->spaces, g_opt.capacity);
	if (eventfd_kind) {
		for (int c = 0; c < 2; c++) {
			ip->tx[c] = ip->rx[c] = eventfd(0, EFD_CLOEXEC);
			if (ip->tx[c] < 0)
				return sys_fail(p, "eventfd");
		}
		ip->efd_items = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
		ip->efd_spaces = eventfd(g_opt.capacity, EFD_CLOEXEC | EFD_SEMAPHORE);
		if (ip->efd_items < 0 || ip->efd_spaces < 0)
			return sys_fail(p, "eventfd");
		snprintf(p->row->mode, sizeof(p->row->mode), "pp counter; st sem-efd+shm");
	} else {
		snprintf(p->row->mode, sizeof(p->row->mode), "pp WAIT/WAKE; st futex-sem+shm");
	}
	return 0;
}

static int sync_init(struct worker *w)
{
	struct ipc_parent *ip = w->plan->state;
	g_sync = ip->shm;
	g_pos = 0;
	g_last[0] = g_last[1] = 0;
	return fd_init(w);
}

/* eventfd ping-pong: the counter is read (and reset) before the next write, so it carries i + 1. */
static int efd_send(struct worker *w, int chan, const void *msg)
{
	uint64_t v = get64(msg) + 1;
	if (write(g_tx[chan], &v, sizeof(v)) != (ssize_t)sizeof(v))
		return worker_fail(w, -errno, "eventfd write: %s", errtext(errno));
	return 0;
}

static int efd_recv(struct worker *w, int chan, void *msg)
{
	uint64_t v;
	if (read(g_rx[chan], &v, sizeof(v)) != (ssize_t)sizeof(v))
		return worker_fail(w, -errno, "eventfd read: %s", errtext(errno));
	put64(msg, v - 1);
	return 0;
}

static int efd_take(struct worker *w, int fd)
{
	uint64_t v;
	while (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		if (errno != EINTR)
			return worker_fail(w, -errno, "eventfd read: %s", errtext(errno));
	return 0;
}

static int efd_post(struct worker *w, int fd)
{
	uint64_t one = 1;
	while (write(fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
		if (errno != EINTR)
			return worker_fail(w, -errno, "eventfd write: %s", errtext(errno));
	return 0;
}

static int efd_stream_send(struct worker *w, int chan, const void *msg)
{
	(void)chan;
	int rc = efd_take(w, g_spaces);
	if (rc)
		return rc;
	atomic_thread_fence(memory_order_acquire); /* pairs with the consumer's release */
	memcpy(slot(g_pos++, w->plan->size), msg, w->plan->size);
	atomic_thread_fence(memory_order_release); /* pairs with the consumer's acquire */
	return efd_post(w, g_items);
}

static int efd_stream_recv(struct worker *w, int chan, void *msg)
{
	(void)chan;
	int rc = efd_take(w, g_items);
	if (rc)
		return rc;
	atomic_thread_fence(memory_order_acquire); /* pairs with the producer's release */
	memcpy(msg, slot(g_pos++, w->plan->size), w->plan->size);
	atomic_thread_fence(memory_order_release); /* pairs with the producer's acquire */
	return efd_post(w, g_spaces);
}

static int efd_phase(struct worker *w, enum phase ph)
{
	if (ph == PH_PINGPONG)
		return run_phase(w, ph, efd_send, efd_recv, g_msg_a, g_msg_b);
	return run_phase(w, ph, efd_stream_send, efd_stream_recv, g_msg_a, g_msg_b);
}

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
	/* Not FUTEX_PRIVATE_FLAG: the word is shared between processes. */
	return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

/* Sleep while *word == val; 0 when woken or the word changed, -errno otherwise. */
static int futex_sleep(struct worker *w, _Atomic uint32_t *word, uint32_t val)
{
	struct timespec ts = {.tv_sec = FUTEX_BOUND_S};
	if (futex(word, FUTEX_WAIT, val, &ts) == 0 || errno == EAGAIN || errno == EINTR)
		return 0;
	return worker_fail(w, -errno, "FUTEX_WAIT: %s", errtext(errno));
}

static int fx_send(struct worker *w, int chan, const void *msg)
{
	(void)w;
	_Atomic uint32_t *word = pp_word(chan);
	atomic_store_explicit(word, (uint32_t)get64(msg) + 1, memory_order_release);
	futex(word, FUTEX_WAKE, 1, NULL);
	return 0;
}

static int fx_recv(struct worker *w, int chan, void *msg)
{
	_Atomic uint32_t *word = pp_word(chan);
	for (;;) {
		uint32_t v = atomic_load_explicit(word, memory_order_acquire);
		if (v != g_last[chan]) {
			g_last[chan] = v;
			put64(msg, (uint64_t)v - 1);
			return 0;
		}
		int rc = futex_sleep(w, word, v);
		if (rc)
			return rc;
	}
}

static int fsem_take(struct worker *w, _Atomic uint32_t *s)
{
	for (;;) {
		uint32_t v = atomic_load_explicit(s, memory_order_relaxed);
		while (v > 0)
			if (atomic_compare_exchange_weak_explicit(s, &v, v - 1, memory_order_acquire,
								  memory_order_relaxed))
				return 0;
		int rc = futex_sleep(w, s, 0);
		if (rc)
			return rc;
	}
}

static void fsem_post(_Atomic uint32_t *s)
{
	atomic_fetch_add_explicit(s, 1, memory_order_release);
	futex(s, FUTEX_WAKE, 1, NULL); /* always: the kernel path on every message */
}

static int fx_stream_send(struct worker *w, int chan, const void *msg)
{
	(void)chan;
	int rc = fsem_take(w, &g_sync->spaces);
	if (rc)
		return rc;
	memcpy(slot(g_pos++, w->plan->size), msg, w->plan->size);
	fsem_post(&g_sync->items);
	return 0;
}

static int fx_stream_recv(struct worker *w, int chan, void *msg)
{
	(void)chan;
	int rc = fsem_take(w, &g_sync->items);
	if (rc)
		return rc;
	memcpy(msg, slot(g_pos++, w->plan->size), w->plan->size);
	fsem_post(&g_sync->spaces);
	return 0;
}

static int fx_phase(struct worker *w, enum phase ph)
{
	if (ph == PH_PINGPONG)
		return run_phase(w, ph, fx_send, fx_recv, g_msg_a, g_msg_b);
	return run_phase(w, ph, fx_stream_send, fx_stream_recv, g_msg_a, g_msg_b);
}

static int efd_setup(struct plan *p)
{
	return sync_setup(p, true);
}

static int fx_setup(struct plan *p)
{
	return sync_setup(p, false);
}

const struct mech_ops pipe_ops = {pipe_setup, ipc_attached, ipc_teardown, fd_init, fd_phase};
const struct mech_ops unix_ops = {unix_setup, ipc_attached, ipc_teardown, fd_init, fd_phase};
const struct mech_ops tcp_ops = {tcp_setup, ipc_attached, ipc_teardown, fd_init, fd_phase};
const struct mech_ops mq_ops = {mq_setup, ipc_attached, ipc_teardown, fd_init, mq_phase};
const struct mech_ops eventfd_ops = {efd_setup, ipc_attached, ipc_teardown, sync_init, efd_phase};
const struct mech_ops futex_ops = {fx_setup, ipc_attached, ipc_teardown, sync_init, fx_phase};
