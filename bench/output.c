/*
 * output.c - what the benchmark prints: the header line, the table (to the
 * terminal and, with --table, to a file), the near/far summary, the JSON
 * file and the gnuplot PNG.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define PLOT_BOUND_S 60

static FILE *g_table;

int out_open_table(const char *path)
{
	g_table = fopen(path, "w");
	return g_table ? 0 : -errno;
}

void out_close_table(void)
{
	if (g_table)
		fclose(g_table);
	g_table = NULL;
}

/* Print to stdout and to the table file. */
void out_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	/* clang-analyzer 14 reports this va_list as uninitialized; it is not. */
	vprintf(fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	if (g_table) {
		va_start(ap, fmt);
		vfprintf(g_table, fmt, ap);
		va_end(ap);
	}
	fflush(stdout);
}

static void cpu_model(char *buf, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];
	snprintf(buf, len, "unknown CPU");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "model name", 10) == 0) {
			char *v = strchr(line, ':');
			if (v) {
				v += 1 + strspn(v + 1, " \t");
				v[strcspn(v, "\n")] = 0;
				snprintf(buf, len, "%s", v);
			}
			break;
		}
	}
	fclose(f);
}

static const char *cpu_text(int cpu, char *buf, size_t len)
{
	if (cpu < 0)
		snprintf(buf, len, "unpinned");
	else
		snprintf(buf, len, "%d", cpu);
	return buf;
}

extern int g_argc;
extern char **g_argv;

/* The command line, each argument quoted for a POSIX shell where it needs it. */
static void command_line(char *buf, size_t len)
{
	size_t at = 0;
	buf[0] = 0;
	for (int i = 0; i < g_argc && at + 4 < len; i++) {
		const char *a = g_argv[i];
		bool plain = *a && strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					  "0123456789-_./,=:+@%") == strlen(a);
		if (i)
			buf[at++] = ' ';
		if (plain) {
			at += (size_t)snprintf(buf + at, len - at, "%s", a);
		} else {
			buf[at++] = '\'';
			for (; *a && at + 6 < len; a++) {
				if (*a == '\'')
					at += (size_t)snprintf(buf + at, len - at, "'\\''");
				else
					buf[at++] = *a;
			}
			buf[at++] = '\'';
		}
		if (at >= len)
			at = len - 1;
		buf[at] = 0;
	}
}

/* Header fields, kept for the JSON too. */
static char h_date[64], h_kernel[128], h_cpu[160], h_cpus[64], h_cmd[2048];

void out_header(char *buf, size_t len)
{
	time_t now = time(NULL);
	struct tm tm;
	struct utsname u;
	char a[16], b[16];

	localtime_r(&now, &tm);
	strftime(h_date, sizeof(h_date), "%Y-%m-%d %H:%M:%S %z", &tm);
	if (uname(&u) == 0)
		snprintf(h_kernel, sizeof(h_kernel), "%s", u.release);
	cpu_model(h_cpu, sizeof(h_cpu));
	snprintf(h_cpus, sizeof(h_cpus), "%s,%s", cpu_text(g_opt.cpu[0], a, sizeof(a)),
		 cpu_text(g_opt.cpu[1], b, sizeof(b)));
	command_line(h_cmd, sizeof(h_cmd));
	snprintf(buf, len, "shmring-bench %s | kernel %s | %s | CPUs %s | %s", h_date, h_kernel,
		 h_cpu, h_cpus, h_cmd);
}

/* A latency in ns, compact: ns up to 999999, then microseconds or milliseconds. */
static const char *fmt_ns(double v, char *buf, size_t len)
{
	if (v <= 0)
		snprintf(buf, len, "-");
	else if (v < 1e6)
		snprintf(buf, len, "%.0f", v);
	else if (v < 1e9)
		snprintf(buf, len, "%.1fm", v / 1e6);
	else
		snprintf(buf, len, "%.1fs", v / 1e9);
	return buf;
}

#define LAT4 "%7s %7s %7s %7s"

void out_table_head(void)
{
	out_printf("%-14s %5s %-29s| %-31s | %-31s |%8s %8s |%6s |%9s | %s\n", "", "", "",
		   "ping-pong one-way ns (RTT/2)", "streaming one-way ns (loaded)", "", "", "",
		   "probe ns", "");
	out_printf("%-14s %5s %-29s|" LAT4 " |" LAT4 " |%8s %8s |%6s |%9s | %s\n", "mechanism",
		   "size", "mode", "p50", "p99", "p99.9", "max", "p50", "p99", "p99.9", "max",
		   "Mmsg/s", "MB/s", "x phys", "bef/aft", "place");
}

