/*
 * cli_ls.c - `shmring ls`: every ring in /dev/shm, and orphan data files.
 * It only reads (see cli_ring.c).
 *
 * ls also looks in every hugetlbfs mount for "shmring.<name>" data files
 * that no ring uses any more (a creator killed between making its data file
 * and finishing, or a control file removed by hand): such a file holds
 * hugepages until someone removes it, and nothing else would show it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <mntent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "cli.h"

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

struct orphan {
	char path[SHMRING_PATH_MAX + 64];
	char ring[SHMRING_NAME_MAX + 1];
	uint64_t size, page_size;
	dev_t dev;
	ino_t ino;
	const char *why;
};

struct orphans {
	struct orphan *v;
	size_t n, cap;
};

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Whether the data file (dev, ino) at path is an orphan of ring name: its
 * control file is gone, or is a finished ring that does not use it. A control
 * file still being created (short or version 0) or unreadable is not judged.
 */
static const char *orphan_reason(const char *name, dev_t dev, ino_t ino)
{
	struct ring r;
	char err[256];
	int rc = ring_open(&r, name, err, sizeof(err));
	if (rc == CLI_NOENT)
		return "its ring is gone";
	if (rc != CLI_OK)
		return NULL;
	const char *why = NULL;
	if (r.status == RING_OK) {
		struct stat st;
		if (r.id.backing != SHMRING_BACKING_HUGETLBFS || stat(r.id.data_path, &st) != 0 ||
		    st.st_dev != dev || st.st_ino != ino)
			why = "the ring of that name does not use it";
	}
	ring_close(&r);
	return why;
}

static void scan_mount(const char *dir, struct orphans *o)
{
	struct statfs sf;
	DIR *d = opendir(dir);
	if (!d)
		return;
	if (fstatfs(dirfd(d), &sf) != 0 || (unsigned long)sf.f_type != HUGETLBFS_MAGIC) {
		closedir(d);
		return;
	}
	for (struct dirent *e; (e = readdir(d));) {
		const char *rest = e->d_name + strlen("shmring.");
		size_t len = strlen(e->d_name);
		struct stat st;
		if (strncmp(e->d_name, "shmring.", 8) != 0 || !*rest || len - 8 + 1 > SHMRING_NAME_MAX ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
			continue;
		char name[SHMRING_NAME_MAX + 1];
		snprintf(name, sizeof(name), "/%s", rest);
		const char *why = orphan_reason(name, st.st_dev, st.st_ino);
		if (!why)
			continue;
		bool seen = false; /* the same file through a second mount of the same fs */
		for (size_t i = 0; i < o->n; i++)
			seen |= o->v[i].dev == st.st_dev && o->v[i].ino == st.st_ino;
		if (seen)
			continue;
		if (o->n == o->cap) {
			size_t cap = o->cap ? o->cap * 2 : 8;
			struct orphan *v = realloc(o->v, cap * sizeof(*v));
			if (!v)
				break;
			o->v = v;
			o->cap = cap;
		}
		struct orphan *x = &o->v[o->n++];
		snprintf(x->path, sizeof(x->path), "%s/%s", dir, e->d_name);
		snprintf(x->ring, sizeof(x->ring), "%s", name);
		x->size = (uint64_t)st.st_size;
		x->dev = st.st_dev;
		x->ino = st.st_ino;
		x->page_size = (uint64_t)sf.f_bsize;
		x->why = why;
	}
	closedir(d);
}

static void scan_orphans(struct orphans *o)
{
	struct mntent m;
	char buf[4096];
	FILE *f = setmntent("/proc/self/mounts", "r");
	if (!f)
		return;
	while (getmntent_r(f, &m, buf, sizeof(buf)))
		if (strcmp(m.mnt_type, "hugetlbfs") == 0)
			scan_mount(m.mnt_dir, o);
	endmntent(f);
}

/* Every regular file in /dev/shm, sorted; NULL on error (errno set). */
static char **shm_names(size_t *count)
{
	DIR *d = opendir(SHM_DIR);
	if (!d)
		return NULL;
	char **v = NULL;
	size_t n = 0, cap = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if ((e->d_type != DT_REG && e->d_type != DT_UNKNOWN) || e->d_name[0] == '.' ||
		    strlen(e->d_name) + 1 > SHMRING_NAME_MAX)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			char **nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[n] = strdup(e->d_name);
		if (v[n])
			n++;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), name_cmp);
	*count = n;
	return v ? v : calloc(1, sizeof(*v));
}

