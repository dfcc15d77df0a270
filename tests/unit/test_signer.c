/*
 * test_signer.c - the DKIM signing worker pool (signer.h): many requests
 * on several threads give exactly the signatures dkim_sign_message()
 * makes on the loop thread; body hashes come back to the body; a
 * cancelled request never calls back; a full queue refuses; quiesce
 * waits for the workers; freeing with requests in flight drops them and
 * every body reference; a reload (signer_rekey) with requests in flight
 * waits for nothing, and the old configuration's signers may be freed at
 * once: requests in flight sign with their own copy, the next ones with
 * the new configuration's, even when it sits at the old one's address. Run it under ASan and TSan (see docs/testing.md).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dkim.h"
#include "loop.h"
#include "msg.h"
#include "signer.h"
#include "util.h"
#include "testkey.h"

static const char ed_seed[] = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";

static const char message[] =
    "From: News <news@example.com>\r\n"
    "To: someone@example.net\r\n"
    "Subject: the weekly letter\r\n"
    "\r\n"
    "Hello,\r\n"
    ".a line that starts with a dot\r\n"
    "\r\n"
    "bye\r\n";

#define NREQ	300
#define NOW	1700000000

static struct loop *L;
static struct dkim_key *rsa, *ed;
static struct dkim_signer sg;

struct result {
	int calls;
	enum dkim_status st;
	char *sig;
	size_t siglen;
};

static struct result results[NREQ];
static size_t ndone;

static void
on_done(void *arg, enum dkim_status st, char *sig, size_t siglen)
{
	struct result *r = arg;

	r->calls++;
	r->st = st;
	r->sig = sig;
	r->siglen = siglen;
	ndone++;
}

static int
setup(void **state)
{
	char err[300];

	(void)state;
	L = loop_new(64, 64, 4096);
	rsa = dkim_key_parse(rsa_pem, strlen(rsa_pem), DKIM_RSA_SHA256, err, sizeof err);
	ed = dkim_key_parse(ed_seed, strlen(ed_seed), DKIM_ALG_NONE, err, sizeof err);
	if (rsa == NULL || ed == NULL)
		fail_msg("keys: %s", err);
	memset(&sg, 0, sizeof sg);
	sg.domain = "example.com";
	sg.keys[0].selector = "rsa1";
	sg.keys[0].key = rsa;
	sg.keys[1].selector = "ed1";
	sg.keys[1].key = ed;
	sg.nkeys = 2;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	dkim_key_free(rsa);
	dkim_key_free(ed);
	loop_free(L);
	return 0;
}

static void
reset(void)
{
	for (size_t i = 0; i < NREQ; i++)
		free(results[i].sig);
	memset(results, 0, sizeof results);
	ndone = 0;
}

/* turn the loop until ndone reaches want (or 30 s: ASan, TSan and a loaded machine) */
static void
turn_until(size_t want)
{
	uint64_t end = loop_refresh_now(L) + 30000;

	while (ndone < want && loop_refresh_now(L) < end)
		loop_turn(L, 50);
}

/* A few turns for the eventfd read's cancellation to complete. */
static void
settle(void)
{
	for (int i = 0; i < 10; i++)
		loop_turn(L, 5);
}