static void row_probe(const struct row *r, char *buf, size_t len)
{
	char a[16], b[16];
	/* 0: the probe failed (it could not run within its bound). */
	fmt_ns(r->probe_before, a, sizeof(a));
	fmt_ns(r->probe_after, b, sizeof(b));
	snprintf(buf, len, "%s/%s", a, b);
}

void out_table_row(const struct row *r)
{
	char b[8][24], pr[32], sz[16];

	row_probe(r, pr, sizeof(pr));
	snprintf(sz, sizeof(sz), "%u", r->size);
	if (r->status != ROW_OK) {
		out_printf("%-14s %5s %-29.29s| %s: %s\n", r->mech, sz, r->mode,
			   r->status == ROW_SKIPPED ? "skipped" : "FAILED", r->reason);
		return;
	}
	out_printf("%-14s %5s %-29.29s|" LAT4 " |" LAT4 " |%8.3f %8.1f |%6.1f |%9s | %s\n",
		   r->mech, sz, r->mode, fmt_ns(r->pp.p50, b[0], 24), fmt_ns(r->pp.p99, b[1], 24),
		   fmt_ns(r->pp.p999, b[2], 24), fmt_ns(r->pp.max, b[3], 24),
		   fmt_ns(r->st.p50, b[4], 24), fmt_ns(r->st.p99, b[5], 24),
		   fmt_ns(r->st.p999, b[6], 24), fmt_ns(r->st.max, b[7], 24), r->msgs_per_s / 1e6,
		   r->bytes_per_s / 1e6, r->ratio_phys, pr, r->near ? "near" : "far");
	if (r->note[0])
		out_printf("%-14s note: %s\n", "", r->note);
}

static void summary_part(struct row *rows, int n, bool near)
{
	int count = 0;
	for (int i = 0; i < n; i++)
		count += rows[i].status == ROW_OK && rows[i].near == near;
	out_printf("\n%s rows (%d)%s\n", near ? "Near" : "Far", count,
		   near ? ": shared-memory figures at their best placement"
			: ": placement was far for part of the row; compare these among themselves");
	if (!count)
		return;
	out_printf("  %-14s %5s %-29s %9s %9s %9s %7s %8s\n", "mechanism", "size", "mode",
		   "pp p50", "st p50", "Mmsg/s", "x phys", "x probe");
	for (int i = 0; i < n; i++) {
		struct row *r = &rows[i];
		char a[24], b[24];
		if (r->status != ROW_OK || r->near != near)
			continue;
		out_printf("  %-14s %5u %-29.29s %9s %9s %9.3f %7.1f %8.1f\n", r->mech, r->size,
			   r->mode, fmt_ns(r->pp.p50, a, 24), fmt_ns(r->st.p50, b, 24),
			   r->msgs_per_s / 1e6, r->ratio_phys, r->ratio_probe);
	}
}

void out_summary(struct row *rows, int n)
{
	int ok = 0, skipped = 0, failed = 0;
	for (int i = 0; i < n; i++) {
		ok += rows[i].status == ROW_OK;
		skipped += rows[i].status == ROW_SKIPPED;
		failed += rows[i].status == ROW_FAILED;
	}
	summary_part(rows, n, true);
	summary_part(rows, n, false);
	out_printf("\nrows: %d measured, %d skipped, %d failed\n", ok, skipped, failed);
}

/* ------------------------------------------------------------------ JSON */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_lat(FILE *f, const char *name, const struct lat *l)
{
	fprintf(f, "\"%s\": {\"p50\": %.1f, \"p99\": %.1f, \"p99_9\": %.1f, \"max\": %.1f, "
		   "\"mean\": %.1f, \"samples\": %llu}",
		name, l->p50, l->p99, l->p999, l->max, l->mean, (unsigned long long)l->n);
}

static const char *status_name(enum row_status s)
{
	return s == ROW_OK ? "ok" : s == ROW_SKIPPED ? "skipped" : "failed";
}

