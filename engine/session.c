/*
 * session.c - one outbound SMTP connection on the io_uring loop.
 *
 * Owns: the socket, the smtp_client, one timer, the current job.
 * In flight at most: one connect, one multishot recv, one send. The
 * session is freed when `inflight` reaches 0 after close was asked
 * (counted teardown); late completions therefore never see freed memory.
 *
 * Everything protocol-related is decided by smtp_client (pure); this file
 * only moves bytes and time to it and its decisions to the scheduler.
 */
#include "session.h"
#include "job.h"
#include "loop.h"
#include "msg.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct session {
	struct io_op op_connect, op_recv, op_send;
	struct loop *loop;
	const struct session_ops *ops;
	const struct session_cfg *cfg;
	void *owner;
	struct mxset *mx;
	size_t tidx;			/* current target */
	int fd;
	unsigned inflight;		/* ops whose completion is still due */
	int recv_armed, send_armed, connecting, connected;
	int closing;			/* socket shut down; waiting for completions */
	int established;		/* greeting + EHLO done at least once */
	int quit_asked, idle, timed_out_connect;
	int switching;			/* old socket draining before the next target */
	unsigned max_msgs;		/* per connection */
	struct smtp_result local_fail;	/* socket()/bind() failed: reported from a timer */
	/* The body a send may still be reading: the session holds its own
	 * reference, so settling the job (which may free the job's body)
	 * never frees bytes the kernel has yet to copy. */
	struct msg_body *body, *body_retired;
	struct session *anext, *aprev;	/* every session, for session_abort_all */
	struct smtp_client *c;
	struct timer timer;
	struct job *job;
	char *idhdr;
	size_t idhdr_len;
	char *env_from;
	struct msghdr mh;
	struct iovec iov[3];
	struct sockaddr_in sa;		/* read by the kernel at submission, not at prep */
	char src_ip[INET6_ADDRSTRLEN];	/* configured source, "" = the default */
	char used_ip[INET6_ADDRSTRLEN];	/* the default source as connected */
	char peer[64];
	struct session *next, *prev;	/* scheduler lists */
};

static struct session *all_sessions;

static void session_step(struct session *s);
static void session_try_target(struct session *s);
static void session_maybe_free(struct session *s);

/* --- mxset --- */

struct mxset *
mxset_from_dns(const struct dns_result *r)
{
	struct mxset *m = xmalloc(sizeof *m + r->ntargets * sizeof m->t[0]);

	m->refs = 1;
	m->n = r->ntargets;
	memcpy(m->t, r->targets, r->ntargets * sizeof m->t[0]);
	return m;
}

struct mxset *
mxset_ref(struct mxset *m)
{
	m->refs++;
	return m;
}

void
mxset_unref(struct mxset *m)
{
	if (m && --m->refs == 0)
		free(m);
}

/* --- accessors --- */

void *session_owner(const struct session *s) { return s->owner; }
const char *session_src_ip(const struct session *s) { return s->src_ip; }
const char *session_local_ip(const struct session *s) { return s->src_ip[0] ? s->src_ip : s->used_ip; }
const char *session_peer(const struct session *s) { return s->peer; }
int session_is_idle(const struct session *s) { return s->idle; }
int session_was_established(const struct session *s) { return s->established; }
struct session *session_list_next(const struct session *s) { return s->next; }
void session_list_set_next(struct session *s, struct session *n) { s->next = n; }
struct session *session_list_prev(const struct session *s) { return s->prev; }
void session_list_set_prev(struct session *s, struct session *p) { s->prev = p; }

const char *
session_mx(const struct session *s)
{
	return s->tidx < s->mx->n ? s->mx->t[s->tidx].host : "";
}

/* --- teardown --- */

static void
session_maybe_free(struct session *s)
{
	if (s->inflight > 0)
		return;
	if (s->switching && !s->closing) {
		/* Every completion of the old socket is in: now the next
		 * target, with a fresh client (the old one's buffers were
		 * still being sent from until now). */
		s->switching = 0;
		if (s->fd >= 0)
			close(s->fd);
		s->fd = -1;
		smtp_client_free(s->c);
		s->c = smtp_client_new(s->cfg->ehlo, s->cfg->timeouts);
		session_try_target(s);
		return;
	}
	if (!s->closing)
		return;
	timer_cancel(s->loop, &s->timer);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	if (s->aprev)
		s->aprev->anext = s->anext;
	else
		all_sessions = s->anext;
	if (s->anext)
		s->anext->aprev = s->aprev;
	s->ops->on_closed(s);
	smtp_client_free(s->c);
	if (s->body)
		msg_body_unref(s->body);
	if (s->body_retired)
		msg_body_unref(s->body_retired);
	mxset_unref(s->mx);
	free(s->idhdr);
	free(s->env_from);
	free(s);
}

