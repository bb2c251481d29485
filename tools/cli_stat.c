/*
 * cli_stat.c - `shmring stat`: everything one ring's header says, read
 * without changing it (see cli_ring.c).
 */
#include <getopt.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void futex_text(const char *label, uint32_t w, const char *what)
{
	/* The word is (epoch << 1) | WAITERS (src/wait.c). */
	printf("  %-14s 0x%08x  epoch %u, waiters %s  (%s)\n", label, w, w >> 1,
	       w & 1 ? "yes" : "no", what);
}

static void role_text(const struct ring *r, const char *label, uint32_t id, bool held)
{
	if (!held) {
		printf("  %-14s n/a (%s: any number)\n", label, kind_name(r->id.kind, false));
		return;
	}
	if (id == 0) {
		printf("  %-14s none\n", label);
		return;
	}
	for (unsigned i = 0; i < r->n_part; i++)
		if (r->part[i].index + 1 == id) {
			printf("  %-14s participant %u (pid %d, %s)\n", label, id, (int)r->part[i].pid,
			       life_name(r->part[i].life));
			return;
		}
	printf("  %-14s participant %u (%s)\n", label, id,
	       id > SHMRING_PARTICIPANTS_MAX ? "not a valid id" : "entry not in use");
}

/* "42s ago", "3m 05s ago", "2h 03m ago", "4d 02h ago" */
static void ago(uint64_t created_ns, char *buf, size_t len)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t t = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	unsigned long long s = t > created_ns ? (t - created_ns) / 1000000000u : 0;
	if (s < 60)
		snprintf(buf, len, "%llus ago", s);
	else if (s < 3600)
		snprintf(buf, len, "%llum %02llus ago", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%lluh %02llum ago", s / 3600, s / 60 % 60);
	else
		snprintf(buf, len, "%llud %02lluh ago", s / 86400, s / 3600 % 24);
}

