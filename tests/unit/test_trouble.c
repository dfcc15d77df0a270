/*
 * test_trouble.c - what every outcome means (trouble.c), with the
 * built-in classification rules: a table of SMTP results at every stage
 * (2xx, 4xx, 5xx, time-out, disconnect, garbage, SIZE, local refusal,
 * our own source failing) and representative provider wording, checked
 * for status, class and the verdict (suppress, slow_down, site_failure,
 * source_fault); then site failures, DNS answers, expiry, suppression and
 * invalid jobs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "trouble.h"

#define NONE (-1)	/* no class */

struct tcase {
	const char *name;
	enum smtp_stage stage;
	enum smtp_status st;
	enum smtp_cause cause;
	int code;
	const char *enh, *text;
	unsigned nrcpts;
	/* want */
	enum job_status status;
	int cls;		/* enum bounce_class, or NONE */
	int suppress, slow, site, source;
};

#define S(x) SMTP_STAGE_##x
#define C(x) SMTP_CAUSE_##x
#define K(x) CLASS_##x

static const struct tcase cases[] = {
	/* --- connect: the site, never the recipient --- */
	{ "connect refused", S(CONNECT), SMTP_TEMP, C(DISCONNECT), 0, "",
	  "connect to 192.0.2.1:25 (mx.test): Connection refused", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 1, 1, 0 },
	{ "connect reset", S(CONNECT), SMTP_TEMP, C(DISCONNECT), 0, "",
	  "connect to 192.0.2.1:25 (mx.test): Connection reset by peer", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 1, 1, 0 },
	{ "connect time-out", S(CONNECT), SMTP_TEMP, C(TIMEOUT), 0, "",
	  "connect to 192.0.2.1:25 (mx.test) timed out", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 1, 1, 0 },
	{ "source cannot bind", S(CONNECT), SMTP_TEMP, C(LOCAL), 0, "",
	  "bind 192.0.2.77: Cannot assign requested address", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 0, 0, 1 },

	/* --- AUTH at a smarthost: our credentials, deferred, never suppress --- */
	{ "auth 535", S(AUTH), SMTP_TEMP, C(AUTH), 535, "5.7.8",
	  "535 5.7.8 Authentication credentials invalid", 1,
	  JOB_DEFERRED, K(AUTH_FAILURE), 0, 0, 1, 0 },
	{ "auth 534", S(AUTH), SMTP_TEMP, C(AUTH), 534, "5.7.9",
	  "534 5.7.9 Authentication mechanism is too weak", 1,
	  JOB_DEFERRED, K(AUTH_FAILURE), 0, 0, 1, 0 },
	{ "auth 530", S(AUTH), SMTP_TEMP, C(AUTH), 530, "5.7.0",
	  "530 5.7.0 Must issue a STARTTLS command first", 1,
	  JOB_DEFERRED, K(AUTH_FAILURE), 0, 0, 1, 0 },
	{ "auth not offered", S(AUTH), SMTP_TEMP, C(AUTH), 0, "",
	  "the server does not offer AUTH", 1,
	  JOB_DEFERRED, K(AUTH_FAILURE), 0, 0, 1, 0 },

	/* --- greeting --- */
	/* a bare 5xx greeting refuses this IP before it has said anything
	 * (the greeting-refused rule): a site failure, never a bounce */
	{ "greeting 554", S(GREETING), SMTP_PERM, C(REPLY), 554, "",
	  "554 mx.test no SMTP service here", 1,
	  JOB_DEFERRED, K(REPUTATION_BLOCK), 0, 0, 1, 0 },
	{ "greeting 554 block list", S(GREETING), SMTP_PERM, C(REPLY), 554, "5.7.1",
	  "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", 1,
	  JOB_DEFERRED, K(REPUTATION_BLOCK), 0, 0, 1, 0 },
	{ "greeting 550 5.1.1 (nonsense)", S(GREETING), SMTP_PERM, C(REPLY), 550, "5.1.1",
	  "550 5.1.1 User unknown", 1,
	  JOB_DEFERRED, K(UNKNOWN), 0, 0, 1, 0 },
	{ "greeting 421 busy", S(GREETING), SMTP_TEMP, C(REPLY), 421, "4.3.2",
	  "421 4.3.2 Service not available, too many sessions", 1,
	  JOB_DEFERRED, K(RATE_LIMITED), 0, 1, 1, 0 },
	{ "greeting 450", S(GREETING), SMTP_TEMP, C(REPLY), 450, "",
	  "450 mx.test not ready", 1,
	  JOB_DEFERRED, K(UNKNOWN), 0, 0, 1, 0 },
	{ "greeting time-out", S(GREETING), SMTP_TEMP, C(TIMEOUT), 0, "",
	  "timeout waiting for greeting", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 1, 1, 0 },
	{ "greeting disconnect", S(GREETING), SMTP_TEMP, C(DISCONNECT), 0, "",
	  "connection lost before greeting", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 1, 1, 0 },
	{ "greeting garbage", S(GREETING), SMTP_TEMP, C(PROTOCOL), 0, "",
	  "protocol error: malformed greeting", 1,
	  JOB_DEFERRED, K(PROTOCOL_ERROR), 0, 0, 1, 0 },

	/* --- EHLO / HELO --- */
	{ "HELO 550", S(HELO), SMTP_PERM, C(REPLY), 550, "5.7.1",
	  "550 5.7.1 Helo command rejected: Host not found", 1,
	  JOB_DEFERRED, K(AUTH_FAILURE), 0, 0, 1, 0 },	/* our HELO name does not resolve */
	{ "EHLO 421", S(EHLO), SMTP_TEMP, C(REPLY), 421, "4.7.0",
	  "421 4.7.0 Try again later, closing connection. (EHLO)", 1,
	  JOB_DEFERRED, K(RATE_LIMITED), 0, 1, 1, 0 },
	{ "EHLO time-out", S(EHLO), SMTP_TEMP, C(TIMEOUT), 0, "",
	  "timeout waiting for reply to EHLO", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 0, 1, 0 },
	{ "EHLO disconnect", S(EHLO), SMTP_TEMP, C(DISCONNECT), 0, "",
	  "connection lost after EHLO", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 0, 1, 0 },
	{ "EHLO garbage", S(EHLO), SMTP_TEMP, C(PROTOCOL), 0, "",
	  "protocol error: malformed reply to EHLO", 1,
	  JOB_DEFERRED, K(PROTOCOL_ERROR), 0, 0, 1, 0 },

	/* --- MAIL: about the sender, never the recipient --- */
	{ "MAIL 553 5.1.8 sender domain", S(MAIL), SMTP_PERM, C(REPLY), 553, "5.1.8",
	  "553 5.1.8 <f@sender.test>: Sender address rejected: Domain not found", 1,
	  JOB_BOUNCED, K(AUTH_FAILURE), 0, 0, 0, 0 },
	{ "MAIL 550 5.1.1 (recipient class)", S(MAIL), SMTP_PERM, C(REPLY), 550, "5.1.1",
	  "550 5.1.1 <f@sender.test>: User unknown in local recipient table", 1,
	  JOB_BOUNCED, K(AUTH_FAILURE), 0, 0, 0, 0 },
	{ "MAIL 553 5.1.2 (bad_domain class)", S(MAIL), SMTP_PERM, C(REPLY), 553, "5.1.2",
	  "553 5.1.2 bad destination system address", 1,
	  JOB_BOUNCED, K(AUTH_FAILURE), 0, 0, 0, 0 },
	{ "MAIL 552 5.2.2 (mailbox class)", S(MAIL), SMTP_PERM, C(REPLY), 552, "5.2.2",
	  "552 5.2.2 Mailbox full", 1,
	  JOB_BOUNCED, K(AUTH_FAILURE), 0, 0, 0, 0 },
	{ "MAIL 451 4.1.8", S(MAIL), SMTP_TEMP, C(REPLY), 451, "4.1.8",
	  "451 4.1.8 <f@sender.test>: Sender address rejected: Domain not found", 1,
	  JOB_DEFERRED, K(AUTH_FAILURE), 0, 0, 0, 0 },
	{ "MAIL 450 disabled wording (4xx)", S(MAIL), SMTP_TEMP, C(REPLY), 450, "4.2.1",
	  "450 4.2.1 The email account that you tried to reach is disabled", 1,
	  JOB_DEFERRED, K(AUTH_FAILURE), 0, 0, 0, 0 },
	{ "MAIL 550 block list", S(MAIL), SMTP_PERM, C(REPLY), 550, "5.7.1",
	  "550 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org", 1,
	  JOB_BOUNCED, K(REPUTATION_BLOCK), 0, 0, 0, 0 },
	{ "MAIL 554 spam", S(MAIL), SMTP_PERM, C(REPLY), 554, "5.7.1",
	  "554 5.7.1 Message rejected as spam", 1,
	  JOB_BOUNCED, K(SPAM_CONTENT), 0, 0, 0, 0 },
	{ "MAIL 554 relay", S(MAIL), SMTP_PERM, C(REPLY), 554, "5.7.1",
	  "554 5.7.1 Relay access denied", 1,
	  JOB_BOUNCED, K(RELAY_DENIED), 0, 0, 0, 0 },
	{ "MAIL 550 5.7.26 unauthenticated", S(MAIL), SMTP_PERM, C(REPLY), 550, "5.7.26",
	  "550 5.7.26 Gmail requires all senders to authenticate with either SPF or DKIM.", 1,
	  JOB_BOUNCED, K(AUTH_FAILURE), 0, 0, 0, 0 },
	{ "MAIL 421 Yahoo TSS04", S(MAIL), SMTP_TEMP, C(REPLY), 421, "4.7.0",
	  "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume", 1,
	  JOB_DEFERRED, K(RATE_LIMITED), 0, 1, 0, 0 },
	{ "MAIL 451 rate limit", S(MAIL), SMTP_TEMP, C(REPLY), 451, "4.7.0",
	  "451 4.7.0 [192.0.2.1] Too many messages from your IP address, slow down", 1,
	  JOB_DEFERRED, K(RATE_LIMITED), 0, 1, 0, 0 },
	{ "MAIL SIZE refusal", S(MAIL), SMTP_PERM, C(SIZE), 0, "5.3.4",
	  "message size 2048 exceeds server limit 1000", 1,
	  JOB_BOUNCED, K(MESSAGE_TOO_LARGE), 0, 0, 0, 0 },
	{ "MAIL unsafe sender (local)", S(MAIL), SMTP_PERM, C(PROTOCOL), 0, "5.1.7",
	  "invalid sender address: control characters", 1,
	  JOB_BOUNCED, K(AUTH_FAILURE), 0, 0, 0, 0 },
	{ "MAIL time-out", S(MAIL), SMTP_TEMP, C(TIMEOUT), 0, "",
	  "timeout waiting for reply to MAIL", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 0, 0, 0 },
	{ "MAIL disconnect", S(MAIL), SMTP_TEMP, C(DISCONNECT), 0, "",
	  "connection lost after MAIL", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 0, 0, 0 },
	{ "MAIL garbage", S(MAIL), SMTP_TEMP, C(PROTOCOL), 0, "",
	  "protocol error: malformed reply to MAIL", 1,
	  JOB_DEFERRED, K(PROTOCOL_ERROR), 0, 0, 0, 0 },

	/* --- RCPT: about the recipient --- */
	{ "RCPT 550 5.1.1", S(RCPT), SMTP_PERM, C(REPLY), 550, "5.1.1",
	  "550 5.1.1 <u@d.test>: Recipient address rejected: User unknown in virtual mailbox table", 1,
	  JOB_BOUNCED, K(INVALID_RECIPIENT), 1, 0, 0, 0 },
	{ "RCPT Gmail no such user", S(RCPT), SMTP_PERM, C(REPLY), 550, "5.1.1",
	  "550 5.1.1 The email account that you tried to reach does not exist.", 1,
	  JOB_BOUNCED, K(INVALID_RECIPIENT), 1, 0, 0, 0 },
	{ "RCPT Yahoo no such user", S(RCPT), SMTP_PERM, C(REPLY), 554, "",
	  "554 delivery error: dd This user doesn't have a yahoo.com account (u@yahoo.com)", 1,
	  JOB_BOUNCED, K(INVALID_RECIPIENT), 1, 0, 0, 0 },
	{ "RCPT Microsoft not found", S(RCPT), SMTP_PERM, C(REPLY), 550, "5.1.10",
	  "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", 1,
	  JOB_BOUNCED, K(INVALID_RECIPIENT), 1, 0, 0, 0 },
	{ "RCPT 550 5.2.1 disabled", S(RCPT), SMTP_PERM, C(REPLY), 550, "5.2.1",
	  "550 5.2.1 <u@d.test>: mailbox disabled", 1,
	  JOB_BOUNCED, K(INACTIVE_MAILBOX), 1, 0, 0, 0 },
	{ "RCPT 550 5.1.2 bad domain", S(RCPT), SMTP_PERM, C(REPLY), 550, "5.1.2",
	  "550 5.1.2 bad destination system: no such domain", 1,
	  JOB_BOUNCED, K(BAD_DOMAIN), 1, 0, 0, 0 },
	{ "RCPT 552 5.2.2 full (bounced)", S(RCPT), SMTP_PERM, C(REPLY), 552, "5.2.2",
	  "552 5.2.2 <u@d.test>: Mailbox full, quota exceeded", 1,
	  JOB_BOUNCED, K(MAILBOX_FULL), 0, 0, 0, 0 },
	{ "RCPT 452 4.2.2 full", S(RCPT), SMTP_TEMP, C(REPLY), 452, "4.2.2",
	  "452 4.2.2 <u@d.test>: Mailbox full", 1,
	  JOB_DEFERRED, K(MAILBOX_FULL), 0, 0, 0, 0 },
	{ "RCPT 450 disabled wording (4xx)", S(RCPT), SMTP_TEMP, C(REPLY), 450, "4.2.1",
	  "450 4.2.1 The email account that you tried to reach is disabled", 1,
	  JOB_DEFERRED, K(INACTIVE_MAILBOX), 0, 0, 0, 0 },
	{ "RCPT 553 5.1.8 sender (delayed reject)", S(RCPT), SMTP_PERM, C(REPLY), 553, "5.1.8",
	  "553 5.1.8 <f@sender.test>: Sender address rejected: Domain not found", 1,
	  JOB_BOUNCED, K(AUTH_FAILURE), 0, 0, 0, 0 },
	{ "RCPT 554 relay", S(RCPT), SMTP_PERM, C(REPLY), 554, "5.7.1",
	  "554 5.7.1 <u@d.test>: Relay access denied", 1,
	  JOB_BOUNCED, K(RELAY_DENIED), 0, 0, 0, 0 },
	{ "RCPT 550 block list", S(RCPT), SMTP_PERM, C(REPLY), 550, "5.7.1",
	  "550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", 1,
	  JOB_BOUNCED, K(REPUTATION_BLOCK), 0, 0, 0, 0 },
	{ "RCPT Microsoft block list", S(RCPT), SMTP_PERM, C(REPLY), 550, "5.7.1",
	  "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. (S3150)", 1,
	  JOB_BOUNCED, K(REPUTATION_BLOCK), 0, 0, 0, 0 },
	{ "RCPT greylisted", S(RCPT), SMTP_TEMP, C(REPLY), 451, "4.7.1",
	  "451 4.7.1 Greylisting in action, please come back later", 1,
	  JOB_DEFERRED, K(GREYLISTED), 0, 0, 0, 0 },
	{ "RCPT 451 lookup failure", S(RCPT), SMTP_TEMP, C(REPLY), 451, "4.3.0",
	  "451 4.3.0 <u@d.test>: Temporary lookup failure", 1,
	  JOB_DEFERRED, K(UNKNOWN), 0, 0, 0, 0 },
	{ "RCPT 421 try later", S(RCPT), SMTP_TEMP, C(REPLY), 421, "4.7.0",
	  "421 4.7.0 Try again later, closing connection.", 1,
	  JOB_DEFERRED, K(RATE_LIMITED), 0, 1, 0, 0 },
	{ "RCPT Gmail 421 4.7.28", S(RCPT), SMTP_TEMP, C(REPLY), 421, "4.7.28",
	  "421 4.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail", 1,
	  JOB_DEFERRED, K(RATE_LIMITED), 0, 1, 0, 0 },
	{ "RCPT Gmail 450 4.2.1 receiving rate", S(RCPT), SMTP_TEMP, C(REPLY), 450, "4.2.1",
	  "450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages", 1,
	  JOB_DEFERRED, K(RATE_LIMITED), 0, 1, 0, 0 },
	{ "RCPT Gmail 550 5.7.28", S(RCPT), SMTP_PERM, C(REPLY), 550, "5.7.28",
	  "550 5.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail", 1,
	  JOB_BOUNCED, K(SPAM_CONTENT), 0, 1, 0, 0 },
	{ "RCPT Gmail 421 4.7.0 low reputation", S(RCPT), SMTP_TEMP, C(REPLY), 421, "4.7.0",
	  "421 4.7.0 [192.0.2.1] Our system has detected that this message is suspicious due to the very low reputation of the sending IP address", 1,
	  JOB_DEFERRED, K(RATE_LIMITED), 0, 1, 0, 0 },
	{ "RCPT Yahoo TS03", S(RCPT), SMTP_PERM, C(REPLY), 553, "5.7.2",
	  "553 5.7.2 [TS03] All messages from 192.0.2.1 will be permanently deferred", 1,
	  JOB_BOUNCED, K(REPUTATION_BLOCK), 0, 1, 0, 0 },
	{ "RCPT Microsoft throttled", S(RCPT), SMTP_TEMP, C(REPLY), 451, "4.7.650",
	  "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. (S775)", 1,
	  JOB_DEFERRED, K(RATE_LIMITED), 0, 1, 0, 0 },
	{ "RCPT 4.7.x policy", S(RCPT), SMTP_TEMP, C(REPLY), 450, "4.7.1",
	  "450 4.7.1 Service temporarily unavailable, try again later", 1,
	  JOB_DEFERRED, K(UNKNOWN), 0, 1, 0, 0 },
	{ "RCPT time-out", S(RCPT), SMTP_TEMP, C(TIMEOUT), 0, "",
	  "timeout waiting for reply to RCPT", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 0, 0, 0 },
	{ "RCPT disconnect", S(RCPT), SMTP_TEMP, C(DISCONNECT), 0, "",
	  "connection lost after RCPT", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 0, 0, 0 },
	{ "RCPT garbage", S(RCPT), SMTP_TEMP, C(PROTOCOL), 0, "",
	  "protocol error: malformed reply to RCPT", 1,
	  JOB_DEFERRED, K(PROTOCOL_ERROR), 0, 0, 0, 0 },
	{ "RCPT unsafe address (local)", S(RCPT), SMTP_PERM, C(PROTOCOL), 0, "5.1.3",
	  "invalid recipient address: control characters", 1,
	  JOB_BOUNCED, K(INVALID_RECIPIENT), 0, 0, 0, 0 },
	{ "RCPT SMTPUTF8 not offered (local)", S(RCPT), SMTP_PERM, C(PROTOCOL), 0, "5.6.7",
	  "the server does not offer SMTPUTF8, needed for a non-ASCII address", 1,
	  JOB_BOUNCED, K(PROTOCOL_ERROR), 0, 0, 0, 0 },	/* x.6.x: like 5.6.3 */
	{ "MAIL 8-bit body, no 8BITMIME (local)", S(MAIL), SMTP_PERM, C(PROTOCOL), 0, "5.6.3",
	  "message has 8-bit content and the server does not offer 8BITMIME", 1,
	  JOB_BOUNCED, K(PROTOCOL_ERROR), 0, 0, 0, 0 },

	/* --- DATA command --- */
	{ "DATA 554 spam", S(DATA), SMTP_PERM, C(REPLY), 554, "5.7.1",
	  "554 5.7.1 Message rejected as spam by Content Filtering.", 1,
	  JOB_BOUNCED, K(SPAM_CONTENT), 0, 0, 0, 0 },
	{ "DATA 451", S(DATA), SMTP_TEMP, C(REPLY), 451, "4.3.0",
	  "451 4.3.0 Error: queue file write error", 1,
	  JOB_DEFERRED, K(UNKNOWN), 0, 0, 0, 0 },
	{ "DATA time-out", S(DATA), SMTP_TEMP, C(TIMEOUT), 0, "",
	  "timeout waiting for reply to DATA", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 0, 0, 0 },

	/* --- end of data --- */
	{ "DOT 250 delivered", S(DOT), SMTP_OK, C(REPLY), 250, "2.0.0",
	  "250 2.0.0 Ok: queued as 4ABC", 1,
	  JOB_DELIVERED, NONE, 0, 0, 0, 0 },
	{ "DOT 550 5.1.1, one recipient", S(DOT), SMTP_PERM, C(REPLY), 550, "5.1.1",
	  "550 5.1.1 <u@d.test>: Recipient address rejected: User unknown", 1,
	  JOB_BOUNCED, K(INVALID_RECIPIENT), 1, 0, 0, 0 },
	{ "DOT 550 5.1.1, two recipients", S(DOT), SMTP_PERM, C(REPLY), 550, "5.1.1",
	  "550 5.1.1 <u@d.test>: Recipient address rejected: User unknown", 2,
	  JOB_BOUNCED, K(UNKNOWN), 0, 0, 0, 0 },
	{ "DOT 552 5.2.2, one recipient", S(DOT), SMTP_PERM, C(REPLY), 552, "5.2.2",
	  "552 5.2.2 Mailbox full", 1,
	  JOB_BOUNCED, K(MAILBOX_FULL), 0, 0, 0, 0 },
	{ "DOT 552 5.3.4", S(DOT), SMTP_PERM, C(REPLY), 552, "5.3.4",
	  "552 5.3.4 Message size exceeds fixed limit", 1,
	  JOB_BOUNCED, K(MESSAGE_TOO_LARGE), 0, 0, 0, 0 },
	{ "DOT 550 SPF", S(DOT), SMTP_PERM, C(REPLY), 550, "5.7.23",
	  "550 5.7.23 The message was rejected because of Sender Policy Framework violation", 1,
	  JOB_BOUNCED, K(AUTH_FAILURE), 0, 0, 0, 0 },
	{ "DOT 554 spam", S(DOT), SMTP_PERM, C(REPLY), 554, "5.7.1",
	  "554 5.7.1 Message rejected as spam by Content Filtering.", 1,
	  JOB_BOUNCED, K(SPAM_CONTENT), 0, 0, 0, 0 },
	{ "DOT 421", S(DOT), SMTP_TEMP, C(REPLY), 421, "4.7.0",
	  "421 4.7.0 Try again later, closing connection.", 1,
	  JOB_DEFERRED, K(RATE_LIMITED), 0, 1, 0, 0 },
	{ "DOT 451", S(DOT), SMTP_TEMP, C(REPLY), 451, "4.3.0",
	  "451 4.3.0 Error: queue file write error", 1,
	  JOB_DEFERRED, K(UNKNOWN), 0, 0, 0, 0 },
	{ "DOT time-out", S(DOT), SMTP_TEMP, C(TIMEOUT), 0, "",
	  "timeout waiting for reply to end of data", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 0, 0, 0 },
	{ "DOT disconnect", S(DOT), SMTP_TEMP, C(DISCONNECT), 0, "",
	  "connection lost while sending message body", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 0, 0, 0 },
	{ "DOT reply before body end", S(DOT), SMTP_TEMP, C(PROTOCOL), 0, "",
	  "protocol error: reply before end of message body", 1,
	  JOB_DEFERRED, K(PROTOCOL_ERROR), 0, 0, 0, 0 },

	/* --- BDAT (RFC 3030): a chunk's reply is judged as the dot's (stage DOT) --- */
	{ "BDAT LAST 250 delivered", S(DOT), SMTP_OK, C(REPLY), 250, "2.0.0",
	  "250 2.0.0 Ok: 3145852 bytes queued as 4ABC", 1,
	  JOB_DELIVERED, NONE, 0, 0, 0, 0 },
	{ "BDAT middle chunk 552 5.3.4", S(DOT), SMTP_PERM, C(REPLY), 552, "5.3.4",
	  "552 5.3.4 Message size exceeds fixed limit", 1,
	  JOB_BOUNCED, K(MESSAGE_TOO_LARGE), 0, 0, 0, 0 },
	{ "BDAT middle chunk 554 spam", S(DOT), SMTP_PERM, C(REPLY), 554, "5.7.1",
	  "554 5.7.1 Message rejected as spam by Content Filtering.", 1,
	  JOB_BOUNCED, K(SPAM_CONTENT), 0, 0, 0, 0 },
	{ "BDAT LAST 550 5.1.1, one recipient", S(DOT), SMTP_PERM, C(REPLY), 550, "5.1.1",
	  "550 5.1.1 <u@d.test>: Recipient address rejected: User unknown", 1,
	  JOB_BOUNCED, K(INVALID_RECIPIENT), 1, 0, 0, 0 },
	{ "BDAT chunk 451", S(DOT), SMTP_TEMP, C(REPLY), 451, "4.3.0",
	  "451 4.3.0 Error: queue file write error", 1,
	  JOB_DEFERRED, K(UNKNOWN), 0, 0, 0, 0 },
	{ "BDAT time-out", S(DOT), SMTP_TEMP, C(TIMEOUT), 0, "",
	  "timeout waiting for reply to BDAT", 1,
	  JOB_DEFERRED, K(CONNECTION_FAILURE), 0, 0, 0, 0 },
	{ "BDAT chunk 421", S(DOT), SMTP_TEMP, C(REPLY), 421, "4.7.0",
	  "421 4.7.0 Try again later, closing connection.", 1,
	  JOB_DEFERRED, K(RATE_LIMITED), 0, 1, 0, 0 },

	/* --- RSET before the transaction: the job was never tried --- */
	{ "RSET refused", S(RSET), SMTP_TEMP, C(SESSION), 554, "5.5.1",
	  "554 5.5.1 Error: no valid recipients", 1,
	  JOB_DEFERRED, K(PROTOCOL_ERROR), 0, 0, 0, 0 },
	{ "RSET refused, recipient wording", S(RSET), SMTP_TEMP, C(SESSION), 550, "5.1.1",
	  "550 5.1.1 User unknown", 1,
	  JOB_DEFERRED, K(UNKNOWN), 0, 0, 0, 0 },
};

