/*
 * smtp_client.h - the RFC 5321 client as a pure state machine.
 *
 * No syscalls, no clock reads, no TLS: the session feeds it the bytes it
 * received and the time-outs that fired, and sends what it asks to send.
 *
 *   smtp_client_init()          after connect; the client waits for the greeting
 *   smtp_client_output()        what to send now (0..3 iovecs); after a send
 *   smtp_client_sent(n)         completes, report how many bytes went
 *   smtp_client_feed(buf,len)   bytes from the server
 *   smtp_client_timeout()       the deadline from smtp_client_deadline() passed
 *   smtp_client_set_now(ms)     the session's clock, before each call above
 *   smtp_client_state()         IDLE: ready for smtp_client_start() or _quit()
 *   smtp_client_take_result()   the outcome of the current message, once
 *
 * Supported: greeting, EHLO with HELO fallback (on 5xx to EHLO), multi-line
 * replies, enhanced codes, PIPELINING (MAIL+RCPT+DATA in one send; RSET
 * prepended when the previous transaction failed), SIZE (a message larger
 * than the server's limit fails 5.3.4 without being sent, code 0), 8BITMIME
 * (BODY=8BITMIME when the body needs it), reuse for the next message,
 * QUIT. If all recipients are refused and the server still answers DATA
 * with 354, it sends "." alone and ignores the reply (RFC 2920 3.1).
 * SMTPUTF8 (RFC 6531) is added to MAIL when an address has 8-bit bytes
 * and the server offers it; when it does not, the message fails at once
 * (below). Domains are expected as A-labels: only a local part should
 * carry 8-bit bytes. STARTTLS (RFC 3207): the client decides when and
 * checks what arrives around it; the session does the TLS (below).
 *
 * Time (RFC 5321 4.5.3.2): the client reads no clock; the session calls
 * smtp_client_set_now() with its loop's cached clock before every other
 * call (init, feed, sent, timeout, disconnected, start, quit). Deadlines
 * are absolute and bytes arriving do not move them:
 *  - a reply's wait begins when it becomes the next reply due: when its
 *    command is queued with nothing else outstanding, or when the reply
 *    before it has arrived (pipelined MAIL, RCPT, DATA: RCPT's time-out
 *    runs from MAIL's reply); the reply to the dot is awaited from the
 *    moment the whole body was sent. The reply must be complete within
 *    its stage's time-out, however it is split: a server dripping one
 *    byte every few seconds times out at the stage's limit.
 *  - the body (block): at most `block` ms without progress: from the 354,
 *    from handing the body out, and from every send completion that
 *    moved bytes. A long body sent steadily never times out on `block`.
 *  - the transaction: when t.transaction > 0, from start() to the final
 *    reply. Its end fails the message TEMP, SMTP_CAUSE_TIMEOUT, at the
 *    stage it was in, with a text naming that stage and the limit
 *    ("timeout waiting for reply to RCPT: transaction time limit of 30s
 *    exceeded"), and closes the session.
 *  - smtp_client_deadline() returns the earliest of these as ms from the
 *    last time set (1 when already passed), so the session re-arms its
 *    timer with it after each call as before. A client whose clock was
 *    never set counts from 0, i.e. each deadline is the full time-out
 *    from when the session last re-armed it.
 *
 * Details the session may rely on:
 *  - Check smtp_client_state() (and re-arm the timer) after feed, sent,
 *    timeout, disconnected, start and quit: any of them can change it.
 *  - start() with IDLE only, quit() with IDLE (or CLOSED: no-op); anything
 *    else is a bug and panics. Take each result before the next start().
 *  - start() may finish at once (state stays IDLE, a result is ready):
 *    SIZE exceeded (PERM, SMTP_CAUSE_SIZE, 5.3.4), an address with a
 *    control character (PERM, SMTP_CAUSE_PROTOCOL, 5.1.7/5.1.3, code 0),
 *    or an 8-bit address for a server without SMTPUTF8 (PERM,
 *    SMTP_CAUSE_PROTOCOL, stage MAIL, 5.6.7, code 0, "recipient address
 *    needs SMTPUTF8, which the server does not offer"; "sender" when it
 *    is the sender's), or an 8-bit body for a server without 8BITMIME
 *    (PERM, SMTP_CAUSE_PROTOCOL, stage MAIL, 5.6.3, code 0, "message has
 *    8-bit content and the server does not offer 8BITMIME"; RFC 6152:
 *    never sent as is, never downgraded); nothing is sent, no RSET is owed.
 *  - Every result carries the stage it came at: a refusal of MAIL is
 *    SMTP_STAGE_MAIL, of RCPT SMTP_STAGE_RCPT, of DATA SMTP_STAGE_DATA,
 *    after the dot SMTP_STAGE_DOT. Under PIPELINING the first refusal
 *    decides: the replies to the later commands of the same group (RCPT
 *    and DATA refused because MAIL was) do not change the result.
 *  - A failure while no message is in flight (idle session: disconnect,
 *    unsolicited 421, stray reply) is reported by session_error() with
 *    stage SMTP_STAGE_CONNECT.
 *  - The final reply may be fed before sent() reports the body's send
 *    (completion order): the transaction stays BUSY and its result is held
 *    until sent() reports the rest (the send set points at the message's
 *    header and body until then); that is fine if the send completes in full;
 *    if only part of it went, the server cut in and the session CLOSES
 *    (TEMP, PROTOCOL, "protocol error: reply before end of message body").
 *    The body must stay valid until sent() has been called for it.
 *  - smtp_client_msgs() counts every result, SIZE refusals included.
 */