/* extra fields: a per-job List-Unsubscribe URL for request i */
static size_t
extra_for(size_t i, char *out, size_t len)
{
	int n = snprintf(out, len, "List-Unsubscribe: <https://example.com/u/%zu>\r\n"
	    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", i);
	return (size_t)n;
}

/* What the loop thread would have signed. */
static char *
sign_here(struct msg_body *b, const char *extra, size_t extra_len, size_t *siglen)
{
	struct dkim_request rq = { .msg = b->data, .len = b->len, .flags = DKIM_STUFFED,
	    .extra = extra, .extra_len = extra_len, .now = NOW };
	char *sig = NULL;

	assert_int_equal(dkim_sign_message(&sg, 1, &rq, &sig, siglen, NULL), DKIM_SIGNED);
	return sig;
}

static void
test_many_match_loop(void **state)
{
	struct msg_body *b = msg_body_new(message, strlen(message));
	struct signer *s = signer_new(L, 3, NREQ);
	char extra[200];

	(void)state;
	reset();
	assert_int_equal(b->dkim_bh.have, 0);
	for (size_t i = 0; i < NREQ; i++) {
		size_t n = extra_for(i, extra, sizeof extra);
		assert_non_null(signer_submit(s, &sg, 1, b, extra, n, NOW, on_done, &results[i]));
	}
	assert_int_equal(signer_pending(s), NREQ);
	turn_until(NREQ);
	assert_int_equal(ndone, NREQ);
	assert_int_equal(signer_pending(s), 0);
	for (size_t i = 0; i < NREQ; i++) {
		size_t n = extra_for(i, extra, sizeof extra), wlen;
		char *want = sign_here(b, extra, n, &wlen);

		assert_int_equal(results[i].calls, 1);
		assert_int_equal(results[i].st, DKIM_SIGNED);
		assert_int_equal(results[i].siglen, wlen);
		assert_memory_equal(results[i].sig, want, wlen);
		/* two fields: one per key, both covering this request's URL */
		assert_non_null(strstr(results[i].sig, "a=rsa-sha256"));
		assert_non_null(strstr(results[i].sig, "a=ed25519-sha256"));
		free(want);
	}
	/* the workers' body hash came back to the body (relaxed) */
	assert_true(b->dkim_bh.have & (1u << DKIM_CANON_RELAXED));
	signer_free(s);
	settle();
	assert_int_equal(b->refs, 1);	/* every request's reference dropped */
	msg_body_unref(b);
	reset();
}

/* No key for the From domain: DKIM_NO_KEY and no signature. */
static void
test_no_key(void **state)
{
	static const char other[] = "From: a@elsewhere.example\r\n\r\nhi\r\n";
	struct msg_body *b = msg_body_new(other, strlen(other));
	struct signer *s = signer_new(L, 1, 8);

	(void)state;
	reset();
	assert_non_null(signer_submit(s, &sg, 1, b, NULL, 0, NOW, on_done, &results[0]));
	turn_until(1);
	assert_int_equal(results[0].calls, 1);
	assert_int_equal(results[0].st, DKIM_NO_KEY);
	assert_null(results[0].sig);
	signer_free(s);
	settle();
	msg_body_unref(b);
}

static void
test_cancel(void **state)
{
	struct msg_body *b = msg_body_new(message, strlen(message));
	struct signer *s = signer_new(L, 2, NREQ);
	struct signer_req *r[NREQ];
	size_t want = 0;

	(void)state;
	reset();
	for (size_t i = 0; i < NREQ; i++)
		r[i] = signer_submit(s, &sg, 1, b, "X-A: b\r\n", 8, NOW, on_done, &results[i]);
	/* cancel every third: some queued, some being signed, some signed */
	for (size_t i = 0; i < NREQ; i++) {
		if (i % 3 == 0)
			signer_cancel(s, r[i]);
		else
			want++;
	}
	turn_until(want);
	for (int i = 0; i < 600 && signer_pending(s) > 0; i++)	/* the cancelled ones, silently */
		loop_turn(L, 50);
	assert_int_equal(signer_pending(s), 0);
	assert_int_equal(ndone, want);
	for (size_t i = 0; i < NREQ; i++)
		assert_int_equal(results[i].calls, i % 3 == 0 ? 0 : 1);
	signer_free(s);
	settle();
	assert_int_equal(b->refs, 1);
	msg_body_unref(b);
	reset();
}

static void
test_queue_full(void **state)
{
	struct msg_body *b = msg_body_new(message, strlen(message));
	struct signer *s = signer_new(L, 1, 4);

	(void)state;
	reset();
	for (size_t i = 0; i < 4; i++)
		assert_non_null(signer_submit(s, &sg, 1, b, NULL, 0, NOW, on_done, &results[i]));
	assert_null(signer_submit(s, &sg, 1, b, NULL, 0, NOW, on_done, &results[4]));
	/* quiesce: every request signed, none handed back yet */
	signer_quiesce(s);
	assert_int_equal(ndone, 0);
	assert_int_equal(signer_pending(s), 4);
	turn_until(4);
	assert_int_equal(ndone, 4);
	/* room again */
	assert_non_null(signer_submit(s, &sg, 1, b, NULL, 0, NOW, on_done, &results[4]));
	turn_until(5);
	assert_int_equal(results[4].calls, 1);
	signer_free(s);
	settle();
	assert_int_equal(b->refs, 1);
	msg_body_unref(b);
	reset();
}

/* Free with requests queued, being signed and signed: no callback, no leak. */
static void
test_free_in_flight(void **state)
{
	struct msg_body *b = msg_body_new(message, strlen(message));
	struct signer *s = signer_new(L, 2, NREQ);

	(void)state;
	reset();
	for (size_t i = 0; i < NREQ; i++)
		assert_non_null(signer_submit(s, &sg, 1, b, "X-A: b\r\n", 8, NOW, on_done,
		    &results[i]));
	loop_turn(L, 1);	/* maybe a few handed back */
	{
		size_t before = ndone;
		signer_free(s);
		settle();
		assert_int_equal(ndone, before);
	}
	for (size_t i = 0; i < NREQ; i++)
		assert_true(results[i].calls <= 1);
	assert_int_equal(b->refs, 1);
	msg_body_unref(b);
	reset();
}

/* A configuration's signers as config.c builds them: all on the heap. */
static struct dkim_signer *
conf_signers(const char *sel_rsa)
{
	struct dkim_signer *v = xcalloc(1, sizeof *v);

	v->domain = xstrdup("example.com");
	v->keys[0].selector = xstrdup(sel_rsa);
	v->keys[0].key = dkim_key_dup(rsa);
	v->keys[1].selector = xstrdup("ed1");
	v->keys[1].key = dkim_key_dup(ed);
	v->nkeys = 2;
	v->headers = xcalloc(3, sizeof *v->headers);
	v->headers[0] = xstrdup("from");
	v->headers[1] = xstrdup("subject");
	v->nheaders = 2;
	return v;
}

static void
conf_signers_free(struct dkim_signer *v)
{
	free(v->domain);
	for (size_t j = 0; j < v->nkeys; j++) {
		free(v->keys[j].selector);
		dkim_key_free(v->keys[j].key);
	}
	for (size_t j = 0; j < v->nheaders; j++)
		free(v->headers[j]);
	free(v->headers);
	free(v);
}

static void
test_rekey_no_wait(void **state)
{
	struct msg_body *b = msg_body_new(message, strlen(message));
	struct signer *s = signer_new(L, 2, NREQ);
	struct dkim_signer *a = conf_signers("old"), *nb;
	char extra[200];
	uint64_t t0, took;
	size_t half = NREQ / 2, in_flight;

	(void)state;
	reset();
	for (size_t i = 0; i < half; i++) {
		size_t n = extra_for(i, extra, sizeof extra);
		assert_non_null(signer_submit(s, a, 1, b, extra, n, NOW, on_done, &results[i]));
	}
	/* The reload: rekey, then the old configuration goes at once. */
	t0 = loop_refresh_now(L);
	signer_rekey(s);
	conf_signers_free(a);
	took = loop_refresh_now(L) - t0;
	in_flight = signer_pending(s);
	/* Freed memory is likely handed out again: the new array may sit
	 * where the old one was, and must still be copied afresh. */
	nb = conf_signers("new");
	for (size_t i = half; i < NREQ; i++) {
		size_t n = extra_for(i, extra, sizeof extra);
		assert_non_null(signer_submit(s, nb, 1, b, extra, n, NOW, on_done, &results[i]));
	}
	turn_until(NREQ);
	assert_int_equal(ndone, NREQ);
	/* It did not wait: 150 RSA signatures were still to do. */
	assert_true(in_flight > 0);
	assert_true(took < 100);
	for (size_t i = 0; i < NREQ; i++) {
		assert_int_equal(results[i].calls, 1);
		assert_int_equal(results[i].st, DKIM_SIGNED);
		assert_non_null(strstr(results[i].sig, i < half ? "s=old;" : "s=new;"));
		assert_null(strstr(results[i].sig, i < half ? "s=new;" : "s=old;"));
		assert_non_null(strstr(results[i].sig, "h=from:from:subject;"));	/* the copied header list */
	}
	signer_free(s);
	settle();
	conf_signers_free(nb);
	assert_int_equal(b->refs, 1);
	msg_body_unref(b);
	reset();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_match_loop),
		cmocka_unit_test(test_no_key),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_rekey_no_wait),
		cmocka_unit_test(test_queue_full),
		cmocka_unit_test(test_free_in_flight),
	};

	return cmocka_run_group_tests_name("signer", tests, setup, teardown);
}