static void
fill(struct smtp_result *r, const struct tcase *c)
{
	memset(r, 0, sizeof *r);
	r->status = c->st;
	r->cause = c->cause;
	r->stage = c->stage;
	r->code = c->code;
	snprintf(r->enh, sizeof r->enh, "%s", c->enh);
	snprintf(r->text, sizeof r->text, "%s", c->text);
}

static void
check(const char *fn, const struct tcase *c, const struct job_outcome *o, enum job_status want)
{
	int cls = o->has_class ? (int)o->cls : NONE;

	if (o->status != want || cls != c->cls || o->suppress != c->suppress ||
	    o->slow_down != c->slow || o->site_failure != c->site ||
	    o->source_fault != c->source)
		fail_msg("%s '%s': got %s %s suppress=%d slow=%d site=%d source=%d; "
		    "want %s %s suppress=%d slow=%d site=%d source=%d", fn, c->name,
		    job_status_name(o->status), cls == NONE ? "-" : bounce_class_name(o->cls),
		    o->suppress, o->slow_down, o->site_failure, o->source_fault,
		    job_status_name(want), c->cls == NONE ? "-" :
		    bounce_class_name((enum bounce_class)c->cls),
		    c->suppress, c->slow, c->site, c->source);
}

static void
test_table(void **state)
{
	struct classify_rules *rules = classify_rules_builtin();

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct tcase *c = &cases[i];
		struct smtp_result r;
		struct job_outcome o;

		fill(&r, c);
		trouble_from_smtp(rules, &r, c->nrcpts, &o);
		check("from_smtp", c, &o, c->status);
		assert_int_equal(o.code, c->code);
		assert_string_equal(o.enh, c->enh);
		assert_string_equal(o.reply, c->text);
		assert_null(o.mx);
		assert_null(o.ip);
		/* the invariants trouble.h promises */
		if (o.suppress)
			assert_true(o.status == JOB_BOUNCED && bounce_class_suppresses(o.cls));
		if (o.source_fault)
			assert_true(!o.site_failure && !o.slow_down);
	}
	classify_rules_free(rules);
}