/* Shut the socket so pending ops complete; free once they have. */
static void
session_close(struct session *s)
{
	if (s->closing)
		return;
	s->closing = 1;
	timer_cancel(s->loop, &s->timer);
	if (s->idle) {
		s->idle = 0;
		s->ops->on_idle(s, 0);
	}
	if (s->fd >= 0) {
		shutdown(s->fd, SHUT_RDWR);
		if (s->connecting)
			loop_cancel_op(s->loop, &s->op_connect);
	}
	session_maybe_free(s);
}

/* Drop the current socket (ops may still be in flight) before trying the
 * next target. The old fd is closed when its completions are in: we only
 * switch fds with nothing in flight. */
static void
session_drop_socket(struct session *s)
{
	timer_cancel(s->loop, &s->timer);
	if (s->fd >= 0)
		shutdown(s->fd, SHUT_RDWR);
	s->connected = 0;
	s->switching = 1;
}

/* --- results --- */

static void
fail_result(struct smtp_result *r, enum smtp_cause cause, enum smtp_stage st, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
fail_result(struct smtp_result *r, enum smtp_cause cause, enum smtp_stage st, const char *fmt, ...)
{
	va_list ap;

	memset(r, 0, sizeof *r);
	r->status = SMTP_TEMP;
	r->cause = cause;
	r->stage = st;
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof r->text, fmt, ap);
	va_end(ap);
}

static void
give_back_job(struct session *s, const struct smtp_result *r)
{
	struct job *j = s->job;

	if (j == NULL)
		return;
	s->job = NULL;
	s->ops->on_result(s, j, r);
}

/* A target failed before any transaction on it: next target, or give up. */
static void
target_failed(struct session *s, const struct smtp_result *r)
{
	log_info("session", "%s (%s): %s", s->peer, session_mx(s), r->text);
	if (s->tidx + 1 < s->mx->n && !s->quit_asked) {
		s->tidx++;
		session_drop_socket(s);
		session_maybe_free(s);
		return;
	}
	give_back_job(s, r);
	s->ops->on_site_failure(s, r);
	session_close(s);
}

/* --- I/O completions --- */

static void
on_timer(struct timer *t)
{
	struct session *s = (struct session *)((char *)t - offsetof(struct session, timer));

	if (s->closing)
		return;
	if (s->connecting) {
		s->timed_out_connect = 1;
		loop_cancel_op(s->loop, &s->op_connect);
		return;
	}
	if (s->idle) {
		session_quit(s);
		return;
	}
	smtp_client_set_now(s->c, loop_now(s->loop));
	smtp_client_timeout(s->c);
	session_step(s);
}

static void
on_connect(struct io_op *op, int res, uint32_t flags)
{
	struct session *s = (struct session *)((char *)op - offsetof(struct session, op_connect));
	struct smtp_result r;

	s->inflight--;
	s->connecting = 0;
	if (s->closing || s->switching) {
		session_maybe_free(s);
		return;
	}
	if (res < 0) {
		timer_cancel(s->loop, &s->timer);
		if (s->timed_out_connect || res == -ECANCELED)
			fail_result(&r, SMTP_CAUSE_TIMEOUT, SMTP_STAGE_CONNECT,
			    "connect to %s (%s) timed out", s->peer, session_mx(s));
		else
			fail_result(&r, SMTP_CAUSE_DISCONNECT, SMTP_STAGE_CONNECT,
			    "connect to %s (%s): %s", s->peer, session_mx(s), strerror(-res));
		s->timed_out_connect = 0;
		target_failed(s, &r);
		return;
	}
	s->connected = 1;
	s->timed_out_connect = 0;
	if (s->src_ip[0] == '\0') {
		/* The default source: events still name the address used. */
		struct sockaddr_in local;
		socklen_t ll = sizeof local;
		if (getsockname(s->fd, (struct sockaddr *)&local, &ll) == 0 &&
		    local.sin_family == AF_INET)
			inet_ntop(AF_INET, &local.sin_addr, s->used_ip, sizeof s->used_ip);
	}
	smtp_client_set_now(s->c, loop_now(s->loop));
	smtp_client_init(s->c);
	s->recv_armed = 1;
	s->inflight++;
	loop_recv_multishot(s->loop, s->fd, &s->op_recv);
	session_step(s);
}

