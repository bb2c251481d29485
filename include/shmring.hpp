/*
 * shmring.hpp - the classic C++ API over libshmring (header-only, C++17).
 *
 *   SPSCSharedRingBuffer<MarketData, 4096> q("/md_feed");            // creates
 *   auto q = SPSCSharedRingBuffer<MarketData, 4096>::attach("/md_feed"); // attaches
 *
 * Three names, one implementation: SPSCSharedRingBuffer, MPSCSharedRingBuffer
 * and MPMCSharedRingBuffer are alias templates of SharedRingBuffer<Kind, T,
 * Size>, so SPSCSharedRingBuffer<T, N>::attach(...) names the static member of
 * the one class template. Every operation forwards to the C API in shmring.h;
 * read that header for the protocol, the roles and the full error list.
 *
 * Who may call what (the same rules as the C API, per ring kind):
 *   SPSC - one producer and one consumer at a time; push and pop wait-free.
 *   MPSC - any number of producers, one consumer; push lock-free, pop
 *          wait-free.
 *   MPMC - any number of producers and consumers; both lock-free.
 * A handle claims the producer or consumer role with its first push or pop
 * (a second live claimant of an SPSC role or the MPSC consumer role gets
 * EBUSY, thrown as std::system_error; a dead holder's role is taken over) and
 * releases it when destroyed.
 * One object is used by one thread at a time; give each thread its own
 * object (attach again) rather than sharing one.
 *
 * Errors: "full", "empty" and "timed out" are results (false); every other
 * failure throws std::system_error whose code() is the errno in
 * std::generic_category() and whose what() carries shmring_last_error()
 * ("ring /orders exists with msg_size 64, you asked for 128").
 *
 * T must be trivially copyable: messages are copied byte-wise into memory that
 * other processes read. Pointers inside T are meaningless in another process.
 * Each message starts 16-aligned in the ring (64-aligned when sizeof(T) is a
 * multiple of 64); the compile-time checks below hold T to that.
 */
#ifndef SHMRING_HPP
#define SHMRING_HPP

/*
 * The C API names both a struct and a function shmring_info (as POSIX does
 * with stat); g++ -Wshadow reports that as the function hiding the struct's
 * constructor. It is the contract's naming, not a bug: keep it out of C++
 * users' -Werror builds. (Write "struct shmring_info" to name the struct.)
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#endif
#include "shmring.h"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace shmring_detail {

/* Throws the std::system_error for a negative errno returned by the C API. */
[[noreturn]] inline void throw_error(int rc)
{
	throw std::system_error(std::error_code(-rc, std::generic_category()),
				std::string(shmring_last_error()));
}

/* A chrono duration as the C API's relative timeout (negative: no end). */
inline int64_t to_timeout_ns(std::chrono::nanoseconds timeout) noexcept
{
	int64_t ns = timeout.count(); /* rep: a signed integer of at least 64 bits */
	return ns;
}

} // namespace shmring_detail

/*
 * SharedRingBuffer - a handle to a named shared-memory ring of Size messages
 * of type T, of the given kind. Move-only; the destructor closes the handle,
 * and the creator's destructor also removes the name (unless created with
 * SHMRING_F_PERSIST). Processes still attached keep working until they close.
 *
 * A moved-from object holds no ring: its data operations throw
 * std::system_error (EINVAL), size() is 0 and empty() is true.
 */
template <shmring_kind Kind, typename T, size_t Size>
class SharedRingBuffer {
	static_assert(Kind == SHMRING_SPSC || Kind == SHMRING_MPSC || Kind == SHMRING_MPMC,
		      "shmring: Kind must be SHMRING_SPSC, SHMRING_MPSC or SHMRING_MPMC");
	static_assert(std::is_trivially_copyable_v<T>,
		      "shmring: T must be trivially copyable (messages are copied byte-wise "
		      "between processes)");
	static_assert(!std::is_const_v<T> && !std::is_volatile_v<T>,
		      "shmring: T must not be const or volatile qualified");
	static_assert(sizeof(T) > 0, "shmring: sizeof(T) must be > 0");
	static_assert(sizeof(T) <= std::numeric_limits<uint32_t>::max(),
		      "shmring: sizeof(T) must fit in uint32_t (the ring's msg_size)");
	static_assert(alignof(T) <= (sizeof(T) % 64 == 0 ? 64 : 16),
		      "shmring: alignof(T) must be <= 16 (<= 64 when sizeof(T) is a multiple "
		      "of 64): the ring aligns each message only that much");
	static_assert(Size >= 2, "shmring: Size (the capacity) must be at least 2");
	static_assert((Size & (Size - 1)) == 0, "shmring: Size (the capacity) must be a power of two");
	static_assert(Size <= std::numeric_limits<uint32_t>::max(),
		      "shmring: Size (the capacity) must fit in uint32_t");

public:
	using value_type = T;

	/* How long attach(name) waits for the creator before it throws. */
	static constexpr std::chrono::seconds default_attach_timeout{5};

