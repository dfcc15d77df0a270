/*
 * trouble.h - what an SMTP outcome means for a job (after Postfix's
 * smtp_trouble.c): the one place that turns a session's result into a
 * job status and a bounce class. Pure: no I/O, no clock.
 *
 *   2xx at end of data                  -> delivered
 *   5xx reply, SIZE refusal              -> bounced, class from the rules
 *   4xx reply                            -> deferred, class from the rules
 *   time-out, connection lost            -> deferred, connection_failure
 *   garbage or overlong reply            -> deferred, protocol_error
 *   every MX failed before a transaction -> deferred (a 5xx greeting too:
 *                                           it says nothing about the
 *                                           recipient)
 */
#ifndef VOLLEY_TROUBLE_H
#define VOLLEY_TROUBLE_H

#include "classify.h"
#include "job.h"
#include "smtp_client.h"

void trouble_outcome_init(struct job_outcome *o, enum job_status st);
void trouble_set_reply(struct job_outcome *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The outcome of one transaction of nrcpts recipients. mx/ip are left
 * NULL for the caller. */
void trouble_from_smtp(const struct classify_rules *rules, const struct smtp_result *r,
    unsigned nrcpts, struct job_outcome *o);
/* The outcome for the jobs of a destination whose every MX failed. */
void trouble_from_site(const struct classify_rules *rules, const struct smtp_result *r,
    struct job_outcome *o);

/* A DNS answer that rules out delivery now (dns.h status). */
void trouble_from_dns(struct job_outcome *o, int dns_status, const char *domain,
    const char *error);
/* j ran past expires_at before (another) attempt. */
void trouble_expired(struct job_outcome *o, const struct job *j);
/* A deferral of the attempts-th attempt past the job's end: `expired`. */
void trouble_expire_deferred(struct job_outcome *o, unsigned attempts);
void trouble_suppressed(struct job_outcome *o);
/* The job itself is invalid: `failed`. */
void trouble_invalid(struct job_outcome *o, const char *why);
/* This host could not send (no usable source address): deferred. */
void trouble_from_local(struct job_outcome *o, const char *why);

#endif
