/*
 * loop.h - the one io_uring ring of a process: submissions, completions,
 * a shared receive-buffer ring, timers and end-of-turn hooks.
 *
 * Completion dispatch: every submission carries a pointer to a struct
 * io_op as its user_data; the completion calls op->cb(op, res, flags).
 * An object embeds one io_op per kind of operation it can have in flight
 * and counts them; it is freed only when that count is zero
 * (asynchronous, counted teardown), so the pointer is never stale.
 * user_data 0 is reserved for completions nobody wants (cancels, poll
 * removals); they are dropped.
 *
 * Receive buffers: one provided-buffer ring (group LOOP_BGID) shared by all
 * sockets. A multishot recv completes with IORING_CQE_F_BUFFER set and the
 * buffer id in flags >> IORING_CQE_BUFFER_SHIFT; the handler copies what it
 * needs and gives the buffer back with loop_buf_recycle() at once.
 * When the ring runs dry a multishot recv ends with -ENOBUFS; re-arm it.
 *
 * Timers: a binary min-heap on a cached monotonic clock (loop_now()).
 * The loop sleeps until the earliest timer or the next completion.
 *
 * Turn order: submit-and-wait -> for each completion call its handler ->
 * run expired timers -> run end-of-turn hooks (batch flushes) -> repeat.
 */
#ifndef VOLLEY_LOOP_H
#define VOLLEY_LOOP_H

#include <liburing.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>

#define LOOP_BGID 7

struct loop;

struct io_op {
	void (*cb)(struct io_op *op, int res, uint32_t flags);
};

struct timer {
	uint64_t when;			/* loop_now() ms at which it fires */
	void (*cb)(struct timer *t);
	size_t heap_idx;		/* 0: not armed; else index + 1 */
};

struct loop_hook {
	void (*fn)(void *arg);
	void *arg;
	struct loop_hook *next;
};

/*
 * loop_new - create the ring. sq_entries: SQ size (CQ is 8x);
 * nbufs (power of two) x bufsize bytes of shared receive buffers.
 * Fails with fatal() and a clear message when io_uring is not available.
 */
struct loop *loop_new(unsigned sq_entries, unsigned nbufs, unsigned bufsize);
void loop_free(struct loop *l);

/* loop_sqe - a free SQE; submits pending ones first if the SQ is full. */
struct io_uring_sqe *loop_sqe(struct loop *l);
/* Helpers that get an SQE, prepare it and set op as user_data. */
void loop_recv_multishot(struct loop *l, int fd, struct io_op *op);
void loop_send(struct loop *l, int fd, const void *p, size_t n, struct io_op *op);
void loop_sendmsg(struct loop *l, int fd, const struct msghdr *m, struct io_op *op);
/* sa must stay valid until the SQE is submitted (end of the turn). */
void loop_connect(struct loop *l, int fd, const struct sockaddr *sa, unsigned salen, struct io_op *op);
void loop_poll(struct loop *l, int fd, unsigned mask, struct io_op *op);
void loop_accept_multishot(struct loop *l, int fd, struct io_op *op);
/* Cancel every operation on fd (completion dropped: user_data 0). */
void loop_cancel_fd(struct loop *l, int fd);
/* Cancel the operation whose user_data is op (completion dropped). */
void loop_cancel_op(struct loop *l, struct io_op *op);

/*
 * Direct descriptors (kernel 5.19+; multishot recv 6.0+). A socket accepted
 * with loop_accept_direct() lives only in the ring's fixed-file table, not in
 * the process fd table, so it does not count against RLIMIT_NOFILE; the
 * table itself may hold at most the soft RLIMIT_NOFILE entries.
 * Every operation on it names its table index with IOSQE_FIXED_FILE: use the
 * *_fixed helpers, never a syscall (getpeername, setsockopt, close...).
 * op may be NULL in loop_shutdown_fixed/loop_close_direct: completion dropped.
 */
/* loop_register_files_sparse - an empty table of n slots: 0 or -errno. */
int loop_register_files_sparse(struct loop *l, unsigned n);
/*
 * loop_accept_direct - one single-shot accept on listener fd into a free
 * table slot (IORING_FILE_INDEX_ALLOC): res = the slot index, or -errno
 * (-ENFILE: table full). sa/salen receive the peer address and must stay
 * valid until the completion (*salen = sizeof *sa before the call).
 */
void loop_accept_direct(struct loop *l, int fd, struct sockaddr *sa, socklen_t *salen,
    struct io_op *op);
void loop_recv_multishot_fixed(struct loop *l, unsigned idx, struct io_op *op);
void loop_send_fixed(struct loop *l, unsigned idx, const void *p, size_t n, struct io_op *op);
void loop_shutdown_fixed(struct loop *l, unsigned idx, int how, struct io_op *op);
/* The slot is free for the next accept once this completes. */
void loop_close_direct(struct loop *l, unsigned idx, struct io_op *op);

/* Shared receive buffers. */
void *loop_buf(struct loop *l, unsigned bid);
void loop_buf_recycle(struct loop *l, unsigned bid);
unsigned loop_buf_size(struct loop *l);

/* Cached monotonic milliseconds, refreshed every turn. */
uint64_t loop_now(struct loop *l);
uint64_t loop_refresh_now(struct loop *l);

void timer_set(struct loop *l, struct timer *t, uint64_t delay_ms, void (*cb)(struct timer *));
void timer_cancel(struct loop *l, struct timer *t);
static inline int timer_armed(const struct timer *t) { return t->heap_idx != 0; }

/* Run fn(arg) at the end of every turn, before the loop sleeps. */
void loop_add_hook(struct loop *l, struct loop_hook *h);

/*
 * loop_run - turn until loop_stop(). A signal interrupts the wait;
 * the handler should set a flag that an end-of-turn hook reads.
 */
void loop_run(struct loop *l);
void loop_stop(struct loop *l);
/* One turn, waiting at most max_wait_ms (tests and tools). */
void loop_turn(struct loop *l, uint64_t max_wait_ms);

/* Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit. */
unsigned long loop_raise_nofile(void);

#endif
