/*
 * futex_wait.pml - Spin model of shmring's blocking wait/wake protocol.
 *
 * What is modelled (see README.md in this directory for the mapping to C):
 *   - an MPMC ring of CAP slots with Vyukov-style per-slot states, so that a
 *     slot claimed but not yet written reads as "empty" to try_pop, exactly as
 *     the header documents for MPSC/MPMC rings;
 *   - the data futex word Wd = (epoch << 1) | WAITERS on which consumers sleep
 *     (pop_wait) and which producers bump and wake after publishing (push);
 *   - the mirror image: the space futex word Ws on which producers sleep
 *     (push_wait on a full ring) and which consumers bump and wake after
 *     releasing a slot. It only comes into play when CAP < NMSG.
 *   - futex_wait as the kernel does it: compare W with the expected value and
 *     enqueue the caller in ONE atomic step (the hash-bucket lock), then stay
 *     blocked until a futex_wake releases it. No spurious wake-ups are
 *     modelled: they could only hide a lost wake-up.
 *   - futex_wake(ALL) as one atomic step releasing every queued sleeper.
 *
 * Every shared-memory access of the C code is its own Promela step: each
 * try_pop/try_push (a linearizable ring operation), each load of W, each CAS
 * on W, the publish store and the slot-release store. Spin explores every
 * interleaving of them under sequential consistency, which is what the two
 * seq_cst fences of the protocol buy on real hardware for the one pattern that
 * matters (store ring / load W against store W / load ring: Dekker).
 *
 * Property (no lost wake-up): when the whole system is quiescent (Promela
 * `timeout': no process can take a step any more, so nobody will ever wake
 * anyone), no consumer may be asleep while a message can be popped and no
 * producer may be asleep while a slot is free; and every process must have
 * finished (consumers took their quota, producers pushed theirs). Quotas add
 * up to NMSG on both sides, so a process still asleep at quiescence is always
 * a lost wake-up (or a deadlock), never a legitimate "nothing left for me".
 *
 * Variants (spin -D...):
 *   BROKEN_ANNOUNCE_LATE         pop_wait looks at the ring, THEN sets
 *                                WAITERS and sleeps without looking again.
 *   BROKEN_PRODUCER_EARLY_CHECK  push loads Wd BEFORE publishing the message
 *                                (what a missing seq_cst fence allows: the
 *                                load passes the store in the store buffer).
 *   BROKEN_PUSH_ANNOUNCE_LATE    mirror of BROKEN_ANNOUNCE_LATE in push_wait.
 *   BROKEN_CONSUMER_EARLY_CHECK  mirror of BROKEN_PRODUCER_EARLY_CHECK: pop
 *                                loads Ws before releasing the slot.
 *   BROKEN_WAKE_ONE              push wakes one sleeper instead of all.
 *   EPOCH_MOD=k                  the epoch counts modulo k (the C code: 2^31).
 *                                EPOCH_MOD=1 means "no epoch, WAITERS only".
 * Sizes: NP producers, NC consumers, NMSG messages in all, CAP slots.
 */

#ifndef NP
#define NP 2
#endif
#ifndef NC
#define NC 2
#endif
#ifndef NMSG
#define NMSG 3
#endif
#ifndef CAP
#define CAP 4
#endif
#ifndef EPOCH_MOD
#define EPOCH_MOD 64		/* W stays < 2*EPOCH_MOD <= 256: fits a byte */
#endif

#define WAITERS 1
/* (v + 2) & ~WAITERS, with the epoch wrapping like the 32-bit word does */
#define BUMP(v)	((((v) / 2 + 1) % EPOCH_MOD) * 2)

/* slot states (Vyukov sequence numbers, abstracted) */
#define S_EMPTY   0	/* free for a producer */
#define S_WRITING 1	/* claimed by a producer, message not yet published */
#define S_FULL    2	/* published: a consumer may take it */
#define S_READING 3	/* claimed by a consumer, not yet released */

byte slot[CAP];		/* all S_EMPTY */
byte head;		/* consumer claim counter (positions taken) */
byte tail;		/* producer claim counter (positions claimed) */

byte Wd;		/* data word: consumers sleep on it, producers wake */
byte Ws;		/* space word: producers sleep on it, consumers wake */

