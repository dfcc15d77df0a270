/*
 * loop.c - the io_uring ring, timers and the shared receive-buffer ring.
 *
 * See loop.h for the contract. Facts of liburing 2.3 this file relies on:
 * - liburing 2.3 has no io_uring_setup_buf_ring: the ring is registered by
 *   hand, and buf_ring_cq_advance is avoided (no release store in 2.3).
 * - io_uring_submit_and_wait_timeout may return >= 0 with no CQE: always
 *   drain with io_uring_for_each_cqe.
 * - SINGLE_ISSUER|DEFER_TASKRUN need kernel 6.1; older kernels fall back.
 */
#include "loop.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

struct loop {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	char *bufs;
	unsigned nbufs, bufsize;
	struct timer **heap;
	size_t nheap, capheap;
	struct loop_hook *hooks;
	uint64_t now;
	int stop;
};

struct loop *
loop_new(unsigned sq_entries, unsigned nbufs, unsigned bufsize)
{
	struct loop *l = xcalloc(1, sizeof *l);
	struct io_uring_params p;
	int r;

	memset(&p, 0, sizeof p);
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
	    IORING_SETUP_DEFER_TASKRUN;
	p.cq_entries = sq_entries * 8;
	r = io_uring_queue_init_params(sq_entries, &l->ring, &p);
	if (r == -EINVAL) {	/* kernel < 6.1: plain ring */
		memset(&p, 0, sizeof p);
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = sq_entries * 8;
		r = io_uring_queue_init_params(sq_entries, &l->ring, &p);
	}
	if (r < 0) {
		if (r == -EPERM || r == -ENOSYS)
			fatal("io_uring is not available here (%s): it may be disabled by "
			    "kernel.io_uring_disabled or a seccomp profile (Docker blocks it by "
			    "default); volley needs it", strerror(-r));
		fatal("io_uring_queue_init: %s", strerror(-r));
	}
	(void)io_uring_register_ring_fd(&l->ring);

	if (nbufs) {
		struct io_uring_buf_reg reg;
		unsigned mask;

		if (nbufs & (nbufs - 1))
			panic("loop_new: nbufs %u is not a power of two", nbufs);
		if (posix_memalign((void **)&l->br, 4096, nbufs * sizeof(struct io_uring_buf)))
			fatal("out of memory (buffer ring)");
		l->bufs = xmalloc((size_t)nbufs * bufsize);
		l->nbufs = nbufs;
		l->bufsize = bufsize;
		memset(&reg, 0, sizeof reg);
		reg.ring_addr = (uintptr_t)l->br;
		reg.ring_entries = nbufs;
		reg.bgid = LOOP_BGID;
		r = io_uring_register_buf_ring(&l->ring, &reg, 0);
		if (r < 0)
			fatal("io_uring_register_buf_ring: %s (kernel 5.19+ needed)", strerror(-r));
		io_uring_buf_ring_init(l->br);
		mask = io_uring_buf_ring_mask(nbufs);
		for (unsigned i = 0; i < nbufs; i++)
			io_uring_buf_ring_add(l->br, l->bufs + (size_t)i * bufsize,
			    bufsize, (unsigned short)i, mask, (int)i);
		io_uring_buf_ring_advance(l->br, (int)nbufs);
	}
	l->now = clock_mono_ms();
	return l;
}

void
loop_free(struct loop *l)
{
	if (l == NULL)
		return;
	io_uring_queue_exit(&l->ring);
	free(l->br);
	free(l->bufs);
	free(l->heap);
	free(l);
}

struct io_uring_sqe *
loop_sqe(struct loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

	while (sqe == NULL) {
		int r = io_uring_submit(&l->ring);
		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
			panic("io_uring_submit: %s", strerror(-r));
		sqe = io_uring_get_sqe(&l->ring);
	}
	return sqe;
}

void
loop_recv_multishot(struct loop *l, int fd, struct io_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = LOOP_BGID;
	io_uring_sqe_set_data(sqe, op);
}

void
loop_send(struct loop *l, int fd, const void *p, size_t n, struct io_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_send(sqe, fd, p, n, MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, op);
}

void
loop_sendmsg(struct loop *l, int fd, const struct msghdr *m, struct io_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_sendmsg(sqe, fd, m, MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, op);
}

void
loop_connect(struct loop *l, int fd, const struct sockaddr *sa, unsigned salen, struct io_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_connect(sqe, fd, sa, salen);
	io_uring_sqe_set_data(sqe, op);
}

void
loop_poll(struct loop *l, int fd, unsigned mask, struct io_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_poll_add(sqe, fd, mask);
	io_uring_sqe_set_data(sqe, op);
}

void
loop_accept_multishot(struct loop *l, int fd, struct io_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, op);
}

void
loop_cancel_fd(struct loop *l, int fd)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, 0);
}

void
loop_cancel_op(struct loop *l, struct io_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
	io_uring_sqe_set_data64(sqe, 0);
}

/* --- direct descriptors (fixed-file table) --- */

int
loop_register_files_sparse(struct loop *l, unsigned n)
{
	return io_uring_register_files_sparse(&l->ring, n);
}

void
loop_accept_direct(struct loop *l, int fd, struct sockaddr *sa, socklen_t *salen,
    struct io_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	/*
	 * liburing 2.3's prep_accept_direct stores file_index + 1, so passing
	 * IORING_FILE_INDEX_ALLOC (~0U) would wrap to 0 (= not direct): pass
	 * ALLOC - 1, as its own multishot_accept_direct does. SOCK_CLOEXEC is
	 * -EINVAL with a fixed slot; SOCK_NONBLOCK as loop_accept_multishot.
	 */
	io_uring_prep_accept_direct(sqe, fd, sa, salen, SOCK_NONBLOCK,
	    IORING_FILE_INDEX_ALLOC - 1);
	io_uring_sqe_set_data(sqe, op);
}