	/*
	 * Creates the ring @name ("/something") with capacity Size, message size
	 * sizeof(T) and @flags (SHMRING_F_*). The memory is pre-faulted and, unless
	 * SHMRING_F_NO_MLOCK, locked; hugepages are used where available unless
	 * SHMRING_F_NO_HUGEPAGE (and required with SHMRING_F_HUGEPAGE).
	 *
	 * Caller: any thread. Bounded (a few system calls).
	 * Throws std::system_error: EEXIST (the name is taken), EINVAL (bad name
	 * or flags), ENAMETOOLONG, ELOOP, ENOMEM, or a system error (EACCES, ...).
	 */
	explicit SharedRingBuffer(const char *name, uint32_t flags = 0)
	{
		shmring_config cfg = make_config(flags);
		int rc = shmring_create(name, &cfg, &r_);
		if (rc < 0)
			shmring_detail::throw_error(rc);
	}

	/* As above, with the name in a std::string. */
	explicit SharedRingBuffer(const std::string &name, uint32_t flags = 0)
		: SharedRingBuffer(name.c_str(), flags)
	{
	}

	/*
	 * Attaches to the ring @name, waiting up to 5 s for its creator to make
	 * it. The ring must be of this kind, with msg_size sizeof(T) and capacity
	 * Size.
	 *
	 * Caller: any thread. Blocking: sleeps in short steps, at most 5 s.
	 * Throws std::system_error: ENOENT (no ring appeared in time),
	 * EINPROGRESS (the ring exists but was not initialised in time), EDOM (the
	 * ring has another kind, message size or capacity: what() says which),
	 * EPROTO (not a shmring ring), EBADMSG (inconsistent header), EINVAL,
	 * ENAMETOOLONG, ELOOP, or a system error (EACCES, ENOMEM, ...).
	 */
	static SharedRingBuffer attach(const char *name)
	{
		return attach(name, default_attach_timeout);
	}

	/* As above, with the name in a std::string. */
	static SharedRingBuffer attach(const std::string &name)
	{
		return attach(name.c_str(), default_attach_timeout);
	}

	/*
	 * Attaches as above, waiting up to @timeout (zero: one try; negative:
	 * without end). @flags are matched or applied as the C API's expect flags:
	 * SHMRING_F_BLOCKING requires a blocking-capable ring; SHMRING_F_NO_MLOCK
	 * and SHMRING_F_NO_HUGEPAGE are this process's own choices. Same throws.
	 */
	static SharedRingBuffer attach(const char *name, std::chrono::nanoseconds timeout,
				       uint32_t flags = 0)
	{
		shmring_config expect = make_config(flags);
		shmring *r = nullptr;
		int rc = shmring_attach(name, &expect, shmring_detail::to_timeout_ns(timeout), &r);
		if (rc < 0)
			shmring_detail::throw_error(rc);
		return SharedRingBuffer(r);
	}

	/* As above, with the name in a std::string. */
	static SharedRingBuffer attach(const std::string &name, std::chrono::nanoseconds timeout,
				       uint32_t flags = 0)
	{
		return attach(name.c_str(), timeout, flags);
	}

	SharedRingBuffer(const SharedRingBuffer &) = delete;
	SharedRingBuffer &operator=(const SharedRingBuffer &) = delete;

	/* Takes over @other's handle (and role); @other holds no ring afterwards. */
	SharedRingBuffer(SharedRingBuffer &&other) noexcept : r_(std::exchange(other.r_, nullptr))
	{
	}

	/* Closes this object's ring (as the destructor does), then takes @other's. */
	SharedRingBuffer &operator=(SharedRingBuffer &&other) noexcept
	{
		if (this != &other) {
			(void)shmring_close(r_);
			r_ = std::exchange(other.r_, nullptr);
		}
		return *this;
	}

	/*
	 * Closes the handle, releasing its role. The creator's close also removes
	 * the name unless SHMRING_F_PERSIST. A close error cannot be reported
	 * from a destructor and is ignored (the handle is freed in every case).
	 */
	~SharedRingBuffer() { (void)shmring_close(r_); }

	/*
	 * Copies @item into the ring. Returns false when the ring is full.
	 *
	 * Caller: a producer (SPSC: the one producer). Progress: SPSC wait-free,
	 * MPSC/MPMC lock-free; no system call on the hot path.
	 * Throws std::system_error: EBUSY (another live process holds the SPSC
	 * producer role), EBADMSG (the shared indices are corrupt), EINVAL (no
	 * ring: a moved-from object).
	 */
	[[nodiscard]] bool try_push(const T &item)
	{
		int rc = shmring_try_push(r_, std::addressof(item));
		if (rc == 0)
			return true;
		if (rc == -EAGAIN)
			return false;
		shmring_detail::throw_error(rc);
	}