int out_json(const char *path, const char *header, struct row *rows, int n, double total_s)
{
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "{\n  \"header\": ");
	json_str(f, header);
	fprintf(f, ",\n  \"date\": ");
	json_str(f, h_date);
	fprintf(f, ",\n  \"kernel\": ");
	json_str(f, h_kernel);
	fprintf(f, ",\n  \"cpu_model\": ");
	json_str(f, h_cpu);
	fprintf(f, ",\n  \"cpus\": [%d, %d],\n  \"command\": ", g_opt.cpu[0], g_opt.cpu[1]);
	json_str(f, h_cmd);
	fprintf(f, ",\n  \"clock\": ");
	json_str(f, g_clk.desc);
	fprintf(f, ",\n  \"clock_skew_ns\": %.1f,\n  \"clock_skew_bound_ns\": %.1f,\n",
		g_clk.skew_ns, g_clk.skew_bound_ns);
	fprintf(f, "  \"options\": {\"samples\": %llu, \"warmup\": %llu, \"msgs\": %llu, "
		   "\"ipc_msgs\": %llu, \"capacity\": %u, \"producers\": %d, \"consumers\": %d, "
		   "\"probe_round_trips\": %llu, \"row_timeout_s\": %.0f, \"budget_s\": %.0f, "
		   "\"time_limit_s\": %.0f},\n",
		(unsigned long long)g_opt.samples, (unsigned long long)g_opt.warmup,
		(unsigned long long)g_opt.msgs, (unsigned long long)g_opt.ipc_msgs, g_opt.capacity,
		g_opt.producers, g_opt.consumers, (unsigned long long)g_opt.probe_rt,
		g_opt.row_timeout_s, g_opt.budget_s, g_opt.time_limit_s);
	double lowest = 0;
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		double lo = r->probe_before < r->probe_after ? r->probe_before : r->probe_after;
		if (lo > 0 && (lowest == 0 || lo < lowest))
			lowest = lo;
	}
	fprintf(f, "  \"lowest_probe_ns\": %.1f,\n  \"near_limit_ns\": %.1f,\n", lowest, 1.5 * lowest);
	fprintf(f, "  \"total_seconds\": %.1f,\n  \"rows\": [\n", total_s);
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		fprintf(f, "    {\"mechanism\": ");
		json_str(f, r->mech);
		fprintf(f, ", \"group\": ");
		json_str(f, r->group);
		fprintf(f, ", \"size\": %u, \"mode\": ", r->size);
		json_str(f, r->mode);
		fprintf(f, ", \"producers\": %d, \"consumers\": %d, \"status\": \"%s\", \"reason\": ",
			r->producers, r->consumers, status_name(r->status));
		json_str(f, r->reason);
		fprintf(f, ", \"note\": ");
		json_str(f, r->note);
		fprintf(f, ", ");
		json_lat(f, "pingpong", &r->pp);
		fprintf(f, ", ");
		if (r->has_stream)
			json_lat(f, "streaming", &r->st);
		else
			fprintf(f, "\"streaming\": null");
		fprintf(f, ", \"throughput_msgs_per_s\": %.0f, \"throughput_bytes_per_s\": %.0f, "
			   "\"throughput_msgs\": %llu, \"throughput_from\": \"%s\", ",
			r->msgs_per_s, r->bytes_per_s, (unsigned long long)r->tput_msgs,
			r->has_stream ? "throughput phase" : "ping-pong");
		fprintf(f, "\"ratio_to_physical_p50\": %.2f, \"ratio_to_own_probe_p50\": %.2f, "
			   "\"probe_before_ns\": %.1f, \"probe_after_ns\": %.1f, \"placement\": \"%s\", "
			   "\"negative_stamps\": %llu, \"truncated\": %s, \"seconds\": %.2f}%s\n",
			r->ratio_phys, r->ratio_probe, r->probe_before, r->probe_after,
			r->near ? "near" : "far", (unsigned long long)r->neg_stamps,
			r->truncated ? "true" : "false", r->seconds,
			i + 1 < n ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
	bool bad = ferror(f) != 0;
	if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
		int rc = -errno;
		unlink(tmp);
		return rc ? rc : -EIO;
	}
	return 0;
}

/* ------------------------------------------------------------------ plot */

static void gp_quote(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', f); /* gnuplot: '' inside '...' */
		fputc(*s, f);
	}
	fputc('\'', f);
}

/*
 * The header as a double-quoted gnuplot title: the command line (after the
 * fourth " | ") on lines of its own, wrapped at spaces near 150 characters.
 */
