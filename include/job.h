/*
 * job.h - one send job: decoded and validated from a Redis stream entry or
 * a retry hash, and the events it produces.
 *
 * job_decode() is pure: fields in, a job out. An invalid job still comes
 * back (with ->error set) so that it can get its `failed` event with the
 * caller's id echoed. The body is attached later (inline msg at decode
 * time; msg_ref after the engine fetched the key: job_body_too_large()
 * then applies the size limit to it).
 *
 * Recipient forms (a valid job):
 *   to             as given; echoed in events
 *   to_lc          to, ASCII lower-cased: the suppression-list key
 *   domain_ascii   the domain in A-label form (IDNA 2008 + UTS #46),
 *                  lower case, no trailing dot: what DNS resolves and
 *                  what names the destination. domain points at it.
 *   rcpt           what goes into RCPT TO: to itself for an all-ASCII
 *                  address; local@domain_ascii for an ASCII local part
 *                  at an internationalised domain; to itself (UTF-8)
 *                  when the local part is not ASCII, with needs_smtputf8
 *                  set (the server must offer SMTPUTF8, RFC 6531).
 * Address literals (user@[1.2.3.4]) and domains that cannot be encoded
 * are invalid jobs.
 */
#ifndef VOLLEY_JOB_H
#define VOLLEY_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "classify.h"

struct msg_body;
struct config;

enum job_origin {
	JOB_FROM_STREAM = 0,	/* first attempt: in the consumer group's pending list */
	JOB_FROM_RETRY,		/* leased from the retry ZSET + job hash */
	JOB_FROM_HIGH,		/* first attempt: pending on the high-priority stream */
};

/*
 * A job's key names its settle marker, its retry hash and its retry ZSET
 * member. For an entry of PREFIXjobs it is the entry ID; for an entry of
 * PREFIXjobs:high it is JOB_HIGH_KEY_PREFIX + the entry ID, because the
 * entry IDs of two streams can be equal. job_entry_id() gives the bare ID
 * back (what XACK/XDEL take); nothing else takes a key apart.
 */
#define JOB_HIGH_KEY_PREFIX	"h-"

/* The order jobs leave a destination's queue in: high first, low last.
 * NORMAL is 0 so that a zeroed job is a normal one. */
enum job_priority {
	JOB_PRIO_NORMAL = 0,
	JOB_PRIO_HIGH,
	JOB_PRIO_LOW,
	JOB_PRIO__N
};
const char *job_priority_name(enum job_priority p);
/* 0 for the class that leaves first (high), JOB_PRIO__N - 1 for low. */
unsigned job_priority_rank(enum job_priority p);

enum job_status {
	JOB_DELIVERED = 0,
	JOB_BOUNCED,
	JOB_EXPIRED,
	JOB_SUPPRESSED,
	JOB_FAILED,
	JOB_DEFERRED,
	JOB_COMPLAINED,
};
const char *job_status_name(enum job_status s);
int job_status_final(enum job_status s);

struct job {
	enum job_origin origin;
	char *key;		/* see JOB_HIGH_KEY_PREFIX; names the retry hash */
	char *id;		/* caller's id, default: the stream entry ID */
	char *to;		/* as given (validated) */
	char *to_lc;		/* lower-cased, for suppression */
	const char *domain;	/* == domain_ascii: DNS and destination key */
	char *domain_ascii;	/* A-label form, lower case, no trailing dot */
	char *rcpt;		/* the RCPT TO address (see above) */
	int needs_smtputf8;	/* rcpt has a non-ASCII local part */
	char *from;		/* "" = null reverse-path */
	char *pool;		/* NULL until intake applies the routing rules */
	char *retry_pool;	/* a leased retry: the pool of the ZSET it came
				 * from (PREFIXretry:pool:NAME), NULL: PREFIXretry */
	char *campaign, *tenant;	/* NULL if absent */
	char *unsub_url;	/* unsubscribe_url: https://..., validated, or NULL */
	char *unsub_mailto;	/* unsubscribe_mailto: mailto:..., validated, or NULL */
	char *feedback_id;	/* feedback_id: printable ASCII, or NULL */
	char *msg_ref;		/* NULL for inline messages */
	char *raw;		/* inline message, until the body is built; then NULL */
	size_t raw_len;
	struct msg_body *body;
	uint64_t expires_at_ms;	/* wall clock */
	unsigned attempts;	/* attempts already made before this one */
	enum job_priority priority;	/* field `priority`; high for the high stream */
	char *error;		/* non-NULL: invalid, with the reason for `failed` */
	char *last_reply;	/* the previous attempt's outcome (retry hash), or NULL */
	int last_code;
	char last_enh[16];
	char *last_class;