	/*
	 * Copies @item into the ring, waiting without end while it is full (a
	 * busy-spin; on a SHMRING_F_BLOCKING ring the library may sleep).
	 *
	 * Caller: a producer. Progress: waits for a consumer to make room.
	 * Throws std::system_error: as try_push, and EINTR when a signal
	 * interrupts a sleep (only on a blocking ring), so a shutdown flag set by
	 * a handler can be honoured. A caller that must react to signals on a
	 * spinning ring uses the timed overload in a loop.
	 */
	void push_wait(const T &item)
	{
		int rc = shmring_push_wait(r_, std::addressof(item), -1);
		if (rc < 0)
			shmring_detail::throw_error(rc);
	}

	/*
	 * As push_wait(item), but waits at most @timeout (zero: one try;
	 * negative: without end). Returns false when the ring was still full at
	 * the deadline. Throws as push_wait(item).
	 */
	[[nodiscard]] bool push_wait(const T &item, std::chrono::nanoseconds timeout)
	{
		int rc = shmring_push_wait(r_, std::addressof(item),
					   shmring_detail::to_timeout_ns(timeout));
		if (rc == 0)
			return true;
		if (rc == -ETIMEDOUT)
			return false;
		shmring_detail::throw_error(rc);
	}

	/*
	 * Copies the oldest message into @item. Returns false when the ring is
	 * empty (MPSC: also while its oldest slot is still being written); @item
	 * is then unchanged. A message is never delivered torn.
	 *
	 * Caller: a consumer (SPSC, MPSC: the one consumer). Progress: SPSC and
	 * MPSC wait-free, MPMC lock-free; no system call on the hot path.
	 * Throws std::system_error: EBUSY (another live process holds the
	 * consumer role), EBADMSG (the shared state is corrupt), EINVAL (no ring).
	 */
	[[nodiscard]] bool try_pop(T &item)
	{
		int rc = shmring_try_pop(r_, std::addressof(item));
		if (rc == 0)
			return true;
		if (rc == -EAGAIN)
			return false;
		shmring_detail::throw_error(rc);
	}

	/*
	 * Copies the oldest message into @item, waiting without end while the
	 * ring is empty (a busy-spin; on a SHMRING_F_BLOCKING ring the library may
	 * sleep on a futex after a bounded spin).
	 *
	 * Caller: a consumer. Progress: waits for a producer.
	 * Throws std::system_error: as try_pop, and EINTR when a signal interrupts
	 * a sleep (only on a blocking ring). A caller that must react to signals
	 * on a spinning ring uses the timed overload in a loop.
	 */
	void pop_wait(T &item)
	{
		int rc = shmring_pop_wait(r_, std::addressof(item), -1);
		if (rc < 0)
			shmring_detail::throw_error(rc);
	}

	/*
	 * As pop_wait(item), but waits at most @timeout (zero: one try; negative:
	 * without end). Returns false when the ring was still empty at the
	 * deadline (@item unchanged). Throws as pop_wait(item).
	 */
	[[nodiscard]] bool pop_wait(T &item, std::chrono::nanoseconds timeout)
	{
		int rc = shmring_pop_wait(r_, std::addressof(item), shmring_detail::to_timeout_ns(timeout));
		if (rc == 0)
			return true;
		if (rc == -ETIMEDOUT)
			return false;
		shmring_detail::throw_error(rc);
	}

	/*
	 * The number of messages in the ring: a snapshot, possibly stale when it
	 * returns, always in [0, capacity()]. Any holder of the object; wait-free;
	 * never throws.
	 */
	size_t size() const noexcept { return shmring_size(r_); }

	/* size() == 0, with the same caveats. */
	bool empty() const noexcept { return shmring_empty(r_); }

	/* The ring's capacity in messages: Size. */
	static constexpr size_t capacity() noexcept { return Size; }

	/*
	 * The C handle, to reach the rest of the C API (shmring_info, ...). It
	 * stays owned by this object: do not close it. nullptr once moved from.
	 */
	shmring *handle() noexcept { return r_; }
	const shmring *handle() const noexcept { return r_; }

private:
	explicit SharedRingBuffer(shmring *r) noexcept : r_(r) {}

	static shmring_config make_config(uint32_t flags) noexcept
	{
		shmring_config cfg{};
		cfg.kind = Kind;
		cfg.msg_size = static_cast<uint32_t>(sizeof(T));
		cfg.capacity = static_cast<uint32_t>(Size);
		cfg.flags = flags;
		return cfg;
	}

	shmring *r_ = nullptr;
};

/* Single producer, single consumer: the fastest kind. */
template <typename T, size_t Size>
using SPSCSharedRingBuffer = SharedRingBuffer<SHMRING_SPSC, T, Size>;

/* Any number of producers, one consumer. */
template <typename T, size_t Size>
using MPSCSharedRingBuffer = SharedRingBuffer<SHMRING_MPSC, T, Size>;

/* Any number of producers and consumers. */
template <typename T, size_t Size>
using MPMCSharedRingBuffer = SharedRingBuffer<SHMRING_MPMC, T, Size>;

#endif /* SHMRING_HPP */