bool csleep[NC];	/* consumer i is queued in futex_wait(&Wd) */
bool psleep[NP];	/* producer i is queued in futex_wait(&Ws) */

byte cdone;		/* consumers that took their whole quota */
byte pdone;		/* producers that pushed their whole share */

/* Observability for trails and the final check. */
#define CAN_POP		(slot[head % CAP] == S_FULL)
#define CAN_PUSH	(slot[tail % CAP] == S_EMPTY)

/* try_pop: one linearizable step. Fails when the oldest slot is empty OR still
 * being written (MPSC/MPMC read a slot in progress as empty). */
inline try_pop(ok, s)
{
	atomic {
		if
		:: CAN_POP -> s = head % CAP; slot[s] = S_READING; head++; ok = true
		:: else -> ok = false
		fi
	}
}

/* try_push: one linearizable step (claim). Fails when the slot at tail is not
 * free yet (full, or its consumer has not released it). */
inline try_push(ok, s)
{
	atomic {
		if
		:: CAN_PUSH -> s = tail % CAP; slot[s] = S_WRITING; tail++; ok = true
		:: else -> ok = false
		fi
	}
}

/* CAS(W, expect, desired): one atomic read-modify-write. */
inline cas(W, expect, desired, ok)
{
	atomic {
		if
		:: W == expect -> W = desired; ok = true
		:: else -> ok = false
		fi
	}
}

/* futex_wait(&W, v): the kernel compares and enqueues atomically; if W != v
 * it returns at once (EAGAIN). Then the sleeper stays blocked on its flag
 * until a futex_wake clears it. */
inline futex_wait(W, v, asleep)
{
	atomic {
		if
		:: W == v -> asleep = true
		:: else -> skip
		fi
	}
	!asleep		/* blocked here while queued */
}

/* futex_wake(&W, INT_MAX): release every sleeper queued on W. The caller
 * wraps it in one atomic step (the kernel walks the queue under the bucket
 * lock). BROKEN_WAKE_ONE: futex_wake(&W, 1) releases any ONE sleeper (Spin
 * tries each), or none if none is queued; written out for NC <= 3. */
inline futex_wake_consumers()
{
#ifdef BROKEN_WAKE_ONE
	if
	:: csleep[0] -> csleep[0] = false
	:: NC > 1 && csleep[1 % NC] -> csleep[1 % NC] = false
	:: NC > 2 && csleep[2 % NC] -> csleep[2 % NC] = false
	:: else -> skip
	fi
#else
	i = 0;
	do
	:: i < NC -> csleep[i] = false; i++
	:: else -> i = 0; break
	od
#endif
}

inline futex_wake_producers()
{
	i = 0;
	do
	:: i < NP -> psleep[i] = false; i++
	:: else -> i = 0; break
	od
}

/* The waker's side, after its store (publish/release) and fence: v holds the
 * value loaded from W. While WAITERS is set, try to bump the epoch and clear
 * WAITERS; on success wake all; on CAS failure reload W and retry. (Resetting
 * the dead locals v and ok only keeps equal states equal for Spin.) */
#define WAKE_IF_WAITERS(W, v, ok, WAKE_ALL)				\
	do								\
	:: atomic { (v & WAITERS) == 0 -> v = 0; ok = false } -> break	\
	:: else ->							\
		cas(W, v, BUMP(v), ok);					\
		if							\
		:: ok -> atomic { WAKE_ALL; v = 0; ok = false }; break	\
		:: else -> v = W	/* reload, retry */		\
		fi							\
	od

