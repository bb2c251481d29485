/*
 * atomics.h - the few memory-ordering helpers the rings use.
 *
 * Everything goes through C11 <stdatomic.h>: no volatile, no __sync, no
 * per-architecture assembly except the CPU relax hint. Each helper names its
 * ordering so that a call site reads as the protocol it implements; the
 * comment at each call site names the operation it pairs with.
 */
#ifndef SHMRING_ATOMICS_H
#define SHMRING_ATOMICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef _Atomic uint64_t atomic_u64;
typedef _Atomic uint32_t atomic_u32;

static inline uint64_t load_relaxed64(const atomic_u64 *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

static inline uint64_t load_acquire64(const atomic_u64 *p)
{
	return atomic_load_explicit(p, memory_order_acquire);
}

static inline void store_relaxed64(atomic_u64 *p, uint64_t v)
{
	atomic_store_explicit(p, v, memory_order_relaxed);
}

static inline void store_release64(atomic_u64 *p, uint64_t v)
{
	atomic_store_explicit(p, v, memory_order_release);
}

/* CAS that acquires on success (it takes ownership of what the slot guards). */
static inline bool cas_acquire64(atomic_u64 *p, uint64_t *expected, uint64_t desired)
{
	return atomic_compare_exchange_strong_explicit(p, expected, desired, memory_order_acquire,
						       memory_order_relaxed);
}

/* CAS with no ordering: used only to move a hint (a head or tail index). */
static inline bool cas_relaxed64(atomic_u64 *p, uint64_t *expected, uint64_t desired)
{
	return atomic_compare_exchange_strong_explicit(p, expected, desired, memory_order_relaxed,
						       memory_order_relaxed);
}

static inline uint32_t load_acquire32(const atomic_u32 *p)
{
	return atomic_load_explicit(p, memory_order_acquire);
}

static inline void store_release32(atomic_u32 *p, uint32_t v)
{
	atomic_store_explicit(p, v, memory_order_release);
}

/* Tell the CPU we are spinning: saves power and lets a sibling hyperthread run. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

#endif /* SHMRING_ATOMICS_H */
