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
 *   a decision       HELO, MAIL, RCPT, DATA, DOT, RSET, QUIT, STARTTLS, AUTH: the
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
 *
 * BDAT (RFC 3030, with conf.chunking: CHUNKING in the EHLO reply): "BDAT n"
 * and "BDAT n LAST" carry n raw octets each (no stuffing, no end marker).
 * The core reads each chunk's n bytes into body (kept, counted and limited
 * as DATA's) and answers the ones but the last itself (SMTP_SRV_REPLY,
 * "250 2.0.0 n octets received"); the last ends the message: the DOT
 * decision, as after DATA, with srv->bdat set. A chunk is read in full
 * even when refused (so its bytes are never taken for commands): without
 * MAIL 503, without a recipient 554, after DATA's 354 never (DATA and BDAT
 * do not mix in one transaction: DATA after BDAT is 503). Without
 * conf.chunking, BDAT is an unknown command (502), its bytes unread.
 *
 * AUTH (RFC 4954, with conf.auth): PLAIN (RFC 4616, initial response or
 * after "334 ") and LOGIN ("334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"). The
 * core runs the exchange, decodes base64 strictly and hands the host one
 * AUTH decision with srv->auth_user and srv->auth_pass; the usual reply is
 * 535 5.7.8, the host answers 235 when the credentials are right. The
 * password is wiped at done(); after 235, auth_user is the session's
 * identity until STARTTLS forgets it (RSET and EHLO keep it). Offered in
 * EHLO and accepted only over TLS unless conf.auth_clear (538 5.7.11 else).
 * Refused by the core: AUTH before EHLO, during a transaction, a second
 * time (503); another mechanism (504); a "*" (501 5.7.0); bad base64, an
 * identity with control bytes, over 255 bytes or empty (501 5.5.2); a PLAIN
 * authorization identity other than the authentication one (535).
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
/* The longest AUTH user name or password (RFC 4616's 255 octets). */
#define SMTP_SERVER_AUTH_MAX 255
/* A host's reply to a good AUTH (RFC 4954). */
#define SMTP_SERVER_AUTH_OK "235 2.7.0 Authentication successful"

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
	SMTP_SRV_AUTH,		/* srv->auth_mech, auth_user, auth_pass; usual reply 535 */
};

enum smtp_srv_state {
	SMTP_SRV_ST_CMD = 0,	/* reading command lines */
	SMTP_SRV_ST_DATA,	/* reading the message */
	SMTP_SRV_ST_TLS,	/* after 220 to STARTTLS: input dropped until smtp_server_tls_on() */
	SMTP_SRV_ST_QUIT,	/* after QUIT: input dropped */
	SMTP_SRV_ST_AUTH,	/* after a 334: the next line is an AUTH response */
	SMTP_SRV_ST_BDAT,	/* reading a BDAT chunk's bytes */
};

struct smtp_server_conf {
	const char *hostname;	/* in the EHLO reply */
	uint64_t max_size;	/* SIZE: at MAIL SIZE= and while reading DATA */
	uint32_t max_line;	/* command line limit (<= SMTP_SERVER_LINE_MAX) */
	uint32_t max_rcpts;	/* per transaction: 452 past it */
	int starttls;		/* offer STARTTLS */
	int keep_body;		/* keep the unstuffed message in body */
	int auth;		/* offer and accept AUTH PLAIN LOGIN */
	int auth_clear;		/* ... without TLS too */
	int chunking;		/* offer and accept BDAT (RFC 3030) */
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
	int bdat;			/* the message came by BDAT */
	struct buf body;		/* with keep_body */
	/* AUTH */
	const char *auth_mech;		/* "PLAIN" or "LOGIN" during an exchange */
	char *auth_user;		/* being decided, then (authed) the identity */
	char *auth_pass;		/* during the AUTH decision only */
	int auth_step;			/* which response the exchange waits for */
	int authed;			/* a 235 was sent */
	/* parser */
	int dstate, discard;
	uint64_t bdat_left;		/* bytes of the current chunk still to read */
	int bdat_last;			/* it is the LAST one */
	const char *bdat_err;		/* its reply when refused, else NULL */
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
