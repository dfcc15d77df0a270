/*
 * session.h - one outbound SMTP session: the glue between a connection
 * (conn.h), the transport that moves its bytes (transport.h), the pure
 * SMTP client (smtp_client.h), one timer and the current job. The
 * scheduler (engine.c) hands it jobs and gets outcomes back through
 * struct session_ops.
 *
 * A session walks its MX target list, using only the targets of its
 * source's family (an IPv4 source: IPv4 targets, an IPv6 source: IPv6
 * targets, the default source: both, in list order). When a connection
 * attempt fails before any transaction (refused, time-out, 4xx/5xx
 * greeting, EHLO/HELO refused) it tries the next target; when none is left
 * it reports on_site_failure once. A failure of this host rather than of
 * the site (the source cannot be bound, no socket, no target of the
 * source's family) is reported with cause SMTP_CAUSE_LOCAL through
 * on_source_failure (on_site_failure when that is NULL), so the scheduler
 * can try another source. Teardown is counted: the connection is shut
 * down, and the session is freed only after its last completion
 * (on_closed).
 *
 * STARTTLS, by the destination's policy (session_set_tls(), else
 * cfg->tls; DEFAULT is opportunistic):
 *   opportunistic  TLS when the server offers it, else clear text. If the
 *                  handshake fails, the same target is tried again at once
 *                  on a new connection in clear text, and that MX host is
 *                  remembered for an hour (at most 10000 hosts): the
 *                  sessions opened meanwhile do not try TLS there (logged).
 *   required       no STARTTLS offered, STARTTLS refused or a failed
 *                  handshake: this target fails (TEMP, SMTP_CAUSE_TLS: class
 *                  tls_failure); the next target is tried as after any
 *                  failure before a transaction.
 *   verify         as required, and the chain must be trusted (the system
 *                  store, or cfg->tls_ca_file) and name the MX host.
 *   disabled       never STARTTLS.
 * DANE (dns.dnssec; dane.h): a target whose host has authenticated TLSA
 * records gets dane_policy() of that policy for its connection: "dane"
 * (TLS mandatory, the certificate checked against the TLSA records only,
 * no fallback to clear text; failures as for required), or mandatory
 * unauthenticated TLS when no record is usable. Only a configured
 * `disabled` overrides it. Smarthost routes never use DANE.
 * TLS is 1.2 or 1.3, SNI is the MX host name, the client sends EHLO again
 * after the handshake, and resumes sessions per (MX host, port, policy).
 * session_tls() says what the current connection uses.
 */
#ifndef VOLLEY_SESSION_H
#define VOLLEY_SESSION_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "dns.h"
#include "smtp_client.h"
#include "tls.h"

struct loop;
struct job;
struct session;

/* A refcounted, ordered MX target list shared by a destination's sessions. */
struct mxset {
	unsigned refs;
	size_t n;
	struct dns_target t[];
};
struct mxset *mxset_from_dns(const struct dns_result *r);
struct mxset *mxset_ref(struct mxset *m);
void mxset_unref(struct mxset *m);
/* Targets of that family (AF_INET, AF_INET6; AF_UNSPEC: every target): a
 * scheduler can skip pool addresses no target can be reached from. */
size_t mxset_count_family(const struct mxset *m, int family);

struct session_ops {
	/* IDLE: the next job for this session, or NULL (then it waits idle). */
	struct job *(*next_job)(struct session *s);
	/* The outcome of a transaction for j (the session no longer holds j). */
	void (*on_result)(struct session *s, struct job *j, const struct smtp_result *r);
	/* Every target failed before a transaction; r says the last reason.
	 * If the session held a job, it was returned with on_result first. */
	void (*on_site_failure)(struct session *s, const struct smtp_result *r);
	/* First successful greeting+EHLO on this session. */
	void (*on_established)(struct session *s);
	/* The session went idle / left idle (for the scheduler's idle list). */
	void (*on_idle)(struct session *s, int idle);
	/* Last completion seen: the scheduler drops its references. */
	void (*on_closed)(struct session *s);
	/* Optional (NULL: on_site_failure is called instead). This host, not
	 * the site, failed before a transaction: r->cause is SMTP_CAUSE_LOCAL
	 * (socket() or bind() of the source failed, or no MX target has an
	 * address of the source's family). Same contract as on_site_failure. */
	void (*on_source_failure)(struct session *s, const struct smtp_result *r);
};

