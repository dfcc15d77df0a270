/*
 * signer.c - the DKIM signing worker pool (signer.h).
 *
 * Three lists under one mutex: requests waiting for a worker (FIFO),
 * and results waiting for the loop. A request belongs to exactly one
 * list, or to the one worker signing it. The loop side (submit, cancel,
 * collect, free) runs on the loop thread only; it alone touches body
 * reference counts, the body's cached hashes, and the ring.
 *
 * Wake-up: a worker that adds a result to an empty result list writes 1
 * to an eventfd. The loop keeps one io_uring read of that eventfd in
 * flight (the eventfd is blocking: the ring waits for it, the loop does
 * not); its completion collects every result. A result that lands while
 * the loop is collecting finds the list non-empty and writes nothing, but
 * the loop takes the list under the mutex, so it either sees that result
 * now or the next worker's write wakes it.
 *
 * A cancelled request still passes through a worker (which skips it
 * without signing) or is dropped at signer_free(): it is freed by the
 * loop, so the body reference is always dropped on the loop thread.
 *
 * Key sets: a request signs with a struct signer_keys, the signer's own
 * deep copy of the configuration's signers (the keys themselves shared
 * through dkim_key_dup), counted by reference. The signer holds the
 * current one; each request holds one more reference, taken at submit and
 * dropped when the request is freed, both on the loop thread. A reload
 * (signer_rekey) only drops the signer's reference: requests in flight
 * finish with the old set, freed by the last of them; the next submit
 * copies the new configuration's. Nothing waits for a worker.
 */
#include "signer.h"
#include "loop.h"
#include "msg.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* A refcounted copy of a configuration's signers (loop thread only). */
struct signer_keys {
	unsigned refs;
	struct dkim_signer *v;
	size_t n;
};

struct signer_req {
	struct signer_req *next;
	/* input: owned copies, plus a body reference taken on the loop */
	struct signer_keys *keys;	/* a reference: v points into it */
	const struct dkim_signer *v;
	size_t n;
	struct msg_body *body;
	char *extra;
	size_t extra_len;
	time_t now;
	struct dkim_body_hashes bh;	/* the body's at submit; filled by the worker */
	signer_done_fn done;
	void *arg;
	int cancelled;			/* under the mutex */
	/* output, written by the worker before it hands the request back */
	enum dkim_status st;
	char *sig;
	size_t siglen;
};

struct signer {
	struct loop *loop;
	pthread_mutex_t mu;
	pthread_cond_t work;		/* a request was queued, or stop */
	pthread_cond_t idle;		/* busy reached 0 */
	struct signer_req *head, *tail;	/* waiting for a worker */
	struct signer_req *done;	/* waiting for the loop (LIFO; order does not matter) */
	size_t busy;			/* queued or being signed */
	int stop;
	pthread_t *threads;
	unsigned nthreads;
	/* loop side */
	size_t outstanding;		/* submitted, not yet collected or dropped */
	size_t max_queue;
	int efd;
	uint64_t efd_buf;
	struct io_op op;
	int armed;			/* the eventfd read is in flight */
	int dead;			/* signer_free() ran: free on the read's completion */
	struct signer_keys *keys;	/* the current key set (a reference), or NULL */
	const struct dkim_signer *keys_src;	/* the array it was copied from */
	size_t keys_n;
};

/* keys_copy - a key set holding its own copy of v[0..n) (refs 1). */
static struct signer_keys *
keys_copy(const struct dkim_signer *v, size_t n)
{
	struct signer_keys *k = xcalloc(1, sizeof *k);

	k->refs = 1;
	k->n = n;
	k->v = xcalloc(n ? n : 1, sizeof *k->v);
	for (size_t i = 0; i < n; i++) {
		struct dkim_signer *d = &k->v[i];

		*d = v[i];
		d->domain = xstrdup(v[i].domain);
		for (size_t j = 0; j < v[i].nkeys; j++) {
			d->keys[j].selector = xstrdup(v[i].keys[j].selector);
			d->keys[j].key = dkim_key_dup(v[i].keys[j].key);
		}
		if (v[i].headers != NULL) {
			d->headers = xcalloc(v[i].nheaders + 1, sizeof *d->headers);
			for (size_t j = 0; j < v[i].nheaders; j++)
				d->headers[j] = xstrdup(v[i].headers[j]);
		}
	}
	return k;
}

