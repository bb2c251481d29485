/*
 * shmring - see and manage shmring rings from the command line.
 *
 *   shmring ls | stat NAME | watch NAME | create NAME ... | rm NAME | doctor
 *
 * This file holds main, the help texts and the helpers every command uses;
 * each command lives in a tools/cli_*.c file (see cli.h). The exit statuses
 * are a contract with scripts: they are listed in --help and in shmring(1),
 * and change only with a major version.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char main_help[] =
	"Usage: shmring COMMAND [OPTIONS] [NAME]\n"
	"\n"
	"See and manage shmring rings (lock-free shared-memory ring buffers) on this host.\n"
	"\n"
	"Commands:\n"
	"  ls [--json]            every ring in /dev/shm: kind, sizes, depth, backing, page\n"
	"                         size, locked, participants; and orphan hugetlbfs data files\n"
	"  stat NAME [--json]     everything the ring's header says: identity, indices, wait\n"
	"                         words, notify registrations, counters, roles, participants\n"
	"  watch NAME [--interval MS] [--count N] [--json]\n"
	"                         depth and messages per second in and out, live\n"
	"  create NAME --kind spsc|mpsc|mpmc --msg-size N --capacity N [--blocking]\n"
	"         [--hugepage|--no-hugepage] [--mode 0640] [--page-size S] [--json]\n"
	"                         create a ring that stays after the tool exits\n"
	"  rm NAME [--force]      remove a ring; refused while it has live participants\n"
	"  doctor [--json]        check that this host is ready (runs shmring-doctor)\n"
	"  help [COMMAND]         this text, or a command's\n"
	"\n"
	"NAME is the ring's name as programs pass it (\"/orders\"); the slash may be left\n"
	"out. Reading commands (ls, stat, watch) never change a ring: they map it\n"
	"read-only and take no participant slot.\n"
	"\n"
	"Options:\n"
	"  -h, --help             show help; after a command, that command's\n"
	"  -V, --version          show the version\n"
	"\n"
	"Exit status:\n"
	"  0  success\n"
	"  1  usage error\n"
	"  2  no ring of that name\n"
	"  3  refused: the ring has live participants (rm without --force)\n"
	"  4  not a shmring ring, unreadable, inconsistent, or another layout version\n"
	"  5  any other error of the system or the library\n"
	"  doctor exits with shmring-doctor's status: 0 nothing FAILed, 1 a check FAILed,\n"
	"  2 bad usage (5 if the script cannot be found or run).\n"
	"\n"
	"See shmring(1) for more.\n";

static const char ls_help[] =
	"Usage: shmring ls [--json]\n"
	"\n"
	"List every shmring ring in /dev/shm (files that begin with the shmring magic;\n"
	"other files are skipped), one line each:\n"
	"  NAME, KIND, MSG_SIZE, CAPACITY, DEPTH (tail - head, within [0, capacity]),\n"
	"  BACKING (shm, shm-thp, hugetlbfs), PAGE (page size backing the slots),\n"
	"  LOCKED (yes for hugetlb pages, which are never swapped; n/a otherwise:\n"
	"  mlock is each process's own and cannot be seen from outside),\n"
	"  PARTICIPANTS (\"A alive, D dead; P <producer pids>; C <consumer pids>;\n"
	"  other <pids>\", a dead one's pid marked (dead), or \"none\").\n"
	"Then every \"shmring.*\" file in a hugetlbfs mount whose ring is gone (or\n"
	"does not use it), as \"orphan data file\": it holds hugepages until removed.\n"
	"\n"
	"  -j, --json   one JSON object: {\"rings\": [...], \"orphan_data_files\": [...],\n"
	"               \"unreadable_files\": N}\n"
	"  -h, --help   this text\n";

static const char stat_help[] =
	"Usage: shmring stat NAME [--json]\n"
	"\n"
	"Show everything the ring's header says: kind, msg_size, slot size, capacity,\n"
	"flags, backing and page size, data file, layout version, generation, created\n"
	"time, creator pid and uid; head, tail and depth; the futex words decoded\n"
	"(epoch, waiters bit) and the notify word; notify-fd registrations; the\n"
	"counters (futex_sleeps, futex_wakes, wait_timeouts, skipped, recovered,\n"
	"takeovers, attach_rejects); the roles; and each participant (id, pid, roles,\n"
	"alive or dead). Alive means that the participant's lock on the ring file is\n"
	"held, which the kernel drops when its process dies.\n"
	"\n"
	"A header whose fields disagree is shown, with the problem, and exits 4.\n"
	"\n"
	"  -j, --json   one JSON object\n"
	"  -h, --help   this text\n";

static const char watch_help[] =
	"Usage: shmring watch NAME [--interval MS] [--count N] [--json]\n"
	"\n"
	"Show the ring's depth (with a bar) and messages per second in (tail) and out\n"
	"(head), refreshed every interval, until Ctrl-C (SIGINT) or SIGTERM (exit 0).\n"
	"On a terminal one line is redrawn in place; otherwise each refresh prints a\n"
	"line of its own. Exits 2 if the ring is removed while watched.\n"
	"\n"
	"  -i, --interval MS  refresh period in milliseconds (default 1000)\n"
	"  -n, --count N      stop after N refreshes (default 0: until stopped)\n"
	"  -j, --json         one JSON object per refresh, one per line\n"
	"  -h, --help         this text\n";

static const char create_help[] =
	"Usage: shmring create NAME --kind spsc|mpsc|mpmc --msg-size N --capacity N\n"
	"                      [--blocking] [--hugepage|--no-hugepage] [--mode 0640]\n"
	"                      [--page-size S] [--json]\n"
	"\n"
	"Create a ring with the library, as a program would, with SHMRING_F_PERSIST so\n"
	"that it stays after the tool exits, and show what it got (backing, page size,\n"
	"bytes mapped). The tool does not mlock its own short-lived mapping: each\n"
	"process that attaches locks its own.\n"
	"\n"
	"  -k, --kind K        spsc, mpsc or mpmc\n"
	"  -s, --msg-size N    bytes per message (> 0)\n"
	"  -c, --capacity N    messages, a power of two >= 2 (K, M suffixes allowed)\n"
	"  -b, --blocking      waits may sleep on a futex (SHMRING_F_BLOCKING)\n"
	"      --hugepage      hugepages or fail (SHMRING_F_HUGEPAGE)\n"
	"      --no-hugepage   normal pages (SHMRING_F_NO_HUGEPAGE)\n"
	"  -m, --mode MODE     file mode, octal (default 0600)\n"
	"  -p, --page-size S   hugepage size to use, e.g. 2M or 1G (default: the system's)\n"
	"  -j, --json          print the result as one JSON object\n"
	"  -h, --help          this text\n"
	"\n"
	"Exit status 1 for bad arguments, 5 when the library refuses (the name exists,\n"
	"no hugepages with --hugepage, ...); the message says why.\n";

static const char rm_help[] =
	"Usage: shmring rm NAME [--force]\n"
	"\n"
	"Remove a ring's name (and its hugetlbfs data file) with shmring_unlink.\n"
	"Processes still attached keep working on the removed ring until they close it;\n"
	"a later create of the name makes a new ring. Without --force, a ring with live\n"
	"participants is not removed (exit 3; the message names their pids), nor is a\n"
	"ring of another layout version or one still being initialised (exit 4).\n"
	"Files that are not shmring rings are never removed (exit 4).\n"
	"When no ring has that name but its orphan hugetlbfs data file is there (see\n"
	"ls), that file is removed.\n"
	"\n"
	"  -f, --force   remove even with live participants\n"
	"  -h, --help    this text\n";

static const char doctor_help[] =
	"Usage: shmring doctor [--json] [--hugepage-mb MB] [--memlock-kb KB|unlimited]\n"
	"\n"
	"Check that this host is ready for shmring in production (hugepage pool,\n"
	"hugetlbfs mounts, locked-memory limit, transparent hugepages, CPU governor\n"
	"and isolation, sysctl profile) by running the shmring-doctor script with the\n"
	"arguments given. The script is looked for in $SHMRING_SCRIPTS_DIR, beside\n"
	"this program, in ../tools and ../libexec/shmring from it, and in\n"
	"$PREFIX/libexec/shmring. Exit status: the script's (0 nothing FAILed,\n"
	"1 a check FAILed, 2 bad usage), or 5 if it cannot be found or run.\n";

static const struct command {
	const char *name;
	int (*run)(int argc, char *argv[]);
	const char *help;
} commands[] = {
	{"ls", cmd_ls, ls_help},
	{"stat", cmd_stat, stat_help},
	{"watch", cmd_watch, watch_help},
	{"create", cmd_create, create_help},
	{"rm", cmd_rm, rm_help},
	{"doctor", cmd_doctor, doctor_help},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

void cli_help(const char *cmd, FILE *f)
{
	const struct command *c = find_command(cmd);
	fputs(c ? c->help : main_help, f);
}

int cli_fail(int code, const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("shmring: ", stderr);
	va_start(ap, fmt);
	/* clang-analyzer 14 loses track of va_start here, as in src/error.c. */
	vfprintf(stderr, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fprintf(stderr, "shmring %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	fprintf(stderr, " (see 'shmring %s --help')\n", cmd);
	return CLI_USAGE;
}

int cli_bad_option(const char *cmd, int c, char *const argv[])
{
	/* getopt_long leaves the offending word at argv[optind - 1]. */
	const char *word = optind > 0 ? argv[optind - 1] : "?";
	if (c == ':')
		return cli_usage(cmd, "option '%s' needs a value", word);
	if (optopt && word[0] == '-' && word[1] != '-')
		return cli_usage(cmd, "unknown option '-%c'", optopt);
	return cli_usage(cmd, "unknown option '%s'", word);
}

int cli_ring_name(const char *cmd, const char *arg, char *out, size_t len)
{
	const char *base = arg[0] == '/' ? arg + 1 : arg;
	if (!*base)
		return cli_usage(cmd, "a ring name is '/' and at least one character");
	if (strlen(base) + 1 > SHMRING_NAME_MAX)
		return cli_usage(cmd, "ring name is longer than %d bytes", SHMRING_NAME_MAX);
	if (strchr(base, '/'))
		return cli_usage(cmd, "ring name '%s' has a slash after the first character", arg);
	if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return cli_usage(cmd, "ring name '%s' is not a file name", arg);
	snprintf(out, len, "/%s", base);
	return 0;
}

bool cli_parse_size(const char *s, uint64_t *out)
{
	char *end;
	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return false;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

int main(int argc, char *argv[])
{
	if (argc < 2) {
		fputs(main_help, stderr);
		return CLI_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
		fputs(main_help, stdout);
		return CLI_OK;
	}
	if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
		printf("shmring %d.%d.%d (shared layout version %u)\n", SHMRING_VERSION_MAJOR,
		       SHMRING_VERSION_MINOR, SHMRING_VERSION_PATCH, SHMRING_LAYOUT_VERSION);
		return CLI_OK;
	}
	if (strcmp(cmd, "help") == 0) {
		if (argc > 2 && !find_command(argv[2]))
			return cli_fail(CLI_USAGE, "no command '%s' (see 'shmring --help')", argv[2]);
		cli_help(argc > 2 ? argv[2] : "", stdout);
		return CLI_OK;
	}
	const struct command *c = find_command(cmd);
	if (!c)
		return cli_fail(CLI_USAGE, "unknown command '%s' (see 'shmring --help')", cmd);
	return c->run(argc - 1, argv + 1);
}
