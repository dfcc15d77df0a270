/*
 * sink_conf.c - volley-sink's configuration: defaults, the UCL file and
 * provider profiles -> struct sink_conf; rule and recipient-tag matching;
 * reply templates.
 *
 * API (sink.h): sink_conf_defaults, sink_conf_load, sink_conf_finish,
 * sink_conf_free, sink_rules_eval, sink_tag_eval, sink_reply_expand and the
 * small parsers (durations, rates, address matchers).
 *
 * Layering: defaults, then the profile (bench/profiles/NAME.conf), then the
 * config file; later settings replace earlier ones, tags replace tags of
 * the same name, and the config's rules are tried before the profile's.
 * Every error names file:line (the config is a table). Nothing here
 * reads the clock or touches a socket.
 */
#include "sink.h"
#include "ucl.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *const stage_names[STAGE_COUNT] = {
	"connect", "ehlo", "mail", "rcpt", "data", "dot", "rset", "quit",
};

const char *
sink_stage_name(enum sink_stage st)
{
	return (unsigned)st < STAGE_COUNT ? stage_names[st] : "?";
}

static int
stage_parse(const char *s, enum sink_stage *st)
{
	for (int i = 0; i < STAGE_COUNT; i++)
		if (strcasecmp(s, stage_names[i]) == 0) {
			*st = (enum sink_stage)i;
			return 0;
		}
	if (strcasecmp(s, "helo") == 0 || strcasecmp(s, "greeting") == 0) {
		*st = strcasecmp(s, "helo") == 0 ? STAGE_EHLO : STAGE_CONNECT;
		return 0;
	}
	if (strcasecmp(s, "eom") == 0 || strcasecmp(s, "end") == 0 ||
	    strcasecmp(s, "data_end") == 0) {
		*st = STAGE_DOT;
		return 0;
	}
	return -1;
}

/* --- small parsers --- */

/* sink_parse_duration_ms - "500ms", "2s", "5min", "1h", "1d", "30" (s). */
int
sink_parse_duration_ms(const char *s, uint64_t *ms)
{
	char *end;
	double v;
	double mult = 1000;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -1;
	if (*end == '\0' || strcmp(end, "s") == 0 || strcmp(end, "sec") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "min") == 0 || strcmp(end, "m") == 0)
		mult = 60000;
	else if (strcmp(end, "h") == 0)
		mult = 3600000;
	else if (strcmp(end, "d") == 0)
		mult = 86400000;
	else if (strcmp(end, "w") == 0)
		mult = 7 * 86400000.0;
	else
		return -1;
	v *= mult;
	if (v > 1e15)
		return -1;
	*ms = (uint64_t)(v + 0.5);
	return 0;
}

/* sink_parse_rate - "N/s", "N/min", "N/h", "N/day". */
int
sink_parse_rate(const char *s, uint32_t *n, uint32_t *window_ms)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end != '/' || v == 0 || v > UINT32_MAX)
		return -1;
	end++;
	if (strcmp(end, "s") == 0 || strcmp(end, "sec") == 0)
		*window_ms = 1000;
	else if (strcmp(end, "min") == 0 || strcmp(end, "m") == 0)
		*window_ms = 60000;
	else if (strcmp(end, "h") == 0)
		*window_ms = 3600000;
	else if (strcmp(end, "day") == 0 || strcmp(end, "d") == 0)
		*window_ms = 86400000;
	else
		return -1;
	*n = (uint32_t)v;
	return 0;
}

/*
 * sink_parse_addr_match - "127.0.0.1", "127.0.0.0/8", "127.0.0.1:2525",
 * "::1", "[::1]:25", "2001:db8::/32".
 */
int
sink_parse_addr_match(const char *s, struct sink_addr_match *m)
{
	char host[64];
	const char *slash, *port = NULL;
	size_t hl;
	long plen = -1;

	memset(m, 0, sizeof *m);
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || (size_t)(rb - s - 1) >= sizeof host)
			return -1;
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = '\0';
		if (rb[1] == ':')
			port = rb + 2;
		else if (rb[1] != '\0')
			return -1;
	} else {
		const char *colon = strchr(s, ':');
		hl = strlen(s);
		if (colon != NULL && strchr(colon + 1, ':') == NULL) {	/* v4:port */
			port = colon + 1;
			hl = (size_t)(colon - s);
		}
		if (hl >= sizeof host)
			return -1;
		memcpy(host, s, hl);
		host[hl] = '\0';
	}
	slash = strchr(host, '/');
	if (slash != NULL) {
		char *end;
		plen = strtol(slash + 1, &end, 10);
		if (*end != '\0' || end == slash + 1)
			return -1;
		host[slash - host] = '\0';
	}
	if (inet_pton(AF_INET, host, m->addr) == 1) {
		m->family = AF_INET;
		if (plen < 0)
			plen = 32;
		if (plen > 32)
			return -1;
	} else if (inet_pton(AF_INET6, host, m->addr) == 1) {
		m->family = AF_INET6;
		if (plen < 0)
			plen = 128;
		if (plen > 128)
			return -1;
	} else
		return -1;
	m->plen = (int)plen;
	if (port != NULL) {
		char *end;
		long p = strtol(port, &end, 10);
		if (*end != '\0' || end == port || p < 1 || p > 65535)
			return -1;
		m->port = (uint16_t)p;
	}
	return 0;
}

/* sink_addr_matches - does address a (full length) fall in matcher m? */
int
sink_addr_matches(const struct sink_addr_match *m, const struct sink_addr_match *a)
{
	int bits = m->plen;

	if (m->family != a->family)
		return 0;
	if (m->port != 0 && m->port != a->port)
		return 0;
	for (int i = 0; bits > 0; i++, bits -= 8) {
		uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
		if ((m->addr[i] & mask) != (a->addr[i] & mask))
			return 0;
	}
	return 1;
}