static void
on_recv(struct io_op *op, int res, uint32_t flags)
{
	struct session *s = (struct session *)((char *)op - offsetof(struct session, op_recv));
	int more = (flags & IORING_CQE_F_MORE) != 0;

	smtp_client_set_now(s->c, loop_now(s->loop));

	if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
		unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
		if (!s->closing && !s->switching && s->connected)
			smtp_client_feed(s->c, loop_buf(s->loop, bid), (size_t)res);
		loop_buf_recycle(s->loop, bid);
	}
	if (!more) {
		s->recv_armed = 0;
		s->inflight--;
		if (!s->closing && !s->switching && s->connected) {
			if (res == -ENOBUFS || res > 0) {
				/* The shared ring ran dry (buffers come back as
				 * handlers recycle them), or the kernel ended the
				 * multishot with data (a full CQ): re-arm. */
				s->recv_armed = 1;
				s->inflight++;
				loop_recv_multishot(s->loop, s->fd, &s->op_recv);
			} else {
				smtp_client_disconnected(s->c);
			}
		}
	}
	if (s->closing || s->switching) {
		session_maybe_free(s);
		return;
	}
	session_step(s);
}

static void
on_send(struct io_op *op, int res, uint32_t flags)
{
	struct session *s = (struct session *)((char *)op - offsetof(struct session, op_send));

	smtp_client_set_now(s->c, loop_now(s->loop));
	s->send_armed = 0;
	s->inflight--;
	if (s->body_retired) {
		msg_body_unref(s->body_retired);
		s->body_retired = NULL;
	}
	if (s->closing || s->switching) {
		session_maybe_free(s);
		return;
	}
	if (res < 0)
		smtp_client_disconnected(s->c);
	else
		smtp_client_sent(s->c, (size_t)res);
	session_step(s);
}

/* --- the step: act on what the client decided --- */

static void
start_job(struct session *s, struct job *j)
{
	struct smtp_msg m;

	free(s->idhdr);
	free(s->env_from);
	if (s->body) {
		if (s->send_armed && s->body_retired == NULL)
			s->body_retired = s->body;	/* released when that send completes */
		else
			msg_body_unref(s->body);
	}
	s->body = msg_body_ref(j->body);
	s->job = j;
	s->idhdr = job_id_header(j, s->cfg->id_header, &s->idhdr_len);
	s->env_from = job_envelope_from(j, s->cfg->return_path);
	memset(&m, 0, sizeof m);
	m.from = s->env_from;
	m.to = j->rcpt;
	m.prefix = s->idhdr;
	m.prefix_len = s->idhdr_len;
	m.body = s->body;
	smtp_client_set_now(s->c, loop_now(s->loop));
	smtp_client_start(s->c, &m);
}

static void
session_step(struct session *s)
{
	struct smtp_result r;
	enum smtp_state st;

	if (s->closing || !s->connected)
		return;
again:
	while (smtp_client_take_result(s->c, &r)) {
		struct job *j = s->job;
		s->job = NULL;
		if (j != NULL)
			s->ops->on_result(s, j, &r);
	}
	st = smtp_client_state(s->c);
	if (st == SMTP_STATE_CLOSED) {
		if (!s->established && smtp_client_session_error(s->c, &r)) {
			/* Greeting or EHLO failed: this target is no good. */
			target_failed(s, &r);
			return;
		}
		if (smtp_client_session_error(s->c, &r) && s->job)
			give_back_job(s, &r);
		session_close(s);
		return;
	}
	if (st == SMTP_STATE_IDLE) {
		if (!s->established) {
			s->established = 1;
			s->ops->on_established(s);
		}
		if (s->job == NULL && !s->quit_asked && !s->idle) {
			struct job *j = NULL;
			if (smtp_client_msgs(s->c) < s->max_msgs)
				j = s->ops->next_job(s);
			if (j != NULL) {
				start_job(s, j);
				/* The client may settle a job without a byte sent
				 * (too large for SIZE, unsafe address). */
				if (smtp_client_state(s->c) == SMTP_STATE_IDLE)
					goto again;
			} else if (smtp_client_msgs(s->c) >= s->max_msgs) {
				s->quit_asked = 1;
				smtp_client_quit(s->c);
			} else {
				s->idle = 1;
				s->ops->on_idle(s, 1);
			}
		} else if (s->quit_asked && s->job == NULL && !s->idle) {
			smtp_client_quit(s->c);
		}
	}
	if (!s->send_armed) {
		int n = smtp_client_output(s->c, s->iov);
		if (n > 0) {
			memset(&s->mh, 0, sizeof s->mh);
			s->mh.msg_iov = s->iov;
			s->mh.msg_iovlen = (size_t)n;
			s->send_armed = 1;
			s->inflight++;
			loop_sendmsg(s->loop, s->fd, &s->mh, &s->op_send);
		}
	}
	if (s->idle)
		timer_set(s->loop, &s->timer, s->cfg->idle_ms, on_timer);
	else {
		uint64_t d = smtp_client_deadline(s->c);
		if (d > 0)
			timer_set(s->loop, &s->timer, d, on_timer);
		else
			timer_cancel(s->loop, &s->timer);
	}
}

