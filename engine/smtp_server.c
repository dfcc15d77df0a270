/*
 * smtp_server.c - the pure SMTP server protocol core: command parsing, state
 * transitions, the replies that need no policy, DATA dot-unstuffing and end
 * detection, line and size limits. See smtp_server.h for the model.
 *
 * Invariants: at most one decision is pending; while it is, feed() uses no
 * input. Every string kept (helo, paths, params) is bounded and free of
 * control characters that could break a log line or a reply.
 */
#include "smtp_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { D_BOL = 0, D_MID, D_DOT, D_DOTCR };

static const char *const event_names[] = {
	"none", "reply", "helo", "mail", "rcpt", "data", "dot", "rset", "quit", "starttls",
	"auth",
};

/* What an AUTH exchange waits for (auth_step). */
enum { A_NONE = 0, A_PLAIN, A_LOGIN_USER, A_LOGIN_PASS };

const char *
smtp_server_event_name(enum smtp_srv_event ev)
{
	if ((unsigned)ev >= sizeof event_names / sizeof event_names[0])
		return "?";
	return event_names[ev];
}

void
smtp_server_init(struct smtp_server *s, const struct smtp_server_conf *c)
{
	memset(s, 0, sizeof *s);
	s->conf = *c;
	if (s->conf.hostname == NULL)
		s->conf.hostname = "localhost";
	if (s->conf.max_line == 0 || s->conf.max_line > SMTP_SERVER_LINE_MAX)
		s->conf.max_line = SMTP_SERVER_LINE_MAX;
	if (s->conf.max_rcpts == 0)
		s->conf.max_rcpts = 1000;
}

void
smtp_server_reset(struct smtp_server *s)
{
	free(s->from);
	s->from = NULL;
	free(s->mail_params);
	s->mail_params = NULL;
	for (size_t i = 0; i < s->nrcpt; i++)
		free(s->rcpts[i]);
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpt = s->rcap = 0;
	free(s->rcpt);
	s->rcpt = NULL;
	s->size_declared = 0;
	s->bytes = 0;
	s->too_big = 0;
	s->bdat = 0;
	buf_free(&s->body);
}

