/*
 * cli_admin.c - the commands that change something: create and rm; and
 * doctor, which runs the host readiness script.
 *
 * create goes through the library (shmring_create), so a ring made here is
 * made exactly as a program would make it, with SHMRING_F_PERSIST so that it
 * outlives the tool. The tool passes SHMRING_F_NO_MLOCK: a lock belongs to a
 * mapping, and the tool's mapping ends when it exits a moment later; each
 * process that attaches locks its own (and a small RLIMIT_MEMLOCK must not
 * make create fail for a lock that would not last). The memory is still
 * pre-faulted, and hugepages are still taken where the backing has them.
 *
 * rm removes only a shmring ring (a file with the magic), and refuses while
 * the ring has live participants unless --force: processes attached to a
 * removed ring keep working on it, but nobody new can find it, which is
 * rarely what an operator meant.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifndef SHMRING_PREFIX
#define SHMRING_PREFIX "/usr/local" /* the Makefile's PREFIX default */
#endif

/* ---- create -------------------------------------------------------------------- */

enum { OPT_HUGEPAGE = 256, OPT_NO_HUGEPAGE };

static bool parse_kind(const char *s, enum shmring_kind *k)
{
	if (strcasecmp(s, "spsc") == 0)
		*k = SHMRING_SPSC;
	else if (strcasecmp(s, "mpsc") == 0)
		*k = SHMRING_MPSC;
	else if (strcasecmp(s, "mpmc") == 0)
		*k = SHMRING_MPMC;
	else
		return false;
	return true;
}

static void create_report(const char *name, const struct shmring_info *info, bool json)
{
	/* The data file's path is in the header; read it back the way ls would. */
	struct ring r;
	char err[256], flags[128], data_path[SHMRING_PATH_MAX] = "";
	if (ring_open(&r, name, err, sizeof(err)) == CLI_OK) {
		if (r.status == RING_OK)
			snprintf(data_path, sizeof(data_path), "%s", r.id.data_path);
		ring_close(&r);
	}
	bool hugetlb = info->backing == SHMRING_BACKING_HUGETLBFS ||
		       info->backing == SHMRING_BACKING_HUGETLB_ANON;
	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_obj(&j);
		json_kstr(&j, "name", name);
		json_kstr(&j, "kind", kind_name((uint32_t)info->kind, true));
		json_ku64(&j, "msg_size", info->msg_size);
		json_ku64(&j, "capacity", info->capacity);
		json_flags(&j, info->flags);
		json_kstr(&j, "backing", backing_name((uint32_t)info->backing));
		json_ku64(&j, "page_size", info->page_size);
		json_ku64(&j, "map_size", info->map_size);
		json_kstr(&j, "data_path", data_path[0] ? data_path : NULL);
		json_key(&j, "locked");
		if (hugetlb)
			json_bool(&j, true);
		else
			json_null(&j);
		json_obj_end(&j);
		return;
	}
	char pg[32], path[SHMRING_PATH_MAX], nm[SHMRING_NAME_MAX + 1];
	printable(name, nm, sizeof(nm));
	printf("created %s\n", nm);
	printf("  %-10s %s\n", "kind", kind_name((uint32_t)info->kind, false));
	printf("  %-10s %u bytes\n", "msg_size", info->msg_size);
	printf("  %-10s %u messages\n", "capacity", info->capacity);
	flags_string(info->flags, false, flags, sizeof(flags));
	printf("  %-10s %s\n", "flags", flags);
	size_long(info->page_size, pg, sizeof(pg));
	printf("  %-10s %s, %s pages\n", "backing", backing_name((uint32_t)info->backing), pg);
	if (data_path[0]) {
		printable(data_path, path, sizeof(path));
		printf("  %-10s %s\n", "data file", path);
	}
	printf("  %-10s %zu bytes\n", "mapped", info->map_size);
	printf("  %-10s %s\n", "locked",
	       hugetlb ? "yes (hugetlb pages are never swapped)"
		       : "n/a (mlock is per process: each process that attaches locks its own mapping)");
}

