/*
 * test_conn.c - conn.c: the address helpers as a table, then real
 * connections over loopback on a real loop (IPv4 and IPv6): connect,
 * receive, send, end of stream, refused connects, local failures (a
 * source that is not on this host, a source of the other family), and
 * the counted-teardown contract: after conn_close() only on_closed comes,
 * exactly once, also when the close is asked from inside a callback, while
 * the connect is pending, or while a large send is still in flight. Also
 * the per-family count of the target list the connections are made to.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "loop.h"
#include "session.h"

/* --- address helpers --- */

static void
test_ip_family(void **state)
{
	static const struct { const char *ip; int fam; } t[] = {
		{ NULL, AF_UNSPEC }, { "", AF_UNSPEC },
		{ "127.0.0.1", AF_INET }, { "192.0.2.1", AF_INET },
		{ "::1", AF_INET6 }, { "2001:db8::1", AF_INET6 }, { "::ffff:10.0.0.1", AF_INET6 },
		{ "localhost", -1 }, { "1.2.3", -1 }, { "[::1]", -1 }, { "::1%lo", -1 },
		{ "127.0.0.1 ", -1 }, { "1.2.3.4:25", -1 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (conn_ip_family(t[i].ip) != t[i].fam)
			fail_msg("%s: family %d, want %d", t[i].ip ? t[i].ip : "NULL",
			    conn_ip_family(t[i].ip), t[i].fam);
}

union addr {
	struct sockaddr sa;
	struct sockaddr_in v4;
	struct sockaddr_in6 v6;
};

static void
make_addr(union addr *a, const char *ip, unsigned port)
{
	memset(a, 0, sizeof *a);
	if (inet_pton(AF_INET, ip, &a->v4.sin_addr) == 1) {
		a->v4.sin_family = AF_INET;
		a->v4.sin_port = htons((uint16_t)port);
	} else {
		assert_int_equal(inet_pton(AF_INET6, ip, &a->v6.sin6_addr), 1);
		a->v6.sin6_family = AF_INET6;
		a->v6.sin6_port = htons((uint16_t)port);
	}
}

static void
test_addr_text(void **state)
{
	static const struct { const char *ip; unsigned port; const char *addr, *peer; } t[] = {
		{ "127.0.0.1", 25, "127.0.0.1", "127.0.0.1:25" },
		{ "192.0.2.255", 65535, "192.0.2.255", "192.0.2.255:65535" },
		{ "::1", 25, "::1", "[::1]:25" },
		{ "2001:db8:0:0:0:0:0:1", 2525, "2001:db8::1", "[2001:db8::1]:2525" },
		{ "::ffff:10.0.0.1", 25, "::ffff:10.0.0.1", "[::ffff:10.0.0.1]:25" },
		{ "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
		  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		  "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535" },
	};
	char buf[CONN_PEER_TEXT];
	union addr a;

	(void)state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		make_addr(&a, t[i].ip, t[i].port);
		assert_string_equal(conn_addr_text(&a.sa, buf, sizeof buf), t[i].addr);
		assert_string_equal(conn_peer_text(&a.sa, buf, sizeof buf), t[i].peer);
	}
	memset(&a, 0, sizeof a);
	a.sa.sa_family = AF_UNIX;
	assert_string_equal(conn_addr_text(&a.sa, buf, sizeof buf), "?");
	assert_string_equal(conn_peer_text(&a.sa, buf, sizeof buf), "?");
	/* a short buffer truncates, never overflows */
	make_addr(&a, "::1", 25);
	assert_string_equal(conn_peer_text(&a.sa, buf, 5), "[::1");
}

/* --- live connections --- */

struct rec {
	struct conn *c;
	int connects, connect_res;
	char got[65536];
	size_t ngot;
	int eofs, eof_res;
	int sents, sent_res;
	int closed;
	int after_close;		/* callbacks after conn_close (must stay 0) */
	int close_in_recv;		/* conn_close from inside on_recv */
	int asked_close;
};

static void
r_connect(struct conn *c, void *arg, int res)
{
	struct rec *r = arg;

	assert_ptr_equal(c, r->c);
	r->after_close += r->asked_close;
	r->connects++;
	r->connect_res = res;
}

static void
r_recv(struct conn *c, void *arg, const char *buf, size_t n)
{
	struct rec *r = arg;

	r->after_close += r->asked_close;
	if (n > sizeof r->got - r->ngot)
		n = sizeof r->got - r->ngot;
	memcpy(r->got + r->ngot, buf, n);
	r->ngot += n;
	if (r->close_in_recv) {
		r->asked_close = 1;
		conn_close(c);
		/* still valid here: the handler's own op is in flight */
		assert_false(conn_send_busy(c));
		assert_int_equal(r->closed, 0);
	}
}

static void
r_eof(struct conn *c, void *arg, int res)
{
	struct rec *r = arg;

	(void)c;
	r->after_close += r->asked_close;
	r->eofs++;
	r->eof_res = res;
}

static void
r_sent(struct conn *c, void *arg, int res)
{
	struct rec *r = arg;

	(void)c;
	r->after_close += r->asked_close;
	r->sents++;
	r->sent_res = res;
}

static void
r_closed(struct conn *c, void *arg)
{
	struct rec *r = arg;

	assert_ptr_equal(c, r->c);
	r->closed++;
}

static const struct conn_ops rec_ops = { r_connect, r_recv, r_eof, r_sent, r_closed };

static struct loop *L;

static int
setup(void **state)
{
	(void)state;
	L = loop_new(64, 64, 4096);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	loop_free(L);
	return 0;
}

/* turn the loop until *flag (or 5 s) */
static void
turn_until(const int *flag)
{
	uint64_t end = loop_refresh_now(L) + 5000;

	while (!*flag && loop_refresh_now(L) < end)
		loop_turn(L, 50);
	if (!*flag)
		fail_msg("timed out waiting for a completion");
}

static int
listener(const char *ip, union addr *a)
{
	socklen_t len = sizeof *a;
	int fd;

	make_addr(a, ip, 0);
	fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, &a->sa, a->sa.sa_family == AF_INET ? sizeof a->v4 : sizeof a->v6), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, &a->sa, &len), 0);
	return fd;
}

