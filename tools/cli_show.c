/*
 * cli_show.c - how the tool shows a ring, shared by ls, stat, watch and
 * create: times, users, roles, participant summaries, and the JSON fields
 * that ls and stat have in common.
 */
#include <pwd.h>
#include <string.h>
#include <time.h>

#include "cli.h"

void show_time(uint64_t realtime_ns, bool iso, char *buf, size_t len)
{
	time_t t = (time_t)(realtime_ns / 1000000000u);
	struct tm tm;
	char date[64], zone[16];
	if (!localtime_r(&t, &tm)) {
		snprintf(buf, len, "%llu ns", (unsigned long long)realtime_ns);
		return;
	}
	strftime(date, sizeof(date), iso ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm);
	strftime(zone, sizeof(zone), "%z", &tm);
	if (iso && strlen(zone) == 5) { /* ISO 8601 extended: +hh:mm */
		zone[6] = 0;
		zone[5] = zone[4];
		zone[4] = zone[3];
		zone[3] = ':';
	}
	snprintf(buf, len, "%s.%03u%s%s", date, (unsigned)(realtime_ns / 1000000u % 1000u),
		 iso ? "" : " ", zone);
}

void user_name(uint32_t uid, char *buf, size_t len)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];
	if (getpwuid_r((uid_t)uid, &pw, tmp, sizeof(tmp), &res) == 0 && res)
		snprintf(buf, len, "%s", res->pw_name);
	else
		snprintf(buf, len, "?");
}

/*
 * Whether a live participant's process is stopped (state T or t in
 * /proc/PID/stat): alive, so nothing of its is recovered, but not running.
 * The pid is only meaningful in our PID namespace; elsewhere this says no.
 */
bool pid_stopped(int32_t pid)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = pid > 0 ? fopen(path, "re") : NULL;
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *close_paren = strrchr(buf, ')');
	return close_paren && close_paren[1] == ' ' &&
	       (close_paren[2] == 'T' || close_paren[2] == 't');
}

const char *life_name(enum part_life l)
{
	return l == PART_ALIVE ? "alive" : l == PART_DEAD ? "dead" : "unknown";
}

void roles_string(uint32_t roles, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", roles & PART_PRODUCER ? "producer" : "",
		 (roles & PART_PRODUCER) && (roles & PART_CONSUMER) ? "," : "",
		 roles & PART_CONSUMER ? "consumer" : "");
	if (!buf[0])
		snprintf(buf, len, "-");
}

/* Append "pid" or "pid(dead)" for each participant with the role bits want (0: none). */
static size_t pid_list(const struct ring *r, uint32_t want, char *buf, size_t len)
{
	size_t used = 0, count = 0;
	buf[0] = 0;
	for (unsigned i = 0; i < r->n_part; i++) {
		const struct ring_part *p = &r->part[i];
		if (want ? !(p->roles & want) : p->roles != 0)
			continue;
		int n = snprintf(buf + used, len - used, "%s%d%s", count ? "," : "", (int)p->pid,
				 p->life == PART_ALIVE ? "" : p->life == PART_DEAD ? "(dead)" : "(?)");
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
		count++;
	}
	return count;
}

/* "2 alive, 1 dead; P 4242; C 4242,4300(dead); other 4250" or "none". */
void part_summary(const struct ring *r, char *buf, size_t len)
{
	char list[512];
	if (r->n_part == 0) {
		snprintf(buf, len, "none");
		return;
	}
	int n = snprintf(buf, len, "%u alive, %u dead", r->n_alive, r->n_dead);
	if (r->n_unknown && n >= 0 && (size_t)n < len)
		n += snprintf(buf + n, len - (size_t)n, ", %u unknown", r->n_unknown);
	static const struct {
		uint32_t want;
		const char *label;
	} groups[] = {{PART_PRODUCER, "P"}, {PART_CONSUMER, "C"}, {0, "other"}};
	for (size_t g = 0; g < 3; g++) {
		if (n < 0 || (size_t)n >= len)
			return;
		if (pid_list(r, groups[g].want, list, sizeof(list)))
			n += snprintf(buf + n, len - (size_t)n, "; %s %s", groups[g].label, list);
	}
}