/* sink_reply_valid - "DDD", "DDD text", "DDD-text" with D[0] in 2..5. */
int
sink_reply_valid(const char *t)
{
	if (t == NULL || strlen(t) < 3 || t[0] < '2' || t[0] > '5' ||
	    !isdigit((unsigned char)t[1]) || !isdigit((unsigned char)t[2]))
		return 0;
	if (t[3] != '\0' && t[3] != ' ' && t[3] != '-')
		return 0;
	for (const char *p = t; *p; p++)
		if (*p == '\r')
			return 0;
	return 1;
}

/* Is p an enhanced status code "d.ddd.ddd" followed by a space or end? */
static size_t
enh_len(const char *p)
{
	const char *q = p;
	int parts = 0;

	for (;;) {
		int digits = 0;
		while (isdigit((unsigned char)*q) && digits < 4) {
			q++;
			digits++;
		}
		if (digits == 0)
			return 0;
		parts++;
		if (parts == 3)
			break;
		if (*q != '.')
			return 0;
		q++;
	}
	if (*q != ' ' && *q != '\0' && *q != '\n')
		return 0;
	return (size_t)(q - p);
}

/* Append a substituted value: CR/LF and NUL-free, bounded. */
static void
append_value(struct buf *b, const char *v)
{
	size_t n = 0;

	if (v == NULL)
		return;
	for (; *v && n < 512; v++, n++) {
		char ch = (*v == '\r' || *v == '\n') ? '?' : *v;
		buf_append(b, &ch, 1);
	}
}

static void
append_text(struct buf *b, const char *p, size_t n, const struct sink_vars *v)
{
	static const struct { const char *name; size_t off; } vars[] = {
		{ "{ip}", offsetof(struct sink_vars, ip) },
		{ "{port}", offsetof(struct sink_vars, port) },
		{ "{local}", offsetof(struct sink_vars, local) },
		{ "{helo}", offsetof(struct sink_vars, helo) },
		{ "{from}", offsetof(struct sink_vars, from) },
		{ "{rcpt}", offsetof(struct sink_vars, rcpt) },
		{ "{id}", offsetof(struct sink_vars, id) },
	};
	size_t i = 0;

	while (i < n) {
		const char *br = memchr(p + i, '{', n - i);
		size_t k;
		int hit = 0;

		if (br == NULL) {
			buf_append(b, p + i, n - i);
			return;
		}
		buf_append(b, p + i, (size_t)(br - (p + i)));
		i = (size_t)(br - p);
		for (k = 0; k < sizeof vars / sizeof vars[0]; k++) {
			size_t l = strlen(vars[k].name);
			if (n - i >= l && memcmp(p + i, vars[k].name, l) == 0) {
				append_value(b, v ? *(const char *const *)((const char *)v +
				    vars[k].off) : NULL);
				i += l;
				hit = 1;
				break;
			}
		}
		if (!hit) {
			buf_append(b, "{", 1);
			i++;
		}
	}
}

int
sink_reply_expand(struct buf *b, const char *tpl, const struct sink_vars *v)
{
	const char *p = tpl, *rest;
	char code[4];
	char enh[16] = "";
	size_t el;

	if (!sink_reply_valid(tpl))
		panic("sink_reply_expand: bad template %s", tpl);
	memcpy(code, tpl, 3);
	code[3] = '\0';
	rest = tpl[3] ? tpl + 4 : tpl + 3;
	el = enh_len(rest);
	if (el > 0 && el < sizeof enh) {
		memcpy(enh, rest, el);
		enh[el] = '\0';
	}
	for (int first = 1;; first = 0) {
		const char *line = first ? rest : p;
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);

		buf_append(b, code, 3);
		buf_append(b, nl ? "-" : " ", 1);
		if (!first && enh[0]) {
			buf_append(b, enh, strlen(enh));
			buf_append(b, " ", 1);
		}
		append_text(b, line, n, v);
		buf_append(b, "\r\n", 2);
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return atoi(code);
}

/* --- rule and tag matching --- */