static void
test_live_ipv4(void **state)
{
	struct rec r;
	union addr a;
	char err[200], buf[16];
	int lfd, sfd, one = 1;
	struct iovec iov[2] = { { (void *)"pi", 2 }, { (void *)"ng", 2 } };

	(void)state;
	lfd = listener("127.0.0.1", &a);
	memset(&r, 0, sizeof r);
	r.c = conn_open(L, &rec_ops, &r, &a.sa, "127.0.0.5", 2000, err, sizeof err);
	assert_non_null(r.c);
	turn_until(&r.connects);
	assert_int_equal(r.connect_res, 0);
	assert_string_equal(conn_local_ip(r.c), "127.0.0.5");
	sfd = accept(lfd, NULL, NULL);
	assert_true(sfd >= 0);
	setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

	/* bytes in */
	assert_int_equal(write(sfd, "220 hello\r\n", 11), 11);
	while (r.ngot < 11)
		loop_turn(L, 50);
	assert_memory_equal(r.got, "220 hello\r\n", 11);

	/* bytes out, two iovecs in one send */
	assert_false(conn_send_busy(r.c));
	conn_send(r.c, iov, 2);
	assert_true(conn_send_busy(r.c));
	turn_until(&r.sents);
	assert_int_equal(r.sent_res, 4);
	assert_false(conn_send_busy(r.c));
	assert_int_equal(read(sfd, buf, sizeof buf), 4);
	assert_memory_equal(buf, "ping", 4);

	/* the peer closes: end of stream, then our close completes at once */
	close(sfd);
	turn_until(&r.eofs);
	assert_int_equal(r.eof_res, 0);
	assert_int_equal(r.closed, 0);
	r.asked_close = 1;
	conn_close(r.c);
	assert_int_equal(r.closed, 1);		/* nothing was in flight */
	for (int i = 0; i < 3; i++)
		loop_turn(L, 10);
	assert_int_equal(r.closed, 1);
	assert_int_equal(r.after_close, 0);
	close(lfd);
}