static void stat_text(const struct ring *r)
{
	const struct shmring_hdr *h = &r->id;
	char name[SHMRING_NAME_MAX + 1], path[CLI_PATH_MAX], buf[512], buf2[64], user[64];
	printable(r->name, name, sizeof(name));
	printable(r->path, path, sizeof(path));
	printf("ring %s (%s)\n", name, path);
	if (r->problem[0])
		printf("  %-14s %s\n", "PROBLEM", r->problem);
	printf("  %-14s %s\n", "kind", kind_name(h->kind, false));
	printf("  %-14s %u bytes (slot stride %u bytes)\n", "msg_size", h->msg_size, h->slot_size);
	size_long(h->data_size, buf2, sizeof(buf2));
	printf("  %-14s %u messages (%s of slots)\n", "capacity", h->capacity, buf2);
	flags_string(h->flags, false, buf, sizeof(buf));
	printf("  %-14s %s\n", "flags", buf);
	size_long(h->page_size, buf2, sizeof(buf2));
	printable(h->data_path, buf, sizeof(buf));
	printf("  %-14s %s, %s pages%s%s\n", "backing", backing_name(h->backing), buf2,
	       h->data_path[0] ? ", data file " : "", buf);
	printf("  %-14s %s\n", "locked",
	       ring_locked(r) > 0 ? "yes (hugetlb pages are never swapped)"
				  : "n/a (mlock is per process; not visible from outside)");
	printf("  %-14s version %u; control block %u bytes in a %llu-byte file; slots %llu bytes "
	       "at offset %llu of %s\n",
	       "layout", r->version, h->ctl_size, (unsigned long long)h->file_size,
	       (unsigned long long)h->data_size, (unsigned long long)h->data_offset,
	       h->data_path[0] ? "the data file" : "that file");
	printf("  %-14s 0x%016llx\n", "generation", (unsigned long long)h->generation);
	show_time(h->created_ns, false, buf, sizeof(buf));
	ago(h->created_ns, buf2, sizeof(buf2));
	printf("  %-14s %s (%s)\n", "created", buf, buf2);
	user_name(h->creator_uid, user, sizeof(user));
	printf("  %-14s pid %d, uid %u (%s)\n", "creator", (int)h->creator_pid, h->creator_uid, user);
	user_name((uint32_t)r->st.st_uid, user, sizeof(user));
	printf("  %-14s mode %04o, owner uid %u (%s)\n", "file", (unsigned)(r->st.st_mode & 07777),
	       (unsigned)r->st.st_uid, user);

	uint64_t depth = ring_depth(r);
	printf("indices\n");
	printf("  %-14s %llu\n", "head", (unsigned long long)r->head);
	printf("  %-14s %llu\n", "tail", (unsigned long long)r->tail);
	printf("  %-14s %llu of %u (%.1f%%)%s\n", "depth", (unsigned long long)depth, h->capacity,
	       100.0 * (double)depth / (double)(h->capacity ? h->capacity : 1),
	       (int64_t)(r->tail - r->head) < 0 ? " (tail is behind head: clamped)"
	       : r->tail - r->head > h->capacity ? " (tail - head exceeds the capacity: clamped)"
						  : "");

	printf("wait words\n");
	futex_text("data_futex", r->data_futex, "consumers sleeping for data");
	futex_text("space_futex", r->space_futex, "producers sleeping for space");
	printf("  %-14s 0x%08x  armed %s  (event-loop consumers waiting on a notify fd)\n",
	       "notify_word", r->notify_word, r->notify_word & 1 ? "yes" : "no");
	printf("notify registrations\n");
	unsigned regs = 0;
	for (unsigned i = 0; i < SHMRING_NOTIFY_MAX; i++)
		if (r->notify[i].id) {
			printf("  [%2u] id 0x%016llx, pid %d\n", i, (unsigned long long)r->notify[i].id,
			       (int)r->notify[i].pid);
			regs++;
		}
	if (!regs)
		printf("  none\n");

	printf("counters\n");
	for (unsigned i = 0; i < N_COUNTERS; i++)
		printf("  %-14s %llu\n", counter_names[i], (unsigned long long)r->counters[i]);

	printf("roles\n");
	role_text(r, "producer", r->producer_role, h->kind == SHMRING_SPSC);
	role_text(r, "consumer", r->consumer_role, h->kind != SHMRING_MPMC);

	printf("participants   %u alive, %u dead%s\n", r->n_alive, r->n_dead,
	       r->n_unknown ? ", some unknown (lock query failed)" : "");
	if (r->n_part) {
		printf("  %3s  %8s  %-18s  %s\n", "ID", "PID", "ROLES", "STATE");
		for (unsigned i = 0; i < r->n_part; i++) {
			const struct ring_part *p = &r->part[i];
			roles_string(p->roles, buf, sizeof(buf));
			printf("  %3u  %8d  %-18s  %s%s%s\n", p->index + 1, (int)p->pid, buf,
			       life_name(p->life), p->state == 0 ? " (registering)" : "",
			       p->life == PART_ALIVE && pid_stopped(p->pid)
				       ? ", stopped (SIGSTOP or a debugger): slots behind its claims wait"
				       : "");
		}
	}
}

static void json_futex(struct json *j, const char *key, uint32_t w)
{
	json_key(j, key);
	json_obj(j);
	json_ku64(j, "raw", w);
	json_ku64(j, "epoch", w >> 1);
	json_kbool(j, "waiters", w & 1);
	json_obj_end(j);
}

static void json_role(struct json *j, const struct ring *r, const char *key, uint32_t id,
		      bool held)
{
	json_key(j, key);
	if (!held || id == 0) {
		json_null(j);
		return;
	}
	json_obj(j);
	json_ku64(j, "id", id);
	for (unsigned i = 0; i < r->n_part; i++)
		if (r->part[i].index + 1 == id) {
			json_ki64(j, "pid", r->part[i].pid);
			json_life(j, "alive", r->part[i].life);
			json_key(j, "stopped");
			json_bool(j, r->part[i].life == PART_ALIVE && pid_stopped(r->part[i].pid));
		}
	json_obj_end(j);
}