struct session_cfg {
	const char *ehlo;
	int port;
	uint64_t connect_ms, idle_ms;
	unsigned max_msgs;		/* per connection */
	const struct smtp_timeouts *timeouts;
	const char *id_header;		/* "X-Volley-Id" */
	const char *return_path;	/* VERP template or NULL */
	enum tls_policy tls;		/* when session_set_tls() is not called */
	const char *tls_ca_file;	/* verify: trust this PEM file (NULL: system store) */
	uint64_t bdat_threshold;	/* BDAT above this size when offered (0: never) */
	uint64_t bdat_pipeline;	/* BDAT with MAIL and RCPT up to this size (0: never) */
};

/*
 * A smarthost route (session_open_relay): the port instead of cfg->port,
 * TLS from the first byte (implicit, port 465) rather than STARTTLS, and
 * AUTH after EHLO when user is set. The strings are not copied: they must
 * outlive the session (they live in the configuration its epoch holds).
 * The STARTTLS/verify policy still comes from session_set_tls() (the
 * scheduler passes required, verify or disabled for a relay).
 */
struct session_relay {
	int port;
	int implicit_tls;
	const char *user, *password;	/* user NULL: no AUTH */
	enum smtp_auth_mech mech;
	int auth_clear;			/* AUTH allowed without TLS (tls = "none") */
};

/* max_msgs: messages per connection for this destination (0: cfg->max_msgs). */
struct session *session_open(struct loop *l, const struct session_ops *ops,
    const struct session_cfg *cfg, struct mxset *mx, const char *src_ip,
    unsigned max_msgs, void *owner);
/* session_open through a smarthost (relay copied; NULL: session_open). */
struct session *session_open_relay(struct loop *l, const struct session_ops *ops,
    const struct session_cfg *cfg, struct mxset *mx, const char *src_ip,
    unsigned max_msgs, void *owner, const struct session_relay *relay);
/* The destination's TLS policy; call right after session_open() (it is
 * used from the first EHLO on; DEFAULT: cfg->tls). */
void session_set_tls(struct session *s, enum tls_policy p);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" while the connection uses TLS, else
 * "none": for the `tls` field of the events of its transactions. */
const char *session_tls(const struct session *s);
/* Hand a job to an IDLE session (the scheduler calls it after on_idle(1)). */
void session_give(struct session *s, struct job *j);
/* Finish the current transaction if any, then QUIT. */
void session_quit(struct session *s);
/* Stop now: each session gives its job back (TEMP) and closes. */
void session_abort_all(void);
void *session_owner(const struct session *s);
const char *session_mx(const struct session *s);	/* current MX host */
const char *session_src_ip(const struct session *s);	/* "" if default */
/* The source address actually used (the default source once connected). */
const char *session_local_ip(const struct session *s);
const char *session_peer(const struct session *s);	/* "ip:port", "[ip6]:port" */
/*
 * session_serves - whether s, connected and past EHLO, may carry mail of a
 * destination whose MX targets are mx under TLS policy p: the server it
 * talks to is at the address of one of mx's most preferred hosts, and
 * neither side checks the server's name or keys (p and s's policy are the
 * same, and opportunistic, disabled or the default; no DANE). Connection
 * reuse by server address, as Postfix's connection cache does: many
 * domains hosted on one provider's servers. 0: no; else 1 + the index of
 * that host in mx, for session_take_mx().
 */
int session_serves(const struct session *s, const struct mxset *mx, enum tls_policy p);
/* session_take_mx - s now serves the destination of mx, at its target
 * which - 1 (session_serves' answer): events and logs name that host. */
void session_take_mx(struct session *s, struct mxset *mx, int which);
int session_is_idle(const struct session *s);
int session_was_established(const struct session *s);

/* For scheduler lists. */
struct session *session_list_next(const struct session *s);
void session_list_set_next(struct session *s, struct session *next);
struct session *session_list_prev(const struct session *s);
void session_list_set_prev(struct session *s, struct session *prev);

#endif
