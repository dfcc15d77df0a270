/*
 * https_get.h - one HTTPS GET on the io_uring loop, for MTA-STS policy
 * files (RFC 8461 3.3): HTTP/1.1, "Host", "Connection: close", TLS with
 * full verification (the chain trusted by the context, the name = host),
 * redirects not followed (a 3xx is just a status), the body capped.
 * Minimal on purpose: one request per connection, the body ends at
 * Content-Length or at the close; "Transfer-Encoding: chunked" is
 * decoded.
 *
 * Contract: the callback runs exactly once, never inside
 * https_get_start(); the result is valid during the call only. After it
 * (or after https_get_cancel(), which suppresses it) the handle must not
 * be used; it frees itself once its connection has closed.
 */
#ifndef VOLLEY_HTTPS_GET_H
#define VOLLEY_HTTPS_GET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct tls_ctx;
struct https_get;

struct https_result {
	int ok;			/* a complete response arrived (any status) */
	int status;		/* HTTP status code */
	char content_type[128];	/* media type, lower case, parameters dropped */
	const char *body;
	size_t len;
	char error[256];	/* when !ok */
};

/*
 * https_get_start - GET https://host/path from dst (port set). max_body:
 * a longer body fails the request. timeout_ms covers everything, connect
 * to the last byte. NULL (err says why) if the socket cannot be made.
 */
struct https_get *https_get_start(struct loop *l, struct tls_ctx *x, const struct sockaddr *dst,
    const char *host, const char *path, size_t max_body, uint64_t timeout_ms,
    void (*cb)(void *arg, const struct https_result *r), void *arg, char *err, size_t errsz);
void https_get_cancel(struct https_get *g);

/*
 * https_parse_head - the response head at the start of buf[0..n) (pure).
 * Returns its length (through the blank line), 0 if it is not complete
 * yet, -1 if malformed (err says why). status, content type (lower case,
 * parameters dropped), Content-Length (-1: none) and whether the body is
 * chunked.
 */
long https_parse_head(const char *buf, size_t n, int *status, char *ctype, size_t ctsz,
    long long *clen, int *chunked, char *err, size_t errsz);
/*
 * https_dechunk - decode a chunked body in place: 1 and *out the decoded
 * length once the last chunk is in, 0 if more is needed, -1 if malformed.
 */
int https_dechunk(char *buf, size_t n, size_t *out);

#endif