static void json_pids(struct json *j, const char *key, const struct ring *r, uint32_t want)
{
	json_key(j, key);
	json_arr(j);
	for (unsigned i = 0; i < r->n_part; i++)
		if (r->part[i].roles & want)
			json_i64(j, r->part[i].pid);
	json_arr_end(j);
}

void json_life(struct json *j, const char *key, enum part_life l)
{
	json_key(j, key);
	if (l == PART_UNKNOWN)
		json_null(j);
	else
		json_bool(j, l == PART_ALIVE);
}

static void json_participants(struct json *j, const struct ring *r)
{
	json_key(j, "participants");
	json_obj(j);
	json_ku64(j, "alive", r->n_alive);
	json_ku64(j, "dead", r->n_dead);
	json_ku64(j, "unknown", r->n_unknown);
	json_pids(j, "producers", r, PART_PRODUCER);
	json_pids(j, "consumers", r, PART_CONSUMER);
	json_key(j, "list");
	json_arr(j);
	for (unsigned i = 0; i < r->n_part; i++) {
		const struct ring_part *p = &r->part[i];
		json_obj(j);
		json_ku64(j, "id", p->index + 1);
		json_ki64(j, "pid", p->pid);
		json_key(j, "roles");
		json_arr(j);
		if (p->roles & PART_PRODUCER)
			json_str(j, "producer");
		if (p->roles & PART_CONSUMER)
			json_str(j, "consumer");
		json_arr_end(j);
		json_ku64(j, "state", p->state);
		json_life(j, "alive", p->life);
		json_key(j, "stopped");
		json_bool(j, p->life == PART_ALIVE && pid_stopped(p->pid));
		json_obj_end(j);
	}
	json_arr_end(j);
	json_obj_end(j);
}

static const char *status_name(enum ring_status s)
{
	switch (s) {
	case RING_OK: return "ok";
	case RING_INITIALISING: return "initialising";
	case RING_OTHER_VERSION: return "other-version";
	case RING_INCONSISTENT: return "inconsistent";
	}
	return "?";
}

void json_flags(struct json *j, uint32_t flags)
{
	char buf[128];
	json_key(j, "flags");
	json_arr(j);
	flags_string(flags, true, buf, sizeof(buf));
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		json_str(j, tok);
	json_arr_end(j);
}

/* The fields ls shows; stat adds the rest of the header. */
void json_ring_summary(struct json *j, const struct ring *r)
{
	json_kstr(j, "name", r->name);
	json_kstr(j, "path", r->path);
	json_kstr(j, "status", status_name(r->status));
	json_kstr(j, "problem", r->problem[0] ? r->problem : NULL);
	if (r->status == RING_INITIALISING || r->status == RING_OTHER_VERSION) {
		json_ku64(j, "layout_version", r->version);
		return;
	}
	json_kstr(j, "kind", kind_name(r->id.kind, true));
	json_ku64(j, "msg_size", r->id.msg_size);
	json_ku64(j, "capacity", r->id.capacity);
	json_ku64(j, "head", r->head);
	json_ku64(j, "tail", r->tail);
	json_ku64(j, "depth", ring_depth(r));
	json_kstr(j, "backing", backing_name(r->id.backing));
	json_ku64(j, "page_size", r->id.page_size);
	json_kstr(j, "data_path", r->id.data_path[0] ? r->id.data_path : NULL);
	json_flags(j, r->id.flags);
	json_key(j, "locked"); /* true: hugetlb; null: mlock is per process, not visible here */
	if (ring_locked(r) > 0)
		json_bool(j, true);
	else
		json_null(j);
	json_participants(j, r);
}