static void stat_json(const struct ring *r)
{
	const struct shmring_hdr *h = &r->id;
	char buf[128];
	struct json j;
	json_init(&j, stdout);
	json_obj(&j);
	json_ring_summary(&j, r);
	json_ku64(&j, "layout_version", r->version);
	json_ku64(&j, "ctl_size", h->ctl_size);
	json_ku64(&j, "slot_size", h->slot_size);
	json_ku64(&j, "data_offset", h->data_offset);
	json_ku64(&j, "data_size", h->data_size);
	json_ku64(&j, "file_size", h->file_size);
	/* A string: 64 random bits do not survive a reader that parses numbers as doubles. */
	snprintf(buf, sizeof(buf), "0x%016llx", (unsigned long long)h->generation);
	json_kstr(&j, "generation", buf);
	json_ku64(&j, "created_ns", h->created_ns);
	show_time(h->created_ns, true, buf, sizeof(buf));
	json_kstr(&j, "created", buf);
	json_ki64(&j, "creator_pid", h->creator_pid);
	json_ku64(&j, "creator_uid", h->creator_uid);
	snprintf(buf, sizeof(buf), "%04o", (unsigned)(r->st.st_mode & 07777));
	json_kstr(&j, "file_mode", buf);
	json_ku64(&j, "file_uid", (uint64_t)r->st.st_uid);
	json_futex(&j, "data_futex", r->data_futex);
	json_futex(&j, "space_futex", r->space_futex);
	json_key(&j, "notify_word");
	json_obj(&j);
	json_ku64(&j, "raw", r->notify_word);
	json_kbool(&j, "armed", r->notify_word & 1);
	json_obj_end(&j);
	json_key(&j, "notify");
	json_arr(&j);
	for (unsigned i = 0; i < SHMRING_NOTIFY_MAX; i++)
		if (r->notify[i].id) {
			json_obj(&j);
			json_ku64(&j, "index", i);
			json_ku64(&j, "id", r->notify[i].id);
			json_ki64(&j, "pid", r->notify[i].pid);
			json_obj_end(&j);
		}
	json_arr_end(&j);
	json_key(&j, "counters");
	json_obj(&j);
	for (unsigned i = 0; i < N_COUNTERS; i++)
		json_ku64(&j, counter_names[i], r->counters[i]);
	json_obj_end(&j);
	json_key(&j, "roles");
	json_obj(&j);
	json_role(&j, r, "producer", r->producer_role, h->kind == SHMRING_SPSC);
	json_role(&j, r, "consumer", r->consumer_role, h->kind != SHMRING_MPMC);
	json_obj_end(&j);
	json_obj_end(&j);
}

int cmd_stat(int argc, char *argv[])
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
	bool json = false;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'h': cli_help("stat", stdout); return CLI_OK;
		default: return cli_bad_option("stat", c, argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage("stat", optind == argc ? "needs a ring name" : "takes one ring name");
	char name[SHMRING_NAME_MAX + 1], err[512];
	int rc = cli_ring_name("stat", argv[optind], name, sizeof(name));
	if (rc)
		return rc;
	struct ring r;
	if ((rc = ring_open(&r, name, err, sizeof(err))) != CLI_OK)
		return cli_fail(rc, "%s", err);
	if (r.status == RING_INITIALISING || r.status == RING_OTHER_VERSION) {
		ring_close(&r);
		return cli_fail(CLI_NOTRING, "ring %s: %s", name, r.problem);
	}
	rc = ring_read(&r, err, sizeof(err));
	ring_close(&r);
	if (rc != CLI_OK)
		return cli_fail(rc, "%s", err);
	if (json)
		stat_json(&r);
	else
		stat_text(&r);
	if (fflush(stdout) != 0)
		return cli_fail(CLI_SYSERR, "cannot write output");
	/* An inconsistent header is shown (that is when one wants to see it), and fails. */
	if (r.status != RING_OK)
		return cli_fail(CLI_NOTRING, "ring %s: %s", name, r.problem);
	return CLI_OK;
}
