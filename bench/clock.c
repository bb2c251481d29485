/*
 * clock.c - the benchmark's clock: the TSC where it is invariant, calibrated
 * against CLOCK_MONOTONIC, else CLOCK_MONOTONIC itself.
 *
 * Why the TSC: a vDSO clock_gettime costs 20-40 ns on this kind of VM, as
 * much as half a cache-line transfer, and would sit in every sample. An
 * lfence + rdtsc costs a few ns. Streaming latency subtracts a stamp taken on
 * one CPU from a reading on another, so it also needs the two CPUs' TSCs to
 * agree: probe_clock_skew() (probe.c) estimates their offset at start.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench.h"

struct bench_clock g_clk = {.tsc = false, .ns_per_tick = 1.0};

int64_t mono_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool cpu_has_flag(const char *flag)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[4096];
	bool found = false;
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		char *save;
		for (char *tok = strtok_r(line, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save))
			if (strcmp(tok, flag) == 0)
				found = true;
		break;
	}
	fclose(f);
	return found;
}

#if defined(__x86_64__)
/* One (TSC, CLOCK_MONOTONIC) pair, the TSC read bracketed as tightly as we can. */
static void pair(uint64_t *tsc, int64_t *ns)
{
	int64_t best = INT64_MAX;
	for (int i = 0; i < 20; i++) {
		int64_t a = mono_now_ns();
		__builtin_ia32_lfence();
		uint64_t t = __builtin_ia32_rdtsc();
		__builtin_ia32_lfence();
		int64_t b = mono_now_ns();
		if (b - a < best) {
			best = b - a;
			*tsc = t;
			*ns = a + (b - a) / 2;
		}
	}
}
#endif

/*
 * The step the clock moves in: the greatest common divisor of many
 * differences between consecutive reads (the TSC of this VM moves in steps
 * of 21 cycles, 10 ns, although a read takes about 20 ns).
 */
static double measure_resolution(void)
{
	uint64_t g = 0, prev = clk_now();
	for (int i = 0; i < 20000; i++) {
		uint64_t t = clk_now(), d = t - prev;
		prev = t;
		while (d) {
			uint64_t r = g % d;
			g = d;
			d = r;
		}
	}
	return (double)g * g_clk.ns_per_tick;
}

static double measure_read_cost(void)
{
	enum { N = 200000 };
	int64_t t0 = mono_now_ns();
	uint64_t sink = 0;
	for (int i = 0; i < N; i++)
		sink += clk_now();
	int64_t t1 = mono_now_ns();
	__asm__ __volatile__("" : : "r"(sink));
	return (double)(t1 - t0) / N;
}

int clk_init(bool want_tsc)
{
	g_clk.tsc = false;
	g_clk.ns_per_tick = 1.0;
#if defined(__x86_64__)
	if (want_tsc && cpu_has_flag("constant_tsc") && cpu_has_flag("nonstop_tsc")) {
		uint64_t c0 = 0, c1 = 0;
		int64_t n0 = 0, n1 = 0;
		pair(&c0, &n0);
		struct timespec d = {.tv_sec = 0, .tv_nsec = 200000000};
		nanosleep(&d, NULL);
		pair(&c1, &n1);
		if (c1 > c0 && n1 > n0) {
			g_clk.tsc = true;
			g_clk.ns_per_tick = (double)(n1 - n0) / (double)(c1 - c0);
		}
	}
#endif
	g_clk.read_ns = measure_read_cost();
	double res = measure_resolution();
	if (g_clk.tsc)
		snprintf(g_clk.desc, sizeof(g_clk.desc),
			 "timer: lfence+rdtsc, invariant TSC %.4f GHz calibrated against "
			 "CLOCK_MONOTONIC over 200 ms; %.1f ns per read, steps of %.1f ns",
			 1.0 / g_clk.ns_per_tick, g_clk.read_ns, res);
	else
		snprintf(g_clk.desc, sizeof(g_clk.desc),
			 "timer: clock_gettime(CLOCK_MONOTONIC)%s; %.1f ns per read, steps of %.1f ns",
			 want_tsc ? " (no invariant TSC)" : "", g_clk.read_ns, res);
	return 0;
}