static uint64_t
rng_next(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static int
pat_match(const char *pat, const char *s)
{
	return fnmatch(pat, s ? s : "", FNM_CASEFOLD) == 0;
}

const struct sink_action *
sink_rules_eval(struct sink_conf *c, enum sink_stage st, const struct sink_view *v,
    uint64_t *rng)
{
	for (size_t i = 0; i < c->nrules; i++) {
		struct sink_rule *r = &c->rules[i];
		size_t k;

		if (r->stage != st)
			continue;
		if (r->nlocal) {
			for (k = 0; k < r->nlocal; k++)
				if (v->local && sink_addr_matches(&r->local[k], &v->local->addr))
					break;
			if (k == r->nlocal)
				continue;
		}
		if (r->nclient) {
			for (k = 0; k < r->nclient; k++)
				if (v->client && sink_addr_matches(&r->client[k], &v->client->addr))
					break;
			if (k == r->nclient)
				continue;
		}
		if (r->helo && !pat_match(r->helo, v->helo))
			continue;
		if (r->from && !pat_match(r->from, v->from))
			continue;
		if (r->rcpt) {
			for (k = 0; k < v->nrcpts; k++)
				if (pat_match(r->rcpt, v->rcpts[k]))
					break;
			if (k == v->nrcpts)
				continue;
		}
		r->seen++;
		if (r->every > 1 && r->seen % r->every != 0)
			continue;
		if (r->probability < 1.0) {
			double d = (double)(rng_next(rng) >> 11) / (double)(1ULL << 53);
			if (d >= r->probability)
				continue;
		}
		return &r->a;
	}
	return NULL;
}

/* "slow", "slow3" (seconds), "stall", "stall10". */
static int
tag_numeric(const char *t, const char *base, uint32_t dflt, uint32_t *ms)
{
	size_t bl = strlen(base);
	char *end;
	unsigned long v;

	if (strncasecmp(t, base, bl) != 0)
		return 0;
	if (t[bl] == '\0') {
		*ms = dflt;
		return 1;
	}
	if (!isdigit((unsigned char)t[bl]))
		return 0;
	v = strtoul(t + bl, &end, 10);
	if (*end != '\0' || v > 3600)
		return 0;
	*ms = (uint32_t)v * 1000;
	return 1;
}

int
sink_tag_eval(const struct sink_conf *c, const char *addr, enum sink_stage st,
    struct sink_action *out)
{
	const char *at = strrchr(addr, '@');
	size_t ll = at ? (size_t)(at - addr) : strlen(addr);
	const char *p = memchr(addr, '+', ll);

	while (p != NULL) {
		const char *q = p + 1, *e;
		char tag[40];
		size_t tl;
		uint32_t ms;

		e = memchr(q, '+', ll - (size_t)(q - addr));
		tl = (e ? (size_t)(e - q) : ll - (size_t)(q - addr));
		p = e;
		if (tl == 0 || tl >= sizeof tag)
			continue;
		memcpy(tag, q, tl);
		tag[tl] = '\0';
		for (size_t i = 0; i < c->ntags; i++)
			if (c->tags[i].stage == st && strcasecmp(c->tags[i].name, tag) == 0) {
				*out = c->tags[i].a;
				return 1;
			}
		if (st == STAGE_DOT && tag_numeric(tag, "slow", c->slow_ms, &ms)) {
			memset(out, 0, sizeof *out);
			out->act = ACT_DEFAULT;
			out->delay_ms = ms;
			return 1;
		}
		if (st == STAGE_DOT && tag_numeric(tag, "stall", c->stall_ms, &ms)) {
			memset(out, 0, sizeof *out);
			out->act = ACT_STALL;
			out->stall_ms = ms;
			return 1;
		}
	}
	return 0;
}

/* --- the configuration --- */

static void
tag_set(struct sink_conf *c, const char *name, enum sink_stage st, const struct sink_action *a)
{
	struct sink_tag *t = NULL;

	for (size_t i = 0; i < c->ntags; i++)
		if (strcasecmp(c->tags[i].name, name) == 0) {
			t = &c->tags[i];
			free(t->a.reply);
			break;
		}
	if (t == NULL) {
		c->tags = xrealloc(c->tags, (c->ntags + 1) * sizeof *c->tags);
		t = &c->tags[c->ntags++];
		t->name = xstrdup(name);
	}
	t->stage = st;
	t->a = *a;
	t->a.reply = a->reply ? xstrdup(a->reply) : NULL;
}

static void
tag_builtin(struct sink_conf *c, const char *name, enum sink_stage st, enum sink_act act,
    const char *reply, int close)
{
	struct sink_action a;

	memset(&a, 0, sizeof a);
	a.act = act;
	a.reply = (char *)reply;
	a.close = close;
	if (act == ACT_LONGLINE)
		a.longline = 5000;
	tag_set(c, name, st, &a);
}

static void
set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = v ? xstrdup(v) : NULL;
}

void
sink_conf_defaults(struct sink_conf *c)
{
	memset(c, 0, sizeof *c);
	c->hostname = xstrdup("sink.volley.test");
	c->banner = xstrdup("ESMTP volley-sink");
	c->size = 52428800;
	c->max_line = 2048;
	c->max_rcpts = 1000;
	c->idle_ms = 300000;
	c->slow_ms = 5000;
	c->stall_ms = 30000;
	c->max_sessions = 100000;
	c->grey_ms = 60000;
	c->seed = 0x5eed5eedULL;
	c->reply_rate = xstrdup("421 4.7.0 [{ip}] Too many messages from your IP address, slow down");
	c->reply_conns = xstrdup("421 4.7.0 Too many concurrent SMTP connections from {ip}; try again later");
	c->reply_block = xstrdup("550 5.7.1 Service unavailable; Client host [{ip}] blocked using "
	    "zen.spamhaus.org; https://www.spamhaus.org/query/ip/{ip}");
	c->reply_grey = xstrdup("451 4.7.1 Greylisting in action, please come back later");
	c->reply_toobig = xstrdup("552 5.3.4 Message size exceeds fixed limit");
	c->reply_busy = xstrdup("421 4.3.2 Too many sessions, try again later");

	/* The generic recipient tags (docs/sink.md lists them). */
	tag_builtin(c, "550", STAGE_RCPT, ACT_REPLY,
	    "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table", 0);
	tag_builtin(c, "unknown", STAGE_RCPT, ACT_REPLY,
	    "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table", 0);
	tag_builtin(c, "disabled", STAGE_RCPT, ACT_REPLY,
	    "550 5.2.1 <{rcpt}>: Recipient address rejected: mailbox disabled", 0);
	tag_builtin(c, "451", STAGE_RCPT, ACT_REPLY,
	    "451 4.3.0 <{rcpt}>: Temporary lookup failure", 0);
	tag_builtin(c, "452", STAGE_RCPT, ACT_REPLY, "452 4.2.2 <{rcpt}>: Mailbox full", 0);
	tag_builtin(c, "full", STAGE_RCPT, ACT_REPLY, "452 4.2.2 <{rcpt}>: Mailbox full", 0);
	tag_builtin(c, "552", STAGE_RCPT, ACT_REPLY,
	    "552 5.2.2 <{rcpt}>: Mailbox full, quota exceeded", 0);
	tag_builtin(c, "554", STAGE_RCPT, ACT_REPLY, "554 5.7.1 <{rcpt}>: Relay access denied", 0);
	tag_builtin(c, "421", STAGE_RCPT, ACT_REPLY,
	    "421 4.7.0 Try again later, closing connection.", 1);
	tag_builtin(c, "block", STAGE_RCPT, ACT_REPLY,
	    "550 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org; "
	    "https://www.spamhaus.org/query/ip/{ip}", 0);
	tag_builtin(c, "ratelimit", STAGE_RCPT, ACT_REPLY,
	    "421 4.7.0 Try again later, closing connection. (EHLO)", 1);
	tag_builtin(c, "auth", STAGE_DOT, ACT_REPLY,
	    "550 5.7.23 The message was rejected because of Sender Policy Framework violation", 0);
	tag_builtin(c, "spam", STAGE_DOT, ACT_REPLY,
	    "554 5.7.1 Message rejected as spam by Content Filtering.", 0);
	tag_builtin(c, "toobig", STAGE_DOT, ACT_REPLY, "552 5.3.4 Message size exceeds fixed limit", 0);
	tag_builtin(c, "grey", STAGE_RCPT, ACT_GREY, NULL, 0);
	tag_builtin(c, "droprcpt", STAGE_RCPT, ACT_DISCONNECT, NULL, 0);
	tag_builtin(c, "garbage", STAGE_RCPT, ACT_GARBAGE, NULL, 0);
	tag_builtin(c, "longline", STAGE_RCPT, ACT_LONGLINE, NULL, 0);
	tag_builtin(c, "drop", STAGE_DOT, ACT_DISCONNECT, NULL, 0);
	tag_builtin(c, "dot421", STAGE_DOT, ACT_REPLY,
	    "421 4.3.0 Service shutting down, closing connection", 1);
	tag_builtin(c, "dot451", STAGE_DOT, ACT_REPLY, "451 4.3.0 Error: queue file write error", 0);
	tag_builtin(c, "dot452", STAGE_DOT, ACT_REPLY, "452 4.3.1 Insufficient system storage", 0);
	tag_builtin(c, "dot550", STAGE_DOT, ACT_REPLY, "550 5.7.1 Message rejected", 0);
	tag_builtin(c, "dot552", STAGE_DOT, ACT_REPLY, "552 5.3.4 Message size exceeds fixed limit", 0);
	tag_builtin(c, "dot554", STAGE_DOT, ACT_REPLY,
	    "554 5.7.1 Message rejected as spam by Content Filtering.", 0);
}