static void gp_title(FILE *f, const char *s)
{
	int seps = 0, col = 0;
	fputc('"', f);
	for (; *s; s++, col++) {
		if (seps < 4 && strncmp(s, " | ", 3) == 0 && ++seps == 4) {
			fputs("\\n", f);
			s += 2;
			col = 0;
			continue;
		}
		if (seps == 4 && *s == ' ' && col > 150) {
			fputs("\\n", f);
			col = 0;
			continue;
		}
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static int write_data(const char *path, struct row *rows, int n, bool stream)
{
	FILE *f = fopen(path, "w");
	int k = 0;
	if (!f)
		return -errno;
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		const struct lat *l = stream ? &r->st : &r->pp;
		if (r->status != ROW_OK || (stream && !r->has_stream) || l->p50 <= 0)
			continue;
		fprintf(f, "\"%s %u%s\"\t%.1f\t%.1f\t%.1f\t%.1f\n", r->mech, r->size,
			r->near ? "" : " (far)", l->p50, l->p99, l->p999, l->max);
		k++;
	}
	if (fclose(f) != 0)
		return -errno;
	return k;
}

/* Run gnuplot on script, bounded; 0 or -errno. */
static int run_gnuplot(const char *script)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);
		if (fd >= 0)
			dup2(fd, STDIN_FILENO);
		execlp("gnuplot", "gnuplot", script, (char *)NULL);
		_exit(127);
	}
	int64_t deadline = mono_now_ns() + (int64_t)PLOT_BOUND_S * 1000000000;
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0
			       : WIFEXITED(st) && WEXITSTATUS(st) == 127 ? -ENOENT : -EIO;
		if (mono_now_ns() > deadline || harness_interrupted()) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return -ETIMEDOUT;
		}
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 20000000};
		nanosleep(&ts, NULL);
	}
}

int out_plot(const char *path, struct row *rows, int n, const char *header)
{
	char dir[] = "/tmp/shmring-bench-plot-XXXXXX";
	char pp[64], st[64], gp[64];
	int rc, npp, nst;

	if (!mkdtemp(dir))
		return -errno;
	snprintf(pp, sizeof(pp), "%s/pp.dat", dir);
	snprintf(st, sizeof(st), "%s/st.dat", dir);
	snprintf(gp, sizeof(gp), "%s/plot.gp", dir);
	npp = write_data(pp, rows, n, false);
	nst = write_data(st, rows, n, true);
	FILE *f = fopen(gp, "w");
	if (npp < 0 || nst < 0 || !f) {
		rc = npp < 0 ? npp : nst < 0 ? nst : -errno;
		if (f)
			fclose(f);
		goto out;
	}
	int width = 400 + 40 * (npp > 20 ? npp : 20);
	fprintf(f, "set terminal pngcairo size %d,1400 noenhanced font ',10'\nset output ", width);
	gp_quote(f, path);
	fprintf(f, "\nset multiplot layout 2,1 title ");
	gp_title(f, header);
	fprintf(f, " font ',9'\n"
		   "set datafile separator '\\t'\n"
		   "set style data histograms\n"
		   "set style histogram clustered gap 1\n"
		   "set style fill solid 0.85 border -1\n"
		   "set logscale y\n"
		   "set format y '%%.0s%%c'\n"
		   "set grid ytics mytics\n"
		   "set xtics rotate by -40 scale 0 nomirror\n"
		   "set key outside right top vertical\n"
		   "set ylabel 'one-way latency, ns (log scale; k = 10^3, M = 10^6)'\n"
		   "set bmargin 9\n");
	fprintf(f, "set title 'Ping-pong one-way latency (RTT/2) per mechanism and message size'\n");
	if (npp > 0)
		fprintf(f, "plot '%s' using 2:xtic(1) title 'p50', '' using 3 title 'p99', "
			   "'' using 4 title 'p99.9', '' using 5 title 'max'\n", pp);
	fprintf(f, "set title 'Streaming one-way latency under load (stamp in the message, "
		   "queue full)'\n");
	if (nst > 0)
		fprintf(f, "plot '%s' using 2:xtic(1) title 'p50', '' using 3 title 'p99', "
			   "'' using 4 title 'p99.9', '' using 5 title 'max'\n", st);
	fprintf(f, "unset multiplot\n");
	if (fclose(f) != 0) {
		rc = -errno;
		goto out;
	}
	rc = run_gnuplot(gp);
out:
	unlink(pp);
	unlink(st);
	unlink(gp);
	rmdir(dir);
	return rc;
}
