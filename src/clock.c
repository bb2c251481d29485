/*
 * clock.c - time for waits. Timeouts are relative in the API and turned into
 * absolute CLOCK_MONOTONIC deadlines here, so a wait that loops or is woken
 * early never stretches its bound.
 */
#include <time.h>

#include "internal.h"

int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The absolute deadline for a relative timeout; INT64_MAX for "without end". */
int64_t deadline_from(int64_t timeout_ns)
{
	if (timeout_ns < 0)
		return INT64_MAX;
	int64_t now = mono_ns();
	return timeout_ns > INT64_MAX - now ? INT64_MAX : now + timeout_ns;
}
