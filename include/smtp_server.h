/*
 * smtp_server.h - the pure protocol core of an SMTP server session (RFC 5321,
 * PIPELINING, SIZE, STARTTLS's command side): bytes in, events out. Shared by
 * volley-sink (bench/sink_session.c) and the engine's inbound listener
 * (engine/listener.c); each keeps its sockets, TLS, timers and policy.
 *
 * Model: the host feeds the bytes it received; smtp_server_feed() consumes
 * them up to the next event and returns how many it used. The unused tail
 * (a partial command line) stays with the host, which feeds it again with
 * what arrives next. Two kinds of event:
 *
 *   SMTP_SRV_REPLY   the core decided the reply alone (syntax, sequence,
 *                    limits, NOOP, HELP...): send srv->reply as is.
 *   a decision       HELO, MAIL, RCPT, DATA, DOT, RSET, QUIT, STARTTLS: the
 *                    host chooses the reply (srv->reply holds the usual one,
 *                    which it may send, steal or replace) and then calls
 *                    smtp_server_done() with the code the client got (0: it
 *                    got none, e.g. a disconnect). The state moves on only
 *                    then, so a host may answer later (a delay, a write to
 *                    Redis); until then it must not feed.
 *
 * Replies are produced in command order, one event at a time, so a
 * PIPELINING client's batch is answered in order whatever the host delays.
 * The core owns no socket, reads no clock and never blocks. Every line and
 * address is bounded; anything else a client sends is treated as hostile.
 *
 * DATA: dot-unstuffing and end detection (CRLF.CRLF; a bare LF counts as a
 * line end, as Postfix does). The message is counted in srv->bytes and, with
 * keep_body, kept in srv->body up to max_size; past it too_big is set, the
 * body is dropped and the rest counted only; DOT then defaults to 552.
 */
#ifndef VOLLEY_SMTP_SERVER_H
#define VOLLEY_SMTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* A command line longer than this is refused whatever max_line says. */
#define SMTP_SERVER_LINE_MAX 16384
/* The longest path (address) taken from MAIL/RCPT. */
#define SMTP_SERVER_PATH_MAX 512

enum smtp_srv_event {
	SMTP_SRV_NONE = 0,	/* need more input */
	SMTP_SRV_REPLY,		/* send srv->reply; nothing to decide */
	SMTP_SRV_HELO,		/* EHLO/HELO: srv->helo, srv->esmtp */
	SMTP_SRV_MAIL,		/* srv->from ("" for <>), srv->mail_params, srv->size_declared */
	SMTP_SRV_RCPT,		/* srv->rcpt: the recipient asked for */
	SMTP_SRV_DATA,		/* the DATA command (usual reply 354) */
	SMTP_SRV_DOT,		/* the message ended: srv->bytes, srv->body, srv->too_big */
	SMTP_SRV_RSET,
	SMTP_SRV_QUIT,
	SMTP_SRV_STARTTLS,	/* usual reply 220; done(220): the rest is TLS */
};

enum smtp_srv_state {
	SMTP_SRV_ST_CMD = 0,	/* reading command lines */
	SMTP_SRV_ST_DATA,	/* reading the message */
	SMTP_SRV_ST_TLS,	/* after 220 to STARTTLS: input dropped until smtp_server_tls_on() */
	SMTP_SRV_ST_QUIT,	/* after QUIT: input dropped */
};

struct smtp_server_conf {
	const char *hostname;	/* in the EHLO reply */
	uint64_t max_size;	/* SIZE: at MAIL SIZE= and while reading DATA */
	uint32_t max_line;	/* command line limit (<= SMTP_SERVER_LINE_MAX) */
	uint32_t max_rcpts;	/* per transaction: 452 past it */
	int starttls;		/* offer STARTTLS */
	int keep_body;		/* keep the unstuffed message in body */
};

struct smtp_server {
	struct smtp_server_conf conf;	/* a copy; hostname is not copied */
	enum smtp_srv_state state;
	enum smtp_srv_event pending;	/* a decision awaiting done(); NONE if none */
	struct buf reply;		/* the usual/only reply, CRLF-terminated */
	char *helo;			/* after EHLO/HELO */
	int esmtp;			/* EHLO rather than HELO */
	int tls_on;			/* the session runs over TLS */
	/* the transaction, from MAIL on (from != NULL) */
	char *from;
	char *mail_params;		/* what followed the path, trimmed */
	uint64_t size_declared;		/* MAIL SIZE=, 0 if none */
	char **rcpts;
	size_t nrcpt, rcap;
	char *rcpt;			/* the RCPT being decided */
	uint64_t bytes;			/* message bytes so far (unstuffed) */
	int too_big;
	struct buf body;		/* with keep_body */
	/* parser */
	int dstate, discard;
};

void smtp_server_init(struct smtp_server *s, const struct smtp_server_conf *c);
void smtp_server_free(struct smtp_server *s);

/*
 * smtp_server_feed - parse p[0..n) up to the next event (*ev; NONE when all
 * usable input is used or a decision is pending). Returns the bytes used;
 * with NONE the rest (a partial line) is for the next call.
 */
size_t smtp_server_feed(struct smtp_server *s, const char *p, size_t n,
    enum smtp_srv_event *ev);

/* smtp_server_done - the client got reply `code` to the pending decision. */
void smtp_server_done(struct smtp_server *s, int code);

/* smtp_server_tls_on - the TLS handshake after STARTTLS began: commands again. */
void smtp_server_tls_on(struct smtp_server *s);

/* smtp_server_reset - forget the transaction (RFC 5321 RSET semantics). */
void smtp_server_reset(struct smtp_server *s);

/* smtp_server_event_name - "mail", "dot"... for logs and tests. */
const char *smtp_server_event_name(enum smtp_srv_event ev);

#endif