#ifndef VOLLEY_SMTP_CLIENT_H
#define VOLLEY_SMTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "util.h"
#include "smtp_reply.h"

struct msg_body;

enum smtp_stage {
	SMTP_STAGE_CONNECT = 0,
	SMTP_STAGE_GREETING,
	SMTP_STAGE_EHLO,
	SMTP_STAGE_HELO,
	SMTP_STAGE_MAIL,
	SMTP_STAGE_RCPT,
	SMTP_STAGE_DATA,	/* DATA command -> 354 */
	SMTP_STAGE_DOT,		/* body sent -> final reply */
	SMTP_STAGE_RSET,
	SMTP_STAGE_QUIT,
	SMTP_STAGE_STARTTLS,	/* STARTTLS -> 220, and the handshake after it */
	SMTP_STAGE_AUTH,	/* AUTH (RFC 4954) -> 235, and its 334 exchanges */
};
const char *smtp_stage_name(enum smtp_stage s);

enum smtp_state {
	SMTP_STATE_BUSY = 0,	/* waiting for the server or for a send */
	SMTP_STATE_IDLE,	/* session open, no transaction: start or quit */
	SMTP_STATE_CLOSED,	/* QUIT done, or failed: close the socket */
	SMTP_STATE_TLS,		/* 220 to STARTTLS: start the TLS handshake now */
};

enum smtp_status {
	SMTP_OK = 0,		/* delivered: 2xx at end of data */
	SMTP_TEMP,		/* 4xx, connection lost, time-out, garbage */
	SMTP_PERM,		/* 5xx, or too large for SIZE */
};

/* Why a message failed when the cause was not a reply. */
enum smtp_cause {
	SMTP_CAUSE_REPLY = 0,	/* code/enh/text hold the server's reply */
	SMTP_CAUSE_TIMEOUT,
	SMTP_CAUSE_DISCONNECT,
	SMTP_CAUSE_PROTOCOL,	/* garbage or overlong reply */
	SMTP_CAUSE_SIZE,	/* exceeds the server's SIZE */
	SMTP_CAUSE_SESSION,	/* the session failed before this message (greeting/EHLO) */
	SMTP_CAUSE_LOCAL,	/* this host's fault: socket()/bind() of the source failed */
	SMTP_CAUSE_TLS,		/* STARTTLS missing or refused under a policy that needs
				 * it, or the TLS handshake failed */
	SMTP_CAUSE_AUTH,	/* AUTH refused (535/534/530...), not offered, or not
				 * allowed on this connection (no TLS) */
};