/* Every stage before a transaction, as the session reports a destination
 * whose every MX failed: always deferred, the site's fault (or ours). */
static void
test_site_failure(void **state)
{
	struct classify_rules *rules = classify_rules_builtin();

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct tcase *c = &cases[i];
		struct smtp_result r;
		struct job_outcome o;
		struct tcase want = *c;

		if (c->stage != SMTP_STAGE_CONNECT && c->stage != SMTP_STAGE_GREETING &&
		    c->stage != SMTP_STAGE_EHLO && c->stage != SMTP_STAGE_HELO)
			continue;
		fill(&r, c);
		trouble_from_site(rules, &r, &o);
		want.site = !c->source;
		check("from_site", &want, &o, JOB_DEFERRED);
		assert_int_equal(o.code, c->code);
	}
	classify_rules_free(rules);
}

/* Operator rules may call a sender refusal anything; the stage still wins,
 * and a non-recipient class they give stays. */
static void
test_operator_rules_and_stage(void **state)
{
	char path[] = "/tmp/volley-trouble-rules-XXXXXX";
	int fd = mkstemp(path);
	const char *text = "bad-sender  invalid_recipient  text=\"sender domain missing\"\n"
	    "sender-blocked  reputation_block  text=\"sender blocked\"\n";
	struct classify_rules *rules;
	struct smtp_result r;
	struct job_outcome o;
	char *err = NULL;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	rules = classify_rules_load(path, &err);
	unlink(path);
	if (rules == NULL)
		fail_msg("rules: %s", err ? err : "?");

	memset(&r, 0, sizeof r);
	r.status = SMTP_PERM;
	r.stage = SMTP_STAGE_MAIL;
	r.code = 550;
	snprintf(r.text, sizeof r.text, "550 sender domain missing");
	trouble_from_smtp(rules, &r, 1, &o);
	assert_int_equal(o.status, JOB_BOUNCED);
	assert_int_equal(o.cls, CLASS_AUTH_FAILURE);
	assert_false(o.suppress);

	/* the same words at RCPT are the operator's verdict on the recipient */
	r.stage = SMTP_STAGE_RCPT;
	trouble_from_smtp(rules, &r, 1, &o);
	assert_int_equal(o.cls, CLASS_INVALID_RECIPIENT);
	assert_true(o.suppress);

	r.stage = SMTP_STAGE_MAIL;
	snprintf(r.text, sizeof r.text, "550 sender blocked");
	trouble_from_smtp(rules, &r, 1, &o);
	assert_int_equal(o.cls, CLASS_REPUTATION_BLOCK);
	assert_false(o.suppress);
	classify_rules_free(rules);
}

