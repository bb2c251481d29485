/*
 * killpoint.c - named points where a test build of the library kills its own
 * process, so that fault-injection tests can hit every step of a push, a pop
 * and a wait (random kills rarely land between a claim and its publish).
 *
 * Built only with -DSHMRING_KILL_POINTS (make SAN=killpoints). The variable
 * SHMRING_KILL_AT="point:N" makes the N-th pass through that point (counted
 * in this process) raise SIGKILL, or SIGSTOP when SHMRING_KILL_SIGNAL=STOP
 * (the test holds the process there and decides what comes next). Points:
 * push_claimed, push_mid_copy, push_before_publish, push_after_publish,
 * pop_claimed, pop_mid_copy, pop_before_release, pop_after_release,
 * wait_sleeping, join_locked (a handle attaching has locked a dead
 * participant's entry and not yet released its roles), takeover_locked (a
 * role claimant holds a dead holder's byte, before its CAS of the role word),
 * recover_locked (a push or pop holds a dead claimant's byte, before it
 * releases that claimant's slot claims).
 * pop_before_head (MPSC: the popped slots are EMPTY, head not yet moved).
 * create_unnamed (a create has joined and filled its unnamed control file,
 * before naming it), create_named (the control file is named; the slot file
 * is not yet, and the version is not yet published).
 * The batch forms (src/batch.c) pass push_claimed, the mid-copy points and
 * pop_claimed too (copy_msg, plain memcpy without SHMRING_KILL_POINTS).
 */
#include "internal.h"

#ifdef SHMRING_KILL_POINTS
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static char kp_name[64];
static unsigned long kp_at, kp_count;
static int kp_parsed, kp_signal = SIGKILL;

void kill_point(const char *name)
{
	if (!kp_parsed) {
		const char *env = getenv("SHMRING_KILL_AT");
		const char *colon = env ? strchr(env, ':') : NULL;
		if (colon && (size_t)(colon - env) < sizeof(kp_name)) {
			memcpy(kp_name, env, (size_t)(colon - env));
			kp_at = strtoul(colon + 1, NULL, 10);
		}
		const char *sig = getenv("SHMRING_KILL_SIGNAL");
		if (sig && strcmp(sig, "STOP") == 0)
			kp_signal = SIGSTOP;
		/*
		 * Parsed for good once the variable is there: a process may pass a
		 * point (join_locked, in its attach) before it is told its own.
		 */
		kp_parsed = env != NULL;
	}
	if (kp_at && strcmp(name, kp_name) == 0 && ++kp_count == kp_at)
		raise(kp_signal);
}
#endif