/* --- applying a UCL tree --- */

struct apply {
	struct sink_conf *c;
	char **err;
	int is_profile;
	const char *path;
	const char *exe_dir;
};

static int
fail(struct apply *ap, const struct ucl_node *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
fail(struct apply *ap, const struct ucl_node *n, const char *fmt, ...)
{
	char msg[512];
	va_list va;

	va_start(va, fmt);
	vsnprintf(msg, sizeof msg, fmt, va);
	va_end(va);
	free(*ap->err);
	*ap->err = xasprintf("%s:%d: %s", n && n->file ? n->file : "?", n ? n->line : 0, msg);
	return -1;
}

static int
get_str(struct apply *ap, const struct ucl_node *n, const char **out)
{
	*out = "";
	if (n->type != UCL_STRING || n->str == NULL)
		return fail(ap, n, "'%s' must be a single value", n->key ? n->key : "value");
	*out = n->str;
	return 0;
}

static int
get_bool(struct apply *ap, const struct ucl_node *n, int *out)
{
	const char *s;

	if (get_str(ap, n, &s))
		return -1;
	if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on") ||
	    !strcmp(s, "1"))
		*out = 1;
	else if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off") ||
	    !strcmp(s, "0"))
		*out = 0;
	else
		return fail(ap, n, "'%s': expected true or false, got \"%s\"", n->key, s);
	return 0;
}