/* What the client does with STARTTLS (the session maps its policy). */
enum smtp_tls_mode {
	SMTP_TLS_NO = 0,	/* never send STARTTLS */
	SMTP_TLS_TRY,		/* when offered; a 4xx/5xx to it: go on in clear text */
	SMTP_TLS_MUST,		/* not offered or refused: the session fails (CAUSE_TLS) */
	SMTP_TLS_IMPLICIT,	/* TLS from the first byte (port 465, RFC 8314): the
				 * handshake comes before the greeting; no STARTTLS */
};

/* Which SASL mechanism AUTH uses (RFC 4954). */
enum smtp_auth_mech {
	SMTP_AUTH_ANY = 0,	/* what the server offers, PLAIN before LOGIN */
	SMTP_AUTH_PLAIN,	/* RFC 4616 */
	SMTP_AUTH_LOGIN,	/* the de-facto "LOGIN" (username, then password) */
};

struct smtp_result {
	enum smtp_status status;
	enum smtp_cause cause;
	enum smtp_stage stage;
	int code;		/* 0 if none */
	char enh[16];
	char text[512];		/* one line, for the event's `reply` */
};

struct smtp_timeouts {		/* milliseconds, RFC 5321 4.5.3.2 */
	uint64_t greeting, ehlo, mail, rcpt, data, block, dot, quit;
	uint64_t transaction;	/* MAIL to the final reply, all in (0: none) */
};

/* One transaction: one sender, one recipient, one body. */
struct smtp_msg {
	const char *from;	/* "" = null reverse-path <> */
	const char *to;
	const char *prefix;	/* header lines to put first ("X-Volley-Id: ..\r\n"), or NULL */
	size_t prefix_len;
	struct msg_body *body;	/* not owned; must outlive the transaction */
};

struct smtp_ext {
	int pipelining, eightbitmime, smtputf8, starttls, enhancedstatuscodes;
	int chunking;		/* CHUNKING (RFC 3030): BDAT */
	int has_size;
	int auth, auth_plain, auth_login;	/* AUTH offered, and these mechanisms */
	uint64_t size;		/* 0 = no limit given */
};

struct smtp_client;		/* opaque; allocate with smtp_client_new */

struct smtp_client *smtp_client_new(const char *ehlo_name, const struct smtp_timeouts *t);
void smtp_client_free(struct smtp_client *c);

/* After connect: wait for the greeting. */
void smtp_client_init(struct smtp_client *c);
/* Bytes received. Returns the new state. */
enum smtp_state smtp_client_feed(struct smtp_client *c, const char *buf, size_t len);
/* The peer closed the connection (recv returned 0 or an error). */
enum smtp_state smtp_client_disconnected(struct smtp_client *c);
/* The current deadline passed (the timer armed from smtp_client_deadline()). */
enum smtp_state smtp_client_timeout(struct smtp_client *c);
/*
 * The session's clock, monotonic ms (the loop's cached now). Call before
 * each of the other calls; a smaller value than the last is ignored. The
 * first call starts every wait already begun at now_ms.
 */
void smtp_client_set_now(struct smtp_client *c, uint64_t now_ms);
enum smtp_state smtp_client_state(const struct smtp_client *c);

/*
 * Time left (ms from the last smtp_client_set_now) until the earliest
 * deadline of what the client waits for now, at least 1 while BUSY; 0 if
 * it waits for nothing (IDLE/CLOSED). The session re-arms its timer with
 * it after each call.
 */
