/*
 * textbook.c - the reference row: Lamport's single-producer single-consumer
 * ring as every textbook gives it, with the usual refinement of cached
 * indices (the producer keeps the last head it read, the consumer the last
 * tail), so each message costs one shared index store on each side plus the
 * slot itself. No liveness, no validation, no blocking: what shmring's SPSC
 * row is held against.
 *
 * tail is written only by the producer, head only by the consumer, 128 bytes
 * apart. The producer's release store of tail (P1) pairs with the consumer's
 * acquire load of it (C1): the slot bytes are written before they are read.
 * The consumer's release store of head (C2) pairs with the producer's acquire
 * load (P2): a slot is read before it is overwritten. Indices run free and
 * are masked on access; tail - head is the count.
 *
 * The slot-sequence variant (row "slot-seq spsc", group seqslot) is an
 * experiment, not a reference: each slot starts with a word that the
 * producer sets to position + 1 with release after the message bytes, and
 * the consumer polls that word instead of tail, so that in a nearly empty
 * ring it never pulls the producer's index line away (the producer still
 * stores tail, as a ring that offers size() must). It measures how much of
 * the textbook's streaming cost is the fight over the tail line.
 */
#include "bench.h"

struct tb_ring {
	_Alignas(BENCH_LINE) _Atomic uint64_t tail;
	_Alignas(BENCH_LINE) _Atomic uint64_t head;
	_Alignas(BENCH_LINE) unsigned char slots[];
};

/* Slots aligned as shmring aligns its own: 64 bytes for multiples of 64, else 16. */
static uint32_t stride_of(uint32_t size, bool seq)
{
	uint32_t a = size % 64 == 0 ? 64 : 16;
	size += seq ? 8 : 0;
	return (size + a - 1) / a * a;
}

size_t tb_bytes(uint32_t size, uint32_t capacity, bool seq)
{
	return sizeof(struct tb_ring) + (size_t)stride_of(size, seq) * capacity;
}

void tb_init(struct tb_ring *r)
{
	atomic_init(&r->tail, 0);
	atomic_init(&r->head, 0);
}

void tb_end_init(struct tb_end *e, struct tb_ring *r, uint32_t size, uint32_t capacity, bool seq)
{
	*e = (struct tb_end){.r = r, .mask = capacity - 1, .size = size,
			     .stride = stride_of(size, seq)};
}

int seq_push(struct tb_end *e, const void *msg)
{
	if (e->pos - e->cache > e->mask) {
		e->cache = atomic_load_explicit(&e->r->head, memory_order_acquire);
		if (e->pos - e->cache > e->mask)
			return -EAGAIN;
	}
	unsigned char *s = e->r->slots + (size_t)(e->pos & e->mask) * e->stride;
	memcpy(s + 8, msg, e->size);
	e->pos++;
	atomic_store_explicit((_Atomic uint64_t *)(void *)s, e->pos, memory_order_release);
	atomic_store_explicit(&e->r->tail, e->pos, memory_order_relaxed);
	return 0;
}

int seq_pop(struct tb_end *e, void *msg)
{
	unsigned char *s = e->r->slots + (size_t)(e->pos & e->mask) * e->stride;
	if (atomic_load_explicit((_Atomic uint64_t *)(void *)s, memory_order_acquire) != e->pos + 1)
		return -EAGAIN;
	memcpy(msg, s + 8, e->size);
	atomic_store_explicit(&e->r->head, ++e->pos, memory_order_release);
	return 0;
}

int tb_push(struct tb_end *e, const void *msg)
{
	if (e->pos - e->cache > e->mask) {
		e->cache = atomic_load_explicit(&e->r->head, memory_order_acquire); /* P2 */
		if (e->pos - e->cache > e->mask)
			return -EAGAIN;
	}
	memcpy(e->r->slots + (size_t)(e->pos & e->mask) * e->stride, msg, e->size);
	atomic_store_explicit(&e->r->tail, ++e->pos, memory_order_release); /* P1 */
	return 0;
}

int tb_pop(struct tb_end *e, void *msg)
{
	if (e->pos == e->cache) {
		e->cache = atomic_load_explicit(&e->r->tail, memory_order_acquire); /* C1 */
		if (e->pos == e->cache)
			return -EAGAIN;
	}
	memcpy(msg, e->r->slots + (size_t)(e->pos & e->mask) * e->stride, e->size);
	atomic_store_explicit(&e->r->head, ++e->pos, memory_order_release); /* C2 */
	return 0;
}
