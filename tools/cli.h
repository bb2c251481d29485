/*
 * cli.h - the pieces of the shmring command (tools/shmring.c, tools/cli_*.c)
 * that more than one file uses.
 *
 *   shmring.c     main: dispatch, help texts, option and name helpers
 *   cli_ring.c    reading a ring from outside, read-only (the rules are there)
 *   cli_json.c    a small JSON writer
 *   cli_show.c    how a ring is shown: times, participants, common JSON fields
 *   cli_ls.c      ls (and the orphan data file scan rm also uses)
 *   cli_stat.c    stat
 *   cli_watch.c   watch
 *   cli_admin.c   create, rm, doctor
 *
 * The tool is versioned with the library: it reads the shared layout through
 * src/layout.h, so a layout change that forgets the tool fails to compile
 * here rather than misreading rings on a production host.
 */
#ifndef SHMRING_CLI_H
#define SHMRING_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "layout.h"
#include "shmring.h"

/* Exit statuses; scripts rely on them (documented in --help and shmring(1)). */
enum cli_status {
	CLI_OK = 0,
	CLI_USAGE = 1,   /* bad command line */
	CLI_NOENT = 2,   /* no ring of that name */
	CLI_REFUSED = 3, /* refused: the ring has live participants */
	CLI_NOTRING = 4, /* not a shmring ring, unreadable, or another layout version */
	CLI_SYSERR = 5,  /* any other failure of the system or the library */
};

#define SHM_DIR "/dev/shm"
#define CLI_PATH_MAX (sizeof(SHM_DIR) + SHMRING_NAME_MAX)

/* ---- shmring.c: shared helpers -------------------------------------------- */

/* Print "shmring: <message>" on stderr and return code. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "shmring CMD: <message> (see ...)" on stderr and return CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The help text of a command ("" for the tool itself) on f. */
void cli_help(const char *cmd, FILE *f);
/*
 * Report a getopt_long error (it returned '?' or ':'; the optstring starts
 * with ':') for command cmd; returns CLI_USAGE.
 */
int cli_bad_option(const char *cmd, int c, char *const argv[]);
/*
 * A ring name from the command line: "/x" or "x" (the slash is added), shm_open
 * rules otherwise. 0, or CLI_USAGE after printing why.
 */
int cli_ring_name(const char *cmd, const char *arg, char *out, size_t len);
/* A number with an optional K, M or G suffix (powers of 1024). false if not one. */
bool cli_parse_size(const char *s, uint64_t *out);

/* ---- cli_ring.c: a ring seen from outside --------------------------------- */

enum ring_status {
	RING_OK,            /* this layout version, header consistent */
	RING_INITIALISING,  /* magic there, version still 0: being created, or its creator died */
	RING_OTHER_VERSION, /* a shmring ring of another layout version */
	RING_INCONSISTENT,  /* this version, but header fields disagree (see problem) */
};

#define N_COUNTERS 7
extern const char *const counter_names[N_COUNTERS];

/* Liveness of one participant entry, from its OFD lock byte. */
enum part_life { PART_DEAD = 0, PART_ALIVE = 1, PART_UNKNOWN = 2 };

struct ring_part {
	unsigned index;      /* entry index; its id is index + 1 */
	uint32_t state;      /* 0 free, else in use */
	int32_t pid;
	uint32_t roles;      /* PART_PRODUCER | PART_CONSUMER */
	enum part_life life;
};

struct ring {
	char name[SHMRING_NAME_MAX + 1]; /* "/x" */
	char path[CLI_PATH_MAX];         /* "/dev/shm/x" */
	int fd;
	int open_errno;                  /* why ring_open could not open the file, or 0 */
	const struct shmring_hdr *h;     /* the control page, PROT_READ */
	struct stat st;                  /* of the control file, at open */
	enum ring_status status;
	char problem[256];               /* why status is not RING_OK, or "" */

	/* Identity, copied once at open (final once version is set). */
	uint32_t version;
	struct shmring_hdr id;           /* line 0 and data_path are filled */

	/* Live state: relaxed loads by ring_read(), each a snapshot of its own. */
	uint64_t head, tail;
	uint32_t data_futex, space_futex, notify_word;
	uint64_t counters[N_COUNTERS];
	struct {
		uint64_t id;
		int32_t pid;
	} notify[SHMRING_NOTIFY_MAX];
	uint32_t producer_role, consumer_role;
	struct ring_part part[SHMRING_PARTICIPANTS_MAX]; /* entries in use or locked */
	unsigned n_part, n_alive, n_dead, n_unknown;
	int64_t read_mono_ns;            /* CLOCK_MONOTONIC when head/tail were read */
};