struct dns_case {
	enum dns_status st;
	const char *error;
	enum job_status status;
	const char *enh;
	enum bounce_class cls;
	int suppress;
	const char *reply;
};

static const struct dns_case dns_cases[] = {
	{ DNS_NXDOMAIN, "NXDOMAIN", JOB_BOUNCED, "5.1.2", CLASS_BAD_DOMAIN, 1,
	  "domain nowhere.test does not exist (NXDOMAIN)" },
	{ DNS_NULLMX, "", JOB_BOUNCED, "5.1.10", CLASS_BAD_DOMAIN, 1,
	  "domain nowhere.test accepts no mail (null MX, RFC 7505)" },
	{ DNS_NOADDR, "none of the 2 MX hosts of nowhere.test has an IPv4 address", JOB_DEFERRED,
	  "4.4.3", CLASS_DNS_FAILURE, 0,
	  "MX lookup for nowhere.test failed: none of the 2 MX hosts of nowhere.test has an IPv4 address" },
	{ DNS_TEMPFAIL, "SERVFAIL", JOB_DEFERRED, "4.4.3", CLASS_DNS_FAILURE, 0,
	  "MX lookup for nowhere.test failed: SERVFAIL" },
	{ DNS_NOADDR, "mx.nowhere.test resolves to a private address (127.0.0.1); "
	  "set dns.allow_private to use it", JOB_DEFERRED, "4.4.3", CLASS_DNS_FAILURE, 0,
	  "MX lookup for nowhere.test failed: mx.nowhere.test resolves to a private address "
	  "(127.0.0.1); set dns.allow_private to use it" },
	{ DNS_OK, "", JOB_DEFERRED, "4.4.3", CLASS_DNS_FAILURE, 0,
	  "MX lookup for nowhere.test failed: no usable address" },
};

