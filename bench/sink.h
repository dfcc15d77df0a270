/*
 * sink.h - volley-sink, the project's SMTP sink and mailbox-provider
 * simulator: shared types of its modules.
 *
 *   sink.c          command line, listeners, signals, the main loop
 *   sink_conf.c     configuration (UCL) -> struct sink_conf, profiles,
 *                   rule/tag matching, reply templates (pure: no I/O but
 *                   reading the config files, no clock)
 *   sink_session.c  one SMTP server session on the io_uring loop
 *                   (line parser, DATA unstuffing, PIPELINING, STARTTLS)
 *   sink_stats.c    counters per client IP and per local address, the
 *                   greylist table, JSON output, message capture files
 *   sink_tls.c      the server TLS context (engine/tls.c: the project's one
 *                   memory-BIO TLS module; a self-signed certificate in
 *                   memory when none is given)
 *
 * Invariants: everything runs on one thread and one ring; a session is
 * freed only when no operation of it is in flight (sink_session.c).
 */
#ifndef VOLLEY_SINK_H
#define VOLLEY_SINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tls.h"
#include "util.h"

struct loop;

/* Protocol stages a rule or tag can act on. */
enum sink_stage {
	STAGE_CONNECT = 0,	/* the greeting */
	STAGE_EHLO,		/* EHLO and HELO */
	STAGE_MAIL,
	STAGE_RCPT,
	STAGE_DATA,		/* the reply to the DATA command */
	STAGE_DOT,		/* the reply after the message (end of data) */
	STAGE_RSET,
	STAGE_QUIT,
	STAGE_COUNT
};

enum sink_act {
	ACT_DEFAULT = 0,	/* the normal reply (possibly delayed) */
	ACT_REPLY,		/* a fixed reply from a template */
	ACT_DISCONNECT,		/* close without any reply */
	ACT_STALL,		/* say nothing for stall_ms, then close */
	ACT_GARBAGE,		/* a line that is not an SMTP reply */
	ACT_LONGLINE,		/* a reply line longline bytes long */
	ACT_GREY,		/* greylist this (client, from, rcpt) */
};

struct sink_action {
	enum sink_act act;
	char *reply;		/* template for ACT_REPLY (owned by its rule/tag) */
	uint32_t delay_ms;	/* wait this long before the reply */
	uint32_t stall_ms;	/* ACT_STALL */
	uint32_t longline;	/* ACT_LONGLINE: bytes in the line */
	uint32_t drip_bytes;	/* send the reply this many bytes at a time (0: whole) */
	uint32_t drip_ms;	/* ... one piece every drip_ms */
	int close;		/* close the session after the reply */
};

/* An address matcher: IPv4/IPv6 prefix, optional port (0: any). */
struct sink_addr_match {
	int family;
	uint8_t addr[16];
	int plen;
	uint16_t port;
};

struct sink_rule {
	char *name;
	const char *file;
	int line;
	enum sink_stage stage;
	struct sink_addr_match *local, *client;
	size_t nlocal, nclient;
	char *rcpt, *from, *helo;	/* fnmatch patterns, case-insensitive */
	double probability;		/* 1.0: always */
	uint32_t every;			/* fire on every Nth match (0/1: each) */
	uint64_t seen;			/* matches so far (for every) */
	struct sink_action a;
};

struct sink_tag {
	char *name;
	enum sink_stage stage;		/* STAGE_RCPT or STAGE_DOT */
	struct sink_action a;
};

struct sink_conf {
	char **listen;
	size_t nlisten;
	char *profile;
	char *profile_path;		/* the file that was loaded */
	char *hostname, *banner;
	uint64_t size;			/* SIZE limit, bytes */
	uint32_t max_line;		/* command line limit */
	uint32_t max_rcpts;		/* per transaction */
	uint32_t idle_ms;		/* idle timeout */
	uint32_t slow_ms;		/* +slow without a number */
	uint32_t stall_ms;		/* +stall without a number */
	uint32_t max_sessions;
	int tls;			/* offer STARTTLS */
	int chunking;			/* offer CHUNKING: accept BDAT (RFC 3030) */
	char *tls_cert, *tls_key;
	char *auth_user, *auth_pass;	/* AUTH PLAIN/LOGIN accepted for them (NULL: no AUTH) */
	int auth_clear;			/* AUTH offered without TLS too */
	uint32_t rate_n, rate_window_ms;	/* per client IP, 0: off */
	uint32_t per_ip_conns;		/* 0: off */
	uint32_t grey_ms;
	int grey_all;			/* greylist every recipient */
	char *reply_rate, *reply_conns, *reply_block, *reply_grey,
	    *reply_toobig, *reply_busy;
	struct sink_addr_match *block;	/* blocklisted client addresses */
	size_t nblock;
	struct sink_rule *rules;
	size_t nrules;
	struct sink_tag *tags;
	size_t ntags;
	uint64_t seed;
};

/* One client IP or one local ADDR:PORT, with its counters. */
#define SINK_CODES 600
#define SINK_EHLO_MAX 16
struct sink_ehlo {
	char *name;
	uint64_t count;
};
struct sink_counters {
	uint64_t sessions_total, messages, recipients, rcpt_rejected, bytes,
	    tls, rejected_messages;
	uint32_t cur, max;
	uint32_t codes[SINK_CODES];
};
struct sink_peer {
	char name[64];			/* "ip" or "ip:port" */
	char ip[48];
	struct sink_addr_match addr;	/* plen = full; port set for local */
	struct sink_counters c;
	struct sink_ehlo ehlo[SINK_EHLO_MAX];
	unsigned nehlo;
	uint64_t ehlo_other;
	uint64_t rate_start_ms;		/* rate window start */
	uint32_t rate_count;		/* messages in the window */
	struct sink_peer *hnext;
};

