/*
 * error.c - error codes and their explanations.
 *
 * Every failure in the library goes through err_set() or err_sys(): they
 * record this thread's detail for shmring_last_error() and return the
 * negative errno. err_sys() is the one place where errno is read.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_error[512];

static void vrecord(const char *fmt, va_list ap, const char *suffix)
{
	/* clang-analyzer 14 cannot follow a va_list passed down one call. */
	int n = vsnprintf(last_error, sizeof(last_error), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	if (n >= 0 && suffix && (size_t)n < sizeof(last_error))
		snprintf(last_error + n, sizeof(last_error) - (size_t)n, ": %s", suffix);
}

int err_set(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vrecord(fmt, ap, NULL);
	va_end(ap);
	return code;
}

int err_sys(const char *fmt, ...)
{
	int e = errno ? errno : EIO;
	char buf[128];
	va_list ap;
	/* strerror_r (GNU form) returns the message, maybe not in buf. */
	const char *msg = strerror_r(e, buf, sizeof(buf));
	va_start(ap, fmt);
	vrecord(fmt, ap, msg);
	va_end(ap);
	return -e;
}

const char *shmring_last_error(void)
{
	return last_error;
}

const char *shmring_strerror(int err)
{
	switch (err < 0 ? -err : err) {
	case 0: return "success";
	case EINVAL: return "invalid argument: name, configuration, flag bits, reserved fields or NULL";
	case ENAMETOOLONG: return "ring name too long";
	case EEXIST: return "a ring of that name already exists";
	case ELOOP: return "a symbolic link stands at the ring's name";
	case ENOENT: return "no ring of that name appeared before the timeout";
	case EINPROGRESS: return "the ring exists but was not initialised before the timeout";
	case EPROTO: return "not a shmring ring, or another layout version";
	case EDOM: return "the ring differs from what was expected";
	case EBADMSG: return "the ring's shared state is inconsistent (corrupt or hostile)";
	case EAGAIN: return "ring full (push) or empty (pop)";
	case ETIMEDOUT: return "the wait reached its timeout";
	case EINTR: return "a signal interrupted the wait";
	case EBUSY: return "the role is held by a live process";
	case EPIPE: return "end of stream: the ring is empty and no live producer is attached";
	case ENOSPC: return "no free entry: all participant (or notify) slots are held by live handles";
	case ENOMEM: return "out of memory, or the locked-memory limit is too small";
	case EACCES: return "permission denied";
	case EPERM: return "operation not permitted";
	default: return "system error (see shmring_last_error)";
	}
}