static void
test_dns(void **state)
{
	for (size_t i = 0; i < sizeof dns_cases / sizeof dns_cases[0]; i++) {
		const struct dns_case *c = &dns_cases[i];
		struct job_outcome o;

		trouble_from_dns(c->st, "nowhere.test", c->error, &o);
		assert_int_equal(o.status, c->status);
		assert_string_equal(o.enh, c->enh);
		assert_true(o.has_class);
		assert_int_equal(o.cls, c->cls);
		assert_int_equal(o.suppress, c->suppress);
		assert_int_equal(o.code, 0);
		assert_false(o.slow_down || o.site_failure || o.source_fault);
		assert_string_equal(o.reply, c->reply);
	}
}

static void
test_expiry(void **state)
{
	struct job j;
	struct job_outcome o;
	char cls[] = "greylisted", bad[] = "no-such-class";

	memset(&j, 0, sizeof j);
	/* found expired before any attempt */
	trouble_expired(&j, 0, NULL, &o);
	assert_int_equal(o.status, JOB_EXPIRED);
	assert_true(o.no_attempt);
	assert_false(o.has_class);
	assert_string_equal(o.reply, "expired before the first attempt (expires_at passed)");

	/* found expired on a retry lease: the last attempt's reply */
	j.last_code = 451;
	snprintf(j.last_enh, sizeof j.last_enh, "4.3.0");
	j.last_class = cls;
	trouble_expired(&j, 3, "451 4.3.0 try later", &o);
	assert_int_equal(o.status, JOB_EXPIRED);
	assert_true(o.no_attempt);
	assert_int_equal(o.code, 451);
	assert_string_equal(o.enh, "4.3.0");
	assert_true(o.has_class);
	assert_int_equal(o.cls, CLASS_GREYLISTED);
	assert_string_equal(o.reply, "expired after 3 attempt(s); last: 451 4.3.0 try later");
	j.last_class = bad;
	trouble_expired(&j, 3, "451 4.3.0 try later", &o);
	assert_false(o.has_class);

	/* a deferral past expires_at */
	trouble_from_dns(DNS_TEMPFAIL, "d.test", "SERVFAIL", &o);
	o.slow_down = 1;
	trouble_expire_deferred(&o, 4);
	assert_int_equal(o.status, JOB_EXPIRED);
	assert_string_equal(o.reply, "expired after 4 attempt(s); last: MX lookup for d.test "
	    "failed: SERVFAIL");
	assert_string_equal(o.enh, "4.4.3");
	assert_int_equal(o.cls, CLASS_DNS_FAILURE);
	assert_false(o.no_attempt);
	assert_true(o.slow_down);	/* still about this attempt */

	/* only deferrals expire */
	trouble_from_dns(DNS_NXDOMAIN, "d.test", "", &o);
	trouble_expire_deferred(&o, 1);
	assert_int_equal(o.status, JOB_BOUNCED);
	assert_true(o.suppress);
}