	/* Added at intake (headers.h): the per-job header lines
	 * (List-Unsubscribe, List-Unsubscribe-Post, Feedback-ID) and, when
	 * they differ from what the body's shared signature covers, the
	 * job's own DKIM-Signature field(s) over them (else NULL). */
	char *hdrs;
	size_t hdrs_len;
	char *dkim_sig;
	size_t dkim_sig_len;

	/* engine bookkeeping */
	uint64_t taken_ms;	/* mono time it entered memory */
	size_t held_bytes;	/* body bytes the ledger counts for it */
	struct job *next;	/* destination queue link */
	struct job *all_prev, *all_next;	/* engine's list of live jobs */
	void *dest;		/* destination it is queued on */
};

/* A decoded outcome, ready to become an event. */
struct job_outcome {
	enum job_status status;
	enum bounce_class cls;	/* CLASS_UNKNOWN if none */
	int has_class;
	int code;		/* 0: none */
	char enh[16];
	char reply[512];
	const char *mx;		/* may be NULL */
	const char *ip;		/* source ip or NULL */
	const char *tls;	/* "TLSv1.3 TLS_AES_256_GCM_SHA384", "none", or NULL (no session) */
	int async;		/* async DSN */
	int no_attempt;		/* settled without trying (event `attempt` = attempts so far) */

	/* The verdict (trouble.c decides; the engine acts on it). */
	int suppress;		/* add the recipient to the suppression list */
	int slow_down;		/* the destination asks us to send slower */
	int site_failure;	/* the destination as a whole failed (connect,
				 * greeting, EHLO/HELO): not this recipient */
	int source_fault;	/* this host's fault (a source IP that cannot
				 * bind): try another source; neither defer
				 * nor slow the destination for it */
};

/*
 * job_decode - build a job from field/value pairs (as read from Redis).
 * key: the job's key (see JOB_HIGH_KEY_PREFIX); the default id is its
 * bare stream entry ID. A job from the high stream is high priority
 * whatever its `priority` field says (a bad value still fails it). now_ms:
 * wall clock, for the default expiry. Never returns NULL.
 */
struct job *job_decode(const char *const *fields, const size_t *flens,
    const char *const *values, const size_t *vlens, size_t n,
    const char *key, enum job_origin origin, const struct config *cfg,
    uint64_t now_ms);
void job_free(struct job *j);

/* job_entry_id - the stream entry ID of a stream job (JOB_FROM_STREAM or
 * JOB_FROM_HIGH) in its stream: key without JOB_HIGH_KEY_PREFIX. */
const char *job_entry_id(const struct job *j);

/*
 * job_check_address - 0 if s is a usable mailbox "local@domain"
 * (no CR/LF/controls/spaces/<>, <= 254 bytes, sane domain), else -1 and
 * *why names the problem.
 */
int job_check_address(const char *s, size_t len, const char **why);

/*
 * job_body_too_large - 1 if a body of len bytes exceeds the limit
 * (cfg->max_message_size; 50M without a config), with the reason for the
 * job's `failed` event in why; else 0. For msg_ref bodies once fetched
 * (job_decode applies it to inline messages itself).
 */
int job_body_too_large(const struct job *j, size_t len, const struct config *cfg,
    char *why, size_t whylen);

/*
 * job_check_unsub_url, job_check_unsub_mailto, job_check_feedback_id -
 * 0 if v[0..len) may go into the header (RFC 8058: the URL must be
 * https:; mailto:local@domain with an optional ?query), else -1 and *why
 * names the problem. No CR, LF, NUL, control, space or 8-bit byte, no
 * '<' '>' '"', at most HDR_URI_MAX (HDR_FEEDBACK_ID_MAX) bytes.
 */
int job_check_unsub_url(const char *v, size_t len, const char **why);
int job_check_unsub_mailto(const char *v, size_t len, const char **why);
int job_check_feedback_id(const char *v, size_t len, const char **why);

/* Header line with the job id, "X-Volley-Id: <id>\r\n" (malloc'd). */
char *job_id_header(const struct job *j, const char *header_name, size_t *len);

/* The envelope sender: return_path template with {id} expanded, or from. */
char *job_envelope_from(const struct job *j, const char *return_path);

#endif
