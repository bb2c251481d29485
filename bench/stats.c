/*
 * stats.c - percentiles of latency samples.
 *
 * Nearest-rank percentiles on the sorted samples: p is the smallest sample
 * with at least p of all samples at or below it, so p99.9 of 10^5 samples is
 * the 99900th smallest and every reported value is one that was measured.
 */
#include <math.h>
#include <stdlib.h>

#include "bench.h"

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int64_t rank(const int64_t *v, uint64_t n, double p)
{
	uint64_t k = (uint64_t)ceil(p * (double)n);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

/* Sort v (n samples in ticks) and fill out, each value times scale (ns per tick, /2 for RTT). */
void lat_from_ticks(int64_t *v, uint64_t n, double scale, struct lat *out)
{
	*out = (struct lat){.n = n};
	if (n == 0)
		return;
	qsort(v, n, sizeof(*v), cmp_i64);
	double sum = 0;
	for (uint64_t i = 0; i < n; i++)
		sum += (double)v[i];
	out->p50 = (double)rank(v, n, 0.50) * scale;
	out->p99 = (double)rank(v, n, 0.99) * scale;
	out->p999 = (double)rank(v, n, 0.999) * scale;
	out->max = (double)v[n - 1] * scale;
	out->mean = sum / (double)n * scale;
}