static void
test_live_ipv6(void **state)
{
	struct rec r;
	union addr a;
	char err[200];
	int lfd, sfd;

	(void)state;
	lfd = listener("::1", &a);
	memset(&r, 0, sizeof r);
	r.c = conn_open(L, &rec_ops, &r, &a.sa, "::1", 2000, err, sizeof err);
	assert_non_null(r.c);
	turn_until(&r.connects);
	assert_int_equal(r.connect_res, 0);
	assert_string_equal(conn_local_ip(r.c), "::1");
	sfd = accept(lfd, NULL, NULL);
	assert_true(sfd >= 0);
	assert_int_equal(write(sfd, "220 six\r\n", 9), 9);
	while (r.ngot < 9)
		loop_turn(L, 50);
	assert_memory_equal(r.got, "220 six\r\n", 9);
	r.asked_close = 1;
	conn_close(r.c);			/* recv in flight: later */
	assert_int_equal(r.closed, 0);
	turn_until(&r.closed);
	assert_int_equal(r.after_close, 0);
	close(sfd);
	close(lfd);

	/* the default source picks an IPv6 address for an IPv6 peer */
	lfd = listener("::1", &a);
	memset(&r, 0, sizeof r);
	r.c = conn_open(L, &rec_ops, &r, &a.sa, NULL, 2000, err, sizeof err);
	assert_non_null(r.c);
	turn_until(&r.connects);
	assert_int_equal(r.connect_res, 0);
	assert_string_equal(conn_local_ip(r.c), "::1");
	r.asked_close = 1;
	conn_close(r.c);
	turn_until(&r.closed);
	close(lfd);
}

/* A close asked from inside on_recv finishes after that handler. */
static void
test_close_in_callback(void **state)
{
	struct rec r;
	union addr a;
	char err[200];
	int lfd, sfd;

	(void)state;
	lfd = listener("127.0.0.1", &a);
	memset(&r, 0, sizeof r);
	r.close_in_recv = 1;
	r.c = conn_open(L, &rec_ops, &r, &a.sa, NULL, 2000, err, sizeof err);
	assert_non_null(r.c);
	turn_until(&r.connects);
	sfd = accept(lfd, NULL, NULL);
	assert_int_equal(write(sfd, "421 bye\r\n", 9), 9);
	turn_until(&r.closed);
	assert_int_equal(r.closed, 1);
	assert_int_equal(r.after_close, 0);
	assert_int_equal(r.eofs, 0);
	close(sfd);
	close(lfd);
}

/* Close while a large send is in flight to a peer that does not read:
 * the shutdown completes the send; on_closed comes once, on_sent never. */
static void
test_close_with_send_in_flight(void **state)
{
	struct rec r;
	union addr a;
	char err[200];
	size_t big = 8u << 20;
	char *p = calloc(1, big);
	struct iovec iov = { p, big };
	int lfd, sfd, sents;

	(void)state;
	assert_non_null(p);
	lfd = listener("127.0.0.1", &a);
	memset(&r, 0, sizeof r);
	r.c = conn_open(L, &rec_ops, &r, &a.sa, NULL, 2000, err, sizeof err);
	assert_non_null(r.c);
	turn_until(&r.connects);
	sfd = accept(lfd, NULL, NULL);
	/* Sends return short while the socket buffers take bytes; once
	 * they are full a send waits: that one is in flight at the close. */
	for (int k = 0; k < 16; k++) {
		int before = r.sents;

		conn_send(r.c, &iov, 1);
		for (int i = 0; i < 20 && r.sents == before; i++)
			loop_turn(L, 10);
		if (r.sents == before)
			break;
		assert_true(r.sent_res > 0);
	}
	assert_true(conn_send_busy(r.c));
	sents = r.sents;
	r.asked_close = 1;
	conn_close(r.c);
	assert_int_equal(r.closed, 0);		/* the send is still in flight */
	turn_until(&r.closed);
	assert_int_equal(r.closed, 1);
	assert_int_equal(r.sents, sents);	/* no on_sent after the close */
	assert_int_equal(r.after_close, 0);
	free(p);		/* only now: the kernel is done with it */
	close(sfd);
	close(lfd);
}

static void
test_refused_and_cancelled(void **state)
{
	struct rec r;
	union addr a;
	char err[200];
	int lfd;

	(void)state;
	/* a port nobody listens on */
	lfd = listener("127.0.0.1", &a);
	close(lfd);
	memset(&r, 0, sizeof r);
	r.c = conn_open(L, &rec_ops, &r, &a.sa, NULL, 2000, err, sizeof err);
	assert_non_null(r.c);
	turn_until(&r.connects);
	assert_int_equal(r.connect_res, -ECONNREFUSED);
	r.asked_close = 1;
	conn_close(r.c);
	assert_int_equal(r.closed, 1);

	/* closed while connecting: no on_connect, one on_closed */
	lfd = listener("127.0.0.1", &a);
	memset(&r, 0, sizeof r);
	r.c = conn_open(L, &rec_ops, &r, &a.sa, NULL, 2000, err, sizeof err);
	assert_non_null(r.c);
	r.asked_close = 1;
	conn_close(r.c);
	turn_until(&r.closed);
	for (int i = 0; i < 3; i++)
		loop_turn(L, 10);
	assert_int_equal(r.closed, 1);
	assert_int_equal(r.connects, 0);
	assert_int_equal(r.after_close, 0);
	close(lfd);
}

