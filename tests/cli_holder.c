/*
 * cli_holder - a participant for tests/test_cli.sh: it creates or attaches a
 * named ring, makes the counters and indices move by known amounts, says
 * "ready <pid>" on stdout, and then holds the ring (alive, as far as the
 * shmring tool can see) until it is killed, gets SIGTERM/SIGINT, or
 * --max-seconds pass.
 *
 *   cli_holder create|attach NAME [--kind spsc|mpsc|mpmc] [--msg-size N]
 *              [--capacity N] [--blocking] [--wait-timeouts N]
 *              [--bad-attaches N] [--push K] [--pop M] [--max-seconds S]
 *
 * In this order: --wait-timeouts N pop_waits with a 1 ms timeout on the
 * (still empty) ring, each of which must time out (wait_timeouts += N);
 * --bad-attaches N attaches with a msg_size that differs, each of which must
 * fail with -EDOM (attach_rejects += N); --push K messages, --pop M of them
 * (depth = K - M). Exit status 0 after a clean stop, 1 on a usage error, 2 if
 * any step went otherwise than planned (the message says which).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int usage(const char *why)
{
	fprintf(stderr,
		"cli_holder: %s\n"
		"usage: cli_holder create|attach NAME [--kind spsc|mpsc|mpmc] [--msg-size N]\n"
		"       [--capacity N] [--blocking] [--wait-timeouts N] [--bad-attaches N]\n"
		"       [--push K] [--pop M] [--max-seconds S]\n",
		why);
	return 1;
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "cli_holder: %s: %s (%s)\n", what, shmring_strerror(rc),
		shmring_last_error());
	return 2;
}

static bool number(const char *s, unsigned long *out)
{
	char *end;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return s[0] >= '0' && s[0] <= '9' && !errno && !*end;
}

int main(int argc, char *argv[])
{
	if (argc < 3 || (strcmp(argv[1], "create") != 0 && strcmp(argv[1], "attach") != 0))
		return usage("needs create or attach, and a ring name");
	bool create = strcmp(argv[1], "create") == 0;
	const char *name = argv[2];
	struct shmring_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.kind = SHMRING_SPSC;
	cfg.msg_size = 64;
	cfg.capacity = 64;
	unsigned long timeouts = 0, rejects = 0, push = 0, pop = 0, max_s = 120;
	for (int i = 3; i < argc; i++) {
		const char *opt = argv[i];
		unsigned long v = 0;
		if (strcmp(opt, "--blocking") == 0) {
			cfg.flags |= SHMRING_F_BLOCKING;
			continue;
		}
		if (i + 1 >= argc)
			return usage("an option needs a value");
		const char *val = argv[++i];
		if (strcmp(opt, "--kind") == 0) {
			cfg.kind = strcmp(val, "mpsc") == 0   ? SHMRING_MPSC
				   : strcmp(val, "mpmc") == 0 ? SHMRING_MPMC
							      : SHMRING_SPSC;
			continue;
		}
		if (!number(val, &v))
			return usage("a value is not a number");
		if (strcmp(opt, "--msg-size") == 0)
			cfg.msg_size = (uint32_t)v;
		else if (strcmp(opt, "--capacity") == 0)
			cfg.capacity = (uint32_t)v;
		else if (strcmp(opt, "--wait-timeouts") == 0)
			timeouts = v;
		else if (strcmp(opt, "--bad-attaches") == 0)
			rejects = v;
		else if (strcmp(opt, "--push") == 0)
			push = v;
		else if (strcmp(opt, "--pop") == 0)
			pop = v;
		else if (strcmp(opt, "--max-seconds") == 0)
			max_s = v;
		else
			return usage("unknown option");
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	struct shmring *r;
	int rc = create ? shmring_create(name, &cfg, &r) : shmring_attach(name, NULL, 5000000000, &r);
	if (rc)
		return fail(create ? "create" : "attach", rc);
	struct shmring_info info;
	if ((rc = shmring_info(r, &info)))
		return fail("info", rc);
	unsigned char *msg = calloc(1, info.msg_size);
	if (!msg)
		return fail("calloc", -ENOMEM);

	int status = 0;
	for (unsigned long i = 0; i < timeouts && !status; i++) {
		rc = shmring_pop_wait(r, msg, 1000000);
		if (rc != -ETIMEDOUT)
			status = fail("pop_wait on an empty ring did not time out", rc);
	}
	for (unsigned long i = 0; i < rejects && !status; i++) {
		struct shmring_config bad;
		memset(&bad, 0, sizeof(bad));
		bad.msg_size = info.msg_size + 1;
		struct shmring *other = NULL;
		rc = shmring_attach(name, &bad, 0, &other);
		if (rc != -EDOM) {
			shmring_close(other);
			status = fail("attach with the wrong msg_size was not rejected", rc);
		}
	}
	for (unsigned long i = 0; i < push && !status; i++) {
		memcpy(msg, &i, sizeof(i) < info.msg_size ? sizeof(i) : info.msg_size);
		if ((rc = shmring_try_push(r, msg)))
			status = fail("push", rc);
	}
	for (unsigned long i = 0; i < pop && !status; i++)
		if ((rc = shmring_try_pop(r, msg)))
			status = fail("pop", rc);
	if (status) {
		shmring_close(r);
		free(msg);
		return status;
	}

	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	struct timespec nap = {.tv_sec = 0, .tv_nsec = 50000000};
	for (unsigned long ticks = 0; !stop && ticks < max_s * 20; ticks++)
		nanosleep(&nap, NULL);
	free(msg);
	rc = shmring_close(r);
	return rc ? fail("close", rc) : 0;
}