/* What a rule/tag lookup sees of the session. */
struct sink_view {
	const struct sink_peer *client, *local;
	const char *helo, *from;
	const char *const *rcpts;	/* the rcpt stage: just the one */
	size_t nrcpts;
};

/* --- sink_conf.c --- */
void sink_conf_defaults(struct sink_conf *c);
/*
 * sink_conf_load - apply the config file path (and the profile it or
 * profile_override names, applied first) onto c. Returns 0, or -1 with
 * *err = "file:line: message" (malloc'd). exe_dir helps find profiles.
 */
int sink_conf_load(struct sink_conf *c, const char *path,
    const char *profile_override, const char *exe_dir, char **err);
/* Finish: turn the blocklist into rules etc.; call once after loading. */
void sink_conf_finish(struct sink_conf *c);
void sink_conf_free(struct sink_conf *c);
int sink_parse_duration_ms(const char *s, uint64_t *ms);
int sink_parse_rate(const char *s, uint32_t *n, uint32_t *window_ms);
int sink_parse_addr_match(const char *s, struct sink_addr_match *m);
int sink_addr_matches(const struct sink_addr_match *m, const struct sink_addr_match *a);
int sink_reply_valid(const char *tpl);
const char *sink_stage_name(enum sink_stage st);

/*
 * sink_rules_eval - the first rule for stage st matching v whose
 * probability/every test passes; NULL if none. rng: xorshift state.
 */
const struct sink_action *sink_rules_eval(struct sink_conf *c, enum sink_stage st,
    const struct sink_view *v, uint64_t *rng);
/*
 * sink_tag_eval - the first tag of address addr ("user+tag+tag@dom") that
 * acts at stage st: fills *out (slowN/stallN carry their seconds).
 * Returns 1 if found, else 0.
 */
int sink_tag_eval(const struct sink_conf *c, const char *addr, enum sink_stage st,
    struct sink_action *out);
/* Values for {ip} {port} {local} {helo} {from} {rcpt} {id} in templates. */
struct sink_vars {
	const char *ip, *port, *local, *helo, *from, *rcpt, *id;
};
/*
 * sink_reply_expand - append template tpl as CRLF-terminated reply lines
 * to b ("\n" in tpl starts a continuation line "CODE-"); returns the code.
 */
int sink_reply_expand(struct buf *b, const char *tpl, const struct sink_vars *v);

/* --- sink_stats.c --- */
struct sink_stats;
void sink_stats_init(uint64_t now_ms);
struct sink_peer *sink_peer_get(int client, const struct sockaddr *sa);
struct sink_counters *sink_totals(void);
void sink_stats_session_open(struct sink_peer *cl, struct sink_peer *lo);
void sink_stats_session_close(struct sink_peer *cl, struct sink_peer *lo);
void sink_stats_code(struct sink_peer *cl, struct sink_peer *lo, int code);
void sink_stats_ehlo(struct sink_peer *cl, struct sink_peer *lo, const char *name);
void sink_stats_message(struct sink_peer *cl, struct sink_peer *lo, size_t nrcpt,
    uint64_t bytes, uint64_t now_ms);
void sink_stats_tls(struct sink_peer *cl, struct sink_peer *lo);
void sink_stats_rcpt_rejected(struct sink_peer *cl, struct sink_peer *lo);
/* Returns 0 or -1 (errno set). */
int sink_stats_write(const char *path, uint64_t now_ms);
/*
 * sink_grey_check - 1 if (ip, from, rcpt) may pass now (first seen at
 * least delay_ms ago), else 0 (and records the first sighting).
 */
int sink_grey_check(const char *ip, const char *from, const char *rcpt,
    uint64_t now_ms, uint64_t delay_ms);
void sink_stats_free(void);

/* --- sink_tls.c --- */
/* The server's TLS context; cert/key NULL: a self-signed one. Fatal on error. */
struct tls_ctx *sink_tls_ctx(const char *cert, const char *key);

/* --- sink_session.c --- */
struct sink_server {
	struct loop *loop;
	struct sink_conf *conf;
	struct tls_ctx *tls;
	const char *capture_dir;
	uint64_t rng;
	uint64_t next_id;
	uint32_t sessions;		/* currently open */
	int quiet;
	int tls_implicit;		/* TLS from the first byte, no STARTTLS */
};
extern struct sink_server sink;
/* Start a session on an accepted socket (a plain process fd). */
void sink_session_start(int fd);
/*
 * Start a session on a direct descriptor (ring fixed-file table slot):
 * the addresses come from the accept (peer) and the listener (local), as
 * getpeername/getsockname need a real fd. The session gives the slot back
 * through sink_direct_release() (sink.c) when it ends.
 */
void sink_session_start_direct(unsigned slot, const struct sockaddr *peer,
    const struct sockaddr *local);
/* --- sink.c --- */
/* Close direct descriptor slot (async) and let a parked accept re-arm. */
void sink_direct_release(unsigned slot);
/* End-of-turn work: flush replies, finish closed sessions. */
void sink_session_flush_all(void);
/* Close idle sessions (call every few seconds). */
void sink_session_sweep(uint64_t now_ms);

#endif