/* A listener whose accept queue is full drops SYNs: the connect hangs
 * until the deadline, which reports -ETIMEDOUT. */
static void
test_connect_timeout(void **state)
{
	struct rec r[8];
	union addr a;
	char err[200];
	int lfd, timed_out = -1;

	(void)state;
	make_addr(&a, "127.0.0.1", 0);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(lfd, &a.sa, sizeof a.v4), 0);
	assert_int_equal(listen(lfd, 0), 0);
	{
		socklen_t len = sizeof a;
		assert_int_equal(getsockname(lfd, &a.sa, &len), 0);
	}
	memset(r, 0, sizeof r);
	for (int i = 0; i < 8 && timed_out < 0; i++) {
		r[i].c = conn_open(L, &rec_ops, &r[i], &a.sa, NULL, 300, err, sizeof err);
		assert_non_null(r[i].c);
		turn_until(&r[i].connects);
		if (r[i].connect_res == -ETIMEDOUT)
			timed_out = i;
		else
			assert_int_equal(r[i].connect_res, 0);
	}
	if (timed_out < 0)
		skip();
	for (int i = 0; i <= timed_out; i++) {
		r[i].asked_close = 1;
		conn_close(r[i].c);
		turn_until(&r[i].closed);
		assert_int_equal(r[i].after_close, 0);
	}
	close(lfd);
}

static void
test_local_failures(void **state)
{
	struct rec r;
	union addr a;
	char err[200];

	(void)state;
	memset(&r, 0, sizeof r);
	make_addr(&a, "127.0.0.1", 9);
	/* an address of no interface here (TEST-NET-1) */
	errno = 0;
	assert_null(conn_open(L, &rec_ops, &r, &a.sa, "192.0.2.1", 1000, err, sizeof err));
	assert_int_equal(errno, EADDRNOTAVAIL);
	assert_non_null(strstr(err, "bind to source 192.0.2.1"));
	make_addr(&a, "::1", 9);
	assert_null(conn_open(L, &rec_ops, &r, &a.sa, "2001:db8::1", 1000, err, sizeof err));
	assert_int_equal(errno, EADDRNOTAVAIL);
	assert_non_null(strstr(err, "bind to source 2001:db8::1"));
	/* a source of the other family */
	assert_null(conn_open(L, &rec_ops, &r, &a.sa, "127.0.0.1", 1000, err, sizeof err));
	assert_non_null(strstr(err, "bind to source 127.0.0.1"));
	make_addr(&a, "127.0.0.1", 9);
	assert_null(conn_open(L, &rec_ops, &r, &a.sa, "::1", 1000, err, sizeof err));
	/* no callback for any of them */
	for (int i = 0; i < 3; i++)
		loop_turn(L, 10);
	assert_int_equal(r.connects + r.closed, 0);
}

static void
test_mxset_families(void **state)
{
	struct dns_target t[4];
	struct dns_result r;
	struct mxset *m;

	(void)state;
	memset(t, 0, sizeof t);
	memset(&r, 0, sizeof r);
	t[0].addr.v4.sin_family = AF_INET;
	t[1].addr.v6.sin6_family = AF_INET6;
	t[2].addr.v4.sin_family = AF_INET;
	t[3].addr.v4.sin_family = AF_INET;
	strcpy(t[0].host, "mx.a.test");
	r.targets = t;
	r.ntargets = 4;
	m = mxset_from_dns(&r);
	assert_string_equal(m->t[0].host, "mx.a.test");
	assert_int_equal(mxset_count_family(m, AF_UNSPEC), 4);
	assert_int_equal(mxset_count_family(m, AF_INET), 3);
	assert_int_equal(mxset_count_family(m, AF_INET6), 1);
	mxset_unref(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ip_family),
		cmocka_unit_test(test_addr_text),
		cmocka_unit_test(test_mxset_families),
		cmocka_unit_test(test_live_ipv4),
		cmocka_unit_test(test_live_ipv6),
		cmocka_unit_test(test_close_in_callback),
		cmocka_unit_test(test_close_with_send_in_flight),
		cmocka_unit_test(test_refused_and_cancelled),
		cmocka_unit_test(test_connect_timeout),
		cmocka_unit_test(test_local_failures),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