static void
test_suppressed_and_invalid(void **state)
{
	struct job_outcome o;
	char buf[80];

	trouble_suppressed(&o);
	assert_int_equal(o.status, JOB_SUPPRESSED);
	assert_string_equal(o.reply, "recipient is on the suppression list");
	assert_false(o.has_class || o.suppress || o.slow_down);
	assert_string_equal(trouble_verdict_to_text(&o, buf, sizeof buf), "-");

	trouble_invalid(&o, "malformed recipient address: CR or LF in address\r\nDATA");
	assert_int_equal(o.status, JOB_FAILED);
	assert_string_equal(o.reply, "malformed recipient address: CR or LF in address  DATA");
	assert_false(o.has_class || o.suppress);

	o.suppress = 1;
	o.slow_down = 1;
	o.source_fault = 1;
	assert_string_equal(trouble_verdict_to_text(&o, buf, sizeof buf),
	    "suppress,slow_down,source_fault");
	assert_string_equal(trouble_verdict_to_text(&o, buf, 12), "suppress");
}

static void
test_reply_is_one_line(void **state)
{
	struct job_outcome o;

	trouble_outcome_init(&o, JOB_FAILED);
	trouble_set_reply(&o, "line one\r\nRCPT TO:<x@y>\nthree");
	assert_null(strchr(o.reply, '\r'));
	assert_null(strchr(o.reply, '\n'));
	assert_string_equal(o.reply, "line one  RCPT TO:<x@y> three");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_site_failure),
		cmocka_unit_test(test_operator_rules_and_stage),
		cmocka_unit_test(test_dns),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_suppressed_and_invalid),
		cmocka_unit_test(test_reply_is_one_line),
	};
	return cmocka_run_group_tests_name("trouble", tests, NULL, NULL);
}