uint64_t smtp_client_deadline(const struct smtp_client *c);

/*
 * Bytes to send now: fills up to 3 iovecs (commands, prefix, body) and
 * returns how many; 0 = nothing to send. The pointers stay valid until
 * smtp_client_sent(). Only one send is in flight at a time.
 */
int smtp_client_output(struct smtp_client *c, struct iovec iov[3]);
void smtp_client_sent(struct smtp_client *c, size_t n);

/* IDLE only: begin a transaction. */
void smtp_client_start(struct smtp_client *c, const struct smtp_msg *m);
/* IDLE only: send QUIT; state becomes CLOSED once its reply or a close arrives. */
void smtp_client_quit(struct smtp_client *c);

/* 1 and fills *r once per transaction when its outcome is known. */
int smtp_client_take_result(struct smtp_client *c, struct smtp_result *r);

/*
 * If the session failed before or between transactions (greeting 4xx/5xx,
 * EHLO and HELO refused, disconnect, time-out), this tells why: returns 1
 * and fills *r (status TEMP/PERM, stage, reply). The scheduler uses it to
 * try the next MX or to throttle the destination.
 */
int smtp_client_session_error(const struct smtp_client *c, struct smtp_result *r);

const struct smtp_ext *smtp_client_ext(const struct smtp_client *c);

/*
 * STARTTLS (RFC 3207). smtp_client_set_tls() before the greeting (the mode
 * stays for the client's life). After a 2xx to EHLO, with TRY or MUST and
 * STARTTLS offered, the client sends STARTTLS; a 220 makes the state
 * SMTP_STATE_TLS: the session must now switch its transport to TLS and
 * start the handshake (nothing is sent meanwhile). Any byte received after
 * that 220 and before the handshake is done is plaintext injected ahead of
 * TLS (the CVE-2011-0411 class): the session fails (TEMP, PROTOCOL, stage
 * STARTTLS). Then exactly one of:
 *   smtp_client_tls_started()  the handshake is done: the client forgets
 *                              what EHLO said in clear text and sends EHLO
 *                              again (state BUSY, then IDLE as usual)
 *   smtp_client_tls_failed()   the handshake failed: the session fails
 *                              (TEMP, SMTP_CAUSE_TLS, stage STARTTLS)
 * In state TLS the handshake has the EHLO time-out (smtp_client_deadline);
 * its end, or a disconnect, fails the session with SMTP_CAUSE_TLS too.
 * MUST without STARTTLS offered (or after HELO), or with STARTTLS refused,
 * fails the session: TEMP, SMTP_CAUSE_TLS, stage STARTTLS.
 */
void smtp_client_set_tls(struct smtp_client *c, enum smtp_tls_mode m);
void smtp_client_tls_started(struct smtp_client *c);
void smtp_client_tls_failed(struct smtp_client *c, const char *why);
/*
 * BDAT (RFC 3030). A message larger than `threshold` bytes (0: never),
 * to a server that offers CHUNKING, is sent with BDAT instead of DATA:
 * after the 250 to RCPT (MAIL and RCPT pipelined as usual), the
 * unstuffed bytes (no dot-stuffing, no final dot: the prefix, then the
 * body as it was before msg_body_new stuffed it) in chunks of `chunk`
 * body bytes (0: 1 MiB; the prefix rides with the first), the last one
 * "BDAT n LAST". With PIPELINING up to 4 chunks await their replies at
 * once; without it each waits for the 250 to the one before. A chunk
 * without a dot-leading line is sent in place; one with such lines is
 * copied once into a buffer of `chunk` bytes, freed when the transaction
 * ends (or, if a send still reads it then, at the next start() or free).
 * Replies: a chunk's reply is judged as the dot's (stage DOT, the dot's
 * time-out from when its chunk was sent in full, `block` while sending);
 * the reply to LAST is the outcome; a refusal of any chunk fails the
 * message with that reply, no more chunks go, the replies still due are
 * read and ignored, and the next transaction begins with RSET. Any time
 * before start(); it stays for the client's life (init keeps it).
 */