int cmd_create(int argc, char *argv[])
{
	static const struct option opts[] = {{"kind", required_argument, NULL, 'k'},
					     {"msg-size", required_argument, NULL, 's'},
					     {"capacity", required_argument, NULL, 'c'},
					     {"blocking", no_argument, NULL, 'b'},
					     {"hugepage", no_argument, NULL, OPT_HUGEPAGE},
					     {"no-hugepage", no_argument, NULL, OPT_NO_HUGEPAGE},
					     {"mode", required_argument, NULL, 'm'},
					     {"page-size", required_argument, NULL, 'p'},
					     {"json", no_argument, NULL, 'j'},
					     {"help", no_argument, NULL, 'h'},
					     {0, 0, 0, 0}};
	struct shmring_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.flags = SHMRING_F_PERSIST | SHMRING_F_NO_MLOCK;
	uint64_t msg = 0, cap = 0, page = 0;
	bool json = false;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":k:s:c:bm:p:jh", opts, NULL)) != -1) {
		char *end;
		unsigned long mode;
		switch (c) {
		case 'k':
			if (!parse_kind(optarg, &cfg.kind))
				return cli_usage("create", "--kind is spsc, mpsc or mpmc, not '%s'", optarg);
			break;
		case 's':
			if (!cli_parse_size(optarg, &msg) || msg == 0 || msg > UINT32_MAX)
				return cli_usage("create", "--msg-size wants a number of bytes > 0");
			break;
		case 'c':
			if (!cli_parse_size(optarg, &cap) || cap < 2 || cap > UINT32_MAX ||
			    (cap & (cap - 1)))
				return cli_usage("create", "--capacity wants a power of two >= 2, not '%s'",
						 optarg);
			break;
		case 'b': cfg.flags |= SHMRING_F_BLOCKING; break;
		case OPT_HUGEPAGE: cfg.flags |= SHMRING_F_HUGEPAGE; break;
		case OPT_NO_HUGEPAGE: cfg.flags |= SHMRING_F_NO_HUGEPAGE; break;
		case 'm':
			errno = 0;
			mode = strtoul(optarg, &end, 8);
			if (errno || end == optarg || *end || mode > 0777)
				return cli_usage("create", "--mode wants octal permissions such as 0640");
			cfg.mode = (mode_t)mode;
			break;
		case 'p':
			if (!cli_parse_size(optarg, &page) || page < 4096 || (page & (page - 1)))
				return cli_usage("create", "--page-size wants a page size such as 2M or 1G");
			cfg.page_size = (size_t)page;
			break;
		case 'j': json = true; break;
		case 'h': cli_help("create", stdout); return CLI_OK;
		default: return cli_bad_option("create", c, argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage("create", optind == argc ? "needs a ring name" : "takes one ring name");
	if (!cfg.kind || !msg || !cap)
		return cli_usage("create", "needs --kind, --msg-size and --capacity");
	if ((cfg.flags & SHMRING_F_HUGEPAGE) && (cfg.flags & SHMRING_F_NO_HUGEPAGE))
		return cli_usage("create", "--hugepage and --no-hugepage contradict");
	cfg.msg_size = (uint32_t)msg;
	cfg.capacity = (uint32_t)cap;

	char name[SHMRING_NAME_MAX + 1];
	int rc = cli_ring_name("create", argv[optind], name, sizeof(name));
	if (rc)
		return rc;
	struct shmring *ring;
	rc = shmring_create(name, &cfg, &ring);
	if (rc) {
		const char *detail = shmring_last_error();
		return cli_fail(rc == -EINVAL || rc == -ENAMETOOLONG ? CLI_USAGE : CLI_SYSERR,
				"cannot create %s: %s", name, *detail ? detail : shmring_strerror(rc));
	}
	struct shmring_info info;
	rc = shmring_info(ring, &info);
	int rc2 = shmring_close(ring); /* PERSIST: the ring stays */
	if (rc || rc2)
		return cli_fail(CLI_SYSERR, "created %s, but: %s", name, shmring_strerror(rc ? rc : rc2));
	create_report(name, &info, json);
	return fflush(stdout) == 0 ? CLI_OK : cli_fail(CLI_SYSERR, "cannot write output");
}

/* ---- rm ---------------------------------------------------------------------------- */

static void live_pids(const struct ring *r, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (unsigned i = 0; i < r->n_part; i++) {
		if (r->part[i].life == PART_DEAD)
			continue;
		int n = snprintf(buf + used, len - used, "%s%d%s", used ? ", " : "", (int)r->part[i].pid,
				 r->part[i].life == PART_UNKNOWN ? " (liveness unknown)" : "");
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
}

/* No ring of that name: a hugetlbfs data file it left behind is removed instead. */
static int rm_orphan(const char *name)
{
	char path[SHMRING_PATH_MAX + 64];
	if (!orphan_find(name, path, sizeof(path)))
		return cli_fail(CLI_NOENT, "no ring named %s", name);
	if (unlink(path) != 0)
		return cli_fail(errno == ENOENT ? CLI_NOENT : CLI_SYSERR, "cannot remove %s: %s", path,
				strerror(errno));
	printf("removed orphan data file %s (ring %s was already gone)\n", path, name);
	return CLI_OK;
}

int cmd_rm(int argc, char *argv[])
{
	static const struct option opts[] = {
		{"force", no_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
	bool force = false;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":fh", opts, NULL)) != -1) {
		switch (c) {
		case 'f': force = true; break;
		case 'h': cli_help("rm", stdout); return CLI_OK;
		default: return cli_bad_option("rm", c, argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage("rm", optind == argc ? "needs a ring name" : "takes one ring name");
	char name[SHMRING_NAME_MAX + 1], err[512], pids[512] = "";
	int rc = cli_ring_name("rm", argv[optind], name, sizeof(name));
	if (rc)
		return rc;
	struct ring *r = calloc(1, sizeof(*r));
	if (!r)
		return cli_fail(CLI_SYSERR, "out of memory");
	rc = ring_open(r, name, err, sizeof(err));
	if (rc == CLI_NOENT) {
		free(r);
		return rm_orphan(name);
	}
	if (rc != CLI_OK) {
		bool not_ring = rc == CLI_NOTRING && r->open_errno == 0;
		free(r);
		return cli_fail(rc, "%s; not removed%s", err,
				not_ring ? " (shmring rm removes only rings)" : "");
	}
	unsigned live = 0;
	if (r->status == RING_OK || r->status == RING_INCONSISTENT) {
		if ((rc = ring_read(r, err, sizeof(err))) != CLI_OK) {
			ring_close(r);
			free(r);
			return cli_fail(rc, "%s", err);
		}
		live = r->n_alive + r->n_unknown;
		live_pids(r, pids, sizeof(pids));
	} else if (!force) {
		/* Its participants cannot be read with this layout: only --force decides. */
		rc = cli_fail(CLI_NOTRING, "ring %s: %s; not removed (use --force to remove it anyway)",
			      name, r->problem);
		ring_close(r);
		free(r);
		return rc;
	}
	bool hugetlbfs = r->status != RING_INITIALISING && r->status != RING_OTHER_VERSION &&
			 r->id.backing == SHMRING_BACKING_HUGETLBFS;
	char data_path[SHMRING_PATH_MAX];
	snprintf(data_path, sizeof(data_path), "%s", hugetlbfs ? r->id.data_path : "");
	ring_close(r);
	free(r);
	if (live && !force)
		return cli_fail(CLI_REFUSED,
				"ring %s has %u live participant%s (pid%s %s); not removed "
				"(stop them first, or use --force)",
				name, live, live == 1 ? "" : "s", live == 1 ? "" : "s", pids);

	rc = shmring_unlink(name);
	if (rc) {
		const char *detail = shmring_last_error();
		return cli_fail(rc == -ENOENT ? CLI_NOENT : CLI_SYSERR, "cannot remove %s: %s", name,
				*detail ? detail : shmring_strerror(rc));
	}
	printf("removed %s%s%s\n", name, data_path[0] ? " and its data file " : "", data_path);
	if (live)
		fprintf(stderr,
			"shmring rm: warning: removed while %u participant%s (pid%s %s) %s alive: "
			"they keep using the removed ring until they close it\n",
			live, live == 1 ? "" : "s", live == 1 ? "" : "s", pids, live == 1 ? "was" : "were");
	return CLI_OK;
}

/* ---- doctor ---------------------------------------------------------------------- */

static bool executable(const char *path)
{
	return access(path, X_OK) == 0;
}

/*
 * Where the readiness script is, first match wins: $SHMRING_SCRIPTS_DIR (the
 * script in it, or in its tools/), beside this binary, ../tools from it (a
 * source tree's build/), ../libexec/shmring from it (an install under any
 * prefix), and the configured prefix.
 */
static bool find_doctor(char *out, size_t len, char *tried, size_t tlen)
{
	char exe[PATH_MAX], cand[6][PATH_MAX + 64];
	unsigned n = 0;
	const char *env = getenv("SHMRING_SCRIPTS_DIR");
	if (env && *env) {
		snprintf(cand[n++], sizeof(cand[0]), "%s/shmring-doctor", env);
		snprintf(cand[n++], sizeof(cand[0]), "%s/tools/shmring-doctor", env);
	}
	ssize_t el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (el > 0) {
		exe[el] = 0;
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = 0;
		snprintf(cand[n++], sizeof(cand[0]), "%s/shmring-doctor", exe);
		snprintf(cand[n++], sizeof(cand[0]), "%s/../tools/shmring-doctor", exe);
		snprintf(cand[n++], sizeof(cand[0]), "%s/../libexec/shmring/shmring-doctor", exe);
	}
	snprintf(cand[n++], sizeof(cand[0]), "%s/libexec/shmring/shmring-doctor", SHMRING_PREFIX);
	size_t used = 0;
	tried[0] = 0;
	for (unsigned i = 0; i < n; i++) {
		size_t l = strnlen(cand[i], sizeof(cand[i]));
		if (l < len && executable(cand[i])) {
			char real[PATH_MAX];
			/* Shown in messages: /usr/bin/../tools reads better resolved. */
			if (realpath(cand[i], real) && strlen(real) < len)
				memcpy(out, real, strlen(real) + 1);
			else
				memcpy(out, cand[i], l + 1);
			return true;
		}
		int w = snprintf(tried + used, tlen - used, "%s%s", used ? ", " : "", cand[i]);
		if (w > 0 && (size_t)w < tlen - used)
			used += (size_t)w;
	}
	return false;
}

int cmd_doctor(int argc, char *argv[])
{
	static char help_arg[] = "--help";
	char path[PATH_MAX + 64], tried[4096];
	bool help = false;
	for (int i = 1; i < argc; i++)
		help |= strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0;
	bool found = find_doctor(path, sizeof(path), tried, sizeof(tried));
	if (help) {
		cli_help("doctor", stdout);
		if (!found)
			return CLI_OK;
		printf("\nThe script's own help (%s):\n\n", path);
		fflush(stdout);
	}
	if (!found)
		return cli_fail(CLI_SYSERR,
				"cannot find shmring-doctor (looked at %s); set SHMRING_SCRIPTS_DIR", tried);
	/* The script takes the arguments as given: --json, --hugepage-mb, --memlock-kb. */
	char **args = calloc((size_t)argc + 2, sizeof(*args));
	if (!args)
		return cli_fail(CLI_SYSERR, "out of memory");
	args[0] = path;
	int n = 1;
	if (help)
		args[n++] = help_arg;
	else
		for (int i = 1; i < argc; i++)
			args[n++] = argv[i];
	args[n] = NULL;
	fflush(stdout);
	execv(path, args);
	int e = errno;
	free(args);
	return cli_fail(CLI_SYSERR, "cannot run %s: %s", path, strerror(e));
}