/* Free a secret after wiping it. */
static void
wipe_free(char **p)
{
	if (*p != NULL) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

/* auth_forget - end any AUTH exchange; keep the identity only if authed. */
static void
auth_forget(struct smtp_server *s, int identity_too)
{
	wipe_free(&s->auth_pass);
	if (identity_too || !s->authed) {
		wipe_free(&s->auth_user);
		s->authed = 0;
	}
	s->auth_step = A_NONE;
	s->auth_mech = NULL;
	if (s->state == SMTP_SRV_ST_AUTH)
		s->state = SMTP_SRV_ST_CMD;
}

void
smtp_server_free(struct smtp_server *s)
{
	auth_forget(s, 1);
	smtp_server_reset(s);
	free(s->helo);
	s->helo = NULL;
	buf_free(&s->reply);
}

/* --- replies --- */

static void
set_reply(struct smtp_server *s, const char *text)
{
	s->reply.len = 0;
	buf_append(&s->reply, text, strlen(text));
	buf_append(&s->reply, "\r\n", 2);
}

static enum smtp_srv_event
core_reply(struct smtp_server *s, const char *text)
{
	set_reply(s, text);
	return SMTP_SRV_REPLY;
}

static enum smtp_srv_event
decision(struct smtp_server *s, enum smtp_srv_event ev, const char *text)
{
	if (text != NULL)
		set_reply(s, text);
	s->pending = ev;
	return ev;
}

/* --- commands --- */

/*
 * parse_path - "<addr> params" after "FROM:"/"TO:": *addr malloc'd, *params
 * points after the path. A bare address is tolerated, a source route
 * "@a,@b:user@dom" dropped (RFC 5321 4.1.2). -1 on bad syntax.
 */
static int
parse_path(const char *p, char **addr, const char **params)
{
	const char *e;
	size_t n;

	while (*p == ' ')
		p++;
	if (*p != '<') {
		e = p + strcspn(p, " ");
		if (e == p)
			return -1;
		n = (size_t)(e - p);
	} else {
		p++;
		e = strchr(p, '>');
		if (e == NULL)
			return -1;
		n = (size_t)(e - p);
		e++;
	}
	if (n > SMTP_SERVER_PATH_MAX)
		return -1;
	if (n > 0 && p[0] == '@') {
		const char *c = memchr(p, ':', n);
		if (c == NULL)
			return -1;
		n -= (size_t)(c + 1 - p);
		p = c + 1;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f || p[i] == '<' || p[i] == '>' ||
		    p[i] == ' ')
			return -1;
	*addr = xstrndup(p, n);
	*params = e;
	return 0;
}

/* A printable copy of at most max bytes of s (controls become '?'). */
static char *
clean_copy(const char *s, size_t max)
{
	char *c = xstrndup(s, strnlen(s, max));

	for (char *p = c; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return c;
}

static enum smtp_srv_event
cmd_helo(struct smtp_server *s, const char *arg, int esmtp)
{
	while (*arg == ' ')
		arg++;
	if (*arg == '\0')
		return core_reply(s, esmtp ? "501 5.5.4 Syntax: EHLO hostname" :
		    "501 5.5.4 Syntax: HELO hostname");
	smtp_server_reset(s);
	free(s->helo);
	s->helo = clean_copy(arg, 255);
	s->esmtp = esmtp;
	s->reply.len = 0;
	if (esmtp) {
		buf_appendf(&s->reply, "250-%s\r\n250-PIPELINING\r\n250-SIZE %llu\r\n",
		    s->conf.hostname, (unsigned long long)s->conf.max_size);
		if (s->conf.starttls && !s->tls_on)
			buf_appendf(&s->reply, "250-STARTTLS\r\n");
		if (s->conf.auth && (s->tls_on || s->conf.auth_clear))
			buf_appendf(&s->reply, "250-AUTH PLAIN LOGIN\r\n");
		if (s->conf.chunking)
			buf_appendf(&s->reply, "250-CHUNKING\r\n");
		buf_appendf(&s->reply, "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
	} else
		buf_appendf(&s->reply, "250 %s\r\n", s->conf.hostname);
	return decision(s, SMTP_SRV_HELO, NULL);
}

static enum smtp_srv_event
cmd_mail(struct smtp_server *s, const char *arg)
{
	const char *params;
	char *addr = NULL;
	uint64_t declared = 0;

	if (s->helo == NULL)
		return core_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
	if (s->from != NULL)
		return core_reply(s, "503 5.5.1 Error: nested MAIL command");
	if (strncasecmp(arg, "FROM:", 5) != 0 || parse_path(arg + 5, &addr, &params) != 0)
		return core_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
	for (const char *p = params; (p = strcasestr(p, "SIZE=")) != NULL; p += 5)
		if (p == params || p[-1] == ' ') {
			char *end;
			unsigned long long v = strtoull(p + 5, &end, 10);
			if (end == p + 5) {
				free(addr);
				return core_reply(s, "501 5.5.4 Syntax: SIZE=number");
			}
			if (v > s->conf.max_size) {
				free(addr);
				return core_reply(s, "552 5.3.4 Message size exceeds fixed limit");
			}
			declared = v;
		}
	s->from = addr;
	s->size_declared = declared;
	while (*params == ' ')
		params++;
	if (*params)
		s->mail_params = clean_copy(params, 256);
	return decision(s, SMTP_SRV_MAIL, "250 2.1.0 Ok");
}

static enum smtp_srv_event
cmd_rcpt(struct smtp_server *s, const char *arg)
{
	const char *params;
	char *addr = NULL;

	if (s->from == NULL)
		return core_reply(s, "503 5.5.1 Error: need MAIL command");
	if (s->nrcpt >= s->conf.max_rcpts)
		return core_reply(s, "452 4.5.3 Error: too many recipients");
	if (strncasecmp(arg, "TO:", 3) != 0 || parse_path(arg + 3, &addr, &params) != 0 ||
	    addr[0] == '\0') {
		free(addr);
		return core_reply(s, "501 5.1.3 Bad recipient address syntax");
	}
	free(s->rcpt);
	s->rcpt = addr;
	return decision(s, SMTP_SRV_RCPT, "250 2.1.5 Ok");
}

static enum smtp_srv_event
cmd_data(struct smtp_server *s, const char *arg)
{
	if (s->from == NULL)
		return core_reply(s, "503 5.5.1 Error: need MAIL command");
	if (s->nrcpt == 0)
		return core_reply(s, "554 5.5.1 Error: no valid recipients");
	if (s->bdat)
		return core_reply(s, "503 5.5.1 Error: BDAT and DATA cannot be mixed");
	if (*arg != '\0')
		return core_reply(s, "501 5.5.4 Syntax: DATA");
	return decision(s, SMTP_SRV_DATA, "354 End data with <CR><LF>.<CR><LF>");
}

static enum smtp_srv_event
cmd_starttls(struct smtp_server *s, const char *arg)
{
	if (!s->conf.starttls)
		return core_reply(s, "502 5.5.1 Error: command not implemented");
	if (s->tls_on)
		return core_reply(s, "554 5.5.1 Error: TLS already active");
	if (*arg)
		return core_reply(s, "501 5.5.4 Syntax: STARTTLS");
	return decision(s, SMTP_SRV_STARTTLS, "220 2.0.0 Ready to start TLS");
}

/* --- AUTH --- */

static int
b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * b64_decode - strict base64 (RFC 4648: padded, no white space) of the
 * NUL-terminated in into out (room for strlen(in) / 4 * 3 bytes). "=" alone
 * is the empty response (RFC 4954). Returns the length, or -1.
 */
static long
b64_decode(const char *in, unsigned char *out)
{
	size_t n = strlen(in), o = 0;

	if (n == 1 && in[0] == '=')
		return 0;
	if (n == 0 || n % 4 != 0)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		int pad = 0;

		for (int k = 0; k < 4; k++) {
			if (in[i + k] == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad || (v[k] = b64_val((unsigned char)in[i + k])) < 0)
				return -1;
		}
		out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[o++] = (unsigned char)((v[1] & 0xf) << 4 | v[2] >> 2);
		if (pad < 1)
			out[o++] = (unsigned char)((v[2] & 0x3) << 6 | v[3]);
	}
	return (long)o;
}

/* A user name or password from n decoded bytes: NULL if empty, too long,
 * holding a NUL or (a user name) any control byte. */
static char *
auth_field(const unsigned char *p, size_t n, int is_user)
{
	if (n == 0 || n > SMTP_SERVER_AUTH_MAX)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\0' || (is_user && (p[i] < 0x20 || p[i] == 0x7f)))
			return NULL;
	return xstrndup((const char *)p, n);
}

static enum smtp_srv_event
auth_fail(struct smtp_server *s, const char *text)
{
	auth_forget(s, 0);
	return core_reply(s, text);
}

#define AUTH_UNDECODABLE "501 5.5.2 Cannot decode response"

/*
 * auth_response - one response of the exchange (the initial response of
 * the AUTH command, or a line after a 334). line is wiped by the caller.
 */
static enum smtp_srv_event
auth_response(struct smtp_server *s, const char *line)
{
	unsigned char dec[SMTP_SERVER_LINE_MAX / 4 * 3 + 3];
	long n;

	if (strcmp(line, "*") == 0)
		return auth_fail(s, "501 5.7.0 Authentication aborted");
	n = b64_decode(line, dec);
	if (n < 0)
		return auth_fail(s, AUTH_UNDECODABLE);
	switch (s->auth_step) {
	case A_PLAIN: {
		/* authzid NUL authcid NUL passwd (RFC 4616) */
		unsigned char *z1 = memchr(dec, '\0', (size_t)n), *z2;
		size_t zl, ul;

		z2 = z1 ? memchr(z1 + 1, '\0', (size_t)(dec + n - (z1 + 1))) : NULL;
		if (z2 == NULL) {
			explicit_bzero(dec, (size_t)n);
			return auth_fail(s, AUTH_UNDECODABLE);
		}
		zl = (size_t)(z1 - dec);
		ul = (size_t)(z2 - (z1 + 1));
		s->auth_user = auth_field(z1 + 1, ul, 1);
		s->auth_pass = auth_field(z2 + 1, (size_t)(dec + n - (z2 + 1)), 0);
		if (s->auth_user != NULL && zl > 0 && (zl != ul || memcmp(dec, z1 + 1, ul) != 0)) {
			explicit_bzero(dec, (size_t)n);
			return auth_fail(s, "535 5.7.8 Error: authentication failed: "
			    "authorization identity not permitted");
		}
		explicit_bzero(dec, (size_t)n);
		if (s->auth_user == NULL || s->auth_pass == NULL)
			return auth_fail(s, AUTH_UNDECODABLE);
		break;
	}
	case A_LOGIN_USER:
		s->auth_user = auth_field(dec, (size_t)n, 1);
		explicit_bzero(dec, (size_t)n);
		if (s->auth_user == NULL)
			return auth_fail(s, AUTH_UNDECODABLE);
		s->auth_step = A_LOGIN_PASS;
		s->state = SMTP_SRV_ST_AUTH;
		return core_reply(s, "334 UGFzc3dvcmQ6");	/* "Password:" */
	case A_LOGIN_PASS:
		s->auth_pass = auth_field(dec, (size_t)n, 0);
		explicit_bzero(dec, (size_t)n);
		if (s->auth_pass == NULL)
			return auth_fail(s, AUTH_UNDECODABLE);
		break;
	default:
		return auth_fail(s, "503 5.5.1 Error: no AUTH in progress");
	}
	s->auth_step = A_NONE;
	s->state = SMTP_SRV_ST_CMD;
	return decision(s, SMTP_SRV_AUTH,
	    "535 5.7.8 Error: authentication failed: authentication failure");
}

static enum smtp_srv_event
cmd_auth(struct smtp_server *s, char *arg)
{
	char *ir;

	if (!s->conf.auth)
		return core_reply(s, "503 5.5.1 Error: authentication not enabled");
	if (s->helo == NULL || !s->esmtp)
		return core_reply(s, "503 5.5.1 Error: send EHLO first");
	if (!s->tls_on && !s->conf.auth_clear)
		return core_reply(s, "538 5.7.11 Encryption required for requested "
		    "authentication mechanism");
	if (s->authed)
		return core_reply(s, "503 5.5.1 Error: already authenticated");
	if (s->from != NULL)
		return core_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
	ir = arg + strcspn(arg, " ");
	if (*ir == ' ')
		*ir++ = '\0';
	if (strchr(ir, ' ') != NULL)
		return core_reply(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
	if (strcasecmp(arg, "PLAIN") == 0) {
		s->auth_mech = "PLAIN";
		s->auth_step = A_PLAIN;
	} else if (strcasecmp(arg, "LOGIN") == 0) {
		s->auth_mech = "LOGIN";
		s->auth_step = A_LOGIN_USER;
	} else if (*arg == '\0')
		return core_reply(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
	else
		return core_reply(s, "504 5.5.4 Unrecognized authentication type");
	if (*ir != '\0')
		return auth_response(s, ir);
	s->state = SMTP_SRV_ST_AUTH;
	return core_reply(s, s->auth_step == A_PLAIN ? "334 " : "334 VXNlcm5hbWU6");
}

static enum smtp_srv_event bdat_end(struct smtp_server *s);

/*
 * cmd_bdat - "BDAT n [LAST]": the next n bytes are the chunk. Returns
 * NONE while they are to be read (state ST_BDAT), or the chunk's event
 * at once when n is 0.
 */
static enum smtp_srv_event
cmd_bdat(struct smtp_server *s, const char *arg)
{
	uint64_t n = 0;
	const char *p = arg;

	if (*p < '0' || *p > '9')
		return core_reply(s, "501 5.5.4 Syntax: BDAT chunk-size [LAST]");
	for (; *p >= '0' && *p <= '9'; p++) {
		if (n > (UINT64_MAX - 9) / 10)
			return core_reply(s, "501 5.5.4 Syntax: BDAT chunk-size [LAST]");
		n = n * 10 + (uint64_t)(*p - '0');
	}
	s->bdat_last = 0;
	if (*p == ' ' && strcasecmp(p + 1, "LAST") == 0)
		s->bdat_last = 1;
	else if (*p != '\0')
		return core_reply(s, "501 5.5.4 Syntax: BDAT chunk-size [LAST]");
	s->bdat_err = NULL;
	if (s->from == NULL)
		s->bdat_err = "503 5.5.1 Error: need MAIL command";
	else if (s->nrcpt == 0)
		s->bdat_err = "554 5.5.1 Error: no valid recipients";
	else if (!s->bdat) {
		/* the transaction's first chunk: a new message */
		s->bdat = 1;
		s->bytes = 0;
		s->too_big = 0;
		buf_free(&s->body);
	}
	s->bdat_left = n;
	s->state = SMTP_SRV_ST_BDAT;
	if (n == 0)
		return bdat_end(s);
	return SMTP_SRV_NONE;
}

/* command - one command line (NUL-terminated, no CRLF). */
static enum smtp_srv_event
command(struct smtp_server *s, char *line)
{
	char *arg = line + strcspn(line, " ");
	size_t vl = (size_t)(arg - line);

	if (*arg == ' ')
		*arg++ = '\0';
#define IS(v) (vl == sizeof(v) - 1 && strncasecmp(line, v, vl) == 0)
	if (IS("EHLO"))
		return cmd_helo(s, arg, 1);
	if (IS("HELO"))
		return cmd_helo(s, arg, 0);
	if (IS("MAIL"))
		return cmd_mail(s, arg);
	if (IS("RCPT"))
		return cmd_rcpt(s, arg);
	if (IS("DATA"))
		return cmd_data(s, arg);
	if (IS("RSET")) {
		smtp_server_reset(s);
		return decision(s, SMTP_SRV_RSET, "250 2.0.0 Ok");
	}
	if (IS("NOOP"))
		return core_reply(s, "250 2.0.0 Ok");
	if (IS("QUIT"))
		return decision(s, SMTP_SRV_QUIT, "221 2.0.0 Bye");
	if (IS("STARTTLS"))
		return cmd_starttls(s, arg);
	if (IS("VRFY"))
		return core_reply(s, "252 2.0.0 Send some mail, I'll try my best");
	if (IS("HELP"))
		return core_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT STARTTLS");
	if (IS("AUTH"))
		return cmd_auth(s, arg);
	if (IS("BDAT")) {
		if (!s->conf.chunking)
			return core_reply(s, "502 5.5.1 Error: command not implemented");
		return cmd_bdat(s, arg);
	}
#undef IS
	return core_reply(s, "502 5.5.2 Error: command not recognized");
}

/* --- DATA --- */

static void
body_add(struct smtp_server *s, const char *p, size_t n)
{
	s->bytes += n;
	if (s->bytes > s->conf.max_size) {
		if (!s->too_big)
			buf_free(&s->body);
		s->too_big = 1;
	} else if (s->conf.keep_body)
		buf_append(&s->body, p, n);
}

static enum smtp_srv_event
data_end(struct smtp_server *s)
{
	s->state = SMTP_SRV_ST_CMD;
	return decision(s, SMTP_SRV_DOT, s->too_big ?
	    "552 5.3.4 Message size exceeds fixed limit" : "250 2.0.0 Ok");
}

/*
 * data_feed - message bytes: undo dot-stuffing and find the end. Returns
 * the bytes used, up to and including the terminating line (then *ev is
 * DOT), else all of them.
 */
static size_t
data_feed(struct smtp_server *s, const char *p, size_t n, enum smtp_srv_event *ev)
{
	size_t i = 0;

	while (i < n) {
		switch (s->dstate) {
		case D_MID: {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t k = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
			body_add(s, p + i, k);
			i += k;
			if (nl)
				s->dstate = D_BOL;
			break;
		}
		case D_BOL:
			if (p[i] == '.') {
				s->dstate = D_DOT;
				i++;
			} else
				s->dstate = D_MID;
			break;
		case D_DOT:
			if (p[i] == '\n') {
				*ev = data_end(s);
				return i + 1;
			}
			if (p[i] == '\r') {
				s->dstate = D_DOTCR;
				i++;
			} else
				s->dstate = D_MID;	/* the stuffed dot is dropped */
			break;
		case D_DOTCR:
			if (p[i] == '\n') {
				*ev = data_end(s);
				return i + 1;
			}
			body_add(s, "\r", 1);	/* ".\rX": a line "\rX" */
			s->dstate = D_MID;
			break;
		}
	}
	return i;
}

/* --- BDAT --- */

/* bdat_end - the chunk is read: its reply, or the message's end. */
static enum smtp_srv_event
bdat_end(struct smtp_server *s)
{
	char text[80];

	s->state = SMTP_SRV_ST_CMD;
	if (s->bdat_err != NULL) {
		const char *e = s->bdat_err;

		s->bdat_err = NULL;
		return core_reply(s, e);
	}
	if (s->bdat_last)
		return data_end(s);
	snprintf(text, sizeof text, "250 2.0.0 %llu octets received",
	    (unsigned long long)s->bytes);
	return core_reply(s, text);
}

/* bdat_feed - a chunk's bytes, raw; returns the bytes used. */
static size_t
bdat_feed(struct smtp_server *s, const char *p, size_t n, enum smtp_srv_event *ev)
{
	size_t k = s->bdat_left < n ? (size_t)s->bdat_left : n;

	if (s->bdat_err == NULL)
		body_add(s, p, k);
	s->bdat_left -= k;
	if (s->bdat_left == 0)
		*ev = bdat_end(s);
	return k;
}

/* --- feeding --- */

size_t
smtp_server_feed(struct smtp_server *s, const char *p, size_t n, enum smtp_srv_event *ev)
{
	size_t off = 0;
	char line[SMTP_SERVER_LINE_MAX + 1];

	*ev = SMTP_SRV_NONE;
	if (s->pending != SMTP_SRV_NONE)
		return 0;
	if (s->state == SMTP_SRV_ST_TLS || s->state == SMTP_SRV_ST_QUIT)
		return n;	/* pipelined after STARTTLS (RFC 3207) or QUIT: dropped */
	while (off < n) {
		const char *nl;
		size_t len, start;

		if (s->state == SMTP_SRV_ST_DATA) {
			off += data_feed(s, p + off, n - off, ev);
			return off;
		}
		if (s->state == SMTP_SRV_ST_BDAT) {
			off += bdat_feed(s, p + off, n - off, ev);
			return off;
		}
		nl = memchr(p + off, '\n', n - off);
		if (nl == NULL) {
			if (s->discard)		/* still the overlong line */
				return n;
			if (n - off > (size_t)s->conf.max_line + 2) {
				s->discard = 1;
				auth_forget(s, 0);
				*ev = core_reply(s, "500 5.5.2 Error: line too long");
				return n;
			}
			return off;	/* a partial line: the host keeps it */
		}
		len = (size_t)(nl - (p + off));
		if (s->discard) {	/* the tail of an overlong line */
			s->discard = 0;
			off += len + 1;
			continue;
		}
		if (len > 0 && p[off + len - 1] == '\r')
			len--;
		start = off;
		off = (size_t)(nl - p) + 1;
		if (len > s->conf.max_line) {
			auth_forget(s, 0);
			*ev = core_reply(s, "500 5.5.2 Error: line too long");
		} else {
			memcpy(line, p + start, len);
			line[len] = '\0';
			if (s->state == SMTP_SRV_ST_AUTH) {
				*ev = auth_response(s, line);
				explicit_bzero(line, len);
			} else if (len >= 5 && strncasecmp(line, "AUTH ", 5) == 0) {
				*ev = command(s, line);
				explicit_bzero(line, len);
			} else
				*ev = command(s, line);
		}
		if (*ev == SMTP_SRV_NONE && s->state == SMTP_SRV_ST_BDAT)
			continue;	/* BDAT: its chunk follows */
		return off;
	}
	return off;
}

void
smtp_server_done(struct smtp_server *s, int code)
{
	enum smtp_srv_event ev = s->pending;

	s->pending = SMTP_SRV_NONE;
	switch (ev) {
	case SMTP_SRV_MAIL:
		if (code / 100 != 2)
			smtp_server_reset(s);
		break;
	case SMTP_SRV_RCPT:
		if (code / 100 == 2 && s->rcpt != NULL) {
			if (s->nrcpt == s->rcap) {
				s->rcap = s->rcap ? s->rcap * 2 : 4;
				s->rcpts = xrealloc(s->rcpts, s->rcap * sizeof *s->rcpts);
			}
			s->rcpts[s->nrcpt++] = s->rcpt;
		} else
			free(s->rcpt);
		s->rcpt = NULL;
		break;
	case SMTP_SRV_DATA:
		if (code == 354) {
			s->state = SMTP_SRV_ST_DATA;
			s->dstate = D_BOL;
			s->bytes = 0;
			s->too_big = 0;
			buf_free(&s->body);
		} else if (code / 100 != 2)
			smtp_server_reset(s);
		break;
	case SMTP_SRV_DOT:
		smtp_server_reset(s);
		break;
	case SMTP_SRV_QUIT:
		if (code == 221)
			s->state = SMTP_SRV_ST_QUIT;
		break;
	case SMTP_SRV_AUTH:
		wipe_free(&s->auth_pass);
		s->auth_mech = NULL;
		if (code == 235)
			s->authed = 1;
		else
			wipe_free(&s->auth_user);
		break;
	case SMTP_SRV_STARTTLS:
		if (code == 220) {
			/* RFC 3207: forget everything said in the clear. */
			auth_forget(s, 1);
			smtp_server_reset(s);
			free(s->helo);
			s->helo = NULL;
			s->esmtp = 0;
			s->state = SMTP_SRV_ST_TLS;
		}
		break;
	default:
		break;
	}
}

void
smtp_server_tls_on(struct smtp_server *s)
{
	s->tls_on = 1;
	s->state = SMTP_SRV_ST_CMD;
	s->discard = 0;
}