static void ls_text(struct ring *rings, size_t n, const struct orphans *o, size_t unreadable)
{
	int w = 4;
	char name[SHMRING_NAME_MAX + 1];
	for (size_t i = 0; i < n; i++)
		if ((int)strlen(rings[i].name) > w)
			w = (int)strlen(rings[i].name);
	if (n == 0)
		printf("no rings in %s\n", SHM_DIR);
	else
		printf("%-*s  %-4s  %8s  %8s  %8s  %-12s  %4s  %-6s  %s\n", w, "NAME", "KIND",
		       "MSG_SIZE", "CAPACITY", "DEPTH", "BACKING", "PAGE", "LOCKED", "PARTICIPANTS");
	for (size_t i = 0; i < n; i++) {
		const struct ring *r = &rings[i];
		printable(r->name, name, sizeof(name));
		if (r->status == RING_INITIALISING || r->status == RING_OTHER_VERSION) {
			printf("%-*s  %-4s  %8s  %8s  %8s  %-12s  %4s  %-6s  (%s)\n", w, name, "-", "-",
			       "-", "-", "-", "-", "-", r->problem);
			continue;
		}
		char page[16], parts[1024];
		size_short(r->id.page_size, page, sizeof(page));
		part_summary(r, parts, sizeof(parts));
		printf("%-*s  %-4s  %8u  %8u  %8llu  %-12s  %4s  %-6s  %s%s%s%s\n", w, name,
		       kind_name(r->id.kind, false), r->id.msg_size, r->id.capacity,
		       (unsigned long long)ring_depth(r), backing_name(r->id.backing), page,
		       ring_locked(r) > 0 ? "yes" : "n/a", parts, r->problem[0] ? " (" : "",
		       r->problem, r->problem[0] ? ")" : "");
	}
	for (size_t i = 0; i < o->n; i++) {
		char path[sizeof(o->v[i].path)], sz[32], pg[16];
		printable(o->v[i].path, path, sizeof(path));
		printable(o->v[i].ring, name, sizeof(name));
		size_long(o->v[i].size, sz, sizeof(sz));
		size_short(o->v[i].page_size, pg, sizeof(pg));
		printf("orphan data file %s: ring %s: %s; holds %s in %s pages "
		       "(remove with: shmring rm %s)\n",
		       path, name, o->v[i].why, sz, pg, name);
	}
	if (unreadable)
		fprintf(stderr, "shmring ls: %zu file%s in %s could not be read (permission denied)\n",
			unreadable, unreadable == 1 ? "" : "s", SHM_DIR);
}

static void ls_json(struct ring *rings, size_t n, const struct orphans *o, size_t unreadable)
{
	struct json j;
	json_init(&j, stdout);
	json_obj(&j);
	json_key(&j, "rings");
	json_arr(&j);
	for (size_t i = 0; i < n; i++) {
		json_obj(&j);
		json_ring_summary(&j, &rings[i]);
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_key(&j, "orphan_data_files");
	json_arr(&j);
	for (size_t i = 0; i < o->n; i++) {
		json_obj(&j);
		json_kstr(&j, "path", o->v[i].path);
		json_kstr(&j, "ring", o->v[i].ring);
		json_ku64(&j, "size", o->v[i].size);
		json_ku64(&j, "page_size", o->v[i].page_size);
		json_kstr(&j, "reason", o->v[i].why);
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_ku64(&j, "unreadable_files", unreadable);
	json_obj_end(&j);
}

int cmd_ls(int argc, char *argv[])
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
	bool json = false;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'h': cli_help("ls", stdout); return CLI_OK;
		default: return cli_bad_option("ls", c, argv);
		}
	}
	if (optind < argc)
		return cli_usage("ls", "takes no ring name (use 'shmring stat %s')", argv[optind]);

	size_t count = 0, n = 0, unreadable = 0;
	char **names = shm_names(&count);
	if (!names)
		return cli_fail(CLI_SYSERR, "cannot list %s: %s", SHM_DIR, strerror(errno));
	struct ring *rings = calloc(count ? count : 1, sizeof(*rings));
	if (!rings) {
		for (size_t i = 0; i < count; i++)
			free(names[i]);
		free(names);
		return cli_fail(CLI_SYSERR, "out of memory");
	}
	for (size_t i = 0; i < count; i++) {
		char ring_name[SHMRING_NAME_MAX + 1], err[256];
		snprintf(ring_name, sizeof(ring_name), "/%s", names[i]);
		free(names[i]);
		struct ring *r = &rings[n];
		int rc = ring_open(r, ring_name, err, sizeof(err));
		if (rc != CLI_OK) {
			/* Not a ring (or gone since the listing): skipped without a word. */
			unreadable += r->open_errno == EACCES || r->open_errno == EPERM;
			continue;
		}
		if ((r->status == RING_OK || r->status == RING_INCONSISTENT) &&
		    ring_read(r, err, sizeof(err)) != CLI_OK) {
			ring_close(r);
			continue;
		}
		ring_close(r);
		n++;
	}
	free(names);
	struct orphans o = {0};
	scan_orphans(&o);
	if (json)
		ls_json(rings, n, &o, unreadable);
	else
		ls_text(rings, n, &o, unreadable);
	free(o.v);
	free(rings);
	return fflush(stdout) == 0 ? CLI_OK : cli_fail(CLI_SYSERR, "cannot write output");
}
bool orphan_find(const char *name, char *path, size_t len)
{
	struct orphans o = {0};
	bool found = false;
	scan_orphans(&o);
	for (size_t i = 0; i < o.n && !found; i++)
		if (strcmp(o.v[i].ring, name) == 0) {
			snprintf(path, len, "%s", o.v[i].path);
			found = true;
		}
	free(o.v);
	return found;
}