void
loop_recv_multishot_fixed(struct loop *l, unsigned idx, struct io_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_recv_multishot(sqe, (int)idx, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT | IOSQE_FIXED_FILE;
	sqe->buf_group = LOOP_BGID;
	io_uring_sqe_set_data(sqe, op);
}

void
loop_send_fixed(struct loop *l, unsigned idx, const void *p, size_t n, struct io_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_send(sqe, (int)idx, p, n, MSG_NOSIGNAL);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, op);
}

void
loop_shutdown_fixed(struct loop *l, unsigned idx, int how, struct io_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_shutdown(sqe, (int)idx, how);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, op);
}

void
loop_close_direct(struct loop *l, unsigned idx, struct io_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_close_direct(sqe, idx);
	io_uring_sqe_set_data(sqe, op);
}

void *
loop_buf(struct loop *l, unsigned bid)
{
	if (bid >= l->nbufs)
		panic("loop_buf: bad buffer id %u", bid);
	return l->bufs + (size_t)bid * l->bufsize;
}

void
loop_buf_recycle(struct loop *l, unsigned bid)
{
	io_uring_buf_ring_add(l->br, loop_buf(l, bid), l->bufsize,
	    (unsigned short)bid, io_uring_buf_ring_mask(l->nbufs), 0);
	io_uring_buf_ring_advance(l->br, 1);
}

unsigned
loop_buf_size(struct loop *l)
{
	return l->bufsize;
}

uint64_t
loop_now(struct loop *l)
{
	return l->now;
}

uint64_t
loop_refresh_now(struct loop *l)
{
	return l->now = clock_mono_ms();
}

/* --- timer heap --- */

static void
heap_swap(struct loop *l, size_t a, size_t b)
{
	struct timer *t = l->heap[a];

	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_idx = a + 1;
	l->heap[b]->heap_idx = b + 1;
}

static void
heap_up(struct loop *l, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (l->heap[p]->when <= l->heap[i]->when)
			break;
		heap_swap(l, i, p);
		i = p;
	}
}

static void
heap_down(struct loop *l, size_t i)
{
	for (;;) {
		size_t c = 2 * i + 1, m = i;
		if (c < l->nheap && l->heap[c]->when < l->heap[m]->when)
			m = c;
		if (c + 1 < l->nheap && l->heap[c + 1]->when < l->heap[m]->when)
			m = c + 1;
		if (m == i)
			break;
		heap_swap(l, i, m);
		i = m;
	}
}

void
timer_cancel(struct loop *l, struct timer *t)
{
	size_t i;

	if (t->heap_idx == 0)
		return;
	i = t->heap_idx - 1;
	t->heap_idx = 0;
	l->nheap--;
	if (i == l->nheap)
		return;
	l->heap[i] = l->heap[l->nheap];
	l->heap[i]->heap_idx = i + 1;
	heap_up(l, i);
	heap_down(l, i);
}

void
timer_set(struct loop *l, struct timer *t, uint64_t delay_ms, void (*cb)(struct timer *))
{
	timer_cancel(l, t);
	t->when = l->now + delay_ms;
	t->cb = cb;
	if (l->nheap == l->capheap) {
		l->capheap = l->capheap ? l->capheap * 2 : 256;
		l->heap = xrealloc(l->heap, l->capheap * sizeof *l->heap);
	}
	l->heap[l->nheap] = t;
	t->heap_idx = ++l->nheap;
	heap_up(l, l->nheap - 1);
}

static void
timers_run(struct loop *l)
{
	while (l->nheap > 0 && l->heap[0]->when <= l->now) {
		struct timer *t = l->heap[0];
		timer_cancel(l, t);
		t->cb(t);
	}
}

void
loop_add_hook(struct loop *l, struct loop_hook *h)
{
	h->next = l->hooks;
	l->hooks = h;
}

void
loop_turn(struct loop *l, uint64_t max_wait_ms)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	unsigned head, seen = 0;
	uint64_t wait = max_wait_ms;
	int r;

	if (l->nheap > 0) {
		uint64_t due = l->heap[0]->when;
		uint64_t d = due > l->now ? due - l->now : 0;
		if (d < wait)
			wait = d;
	}
	ts.tv_sec = (long long)(wait / 1000);
	ts.tv_nsec = (long long)(wait % 1000) * 1000000;
	r = io_uring_submit_and_wait_timeout(&l->ring, &cqe, wait ? 1 : 0, &ts, NULL);
	if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
		panic("io_uring_submit_and_wait_timeout: %s", strerror(-r));
	if (wait == 0)	/* DEFER_TASKRUN: completions only inside GETEVENTS */
		(void)io_uring_get_events(&l->ring);

	loop_refresh_now(l);
	io_uring_for_each_cqe(&l->ring, head, cqe) {
		struct io_op *op = io_uring_cqe_get_data(cqe);
		seen++;
		if (op != NULL)
			op->cb(op, cqe->res, cqe->flags);
	}
	io_uring_cq_advance(&l->ring, seen);
	timers_run(l);
	for (struct loop_hook *h = l->hooks; h; h = h->next)
		h->fn(h->arg);
}

void
loop_run(struct loop *l)
{
	l->stop = 0;
	while (!l->stop)
		loop_turn(l, 1000);
}

void
loop_stop(struct loop *l)
{
	l->stop = 1;
}

unsigned long
loop_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("loop", "setrlimit(RLIMIT_NOFILE, %lu): cannot raise",
			    (unsigned long)rl.rlim_max);
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	return (unsigned long)rl.rlim_cur;
}