static void
keys_unref(struct signer_keys *k)
{
	if (k == NULL || --k->refs > 0)
		return;
	for (size_t i = 0; i < k->n; i++) {
		struct dkim_signer *d = &k->v[i];

		free(d->domain);
		for (size_t j = 0; j < d->nkeys; j++) {
			free(d->keys[j].selector);
			dkim_key_free(d->keys[j].key);
		}
		for (size_t j = 0; d->headers != NULL && j < d->nheaders; j++)
			free(d->headers[j]);
		free(d->headers);
	}
	free(k->v);
	free(k);
}

static void
req_free(struct signer_req *r)
{
	keys_unref(r->keys);
	msg_body_unref(r->body);
	free(r->extra);
	free(r->sig);
	free(r);
}

/* worker - take requests until stop; sign those not cancelled. */
static void *
worker(void *arg)
{
	struct signer *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		struct signer_req *r;
		int wake;

		while (!s->stop && s->head == NULL)
			pthread_cond_wait(&s->work, &s->mu);
		if (s->stop)
			break;
		r = s->head;
		s->head = r->next;
		if (s->head == NULL)
			s->tail = NULL;
		r->next = NULL;
		if (!r->cancelled) {
			struct dkim_request rq = { .msg = r->body->data, .len = r->body->len,
			    .flags = DKIM_STUFFED, .extra = r->extra, .extra_len = r->extra_len,
			    .bh = &r->bh, .now = r->now };

			pthread_mutex_unlock(&s->mu);
			r->st = dkim_sign_message(r->v, r->n, &rq, &r->sig, &r->siglen, NULL);
			pthread_mutex_lock(&s->mu);
		}
		wake = s->done == NULL;
		r->next = s->done;
		s->done = r;
		if (--s->busy == 0)
			pthread_cond_broadcast(&s->idle);
		if (wake) {
			uint64_t one = 1;
			/* Cannot block (the counter never nears its limit);
			 * a failure would mean a closed fd: a bug. */
			if (write(s->efd, &one, sizeof one) != (ssize_t)sizeof one)
				panic("signer: eventfd write: %s", strerror(errno));
		}
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static void on_wake(struct io_op *op, int res, uint32_t flags);

static void
arm(struct signer *s)
{
	struct io_uring_sqe *sqe = loop_sqe(s->loop);

	io_uring_prep_read(sqe, s->efd, &s->efd_buf, sizeof s->efd_buf, 0);
	io_uring_sqe_set_data(sqe, &s->op);
	s->armed = 1;
}

/* merge_hashes - the body hashes a worker computed, kept with the body. */
static void
merge_hashes(struct dkim_body_hashes *into, const struct dkim_body_hashes *from)
{
	for (unsigned c = 0; c < 2; c++) {
		if ((from->have & (1u << c)) && !(into->have & (1u << c))) {
			memcpy(into->bh[c], from->bh[c], DKIM_BH_SIZE);
			into->have |= 1u << c;
		}
	}
}

/* collect - hand every finished request to its done(), on the loop. */
static void
collect(struct signer *s)
{
	struct signer_req *r, *next;

	pthread_mutex_lock(&s->mu);
	r = s->done;
	s->done = NULL;
	pthread_mutex_unlock(&s->mu);
	for (; r; r = next) {
		int cancelled;

		next = r->next;
		pthread_mutex_lock(&s->mu);
		cancelled = r->cancelled;	/* only the loop sets it: read for form's sake */
		pthread_mutex_unlock(&s->mu);
		s->outstanding--;
		if (!cancelled) {
			char *sig = NULL;
			size_t siglen = 0;

			if (r->st == DKIM_SIGNED) {
				sig = r->sig;
				siglen = r->siglen;
				r->sig = NULL;
			}
			merge_hashes(&r->body->dkim_bh, &r->bh);
			r->done(r->arg, r->st, sig, siglen);
		}
		req_free(r);
	}
}

static void
on_wake(struct io_op *op, int res, uint32_t flags)
{
	struct signer *s = (struct signer *)(void *)((char *)op - offsetof(struct signer, op));

	(void)flags;
	s->armed = 0;
	if (s->dead) {
		close(s->efd);
		free(s);
		return;
	}
	if (res < 0 && res != -EINTR && res != -EAGAIN && res != -ECANCELED)
		panic("signer: eventfd read: %s", strerror(-res));
	collect(s);
	arm(s);
}

struct signer *
signer_new(struct loop *l, unsigned nthreads, unsigned max_queue)
{
	struct signer *s = xcalloc(1, sizeof *s);
	int e;

	if (nthreads < 1)
		nthreads = 1;
	s->loop = l;
	s->max_queue = max_queue ? max_queue : 1;
	s->op.cb = on_wake;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->work, NULL);
	pthread_cond_init(&s->idle, NULL);
	/* Blocking: the ring's read waits for a write. */
	s->efd = eventfd(0, EFD_CLOEXEC);
	if (s->efd < 0)
		fatal("signer: eventfd: %s", strerror(errno));
	s->threads = xcalloc(nthreads, sizeof *s->threads);
	for (unsigned i = 0; i < nthreads; i++) {
		if ((e = pthread_create(&s->threads[i], NULL, worker, s)) != 0)
			fatal("signer: cannot start a signing thread: %s", strerror(e));
		s->nthreads++;
	}
	arm(s);
	return s;
}

