/*
 * trouble.h - what an outcome means (after Postfix's smtp_trouble.c): the
 * one place that turns an SMTP result, a DNS answer, an expiry, a
 * suppression hit or an invalid job into a job outcome: status, bounce
 * class, event texts, and the verdict the engine acts on (suppress the
 * recipient, slow the destination down, the site failed, our source is at
 * fault). The engine never decides these itself. Pure: no I/O, no clock.
 *
 * SMTP results (trouble_from_smtp), by stage:
 *   end of data, 2xx                      -> delivered
 *   connect/greeting/EHLO/HELO, any       -> deferred, site_failure (a 5xx
 *                                            greeting says nothing about
 *                                            the recipient); never suppress
 *   RSET refused                          -> deferred (the session is bad)
 *   MAIL 5xx / 4xx                        -> bounced / deferred; the reply
 *                                            is about the SENDER: a
 *                                            recipient class becomes
 *                                            auth_failure; never suppress
 *   RCPT 5xx / 4xx                        -> bounced / deferred, class
 *                                            from the rules
 *   DATA or end of data 5xx / 4xx         -> the same as RCPT when the
 *                                            transaction had one recipient;
 *                                            with several, a recipient
 *                                            class becomes unknown
 *   SIZE refusal                          -> bounced, message_too_large
 *   time-out, connection lost             -> deferred, connection_failure
 *   garbage or overlong reply             -> deferred, protocol_error
 *   local refusal (unsafe address)        -> bounced, class from its
 *                                            enhanced code, no suppress
 *   local refusal 5.6.3 (8-bit body, the  -> bounced, protocol_error, no
 *   server offers no 8BITMIME)               suppress (the server never
 *                                            judged the recipient)
 *   SMTP_CAUSE_LOCAL (source IP)          -> deferred, source_fault
 *   AUTH at a smarthost refused (535,     -> deferred, auth_failure,
 *   534, 530...), not offered, or no TLS     site_failure (the credentials
 *   (SMTP_CAUSE_AUTH, stage AUTH)            are ours); never suppress
 *
 * The verdict:
 *   suppress      bounced AND a class bounce_class_suppresses() names AND
 *                 a server said it at RCPT (or DATA/end of data of a
 *                 one-recipient transaction); DNS: NXDOMAIN and null MX;
 *                 an asynchronous bounce (DSN) of such a class; a
 *                 complaint other than not-spam and auth-failure.
 *   slow_down     421 anywhere; class rate_limited; 4.7.x other than
 *                 greylisting and authentication; provider throttling
 *                 wording (Yahoo [TSS04]/[TS01]/[TS02]/[TS03], Microsoft
 *                 4.7.650/(S775)/(S843), Gmail 4.7.28 and 4.7.0 rate
 *                 limits); time-out or refused/reset connection at
 *                 connect or greeting.
 *   site_failure  connect, greeting, EHLO/HELO, STARTTLS or AUTH failed
 *                 (not our source).
 *   source_fault  SMTP_CAUSE_LOCAL: pick another source, do not defer or
 *                 slow the destination for it.
 */
#ifndef VOLLEY_TROUBLE_H
#define VOLLEY_TROUBLE_H

#include <stddef.h>

#include "classify.h"
#include "dns.h"
#include "job.h"
#include "smtp_client.h"

void trouble_outcome_init(struct job_outcome *o, enum job_status st);
void trouble_set_reply(struct job_outcome *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * trouble_from_smtp - the outcome of one transaction. nrcpts: recipients
 * in the transaction (1 today). mx/ip are left NULL for the caller.
 */
void trouble_from_smtp(const struct classify_rules *rules, const struct smtp_result *r,
    unsigned nrcpts, struct job_outcome *o);

/*
 * trouble_from_site - the outcome for the queued jobs of a destination
 * whose every MX failed before a transaction: always deferred, never
 * suppress; site_failure unless the fault is our own source
 * (source_fault).
 */
void trouble_from_site(const struct classify_rules *rules, const struct smtp_result *r,
    struct job_outcome *o);

/*
 * trouble_from_dns - the outcome for the jobs of domain after an MX lookup
 * that rules out delivery now (st != DNS_OK, or DNS_OK without targets):
 * NXDOMAIN -> bounced 5.1.2 bad_domain + suppress; null MX -> bounced
 * 5.1.10 bad_domain + suppress; anything else (no address, time-out,
 * SERVFAIL, a refused private address) -> deferred 4.4.3 dns_failure with
 * error (the resolver's text) in the reply.
 */
void trouble_from_dns(enum dns_status st, const char *domain, const char *error,
    struct job_outcome *o);
/*
 * trouble_mtasts - the outcome for the jobs of domain when its MTA-STS
 * policy (mode enforce, RFC 8461) leaves no MX host to use: deferred
 * 4.7.5 tls_failure, "MTA-STS policy of DOMAIN: why".
 */
void trouble_mtasts(const char *domain, const char *why, struct job_outcome *o);

/*
 * trouble_expired - a job found past its expires_at before an attempt
 * (no_attempt). attempts: attempts made so far; last_reply: the previous
 * attempt's reply (NULL: none was made); code, enhanced code and class
 * come from j's last_* fields.
 */
void trouble_expired(const struct job *j, unsigned attempts, const char *last_reply,
    struct job_outcome *o);

/*
 * trouble_expire_deferred - a deferral that would run past expires_at
 * becomes final: `expired`, "expired after N attempt(s); last: REPLY",
 * code, enhanced code and class kept. attempts: including this one. No-op
 * unless o is deferred.
 */
void trouble_expire_deferred(struct job_outcome *o, unsigned attempts);

/* A recipient on the suppression list: `suppressed`, never sent. */
void trouble_suppressed(struct job_outcome *o);

/* An invalid job: `failed`, why in the reply. */
void trouble_invalid(struct job_outcome *o, const char *why);

/*
 * trouble_from_local - this host could not send at all (no usable source
 * address in the pool): deferred, connection_failure, source_fault; the
 * destination is not blamed.
 */
void trouble_from_local(struct job_outcome *o, const char *why);

/*
 * trouble_async_bounce - a DSN (or a text bounce) that came back after the
 * job was delivered says this recipient failed: `bounced` with async = 1,
 * cls from the report's Status/Diagnostic-Code (report_rcpt_classify()),
 * code and enh from it, the diagnostic (or "") in the reply. The verdict:
 * suppress for the recipient classes bounce_class_suppresses() names, as a
 * synchronous RCPT refusal would; never slow_down (the mail was accepted
 * long ago: the destination is not asking for less now). A failure whose
 * status is 4.x.x (a server gave up after retrying) still bounces.
 */
void trouble_async_bounce(enum bounce_class cls, int code, const char *enh, const char *diag,
    struct job_outcome *o);

/*
 * trouble_complaint - a feedback report (ARF, JMRP) about the recipient of
 * a job: `complained`, not final (the delivery stays the job's outcome).
 * feedback_type is ARF's Feedback-Type in lower case ("" if none). The
 * verdict: suppress for every type a person sends (abuse, fraud, virus,
 * other, none given); never for "not-spam" (the opposite of a complaint)
 * nor "auth-failure" (RFC 6591: a DKIM/SPF report about the sending
 * domain, not the recipient's wish).
 */
void trouble_complaint(const char *feedback_type, struct job_outcome *o);

/*
 * trouble_verdict_to_text - "suppress,slow_down" style list of the verdict
 * flags set in o ("-" if none), for log lines. Returns buf.
 */
const char *trouble_verdict_to_text(const struct job_outcome *o, char *buf, size_t len);

#endif
