/*
 * conn.c - one outbound TCP connection on the io_uring loop (API: conn.h).
 *
 * Owns: the fd, the connect deadline timer, the three operations it can
 * have in flight (one connect, one multishot recv, one sendmsg) and their
 * count. Teardown is counted: conn_close() shuts the socket down (which
 * completes a pending recv or send) and cancels a pending connect; the fd
 * is closed and the conn freed only when `inflight` is back to zero, so a
 * late completion never sees freed memory and the kernel never reads a
 * send buffer its owner has already released.
 *
 * Every completion handler keeps its own operation counted until the
 * user's callback has returned: a conn_close() from inside the callback
 * therefore never frees the conn under the handler's feet.
 *
 * Source binding: IP_BIND_ADDRESS_NO_PORT (honoured by IPv4 and IPv6 TCP
 * sockets alike) lets the kernel pick the source port at connect time per
 * 4-tuple, instead of reserving one per bind regardless of destination.
 */
#include "conn.h"
#include "loop.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct conn {
	struct io_op op_connect, op_recv, op_send;
	struct loop *loop;
	const struct conn_ops *ops;
	void *arg;
	int fd;
	unsigned inflight;		/* operations whose completion is still due */
	int connecting, recv_armed, send_armed;
	int timed_out;			/* the connect deadline passed */
	int closing;			/* conn_close() was called */
	struct timer timer;		/* connect deadline */
	union {				/* read by the kernel at submission */
		struct sockaddr sa;
		struct sockaddr_in v4;
		struct sockaddr_in6 v6;
	} dst;
	socklen_t dstlen;
	struct msghdr mh;		/* read by the kernel until on_sent */
	struct iovec iov[CONN_IOV_MAX];
	char local[INET6_ADDRSTRLEN];
};

#define conn_of(p, member) ((struct conn *)(void *)((char *)(p) - offsetof(struct conn, member)))

/* --- address helpers --- */

int
conn_ip_family(const char *ip)
{
	unsigned char a[sizeof(struct in6_addr)];

	if (ip == NULL || ip[0] == '\0')
		return AF_UNSPEC;
	if (inet_pton(AF_INET, ip, a) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, ip, a) == 1)
		return AF_INET6;
	return -1;
}

const char *
conn_addr_text(const struct sockaddr *sa, char *buf, size_t n)
{
	const void *a = NULL;

	if (sa->sa_family == AF_INET)
		a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6)
		a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	if (a == NULL || inet_ntop(sa->sa_family, a, buf, (socklen_t)n) == NULL)
		snprintf(buf, n, "?");
	return buf;
}

const char *
conn_peer_text(const struct sockaddr *sa, char *buf, size_t n)
{
	char ip[INET6_ADDRSTRLEN];

	conn_addr_text(sa, ip, sizeof ip);
	if (sa->sa_family == AF_INET6)
		snprintf(buf, n, "[%s]:%u", ip,
		    ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port));
	else if (sa->sa_family == AF_INET)
		snprintf(buf, n, "%s:%u", ip,
		    ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port));
	else
		snprintf(buf, n, "?");
	return buf;
}

/* --- teardown --- */

/* conn_maybe_finish - after close, once nothing is in flight: close the
 * fd, tell the owner, free. */
static void
conn_maybe_finish(struct conn *c)
{
	if (!c->closing || c->inflight > 0)
		return;
	timer_cancel(c->loop, &c->timer);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->ops->on_closed(c, c->arg);
	free(c);
}

void
conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	timer_cancel(c->loop, &c->timer);
	if (c->fd >= 0) {
		/* Completes a pending recv (0) and send (-EPIPE); close()
		 * alone would not: io_uring holds its own file reference. */
		shutdown(c->fd, SHUT_RDWR);
		if (c->connecting)
			loop_cancel_op(c->loop, &c->op_connect);
	}
	conn_maybe_finish(c);
}

/* --- completions --- */

static void
conn_on_timer(struct timer *t)
{
	struct conn *c = conn_of(t, timer);

	if (c->closing || !c->connecting)
		return;
	c->timed_out = 1;
	loop_cancel_op(c->loop, &c->op_connect);
}

static void
conn_on_connect(struct io_op *op, int res, uint32_t flags)
{
	struct conn *c = conn_of(op, op_connect);

	(void)flags;
	c->connecting = 0;
	timer_cancel(c->loop, &c->timer);
	if (!c->closing) {
		if (res < 0 && (c->timed_out || res == -ECANCELED))
			res = -ETIMEDOUT;
		if (res == 0) {
			union {
				struct sockaddr sa;
				struct sockaddr_in6 v6;
			} local;
			socklen_t ll = sizeof local;

			if (getsockname(c->fd, &local.sa, &ll) == 0)
				conn_addr_text(&local.sa, c->local, sizeof c->local);
			c->recv_armed = 1;
			c->inflight++;
			loop_recv_multishot(c->loop, c->fd, &c->op_recv);
		}
		c->ops->on_connect(c, c->arg, res);
	}
	c->inflight--;
	conn_maybe_finish(c);
}