struct signer_req *
signer_submit(struct signer *s, const struct dkim_signer *v, size_t n, struct msg_body *b,
    const char *extra, size_t extra_len, time_t now, signer_done_fn done, void *arg)
{
	struct signer_req *r;

	if (s->outstanding >= s->max_queue)
		return NULL;
	if (s->keys == NULL || s->keys_src != v || s->keys_n != n) {
		keys_unref(s->keys);
		s->keys = keys_copy(v, n);
		s->keys_src = v;
		s->keys_n = n;
	}
	r = xcalloc(1, sizeof *r);
	r->keys = s->keys;
	r->keys->refs++;
	r->v = r->keys->v;
	r->n = n;
	r->body = msg_body_ref(b);
	if (extra_len > 0) {
		r->extra = xmalloc(extra_len);
		memcpy(r->extra, extra, extra_len);
		r->extra_len = extra_len;
	}
	r->now = now;
	r->bh = b->dkim_bh;
	r->done = done;
	r->arg = arg;
	s->outstanding++;
	pthread_mutex_lock(&s->mu);
	if (s->tail)
		s->tail->next = r;
	else
		s->head = r;
	s->tail = r;
	s->busy++;
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&s->mu);
	return r;
}

void
signer_cancel(struct signer *s, struct signer_req *r)
{
	pthread_mutex_lock(&s->mu);
	r->cancelled = 1;
	pthread_mutex_unlock(&s->mu);
}

void
signer_rekey(struct signer *s)
{
	keys_unref(s->keys);
	s->keys = NULL;
	s->keys_src = NULL;
	s->keys_n = 0;
}

void
signer_quiesce(struct signer *s)
{
	pthread_mutex_lock(&s->mu);
	while (s->busy > 0)
		pthread_cond_wait(&s->idle, &s->mu);
	pthread_mutex_unlock(&s->mu);
}

size_t signer_pending(const struct signer *s) { return s->outstanding; }

size_t
signer_to_sign(struct signer *s)
{
	size_t n;

	pthread_mutex_lock(&s->mu);
	n = s->busy;
	pthread_mutex_unlock(&s->mu);
	return n;
}
unsigned signer_threads(const struct signer *s) { return s->nthreads; }

void
signer_free(struct signer *s)
{
	struct signer_req *r, *next;

	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	pthread_cond_broadcast(&s->work);
	pthread_mutex_unlock(&s->mu);
	for (unsigned i = 0; i < s->nthreads; i++)
		pthread_join(s->threads[i], NULL);
	free(s->threads);
	/* Workers are gone: whatever is left is the loop's alone. */
	for (r = s->head; r; r = next) {
		next = r->next;
		req_free(r);
	}
	for (r = s->done; r; r = next) {
		next = r->next;
		req_free(r);
	}
	signer_rekey(s);	/* the last key set goes with the last request */
	pthread_cond_destroy(&s->work);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->mu);
	if (s->armed) {
		s->dead = 1;
		loop_cancel_op(s->loop, &s->op);
		return;
	}
	close(s->efd);
	free(s);
}