proctype consumer(byte id; byte quota)
{
	byte got, v, s, i;
	bool ok;

	do
	:: got == quota -> break
	:: else ->
		/* ---- pop_wait (spin budget 0) ---- */
pop_loop:
		try_pop(ok, s);			/* look at the ring */
		if
		:: ok -> goto popped
		:: else
		fi;
		v = Wd;				/* load(W) */
		if
		:: (v & WAITERS) == 0 ->
			cas(Wd, v, v | WAITERS, ok);	/* announce */
			if
			:: !ok -> goto pop_loop
			:: else -> v = v | WAITERS
			fi
		:: else
		fi;
		/* fence(seq_cst): a no-op under Spin's sequential consistency */
#ifndef BROKEN_ANNOUNCE_LATE
		try_pop(ok, s);			/* last look, AFTER announcing */
		if
		:: ok -> goto popped
		:: else
		fi;
#endif
c_sleep:
		futex_wait(Wd, v, csleep[id]);
		goto pop_loop;			/* woken or W changed: look again */

popped:
		/* ---- pop's tail on a blocking ring: release, wake producers ---- */
#ifdef BROKEN_CONSUMER_EARLY_CHECK
		v = Ws;				/* load(Ws) BEFORE the release */
#endif
		atomic { slot[s] = S_EMPTY; got++; s = 0 }	/* release the slot (store-release) */
#ifndef BROKEN_CONSUMER_EARLY_CHECK
		/* fence(seq_cst) */
		v = Ws;
#endif
		WAKE_IF_WAITERS(Ws, v, ok, futex_wake_producers())
	od;
	cdone++
}

proctype producer(byte id; byte share)
{
	byte sent, v, s, i;
	bool ok;

	do
	:: sent == share -> break
	:: else ->
		/* ---- push_wait (spin budget 0); mirror of pop_wait ---- */
push_loop:
		try_push(ok, s);
		if
		:: ok -> goto pushed
		:: else
		fi;
		v = Ws;
		if
		:: (v & WAITERS) == 0 ->
			cas(Ws, v, v | WAITERS, ok);
			if
			:: !ok -> goto push_loop
			:: else -> v = v | WAITERS
			fi
		:: else
		fi;
		/* fence(seq_cst) */
#ifndef BROKEN_PUSH_ANNOUNCE_LATE
		try_push(ok, s);
		if
		:: ok -> goto pushed
		:: else
		fi;
#endif
p_sleep:
		futex_wait(Ws, v, psleep[id]);
		goto push_loop;

pushed:
		/* ---- push: publish, fence, wake consumers ---- */
#ifdef BROKEN_PRODUCER_EARLY_CHECK
		v = Wd;				/* load(W) BEFORE the publish */
#endif
		atomic { slot[s] = S_FULL; sent++; s = 0 }	/* publish (store-release) */
#ifndef BROKEN_PRODUCER_EARLY_CHECK
		/* fence(seq_cst) */
		v = Wd;				/* load(W) */
#endif
		WAKE_IF_WAITERS(Wd, v, ok, futex_wake_consumers())
	od;
	pdone++
}

/*
 * Vacuity checks: a monitor that fails an assertion as soon as a situation is
 * reached, to prove the correct model really gets there (run.sh expects a
 * "counterexample" from these). REACH_TWO_SLEEPERS: both consumers queued in
 * futex_wait at once (the case wake-ALL is for). REACH_PRODUCER_SLEEPS: a
 * producer queued on the space word (the mirror path is exercised).
 */
#if defined(REACH_TWO_SLEEPERS)
#define REACH_COND (csleep[0] && csleep[NC - 1] && NC > 1)
#elif defined(REACH_PRODUCER_SLEEPS)
#define REACH_COND (psleep[0] || psleep[NP - 1])
#endif
#ifdef REACH_COND
bool reached;
active proctype reach()
{
end:	atomic { REACH_COND -> reached = true; assert(!reached) }
}
#endif

init
{
	byte i;

	atomic {
		i = 0;
		do
		:: i < NP -> run producer(i, NMSG / NP + (i < NMSG % NP -> 1 : 0)); i++
		:: else -> break
		od;
		i = 0;
		do
		:: i < NC -> run consumer(i, NMSG / NC + (i < NMSG % NC -> 1 : 0)); i++
		:: else -> break
		od
	}

	/* Quiescence: no other process can move, so no wake-up will ever come. */
	timeout;
	d_step {
		i = 0;
		do
		:: i < NC -> assert(!(csleep[i] && CAN_POP)); i++	/* consumer lost wake-up */
		:: else -> break
		od;
		i = 0;
		do
		:: i < NP -> assert(!(psleep[i] && CAN_PUSH)); i++	/* producer lost wake-up */
		:: else -> break
		od
	}
	assert(cdone == NC && pdone == NP);	/* nobody left asleep at all */
	assert(head == NMSG && tail == NMSG)
}