void smtp_client_set_bdat(struct smtp_client *c, uint64_t threshold, size_t chunk);
/*
 * One round trip per message: a message of at most `max` bytes (the
 * prefix counts; 0: never), to a server that offers CHUNKING and
 * PIPELINING, goes as BDAT (chunks as above, normally one "BDAT n LAST")
 * pipelined right behind MAIL and RCPT, without waiting for RCPT's 250
 * (RFC 3030 2: a server reads and drops a chunk it refuses). Replies are
 * read in order; the first refusal is the outcome: a refused MAIL or
 * RCPT (stage MAIL, RCPT) once the chunk's reply (ignored: "554 no valid
 * recipients", "503") is in too, else the chunk's as above. Once the
 * message is out, MAIL's and RCPT's replies get the dot's time-out when
 * it is the longer (a server may answer the group only after taking the
 * message in). Only when BDAT is on (smtp_client_set_bdat's threshold
 * not 0). Messages above `max` follow smtp_client_set_bdat. Any time
 * before start().
 */
void smtp_client_set_bdat_pipeline(struct smtp_client *c, uint64_t max);

/* 1 once TLS is on for this connection. */
int smtp_client_tls_active(const struct smtp_client *c);

/*
 * Implicit TLS (SMTP_TLS_IMPLICIT, set right after smtp_client_init()):
 * the state is SMTP_STATE_TLS at once, before the greeting; the session
 * starts the handshake on the fresh connection. smtp_client_tls_started()
 * then makes the client wait for the greeting (over TLS, its own time-out
 * from then on); smtp_client_tls_failed() fails the session (TEMP,
 * SMTP_CAUSE_TLS, stage STARTTLS, "TLS: why"). STARTTLS is never sent.
 *
 * AUTH (RFC 4954). smtp_client_set_auth() before the greeting (it stays
 * for the client's life; user and password are copied and wiped on free).
 * After the 2xx to EHLO (the one after the handshake when TLS is used),
 * the client logs in before the session becomes IDLE:
 *   PLAIN   AUTH PLAIN base64(\0user\0password)       -> 235
 *   LOGIN   AUTH LOGIN -> 334, base64(user) -> 334, base64(password) -> 235
 * mech ANY takes PLAIN when offered, else LOGIN. The session fails (TEMP,
 * SMTP_CAUSE_AUTH, stage AUTH) when: the server does not offer AUTH or the
 * mechanism asked for; it answers AUTH or a step with anything but the
 * expected 334/235 (code, enhanced code and the server's text kept: 535
 * 5.7.8, 534, 530...: still TEMP, the credentials are ours and the
 * recipient is not at fault); EHLO was refused (HELO has no AUTH); or the
 * connection is not TLS and allow_clear is 0 ("refusing to send
 * credentials without TLS"). A 421 is a 421 (cause REPLY). No result
 * text ever holds the user name's or the password's encoding, and the
 * command buffer that held them is wiped once sent.
 */
void smtp_client_set_auth(struct smtp_client *c, const char *user, const char *password,
    enum smtp_auth_mech mech, int allow_clear);
/* 1 once AUTH succeeded on this connection. */
int smtp_client_authenticated(const struct smtp_client *c);
/* "PLAIN", "LOGIN" (mech ANY: "ANY"). */
const char *smtp_auth_mech_name(enum smtp_auth_mech m);
/* Messages completed (any outcome) on this session. */
unsigned smtp_client_msgs(const struct smtp_client *c);

/*
 * Bytes of server input the reply parser has looked at since
 * smtp_client_new(), for tests: stays within a small multiple of the
 * bytes fed however they are split (no rescans of a partial reply).
 */
uint64_t smtp_client_scan_work(const struct smtp_client *c);

#endif
