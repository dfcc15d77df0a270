/*
 * inbound.h - the inbound pipeline: bounces (DSNs) and complaints (ARF)
 * that come back after a job was delivered, read from the stream
 * PREFIXinbound, turned into events and suppression.
 *
 *   stream entry (msg, rcpt, from, source, ts)
 *   -> inbound_decide (pure): report_parse, the job by VERP recipient or
 *      the id header of the returned original, one event per failed
 *      recipient (trouble_async_bounce) or one per complaint
 *      (trouble_complaint), each with its suppression verdict
 *   -> rq_inbound_settle: one script writes the events, the suppression
 *      and its reason, or keeps the message in PREFIXinbound:unmatched,
 *      and acks the entry, all at once.
 *
 * A message is never dropped: what cannot be parsed or tied to a job goes
 * to PREFIXinbound:unmatched with a reason. Delay notices (and DSNs that
 * report no failure) are logged and acked, nothing else.
 *
 * The decision part has no I/O and no clock (unit tests drive it); the
 * I/O part runs from the engine's tick.
 */
#ifndef VOLLEY_INBOUND_H
#define VOLLEY_INBOUND_H

#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "report.h"

struct classify_rules;
struct config;
struct loop;
struct rq;

enum inbound_kind {
	INBOUND_EVENTS = 0,	/* events for job_id (at least one) */
	INBOUND_UNMATCHED,	/* keep it in PREFIXinbound:unmatched, with reason */
	INBOUND_IGNORED,	/* log and ack: a delay notice, no failure reported */
};

struct inbound_event {
	struct job_outcome o;		/* bounced (async) or complained, with the verdict */
	char rcpt[REPORT_ADDR_MAX];	/* the report's recipient, lower case; "" if redacted */
	char feedback_type[32];		/* complaints: ARF Feedback-Type ("" if none) */
	char why[64];			/* "bounced:invalid_recipient", "complained:abuse" */
};

struct inbound_verdict {
	enum inbound_kind kind;
	char reason[192];		/* UNMATCHED / IGNORED: why */
	char job_id[256];		/* EVENTS: the job's id as the report gave it */
	const char *link;		/* how the job was found (report_job_id) */
	const char *format;		/* report format, "" if none */
	struct inbound_event *events;	/* owned */
	size_t nevents;
	unsigned delayed;		/* recipients reported delayed */
};

struct inbound_params {
	const struct classify_rules *rules;
	const char *id_header;		/* NULL: "X-Volley-Id" */
	const char *return_path;	/* VERP template, NULL: none */
};

/*
 * inbound_decide - what one inbound message means. msg may be NULL (no
 * `msg` field). envelope_rcpts: the envelope recipients the listener saw,
 * comma-separated (NULL or "": none; each is tried as a VERP address
 * first). Always fills v; free it with inbound_verdict_free().
 */
void inbound_decide(const struct inbound_params *p, const char *msg, size_t len,
    const char *envelope_rcpts, struct inbound_verdict *v);
void inbound_verdict_free(struct inbound_verdict *v);

/*
 * inbound_id_key - the form of a job id used in Redis key names (the sent
 * record PREFIXsent:KEY): the id with every character other than letters,
 * digits, '-', '_' and '.' replaced by '=', as the VERP return path
 * carries it, so that an id found by VERP and one found in the id header
 * name the same record. Cut to outlen - 1 bytes (INBOUND_IDKEY_MAX holds
 * any id job.c accepts). Lossy as the VERP address is: ids that differ
 * only in such characters at the same places share a record, so producers
 * should keep ids to letters, digits, '-', '_' and '.' (stream entry IDs
 * and UUIDs do).
 */
#define INBOUND_IDKEY_MAX	256
void inbound_id_key(const char *id, char *out, size_t outlen);

/* The I/O part, driven from the engine's tick. */
struct inbound;
struct inbound *inbound_new(struct loop *l, struct rq *rq, const struct config *cfg,
    const struct classify_rules *rules);
void inbound_free(struct inbound *in);
void inbound_set_config(struct inbound *in, const struct config *cfg,
    const struct classify_rules *rules);
/* Read and settle a batch of PREFIXinbound if it is time (one read in
 * flight; again at once after a full batch, else once a second). */
void inbound_tick(struct inbound *in, uint64_t now_mono);

#endif