static void
conn_on_recv(struct io_op *op, int res, uint32_t flags)
{
	struct conn *c = conn_of(op, op_recv);

	if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
		unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;

		if (!c->closing)
			c->ops->on_recv(c, c->arg, loop_buf(c->loop, bid), (size_t)res);
		loop_buf_recycle(c->loop, bid);
	}
	if (!(flags & IORING_CQE_F_MORE)) {
		c->recv_armed = 0;
		if (!c->closing) {
			if (res == -ENOBUFS || res > 0) {
				/* The shared ring ran dry (buffers come back as
				 * handlers recycle them), or the kernel ended the
				 * multishot with data (a full CQ): re-arm. */
				c->recv_armed = 1;
				c->inflight++;
				loop_recv_multishot(c->loop, c->fd, &c->op_recv);
			} else {
				c->ops->on_eof(c, c->arg, res);
			}
		}
		c->inflight--;
		conn_maybe_finish(c);
	}
}

static void
conn_on_send(struct io_op *op, int res, uint32_t flags)
{
	struct conn *c = conn_of(op, op_send);

	(void)flags;
	c->send_armed = 0;	/* the callback may send the rest */
	if (!c->closing)
		c->ops->on_sent(c, c->arg, res);
	c->inflight--;
	conn_maybe_finish(c);
}

/* --- API --- */

void
conn_send(struct conn *c, const struct iovec *iov, int n)
{
	if (c->send_armed || c->closing || n <= 0 || n > CONN_IOV_MAX)
		panic("conn_send: busy, closed or %d iovecs", n);
	memcpy(c->iov, iov, (size_t)n * sizeof *iov);
	memset(&c->mh, 0, sizeof c->mh);
	c->mh.msg_iov = c->iov;
	c->mh.msg_iovlen = (size_t)n;
	c->send_armed = 1;
	c->inflight++;
	loop_sendmsg(c->loop, c->fd, &c->mh, &c->op_send);
}

int
conn_send_busy(const struct conn *c)
{
	return c->send_armed;
}

const char *
conn_local_ip(const struct conn *c)
{
	return c->local;
}

/* conn_bind - bind fd to the source literal src (of family fam). */
static int
conn_bind(int fd, int fam, const char *src)
{
	union {
		struct sockaddr sa;
		struct sockaddr_in v4;
		struct sockaddr_in6 v6;
	} a;
	socklen_t len;
	int one = 1;

	memset(&a, 0, sizeof a);
	if (fam == AF_INET) {
		a.v4.sin_family = AF_INET;
		if (inet_pton(AF_INET, src, &a.v4.sin_addr) != 1)
			goto inval;
		len = sizeof a.v4;
	} else {
		a.v6.sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, src, &a.v6.sin6_addr) != 1)
			goto inval;
		len = sizeof a.v6;
	}
	if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0)
		return -1;
	return bind(fd, &a.sa, len);
inval:
	errno = EAFNOSUPPORT;	/* a source of the other family */
	return -1;
}

struct conn *
conn_open(struct loop *l, const struct conn_ops *ops, void *arg, const struct sockaddr *dst,
    const char *src_ip, uint64_t connect_ms, char *err, size_t errsz)
{
	struct conn *c;
	int fam = dst->sa_family, fd, one = 1, e;

	if (fam != AF_INET && fam != AF_INET6) {
		errno = EAFNOSUPPORT;
		snprintf(err, errsz, "socket: address family %d: %s", fam, strerror(errno));
		return NULL;
	}
	fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errsz, "socket: %s", strerror(errno));
		return NULL;
	}
	/* Each PIPELINING batch goes in one send: Nagle would only delay it. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (src_ip && src_ip[0] && conn_bind(fd, fam, src_ip) != 0) {
		e = errno;
		snprintf(err, errsz, "bind to source %s: %s", src_ip, strerror(e));
		close(fd);
		errno = e;
		return NULL;
	}
	c = xcalloc(1, sizeof *c);
	c->loop = l;
	c->ops = ops;
	c->arg = arg;
	c->fd = fd;
	c->op_connect.cb = conn_on_connect;
	c->op_recv.cb = conn_on_recv;
	c->op_send.cb = conn_on_send;
	c->dstlen = fam == AF_INET ? sizeof c->dst.v4 : sizeof c->dst.v6;
	memcpy(&c->dst, dst, c->dstlen);
	c->connecting = 1;
	c->inflight++;
	loop_connect(l, fd, &c->dst.sa, c->dstlen, &c->op_connect);
	if (connect_ms)
		timer_set(l, &c->timer, connect_ms, conn_on_timer);
	return c;
}

/*
 * conn_test_bind - whether src is an address of this host: a TCP socket
 * of its family bound to it (port chosen later, so nothing is reserved)
 * and closed again. 0 if it bound, else the errno (EADDRNOTAVAIL: not an
 * address here). Blocking but instant; called at start and on SIGHUP.
 */
int
conn_test_bind(const char *src)
{
	int fam = conn_ip_family(src), fd, e = 0;

	if (fam == AF_UNSPEC)
		return EINVAL;
	fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	if (conn_bind(fd, fam, src) != 0)
		e = errno;
	close(fd);
	return e;
}