/*
 * Open the ring called name ("/x") read-only and copy its identity.
 * CLI_OK with r->status set (a file with the magic is a ring even if it is
 * initialising, of another version or inconsistent); CLI_NOENT;
 * CLI_NOTRING (not a regular file, shorter than the header, no magic, or
 * unreadable); CLI_SYSERR. Unless CLI_OK, err says why in a sentence.
 */
int ring_open(struct ring *r, const char *name, char *err, size_t errlen);
/* Read the live state (indices, words, counters, roles, participants). 0 or CLI_NOTRING. */
int ring_read(struct ring *r, char *err, size_t errlen);
void ring_close(struct ring *r);

/* tail - head as a count in [0, capacity] (a torn or hostile pair is clamped). */
uint64_t ring_depth(const struct ring *r);
/* Whether the control file has been unlinked (the ring was removed) since open. */
bool ring_removed(const struct ring *r);

const char *kind_name(uint32_t kind, bool lower);
const char *backing_name(uint32_t backing);
/* "BLOCKING|PERSIST" (or lower case, comma separated); "-" / "" for none. */
void flags_string(uint32_t flags, bool lower, char *buf, size_t len);
/* Whether the ring's memory is locked as seen from outside: 1 yes, -1 n/a (per process). */
int ring_locked(const struct ring *r);
/* "4K", "2M", "1G", or bytes. */
void size_short(uint64_t bytes, char *buf, size_t len);
/* "4 KiB", "2 MiB", or "123 bytes". */
void size_long(uint64_t bytes, char *buf, size_t len);
/* A file name made safe for a terminal: control and non-ASCII bytes as '?'. */
void printable(const char *s, char *buf, size_t len);

/* ---- cli_json.c: a JSON writer, one document on one line ------------------- */

#define JSON_DEPTH_MAX 16
struct json {
	FILE *f;
	int depth;
	bool after_key;
	bool need_comma[JSON_DEPTH_MAX];
};

void json_init(struct json *j, FILE *f);
void json_obj(struct json *j);     /* { */
void json_obj_end(struct json *j); /* } (and a newline at depth 0) */
void json_arr(struct json *j);     /* [ */
void json_arr_end(struct json *j); /* ] */
void json_key(struct json *j, const char *key);
/* A live participant whose process is stopped (SIGSTOP, a debugger): cli_show.c. */
bool pid_stopped(int32_t pid);
void json_str(struct json *j, const char *s); /* NULL writes null */
void json_u64(struct json *j, uint64_t v);
void json_i64(struct json *j, int64_t v);
void json_dbl(struct json *j, double v);
void json_bool(struct json *j, bool v);
void json_null(struct json *j);
void json_kstr(struct json *j, const char *key, const char *s);
void json_ku64(struct json *j, const char *key, uint64_t v);
void json_ki64(struct json *j, const char *key, int64_t v);
void json_kbool(struct json *j, const char *key, bool v);

/* ---- the commands: each returns an exit status ---------------------------- */

int cmd_ls(int argc, char *argv[]);
int cmd_stat(int argc, char *argv[]);
int cmd_watch(int argc, char *argv[]);
int cmd_create(int argc, char *argv[]);
int cmd_rm(int argc, char *argv[]);
int cmd_doctor(int argc, char *argv[]);

/* ---- cli_show.c: showing a ring -------------------------------------------- */

/* A CLOCK_REALTIME time as local "YYYY-MM-DD HH:MM:SS.mmm +zzzz", or ISO 8601. */
void show_time(uint64_t realtime_ns, bool iso, char *buf, size_t len);
/* The user name of uid, or "?". */
void user_name(uint32_t uid, char *buf, size_t len);
/* "alive", "dead", "unknown". */
const char *life_name(enum part_life l);
/* "producer,consumer", "producer", "consumer" or "-". */
void roles_string(uint32_t roles, char *buf, size_t len);
/* "2 alive, 1 dead; P 4242; C 4242,4300(dead); other 4250", or "none". */
void part_summary(const struct ring *r, char *buf, size_t len);
/* "key": true / false / null (unknown). */
void json_life(struct json *j, const char *key, enum part_life l);
/* "flags": ["blocking", "persist", ...] */
void json_flags(struct json *j, uint32_t flags);
/* The fields of a ring that ls shows and stat starts with (inside an object). */
void json_ring_summary(struct json *j, const struct ring *r);

/* cli_ls.c: the orphan hugetlbfs data file of ring name (see ls), if there is one. */
bool orphan_find(const char *name, char *path, size_t len);

#endif /* SHMRING_CLI_H */