void
session_give(struct session *s, struct job *j)
{
	if (!s->idle || s->job != NULL)
		panic("session_give on a busy session");
	s->idle = 0;
	s->ops->on_idle(s, 0);
	start_job(s, j);
	session_step(s);
}

void
session_quit(struct session *s)
{
	if (s->closing)
		return;
	s->quit_asked = 1;
	if (!s->connected) {
		session_close(s);
		return;
	}
	if (s->idle) {
		s->idle = 0;
		s->ops->on_idle(s, 0);
		smtp_client_set_now(s->c, loop_now(s->loop));
		smtp_client_quit(s->c);
	}
	session_step(s);
}

/* --- opening --- */

/* A socket that could not even be made (EMFILE, a pool address not on
 * this host) is reported from a timer, never from inside session_open:
 * the scheduler must not see the session fail while it is still opening
 * sessions in a loop. */
static void
on_local_fail(struct timer *t)
{
	struct session *s = (struct session *)((char *)t - offsetof(struct session, timer));

	give_back_job(s, &s->local_fail);
	s->ops->on_site_failure(s, &s->local_fail);
	session_close(s);
}

static void
local_fail(struct session *s, const char *what)
{
	fail_result(&s->local_fail, SMTP_CAUSE_LOCAL, SMTP_STAGE_CONNECT, "%s: %s", what,
	    strerror(errno));
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	timer_set(s->loop, &s->timer, 0, on_local_fail);
}

static void
session_try_target(struct session *s)
{
	const struct dns_target *t = &s->mx->t[s->tidx];
	struct sockaddr_in *sa = &s->sa;
	int one = 1;
	char ip[INET_ADDRSTRLEN];

	*sa = t->addr;
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)s->cfg->port);
	inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
	snprintf(s->peer, sizeof s->peer, "%s:%d", ip, s->cfg->port);

	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		local_fail(s, "socket");
		return;
	}
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (s->src_ip[0]) {
		struct sockaddr_in src;
		memset(&src, 0, sizeof src);
		src.sin_family = AF_INET;
		int bad = inet_pton(AF_INET, s->src_ip, &src.sin_addr) != 1;
		if (bad)
			errno = EINVAL;
		if (bad ||
		    setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0 ||
		    bind(s->fd, (struct sockaddr *)&src, sizeof src) != 0) {
			char what[96];
			snprintf(what, sizeof what, "bind to source %s", s->src_ip);
			local_fail(s, what);
			return;
		}
	}
	log_debug("session", "connecting to %s (%s, pref %d) from %s", s->peer, t->host,
	    t->pref, s->src_ip[0] ? s->src_ip : "default source");
	s->connecting = 1;
	s->inflight++;
	loop_connect(s->loop, s->fd, (struct sockaddr *)sa, sizeof *sa, &s->op_connect);
	timer_set(s->loop, &s->timer, s->cfg->connect_ms, on_timer);
}

struct session *
session_open(struct loop *l, const struct session_ops *ops, const struct session_cfg *cfg,
    struct mxset *mx, const char *src_ip, unsigned max_msgs, void *owner)
{
	struct session *s = xcalloc(1, sizeof *s);

	s->max_msgs = max_msgs ? max_msgs : cfg->max_msgs;

	s->loop = l;
	s->ops = ops;
	s->cfg = cfg;
	s->owner = owner;
	s->mx = mxset_ref(mx);
	s->fd = -1;
	s->op_connect.cb = on_connect;
	s->op_recv.cb = on_recv;
	s->op_send.cb = on_send;
	s->c = smtp_client_new(cfg->ehlo, cfg->timeouts);
	s->anext = all_sessions;
	if (all_sessions)
		all_sessions->aprev = s;
	all_sessions = s;
	if (src_ip)
		snprintf(s->src_ip, sizeof s->src_ip, "%s", src_ip);
	session_try_target(s);
	return s;
}

/*
 * session_abort_all - the engine is stopping and cannot wait any longer:
 * every session gives its job back (TEMP, "engine stopped"; the scheduler
 * defers it) and closes now. Completions still arrive; the sessions are
 * freed, and on_closed called, as they do.
 */
void
session_abort_all(void)
{
	struct session *s, *next;
	struct smtp_result r;

	for (s = all_sessions; s; s = next) {
		next = s->anext;
		if (s->closing)
			continue;
		fail_result(&r, SMTP_CAUSE_DISCONNECT, SMTP_STAGE_CONNECT,
		    "engine stopped during the transaction (%s); not known whether the "
		    "server accepted it", s->peer);
		give_back_job(s, &r);
		session_close(s);
	}
}
