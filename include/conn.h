/*
 * conn.h - one outbound TCP connection on the io_uring loop, IPv4 or IPv6.
 *
 * Owns: the socket (made, optionally bound to a source address, connected),
 * its connect deadline, one multishot receive and at most one send in
 * flight, and the count of operations whose completion is still due.
 *
 *   conn_open()     socket of the destination's family, TCP_NODELAY, bind
 *                   to the source (port chosen at connect time), connect
 *   on_connect      0 or -errno (-ETIMEDOUT when the deadline passed); on
 *                   success the receive is already armed
 *   on_recv         bytes received (valid during the call only)
 *   on_eof          the receive side ended: 0 (peer closed) or -errno
 *   conn_send()     one send of up to CONN_IOV_MAX iovecs; on_sent reports
 *                   the bytes written (maybe fewer) or -errno
 *   conn_close()    shut down; on_closed comes once every completion is in
 *
 * Invariants (counted teardown):
 *  - After conn_close() no callback but on_closed is made. on_closed is
 *    the last one; the fd is closed before it and c is freed when it
 *    returns. It may run inside conn_close() when nothing was in flight.
 *  - A conn is never freed while a callback of its own is running: a
 *    conn_close() from inside a callback finishes when that callback and
 *    every other completion are in.
 *  - The buffers an iovec of conn_send() points to must stay valid until
 *    its on_sent (or on_closed): the kernel reads them until then.
 */
#ifndef VOLLEY_CONN_H
#define VOLLEY_CONN_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

struct loop;
struct conn;

#define CONN_IOV_MAX	4
/* "[" IPv6 "]:" port, NUL */
#define CONN_PEER_TEXT	(INET6_ADDRSTRLEN + 8)

struct conn_ops {
	void (*on_connect)(struct conn *c, void *arg, int res);
	void (*on_recv)(struct conn *c, void *arg, const char *buf, size_t n);
	void (*on_eof)(struct conn *c, void *arg, int res);
	void (*on_sent)(struct conn *c, void *arg, int res);
	void (*on_closed)(struct conn *c, void *arg);
};

/*
 * conn_open - make the socket for dst (AF_INET or AF_INET6, port set),
 * bind it to src_ip (NULL or "": the kernel picks) and submit the connect
 * with a deadline of connect_ms (0: none).
 * Returns NULL when this host could not even make the connection (no fd
 * left, a source address that is not on this host, a source of the other
 * family): err then says what failed, errno is kept, and no callback will
 * ever be made.
 */
struct conn *conn_open(struct loop *l, const struct conn_ops *ops, void *arg,
    const struct sockaddr *dst, const char *src_ip, uint64_t connect_ms,
    char *err, size_t errsz);
/* One send in flight at a time: conn_send_busy() says if one is. */
void conn_send(struct conn *c, const struct iovec *iov, int n);
int conn_send_busy(const struct conn *c);
void conn_close(struct conn *c);
/* The local address once connected ("" before or if unknown). */
const char *conn_local_ip(const struct conn *c);

/*
 * Address helpers (pure).
 * conn_ip_family - AF_INET or AF_INET6 for an address literal, AF_UNSPEC
 *   for NULL or "", -1 for anything else.
 * conn_addr_text - the address alone: "192.0.2.1", "2001:db8::1".
 * conn_peer_text - with the port: "192.0.2.1:25", "[2001:db8::1]:25".
 * Both write "?" for a family they do not know and return buf.
 */
int conn_ip_family(const char *ip);
/* conn_test_bind - 0 if a socket binds to the address literal src here,
 * else the errno (EADDRNOTAVAIL: not an address of this host). */
int conn_test_bind(const char *src);
const char *conn_addr_text(const struct sockaddr *sa, char *buf, size_t n);
const char *conn_peer_text(const struct sockaddr *sa, char *buf, size_t n);

#endif