static int
get_u64(struct apply *ap, const struct ucl_node *n, uint64_t min, uint64_t max, uint64_t *out)
{
	const char *s;
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (get_str(ap, n, &s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (end != s && (*end == 'k' || *end == 'K'))
		mult = 1024, end++;
	else if (end != s && (*end == 'm' || *end == 'M'))
		mult = 1024 * 1024, end++;
	else if (end != s && (*end == 'g' || *end == 'G'))
		mult = 1024ULL * 1024 * 1024, end++;
	if ((*end == 'b' || *end == 'B') && mult > 1)
		end++;
	if (errno || end == s || *end != '\0' || s[0] == '-')
		return fail(ap, n, "'%s': \"%s\" is not a number", n->key, s);
	if (v > max / mult || v * mult < min || v * mult > max)
		return fail(ap, n, "'%s': %s is out of range [%llu, %llu]", n->key, s,
		    (unsigned long long)min, (unsigned long long)max);
	*out = v * mult;
	return 0;
}

static int
get_ms(struct apply *ap, const struct ucl_node *n, uint64_t max, uint32_t *out)
{
	const char *s;
	uint64_t ms;

	if (get_str(ap, n, &s))
		return -1;
	if (sink_parse_duration_ms(s, &ms) || ms > max)
		return fail(ap, n, "'%s': \"%s\" is not a duration (like 500ms, 2s, 5min, 1h)",
		    n->key, s);
	*out = (uint32_t)ms;
	return 0;
}

static int
get_reply(struct apply *ap, const struct ucl_node *n, char **dst)
{
	const char *s;

	if (get_str(ap, n, &s))
		return -1;
	if (!sink_reply_valid(s) || strlen(s) > 4000)
		return fail(ap, n, "'%s': \"%.60s\" is not an SMTP reply (\"DDD [X.Y.Z] text\", "
		    "first digit 2-5)", n->key, s);
	set_str(dst, s);
	return 0;
}

/* A string or an array of strings: call fn for each. */
static int
each_str(struct apply *ap, const struct ucl_node *n,
    int (*fn)(struct apply *, const struct ucl_node *, const char *, void *), void *arg)
{
	if (n->type == UCL_STRING)
		return fn(ap, n, n->str, arg);
	if (n->type != UCL_ARRAY)
		return fail(ap, n, "'%s' must be a string or a list of strings", n->key);
	for (const struct ucl_node *e = n->child; e; e = e->next) {
		if (e->type != UCL_STRING)
			return fail(ap, e, "'%s': list elements must be strings", n->key);
		if (fn(ap, e, e->str, arg))
			return -1;
	}
	return 0;
}

static int
add_listen(struct apply *ap, const struct ucl_node *n, const char *s, void *arg)
{
	struct sink_conf *c = ap->c;

	(void)arg;
	if (strlen(s) == 0 || strchr(s, ':') == NULL)
		return fail(ap, n, "listen: \"%s\" is not ADDR:PORT", s);
	c->listen = xrealloc(c->listen, (c->nlisten + 1) * sizeof *c->listen);
	c->listen[c->nlisten++] = xstrdup(s);
	return 0;
}

struct match_list {
	struct sink_addr_match **v;
	size_t *n;
};

static int
add_match(struct apply *ap, const struct ucl_node *n, const char *s, void *arg)
{
	struct match_list *ml = arg;
	struct sink_addr_match m;

	if (sink_parse_addr_match(s, &m))
		return fail(ap, n, "'%s': \"%s\" is not an address, prefix or ADDR:PORT", n->key ?
		    n->key : "address", s);
	*ml->v = xrealloc(*ml->v, (*ml->n + 1) * sizeof **ml->v);
	(*ml->v)[(*ml->n)++] = m;
	return 0;
}

/* Action keys shared by rule and tag blocks; returns 1 if k was one. */
static int
action_key(struct apply *ap, const struct ucl_node *k, struct sink_action *a, int *nact, int *rc)
{
	int b = 0;
	uint64_t v;

	*rc = 0;
	if (!strcmp(k->key, "reply")) {
		*rc = get_reply(ap, k, &a->reply);
		a->act = ACT_REPLY;
		(*nact)++;
	} else if (!strcmp(k->key, "delay")) {
		*rc = get_ms(ap, k, 3600000, &a->delay_ms);
	} else if (!strcmp(k->key, "stall")) {
		*rc = get_ms(ap, k, 3600000, &a->stall_ms);
		a->act = ACT_STALL;
		(*nact)++;
	} else if (!strcmp(k->key, "disconnect") || !strcmp(k->key, "garbage") ||
	    !strcmp(k->key, "greylist")) {
		*rc = get_bool(ap, k, &b);
		if (*rc == 0 && b) {
			a->act = k->key[0] == 'd' ? ACT_DISCONNECT : k->key[0] == 'g' &&
			    k->key[1] == 'a' ? ACT_GARBAGE : ACT_GREY;
			(*nact)++;
		}
	} else if (!strcmp(k->key, "longline")) {
		*rc = get_u64(ap, k, 1, 1 << 20, &v);
		a->longline = (uint32_t)v;
		a->act = ACT_LONGLINE;
		(*nact)++;
	} else if (!strcmp(k->key, "close")) {
		*rc = get_bool(ap, k, &a->close);
	} else if (!strcmp(k->key, "drip")) {
		*rc = get_u64(ap, k, 1, 1 << 20, &v);
		a->drip_bytes = (uint32_t)v;
	} else if (!strcmp(k->key, "drip_every")) {
		*rc = get_ms(ap, k, 3600000, &a->drip_ms);
	} else
		return 0;
	return 1;
}

static int
action_check(struct apply *ap, const struct ucl_node *blk, struct sink_action *a, int nact,
    const char *what)
{
	if (nact > 1)
		return fail(ap, blk, "%s \"%s\": choose one of reply, stall, disconnect, garbage, "
		    "longline, greylist", what, blk->arg);
	if (nact == 0 && a->delay_ms == 0 && !a->close && a->drip_bytes == 0)
		return fail(ap, blk, "%s \"%s\" does nothing: give it a reply, delay, stall, "
		    "disconnect, garbage, longline, greylist or drip", what, blk->arg);
	if (a->drip_ms != 0 && a->drip_bytes == 0)
		return fail(ap, blk, "%s \"%s\": drip_every needs drip (bytes per piece)",
		    what, blk->arg);
	if (a->drip_bytes != 0 && a->drip_ms == 0)
		a->drip_ms = 1000;
	return 0;
}

static int
apply_rule(struct apply *ap, const struct ucl_node *blk)
{
	struct sink_conf *c = ap->c;
	struct sink_rule r;
	int nact = 0, have_stage = 0, rc;

	if (blk->type != UCL_OBJECT || blk->arg == NULL)
		return fail(ap, blk, "rule: expected rule \"name\" { ... }");
	memset(&r, 0, sizeof r);
	r.probability = 1.0;
	for (const struct ucl_node *k = blk->child; k; k = k->next) {
		const char *s;
		uint64_t v;
		struct match_list ml;

		if (action_key(ap, k, &r.a, &nact, &rc)) {
			if (rc)
				goto bad;
			continue;
		}
		if (!strcmp(k->key, "stage")) {
			if (get_str(ap, k, &s))
				goto bad;
			if (stage_parse(s, &r.stage)) {
				fail(ap, k, "stage: \"%s\" is not one of connect, ehlo, mail, rcpt, "
				    "data, dot, rset, quit", s);
				goto bad;
			}
			have_stage = 1;
		} else if (!strcmp(k->key, "local") || !strcmp(k->key, "client")) {
			ml.v = k->key[0] == 'l' ? &r.local : &r.client;
			ml.n = k->key[0] == 'l' ? &r.nlocal : &r.nclient;
			if (each_str(ap, k, add_match, &ml))
				goto bad;
		} else if (!strcmp(k->key, "rcpt") || !strcmp(k->key, "from") ||
		    !strcmp(k->key, "helo")) {
			char **dst = k->key[0] == 'r' ? &r.rcpt : k->key[0] == 'f' ? &r.from : &r.helo;
			if (get_str(ap, k, &s))
				goto bad;
			set_str(dst, s);
		} else if (!strcmp(k->key, "probability")) {
			char *end;
			if (get_str(ap, k, &s))
				goto bad;
			r.probability = strtod(s, &end);
			if (*end != '\0' || end == s || r.probability < 0 || r.probability > 1) {
				fail(ap, k, "probability: \"%s\" is not a number in [0, 1]", s);
				goto bad;
			}
		} else if (!strcmp(k->key, "every")) {
			if (get_u64(ap, k, 1, 1000000000, &v))
				goto bad;
			r.every = (uint32_t)v;
		} else {
			fail(ap, k, "rule \"%s\": unknown setting '%s'", blk->arg, k->key);
			goto bad;
		}
	}
	if (!have_stage) {
		fail(ap, blk, "rule \"%s\": 'stage' is required", blk->arg);
		goto bad;
	}
	if (action_check(ap, blk, &r.a, nact, "rule"))
		goto bad;
	if (r.a.act == ACT_GREY && r.stage != STAGE_RCPT) {
		fail(ap, blk, "rule \"%s\": greylist works at stage rcpt only", blk->arg);
		goto bad;
	}
	if (r.a.act == ACT_LONGLINE && r.a.longline == 0)
		r.a.longline = 5000;
	r.name = xstrdup(blk->arg);
	r.file = blk->file;
	r.line = blk->line;
	c->rules = xrealloc(c->rules, (c->nrules + 1) * sizeof *c->rules);
	c->rules[c->nrules++] = r;
	return 0;
bad:
	free(r.local);
	free(r.client);
	free(r.rcpt);
	free(r.from);
	free(r.helo);
	free(r.a.reply);
	return -1;
}

static int
apply_tag(struct apply *ap, const struct ucl_node *blk)
{
	struct sink_action a;
	enum sink_stage st = STAGE_RCPT;
	int nact = 0, rc;

	if (blk->type != UCL_OBJECT || blk->arg == NULL)
		return fail(ap, blk, "tag: expected tag \"name\" { ... }");
	if (strlen(blk->arg) == 0 || strlen(blk->arg) >= 40 || strpbrk(blk->arg, "+@ "))
		return fail(ap, blk, "tag \"%s\": a tag name is 1-39 characters without + @ or space",
		    blk->arg);
	memset(&a, 0, sizeof a);
	for (const struct ucl_node *k = blk->child; k; k = k->next) {
		const char *s;

		if (action_key(ap, k, &a, &nact, &rc)) {
			if (rc)
				goto bad;
			continue;
		}
		if (!strcmp(k->key, "stage")) {
			if (get_str(ap, k, &s))
				goto bad;
			if (stage_parse(s, &st) || (st != STAGE_RCPT && st != STAGE_DOT)) {
				fail(ap, k, "tag \"%s\": stage must be rcpt or dot", blk->arg);
				goto bad;
			}
		} else {
			fail(ap, k, "tag \"%s\": unknown setting '%s'", blk->arg, k->key);
			goto bad;
		}
	}
	if (action_check(ap, blk, &a, nact, "tag"))
		goto bad;
	if (a.act == ACT_GREY && st != STAGE_RCPT) {
		fail(ap, blk, "tag \"%s\": greylist works at stage rcpt only", blk->arg);
		goto bad;
	}
	if (a.act == ACT_LONGLINE && a.longline == 0)
		a.longline = 5000;
	tag_set(ap->c, blk->arg, st, &a);
	free(a.reply);
	return 0;
bad:
	free(a.reply);
	return -1;
}

static int
apply_smtp(struct apply *ap, const struct ucl_node *blk)
{
	struct sink_conf *c = ap->c;

	for (const struct ucl_node *k = blk->child; k; k = k->next) {
		const char *s;
		uint64_t v;

		if (!strcmp(k->key, "size")) {
			if (get_u64(ap, k, 1024, 1ULL << 40, &c->size))
				return -1;
		} else if (!strcmp(k->key, "banner") || !strcmp(k->key, "hostname")) {
			if (get_str(ap, k, &s))
				return -1;
			if (strpbrk(s, "\r\n") || strlen(s) > 400)
				return fail(ap, k, "%s: one line of at most 400 characters", k->key);
			set_str(k->key[0] == 'b' ? &c->banner : &c->hostname, s);
		} else if (!strcmp(k->key, "max_line")) {
			if (get_u64(ap, k, 512, 16000, &v))
				return -1;
			c->max_line = (uint32_t)v;
		} else if (!strcmp(k->key, "max_rcpts")) {
			if (get_u64(ap, k, 1, 100000, &v))
				return -1;
			c->max_rcpts = (uint32_t)v;
		} else if (!strcmp(k->key, "max_sessions")) {
			if (get_u64(ap, k, 1, 1000000, &v))
				return -1;
			c->max_sessions = (uint32_t)v;
		} else if (!strcmp(k->key, "idle_timeout")) {
			if (get_ms(ap, k, 86400000, &c->idle_ms))
				return -1;
		} else if (!strcmp(k->key, "slow_delay")) {
			if (get_ms(ap, k, 3600000, &c->slow_ms))
				return -1;
		} else if (!strcmp(k->key, "stall_time")) {
			if (get_ms(ap, k, 3600000, &c->stall_ms))
				return -1;
		} else if (!strcmp(k->key, "tls")) {
			if (get_bool(ap, k, &c->tls))
				return -1;
		} else if (!strcmp(k->key, "chunking")) {
			if (get_bool(ap, k, &c->chunking))
				return -1;
		} else if (!strcmp(k->key, "tls_cert") || !strcmp(k->key, "tls_key")) {
			if (get_str(ap, k, &s))
				return -1;
			set_str(k->key[4] == 'c' ? &c->tls_cert : &c->tls_key, s);
			c->tls = 1;
		} else
			return fail(ap, k, "smtp: unknown setting '%s'", k->key);
	}
	return 0;
}

static int
apply_limits(struct apply *ap, const struct ucl_node *blk)
{
	struct sink_conf *c = ap->c;

	for (const struct ucl_node *k = blk->child; k; k = k->next) {
		const char *s;
		uint64_t v;

		if (!strcmp(k->key, "per_ip_rate")) {
			if (get_str(ap, k, &s))
				return -1;
			if (!strcmp(s, "0") || !strcmp(s, "off"))
				c->rate_n = 0;
			else if (sink_parse_rate(s, &c->rate_n, &c->rate_window_ms))
				return fail(ap, k, "per_ip_rate: \"%s\" is not a rate (N/s, N/min, N/h, "
				    "N/day)", s);
		} else if (!strcmp(k->key, "per_ip_connections")) {
			if (get_u64(ap, k, 0, 1000000, &v))
				return -1;
			c->per_ip_conns = (uint32_t)v;
		} else
			return fail(ap, k, "limits: unknown setting '%s'", k->key);
	}
	return 0;
}

static int
apply_greylist(struct apply *ap, const struct ucl_node *blk)
{
	struct sink_conf *c = ap->c;

	for (const struct ucl_node *k = blk->child; k; k = k->next) {
		if (!strcmp(k->key, "delay")) {
			if (get_ms(ap, k, 86400000, &c->grey_ms))
				return -1;
		} else if (!strcmp(k->key, "all")) {
			if (get_bool(ap, k, &c->grey_all))
				return -1;
		} else if (!strcmp(k->key, "reply")) {
			if (get_reply(ap, k, &c->reply_grey))
				return -1;
		} else
			return fail(ap, k, "greylist: unknown setting '%s'", k->key);
	}
	return 0;
}

/* auth { user = "u"; password = "p"; clear = false; } */
static int
apply_auth(struct apply *ap, const struct ucl_node *blk)
{
	struct sink_conf *c = ap->c;

	for (const struct ucl_node *k = blk->child; k; k = k->next) {
		const char *s;

		if (!strcmp(k->key, "user") || !strcmp(k->key, "password")) {
			if (get_str(ap, k, &s))
				return -1;
			if (*s == '\0' || strlen(s) > 255 || strpbrk(s, "\r\n") != NULL)
				return fail(ap, k, "auth: %s must be 1 to 255 bytes on one line", k->key);
			set_str(k->key[0] == 'u' ? &c->auth_user : &c->auth_pass, s);
		} else if (!strcmp(k->key, "clear")) {
			if (get_bool(ap, k, &c->auth_clear))
				return -1;
		} else
			return fail(ap, k, "auth: unknown setting '%s' (user, password, clear)", k->key);
	}
	if ((c->auth_user == NULL) != (c->auth_pass == NULL))
		return fail(ap, blk, "auth: needs both user and password");
	return 0;
}

static int
apply_replies(struct apply *ap, const struct ucl_node *blk)
{
	static const struct { const char *key; size_t off; } keys[] = {
		{ "rate_limit", offsetof(struct sink_conf, reply_rate) },
		{ "conn_limit", offsetof(struct sink_conf, reply_conns) },
		{ "blocklist", offsetof(struct sink_conf, reply_block) },
		{ "greylist", offsetof(struct sink_conf, reply_grey) },
		{ "too_big", offsetof(struct sink_conf, reply_toobig) },
		{ "busy", offsetof(struct sink_conf, reply_busy) },
	};

	for (const struct ucl_node *k = blk->child; k; k = k->next) {
		size_t i;
		for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
			if (!strcmp(k->key, keys[i].key))
				break;
		if (i == sizeof keys / sizeof keys[0])
			return fail(ap, k, "replies: unknown setting '%s' (rate_limit, conn_limit, "
			    "blocklist, greylist, too_big, busy)", k->key);
		if (get_reply(ap, k, (char **)((char *)ap->c + keys[i].off)))
			return -1;
	}
	return 0;
}

static int
need_object(struct apply *ap, const struct ucl_node *k)
{
	if (k->type != UCL_OBJECT)
		return fail(ap, k, "'%s' must be a block { ... }", k->key);
	return 0;
}

static int
apply_tree(struct apply *ap, const struct ucl_node *root)
{
	struct sink_conf *c = ap->c;

	for (const struct ucl_node *k = root->child; k; k = k->next) {
		const char *s;
		int rc;

		if (k->key == NULL)
			return fail(ap, k, "expected key = value");
		if (!strcmp(k->key, "listen")) {
			if (ap->is_profile)
				return fail(ap, k, "listen is not allowed in a profile");
			rc = each_str(ap, k, add_listen, NULL);
		} else if (!strcmp(k->key, "profile")) {
			if (ap->is_profile)
				return fail(ap, k, "a profile cannot name another profile");
			rc = get_str(ap, k, &s);	/* loaded before this tree */
		} else if (!strcmp(k->key, "smtp")) {
			rc = need_object(ap, k) || apply_smtp(ap, k);
		} else if (!strcmp(k->key, "limits")) {
			rc = need_object(ap, k) || apply_limits(ap, k);
		} else if (!strcmp(k->key, "greylist")) {
			rc = need_object(ap, k) || apply_greylist(ap, k);
		} else if (!strcmp(k->key, "replies")) {
			rc = need_object(ap, k) || apply_replies(ap, k);
		} else if (!strcmp(k->key, "auth")) {
			rc = need_object(ap, k) || apply_auth(ap, k);
		} else if (!strcmp(k->key, "blocklist")) {
			struct match_list ml = { &c->block, &c->nblock };
			rc = each_str(ap, k, add_match, &ml);
		} else if (!strcmp(k->key, "rule")) {
			rc = apply_rule(ap, k);
		} else if (!strcmp(k->key, "tag")) {
			rc = apply_tag(ap, k);
		} else if (!strcmp(k->key, "seed")) {
			rc = get_u64(ap, k, 0, UINT64_MAX, &c->seed);
		} else
			return fail(ap, k, "unknown setting '%s'", k->key);
		if (rc)
			return -1;
	}
	return 0;
}

/* Where `profile = "NAME"` is looked for, in order. */
static char *
profile_find(const char *name, const char *cfg_path, const char *exe_dir)
{
	char *dirs[7];
	size_t nd = 0;
	char *found = NULL;
	const char *env = getenv("VOLLEY_SINK_PROFILES");

	if (strchr(name, '/') != NULL)
		return access(name, R_OK) == 0 ? xstrdup(name) : NULL;
	if (env && *env)
		dirs[nd++] = xstrdup(env);
	if (cfg_path) {
		const char *sl = strrchr(cfg_path, '/');
		dirs[nd++] = sl ? xasprintf("%.*s/profiles", (int)(sl - cfg_path), cfg_path) :
		    xstrdup("profiles");
	}
	if (exe_dir) {
		dirs[nd++] = xasprintf("%s/../bench/profiles", exe_dir);
		dirs[nd++] = xasprintf("%s/../share/volley/profiles", exe_dir);
	}
	dirs[nd++] = xstrdup("bench/profiles");	/* run from the source tree */
	dirs[nd++] = xstrdup("/usr/local/share/volley/profiles");
	for (size_t i = 0; i < nd; i++) {
		char *p = xasprintf("%s/%s.conf", dirs[i], name);
		if (found == NULL && access(p, R_OK) == 0)
			found = p;
		else
			free(p);
		free(dirs[i]);
	}
	return found;
}

int
sink_conf_load(struct sink_conf *c, const char *path, const char *profile_override,
    const char *exe_dir, char **err)
{
	struct ucl_node *root = NULL, *proot = NULL;
	struct apply ap = { c, err, 0, path, exe_dir };
	const struct ucl_node *pn = NULL;
	const char *pname = profile_override;
	size_t nprof;
	int rc = -1;

	*err = NULL;
	if (path != NULL) {
		root = ucl_parse_file(path, err);
		if (root == NULL) {
			if (*err == NULL)
				*err = xasprintf("%s:0: cannot parse", path);
			return -1;
		}
		pn = ucl_get(root, "profile");
		if (pname == NULL && pn != NULL) {
			if (pn->type != UCL_STRING || pn->str == NULL) {
				fail(&ap, pn, "profile must be a name");
				goto out;
			}
			pname = pn->str;
		}
	}
	if (pname != NULL) {
		char *pp = profile_find(pname, path, exe_dir);
		if (pp == NULL) {
			if (pn != NULL && !profile_override)
				fail(&ap, pn, "profile \"%s\" not found (looked in $VOLLEY_SINK_PROFILES, "
				    "the config's profiles/, bench/profiles/ next to the binary)", pname);
			else
				*err = xasprintf("--profile: profile \"%s\" not found (looked in "
				    "$VOLLEY_SINK_PROFILES, bench/profiles/ next to the binary)", pname);
			goto out;
		}
		proot = ucl_parse_file(pp, err);
		if (proot == NULL) {
			if (*err == NULL)
				*err = xasprintf("%s:0: cannot parse", pp);
			free(pp);
			goto out;
		}
		set_str(&c->profile, pname);
		free(c->profile_path);
		c->profile_path = pp;
		ap.is_profile = 1;
		if (apply_tree(&ap, proot))
			goto out;
		ap.is_profile = 0;
	}
	nprof = c->nrules;
	if (root != NULL && apply_tree(&ap, root))
		goto out;
	/* The config's own rules come before the profile's. */
	if (nprof > 0 && c->nrules > nprof) {
		struct sink_rule *v = xmalloc(c->nrules * sizeof *v);
		memcpy(v, c->rules + nprof, (c->nrules - nprof) * sizeof *v);
		memcpy(v + (c->nrules - nprof), c->rules, nprof * sizeof *v);
		free(c->rules);
		c->rules = v;
	}
	rc = 0;
out:
	/*
	 * Rules keep r->file, which points into the tree's interned names:
	 * re-point them at our own copies before the trees go.
	 */
	for (size_t i = 0; i < c->nrules; i++)
		if (c->rules[i].file && (root || proot)) {
			static char **files;
			static size_t nfiles;
			size_t k;
			for (k = 0; k < nfiles; k++)
				if (!strcmp(files[k], c->rules[i].file))
					break;
			if (k == nfiles) {
				files = xrealloc(files, (nfiles + 1) * sizeof *files);
				files[nfiles++] = xstrdup(c->rules[i].file);
			}
			c->rules[i].file = files[k];
		}
	ucl_free(root);
	ucl_free(proot);
	return rc;
}

void
sink_conf_finish(struct sink_conf *c)
{
	/* Blocklisted clients: a rule at RCPT (where providers answer it). */
	if (c->nblock > 0) {
		struct sink_rule r;

		memset(&r, 0, sizeof r);
		r.name = xstrdup("blocklist");
		r.file = "blocklist";
		r.stage = STAGE_RCPT;
		r.client = xmalloc(c->nblock * sizeof *r.client);
		memcpy(r.client, c->block, c->nblock * sizeof *r.client);
		r.nclient = c->nblock;
		r.probability = 1.0;
		r.a.act = ACT_REPLY;
		r.a.reply = xstrdup(c->reply_block);
		c->rules = xrealloc(c->rules, (c->nrules + 1) * sizeof *c->rules);
		memmove(c->rules + 1, c->rules, c->nrules * sizeof *c->rules);
		c->rules[0] = r;
		c->nrules++;
	}
}

void
sink_conf_free(struct sink_conf *c)
{
	for (size_t i = 0; i < c->nlisten; i++)
		free(c->listen[i]);
	free(c->listen);
	for (size_t i = 0; i < c->nrules; i++) {
		struct sink_rule *r = &c->rules[i];
		free(r->name);
		free(r->local);
		free(r->client);
		free(r->rcpt);
		free(r->from);
		free(r->helo);
		free(r->a.reply);
	}
	free(c->rules);
	for (size_t i = 0; i < c->ntags; i++) {
		free(c->tags[i].name);
		free(c->tags[i].a.reply);
	}
	free(c->tags);
	free(c->block);
	free(c->profile);
	free(c->profile_path);
	free(c->hostname);
	free(c->banner);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->auth_user);
	free(c->auth_pass);
	free(c->reply_rate);
	free(c->reply_conns);
	free(c->reply_block);
	free(c->reply_grey);
	free(c->reply_toobig);
	free(c->reply_busy);
	memset(c, 0, sizeof *c);
}
