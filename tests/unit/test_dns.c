/*
 * test_dns.c - the pure parts of dns.c: MX ordering with a scripted random
 * source, and the raw DNS message walkers (answer TTL, negative TTL) on
 * hand-built packets, including compression, truncation at every length
 * and hostile names; the table of addresses that are refused as delivery
 * targets unless dns.allow_private; the TLSA parser and the AD bit (DANE)
 * on the same kind of packets. The c-ares/loop part is checked end to end against
 * dnsmasq (see the dns helper report), not here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "dane.h"
#include "dns.h"

/* --- MX ordering --- */

static unsigned rnd_calls;
static unsigned rnd_zero(unsigned n) { (void)n; rnd_calls++; return 0; }
static unsigned rnd_last(unsigned n) { rnd_calls++; return n - 1; }

struct order_case {
	const char *name;
	unsigned (*rnd)(unsigned);
	size_t n;
	struct { const char *host; int pref; } in[8];
	const char *out[8];
};

/*
 * Fisher-Yates inside a tie run [lo, hi): for i = hi-1 down to lo+1 swap
 * i with lo + rnd(i-lo+1). rnd_zero turns (x,y,z) into (y,z,x): i=2 swaps
 * 2,0 -> z,y,x; i=1 swaps 1,0 -> y,z,x. rnd_last keeps the sorted order.
 */
static const struct order_case order_cases[] = {
	{ "sorted by pref", rnd_zero, 3,
	  { { "a", 30 }, { "b", 10 }, { "c", 20 } }, { "b", "c", "a" } },
	{ "already sorted", rnd_last, 3,
	  { { "a", 1 }, { "b", 2 }, { "c", 3 } }, { "a", "b", "c" } },
	{ "tie of three, rnd 0", rnd_zero, 3,
	  { { "x", 10 }, { "y", 10 }, { "z", 10 } }, { "y", "z", "x" } },
	{ "tie of three, rnd n-1", rnd_last, 3,
	  { { "x", 10 }, { "y", 10 }, { "z", 10 } }, { "x", "y", "z" } },
	{ "mixed ties", rnd_zero, 5,
	  { { "a", 20 }, { "b", 10 }, { "c", 10 }, { "d", 20 }, { "e", 5 } },
	  { "e", "c", "b", "d", "a" } },
	{ "mixed ties, rnd n-1 keeps input order in ties", rnd_last, 5,
	  { { "a", 20 }, { "b", 10 }, { "c", 10 }, { "d", 20 }, { "e", 5 } },
	  { "e", "b", "c", "a", "d" } },
	{ "pref 0 and 65535", rnd_zero, 3,
	  { { "hi", 65535 }, { "lo", 0 }, { "mid", 100 } }, { "lo", "mid", "hi" } },
	{ "one", rnd_zero, 1, { { "only", 7 } }, { "only" } },
};

static void
test_order_table(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof order_cases / sizeof order_cases[0]; c++) {
		const struct order_case *oc = &order_cases[c];
		struct dns_mx mx[8];

		memset(mx, 0, sizeof mx);
		for (size_t i = 0; i < oc->n; i++) {
			strcpy(mx[i].host, oc->in[i].host);
			mx[i].pref = oc->in[i].pref;
		}
		dns_order_mx(mx, oc->n, oc->rnd);
		for (size_t i = 0; i < oc->n; i++) {
			if (strcmp(mx[i].host, oc->out[i]) != 0)
				fail_msg("case \"%s\": position %zu is %s, want %s",
				    oc->name, i, mx[i].host, oc->out[i]);
		}
	}
}

static void
test_order_rnd_only_for_ties(void **state)
{
	struct dns_mx mx[4] = { { "a", 4 }, { "b", 3 }, { "c", 2 }, { "d", 1 } };

	(void)state;
	rnd_calls = 0;
	dns_order_mx(mx, 4, rnd_zero);
	assert_int_equal(rnd_calls, 0);		/* no ties: no randomness */
	assert_string_equal(mx[0].host, "d");
	assert_string_equal(mx[3].host, "a");
	rnd_calls = 0;
	dns_order_mx(mx, 0, rnd_zero);		/* n = 0: nothing touched */
	assert_int_equal(rnd_calls, 0);
	assert_string_equal(mx[0].host, "d");
}

static uint32_t lcg = 12345;
static unsigned rnd_lcg(unsigned n) { lcg = lcg * 1103515245u + 12345u; return (lcg >> 16) % n; }

static void
test_order_many(void **state)
{
	struct dns_mx mx[200];
	int count_in[5] = { 0 }, count_out[5] = { 0 };

	(void)state;
	for (int i = 0; i < 200; i++) {
		mx[i].pref = (i * 7) % 5 * 10;
		snprintf(mx[i].host, sizeof mx[i].host, "h%d", i);
		count_in[mx[i].pref / 10]++;
	}
	dns_order_mx(mx, 200, rnd_lcg);
	for (int i = 0; i < 200; i++) {
		if (i > 0)
			assert_true(mx[i - 1].pref <= mx[i].pref);
		count_out[mx[i].pref / 10]++;
		/* the host still carries its own pref: h<k> has pref (k*7)%5*10 */
		assert_int_equal(mx[i].pref, (atoi(mx[i].host + 1) * 7) % 5 * 10);
	}
	assert_memory_equal(count_in, count_out, sizeof count_in);
}

/* --- packet builder --- */

struct pkt {
	unsigned char b[2048];
	int n;
};

static void put8(struct pkt *p, unsigned v) { p->b[p->n++] = (unsigned char)v; }
static void put16(struct pkt *p, unsigned v) { put8(p, v >> 8); put8(p, v & 0xff); }
static void put32(struct pkt *p, uint32_t v) { put16(p, v >> 16); put16(p, v & 0xffff); }

/* labels of a dotted name; ends with the root label unless ptr >= 0 */
static void
putname(struct pkt *p, const char *name, int ptr)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		put8(p, (unsigned)l);
		memcpy(p->b + p->n, name, l);
		p->n += (int)l;
		name += l + (dot ? 1 : 0);
	}
	if (ptr >= 0)
		put16(p, 0xc000u | (unsigned)ptr);
	else
		put8(p, 0);
}

static void
hdr(struct pkt *p, unsigned rcode, unsigned qd, unsigned an, unsigned ns, unsigned ar)
{
	p->n = 0;
	put16(p, 0x1234);
	put16(p, 0x8180 | rcode);
	put16(p, qd);
	put16(p, an);
	put16(p, ns);
	put16(p, ar);
}

/* RR header with a given owner (pointer if ptr >= 0, else full name). */
static void
rrhdr(struct pkt *p, const char *owner, int ptr, unsigned type, uint32_t ttl, unsigned rdlen)
{
	putname(p, owner ? owner : "", ptr);
	put16(p, type);
	put16(p, 1);
	put32(p, ttl);
	put16(p, rdlen);
}

/* MX reply for example.com: question at 12, answers compressed. */
static void
build_mx(struct pkt *p, uint32_t ttl1, uint32_t ttl2)
{
	hdr(p, 0, 1, 2, 0, 0);
	putname(p, "example.com", -1);		/* offset 12 */
	put16(p, 15);
	put16(p, 1);
	/* mx1.example.com: "mx1" + pointer to 12 = 1+3+2 = 6 bytes */
	rrhdr(p, NULL, 12, 15, ttl1, 2 + 6);
	put16(p, 10);
	putname(p, "mx1", 12);
	rrhdr(p, NULL, 12, 15, ttl2, 2 + 6);
	put16(p, 20);
	putname(p, "mx2", 12);
}

static void
test_ttl_valid(void **state)
{
	struct pkt p;

	(void)state;
	build_mx(&p, 300, 120);
	assert_int_equal(dns_answer_min_ttl(p.b, p.n), 120);
	build_mx(&p, 60, 3600);
	assert_int_equal(dns_answer_min_ttl(p.b, p.n), 60);
	build_mx(&p, 0, 5);
	assert_int_equal(dns_answer_min_ttl(p.b, p.n), 0);
	/* RFC 2181: top bit set reads as 0 */
	build_mx(&p, 0x80000000u, 500);
	assert_int_equal(dns_answer_min_ttl(p.b, p.n), 0);
	build_mx(&p, 0x7fffffffu, 0x7fffffffu);
	assert_int_equal(dns_answer_min_ttl(p.b, p.n), 0x7fffffffL);
}

static void
test_ttl_uncompressed_and_cname(void **state)
{
	struct pkt p;

	(void)state;
	/* A reply: CNAME then A, owners written out in full */
	hdr(&p, 0, 1, 2, 0, 0);
	putname(&p, "www.example.org", -1);
	put16(&p, 1);
	put16(&p, 1);
	rrhdr(&p, "www.example.org", -1, 5, 900, 18);	/* CNAME host.example.org */
	putname(&p, "host.example.org", -1);
	rrhdr(&p, "host.example.org", -1, 1, 45, 4);
	put32(&p, 0x7f000001);
	assert_int_equal(p.n, 12 + 17 + 4 + (17 + 10 + 18) + (18 + 10 + 4));
	assert_int_equal(dns_answer_min_ttl(p.b, p.n), 45);
}

static void
test_ttl_no_answer(void **state)
{
	struct pkt p;

	(void)state;
	hdr(&p, 3, 1, 0, 0, 0);
	putname(&p, "nope.example", -1);
	put16(&p, 15);
	put16(&p, 1);
	assert_int_equal(dns_answer_min_ttl(p.b, p.n), -1);
	assert_int_equal(dns_answer_min_ttl(NULL, 0), -1);
	assert_int_equal(dns_answer_min_ttl(p.b, 11), -1);
}

static void
test_ttl_truncated_everywhere(void **state)
{
	struct pkt p;

	(void)state;
	build_mx(&p, 300, 120);
	for (int len = 0; len < p.n; len++)
		if (dns_answer_min_ttl(p.b, len) != -1)
			fail_msg("truncated to %d of %d bytes: got %ld", len, p.n,
			    dns_answer_min_ttl(p.b, len));
	/* trailing garbage after the counted RRs is ignored */
	p.b[p.n++] = 0xff;
	assert_int_equal(dns_answer_min_ttl(p.b, p.n), 120);
}

struct bad_case {
	const char *name;
	void (*build)(struct pkt *p);
};

static void
q_example(struct pkt *p, unsigned an)
{
	hdr(p, 0, 1, an, 0, 0);
	putname(p, "example.com", -1);
	put16(p, 15);
	put16(p, 1);
}

static void bad_self_ptr(struct pkt *p)
{
	q_example(p, 1);
	put16(p, 0xc000u | (unsigned)p->n);	/* owner points at itself */
	put16(p, 15); put16(p, 1); put32(p, 5); put16(p, 0);
}
static void bad_forward_ptr(struct pkt *p)
{
	q_example(p, 1);
	put16(p, 0xc000u | (unsigned)(p->n + 2));	/* points forward */
	put8(p, 0);
	put16(p, 15); put16(p, 1); put32(p, 5); put16(p, 0);
}
static void bad_header_ptr(struct pkt *p)
{
	q_example(p, 1);
	put16(p, 0xc000u | 4);			/* into the header */
	put16(p, 15); put16(p, 1); put32(p, 5); put16(p, 0);
}
static void bad_loop_two(struct pkt *p)
{
	/* question name "a" + pointer back to itself via a second hop:
	 * 12: 01 'a' c0 12 -> pointer to 12: loops */
	hdr(p, 0, 1, 0, 0, 0);
	put8(p, 1); put8(p, 'a'); put16(p, 0xc000u | 12);
	put16(p, 15); put16(p, 1);
}
static void bad_label_type(struct pkt *p)
{
	q_example(p, 1);
	put8(p, 0x41);				/* extended label type */
	put8(p, 0);
	put16(p, 15); put16(p, 1); put32(p, 5); put16(p, 0);
}
static void bad_long_name(struct pkt *p)
{
	hdr(p, 0, 1, 0, 0, 0);
	for (int i = 0; i < 5; i++) {		/* 5 x 64 = 320 > 255 */
		put8(p, 63);
		memset(p->b + p->n, 'x', 63);
		p->n += 63;
	}
	put8(p, 0);
	put16(p, 15); put16(p, 1);
	/* give it an answer so a lenient walker would return a TTL */
	p->b[7] = 1;
	put16(p, 0xc000u | 12); put16(p, 15); put16(p, 1); put32(p, 5); put16(p, 0);
}
static void bad_rdlen(struct pkt *p)
{
	q_example(p, 1);
	put16(p, 0xc000u | 12); put16(p, 15); put16(p, 1); put32(p, 5);
	put16(p, 400);				/* runs past the end */
	put16(p, 10);
}
static void bad_counts(struct pkt *p)
{
	q_example(p, 65535);			/* claims 65535 answers */
	put16(p, 0xc000u | 12); put16(p, 15); put16(p, 1); put32(p, 5); put16(p, 0);
}
static void bad_qdcount(struct pkt *p)
{
	hdr(p, 0, 65535, 1, 0, 0);
	putname(p, "example.com", -1);
	put16(p, 15); put16(p, 1);
}

static const struct bad_case bad_cases[] = {
	{ "pointer to itself", bad_self_ptr },
	{ "forward pointer", bad_forward_ptr },
	{ "pointer into header", bad_header_ptr },
	{ "pointer loop in question", bad_loop_two },
	{ "label type 0x40", bad_label_type },
	{ "name longer than 255", bad_long_name },
	{ "rdlength past end", bad_rdlen },
	{ "ancount larger than packet", bad_counts },
	{ "qdcount larger than packet", bad_qdcount },
};

static void
test_ttl_garbage(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		struct pkt p;
		long r, n;

		memset(&p, 0, sizeof p);
		bad_cases[i].build(&p);
		r = dns_answer_min_ttl(p.b, p.n);
		n = dns_negative_ttl(p.b, p.n);
		if (r != -1 || n != -1)
			fail_msg("case \"%s\": answer ttl %ld, negative ttl %ld, want -1",
			    bad_cases[i].name, r, n);
	}
}

static void
test_ttl_pointer_chain(void **state)
{
	struct pkt p;
	int mx1;

	(void)state;
	/* owner of answer 2 = pointer to "mx1" label that itself points to
	 * the question name: two hops, each going backwards. */
	q_example(&p, 2);
	put16(&p, 0xc000u | 12);
	put16(&p, 15); put16(&p, 1); put32(&p, 77); put16(&p, 8);
	put16(&p, 10);
	mx1 = p.n;
	putname(&p, "mx1", 12);
	put16(&p, 0xc000u | (unsigned)mx1);
	put16(&p, 15); put16(&p, 1); put32(&p, 66); put16(&p, 2 + 2);
	put16(&p, 20);
	put16(&p, 0xc000u | (unsigned)mx1);
	assert_int_equal(dns_answer_min_ttl(p.b, p.n), 66);
}

/* NXDOMAIN with an SOA in the authority section. */
static int nx_rdlen_at;

static void
build_nx(struct pkt *p, uint32_t soa_ttl, uint32_t minimum)
{
	hdr(p, 3, 1, 0, 1, 0);
	putname(p, "nope.example.com", -1);	/* 12: 4nope 7example 3com 0 */
	put16(p, 15);
	put16(p, 1);
	/* owner example.com = pointer to 12 + 5; MNAME 1+2+2, RNAME 1+10+2 */
	rrhdr(p, NULL, 17, 6, soa_ttl, 5 + 13 + 20);
	nx_rdlen_at = p->n - 2;
	putname(p, "ns", 17);			/* MNAME ns.example.com */
	putname(p, "hostmaster.", 17);		/* RNAME: a 10-byte label + pointer */
	put32(p, 2024010101);
	put32(p, 7200);
	put32(p, 3600);
	put32(p, 1209600);
	put32(p, minimum);
}

static void
test_negative_ttl(void **state)
{
	struct pkt p;

	(void)state;
	build_nx(&p, 3600, 900);
	assert_int_equal(dns_negative_ttl(p.b, p.n), 900);
	assert_int_equal(dns_answer_min_ttl(p.b, p.n), -1);
	build_nx(&p, 60, 900);
	assert_int_equal(dns_negative_ttl(p.b, p.n), 60);
	build_nx(&p, 3600, 0xffffffffu);		/* top bit: 0 */
	assert_int_equal(dns_negative_ttl(p.b, p.n), 0);
	build_nx(&p, 3600, 900);
	for (int len = 0; len < p.n; len++)
		if (dns_negative_ttl(p.b, len) != -1)
			fail_msg("negative ttl truncated to %d: %ld", len, dns_negative_ttl(p.b, len));
	/* an SOA rdata too short for its 20 fixed bytes */
	build_nx(&p, 3600, 900);
	assert_int_equal(p.n, nx_rdlen_at + 2 + 38);
	p.b[nx_rdlen_at + 1] -= 1;	/* rdlength 37: MINIMUM cut short */
	p.n -= 1;
	assert_int_equal(dns_negative_ttl(p.b, p.n), -1);
	/* NODATA without authority: nothing to go by */
	hdr(&p, 0, 1, 0, 0, 0);
	putname(&p, "example.com", -1);
	put16(&p, 15);
	put16(&p, 1);
	assert_int_equal(dns_negative_ttl(p.b, p.n), -1);
}

/* --- addresses refused unless dns.allow_private --- */

static const struct {
	const char *ip;
	const char *kind;	/* NULL: public, used */
} private_cases[] = {
	{ "127.0.0.1", "loopback" },
	{ "127.255.255.254", "loopback" },
	{ "10.0.0.1", "private" },
	{ "10.255.255.255", "private" },
	{ "172.16.0.1", "private" },
	{ "172.31.255.255", "private" },
	{ "172.15.255.255", NULL },
	{ "172.32.0.0", NULL },
	{ "192.168.1.1", "private" },
	{ "192.169.0.1", NULL },
	{ "192.167.255.255", NULL },
	{ "169.254.1.1", "link-local" },
	{ "169.253.1.1", NULL },
	{ "0.0.0.0", "unspecified" },
	{ "0.1.2.3", "unspecified" },
	{ "1.0.0.1", NULL },
	{ "8.8.8.8", NULL },
	{ "11.0.0.1", NULL },
	{ "126.255.255.255", NULL },
	{ "128.0.0.1", NULL },
	{ "::1", "loopback" },
	{ "::", "unspecified" },
	{ "::2", NULL },
	{ "fc00::1", "private" },
	{ "fd12:3456::1", "private" },
	{ "fbff::1", NULL },
	{ "fe80::1", "link-local" },
	{ "febf:ffff::1", "link-local" },
	{ "fec0::1", "private" },
	{ "ff02::1", NULL },
	{ "2001:db8::1", NULL },
	{ "2a00:1450:4001:81b::200e", NULL },
	{ "::ffff:127.0.0.1", "loopback" },
	{ "::ffff:10.1.2.3", "private" },
	{ "::ffff:172.20.0.1", "private" },
	{ "::ffff:192.168.0.1", "private" },
	{ "::ffff:169.254.0.1", "link-local" },
	{ "::ffff:0.0.0.0", "unspecified" },
	{ "::ffff:8.8.8.8", NULL },
	{ "64:ff9b::10.0.0.1", "private" },
	{ "64:ff9b::7f00:1", "loopback" },
	{ "64:ff9b::8.8.8.8", NULL },
};

static void
test_addr_private_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof private_cases / sizeof private_cases[0]; i++) {
		union dns_addr a;
		const char *got, *want = private_cases[i].kind;

		memset(&a, 0, sizeof a);
		if (inet_pton(AF_INET, private_cases[i].ip, &a.v4.sin_addr) == 1)
			a.v4.sin_family = AF_INET;
		else if (inet_pton(AF_INET6, private_cases[i].ip, &a.v6.sin6_addr) == 1)
			a.v6.sin6_family = AF_INET6;
		else
			fail_msg("bad test address %s", private_cases[i].ip);
		got = dns_addr_private(&a.sa);
		if ((got == NULL) != (want == NULL) || (got && strcmp(got, want) != 0))
			fail_msg("%s: got %s, want %s", private_cases[i].ip, got ? got : "public",
			    want ? want : "public");
	}
}

static void
test_addr_private_unknown_family(void **state)
{
	union dns_addr a;

	(void)state;
	memset(&a, 0, sizeof a);
	a.sa.sa_family = AF_UNIX;
	assert_non_null(dns_addr_private(&a.sa));
}

/* --- DANE: AD bit, TLSA records --- */

/* TLSA reply for _25._tcp.mx.example: question at 12, answers by pointer. */
static void
build_tlsa(struct pkt *p, int ad)
{
	hdr(p, 0, 1, 4, 0, 0);
	if (ad)
		p->b[3] |= 0x20;
	putname(p, "_25._tcp.mx.example", -1);	/* offset 12 */
	put16(p, 52);
	put16(p, 1);
	rrhdr(p, NULL, 12, 52, 300, 3 + 32);		/* 3 1 1 */
	put8(p, 3); put8(p, 1); put8(p, 1);
	for (int i = 0; i < 32; i++)
		put8(p, (unsigned)i);
	rrhdr(p, NULL, 12, 52, 300, 3 + 64);		/* 2 0 2 */
	put8(p, 2); put8(p, 0); put8(p, 2);
	for (int i = 0; i < 64; i++)
		put8(p, 0xff);
	/* an RRSIG (type 46) and a TLSA of class CH: both skipped */
	rrhdr(p, NULL, 12, 46, 300, 4);
	put32(p, 0);
	putname(p, "", 12);
	put16(p, 52);
	put16(p, 3);
	put32(p, 300);
	put16(p, 4);
	put32(p, 0x03010100);
}

static void
test_tlsa_parse(void **state)
{
	struct pkt p;
	struct dane_set *s;

	(void)state;
	build_tlsa(&p, 1);
	assert_int_equal(dns_reply_authentic(p.b, p.n), 1);
	s = dns_parse_tlsa(p.b, p.n);
	assert_non_null(s);
	assert_int_equal(s->seen, 2);
	assert_int_equal(s->n, 2);
	assert_int_equal(s->nusable, 2);
	assert_int_equal(s->r[0].usage, 3);
	assert_int_equal(s->r[0].selector, 1);
	assert_int_equal(s->r[0].mtype, 1);
	assert_int_equal(s->r[0].len, 32);
	assert_int_equal(s->r[0].data[31], 31);
	assert_int_equal(s->r[1].usage, 2);
	assert_int_equal(s->r[1].mtype, 2);
	assert_int_equal(s->r[1].len, 64);
	assert_int_equal(s->r[1].data[63], 0xff);
	dane_unref(s);

	build_tlsa(&p, 0);
	assert_int_equal(dns_reply_authentic(p.b, p.n), 0);
	assert_int_equal(dns_reply_authentic(p.b, 11), 0);
	assert_int_equal(dns_reply_authentic(NULL, 0), 0);
}

static void
test_tlsa_hostile(void **state)
{
	struct pkt p;
	struct dane_set *s;

	(void)state;
	/* cut at every length: never a record from beyond the end */
	build_tlsa(&p, 1);
	for (int n = 0; n < p.n; n++) {
		s = dns_parse_tlsa(p.b, n);
		if (s != NULL)
			fail_msg("parsed a set from %d of %d bytes", n, p.n);
	}
	/* an rdlength that runs past the end */
	build_tlsa(&p, 1);
	p.b[12 + 21 + 4 + 2 + 2 + 2 + 4] = 0xff;	/* first answer's rdlength, high byte */
	assert_null(dns_parse_tlsa(p.b, p.n));
	/* a TLSA with no data byte is counted, not kept */
	hdr(&p, 0, 1, 1, 0, 0);
	putname(&p, "_25._tcp.mx.example", -1);
	put16(&p, 52);
	put16(&p, 1);
	rrhdr(&p, NULL, 12, 52, 300, 3);
	put8(&p, 3); put8(&p, 1); put8(&p, 1);
	s = dns_parse_tlsa(p.b, p.n);
	assert_non_null(s);
	assert_int_equal(s->seen, 1);
	assert_int_equal(s->n, 0);
	assert_int_equal(s->nusable, 0);
	assert_int_equal(dane_policy(TLS_POLICY_OPPORTUNISTIC, s), TLS_POLICY_REQUIRED);
	dane_unref(s);
	/* no TLSA in the answer, or no answer: NULL */
	hdr(&p, 3, 1, 0, 0, 0);
	putname(&p, "_25._tcp.mx.example", -1);
	put16(&p, 52);
	put16(&p, 1);
	assert_null(dns_parse_tlsa(p.b, p.n));
	assert_null(dns_parse_tlsa(NULL, 0));
	/* random garbage after a valid header never crashes */
	for (unsigned seed = 1; seed < 2000; seed++) {
		uint32_t x = seed;

		hdr(&p, 0, 1 + seed % 2, seed % 5, 0, 0);
		for (int i = 0; i < 200; i++) {
			x = x * 1103515245u + 12345u;
			put8(&p, (x >> 16) & 0xff);
		}
		dane_unref(dns_parse_tlsa(p.b, p.n));
	}
}

static void
test_tlsa_name(void **state)
{
	char buf[300], host[260];

	(void)state;
	assert_int_equal(dns_tlsa_name(buf, sizeof buf, 25, "mx.example.com"), 0);
	assert_string_equal(buf, "_25._tcp.mx.example.com");
	assert_int_equal(dns_tlsa_name(buf, sizeof buf, 2525, "mx"), 0);
	assert_string_equal(buf, "_2525._tcp.mx");
	memset(host, 'a', 250);
	host[250] = '\0';
	assert_int_equal(dns_tlsa_name(buf, sizeof buf, 25, host), -1);	/* > 253 */
	assert_int_equal(dns_tlsa_name(buf, 10, 25, "mx.example.com"), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_table),
		cmocka_unit_test(test_order_rnd_only_for_ties),
		cmocka_unit_test(test_order_many),
		cmocka_unit_test(test_ttl_valid),
		cmocka_unit_test(test_ttl_uncompressed_and_cname),
		cmocka_unit_test(test_ttl_no_answer),
		cmocka_unit_test(test_ttl_truncated_everywhere),
		cmocka_unit_test(test_ttl_garbage),
		cmocka_unit_test(test_ttl_pointer_chain),
		cmocka_unit_test(test_negative_ttl),
		cmocka_unit_test(test_addr_private_table),
		cmocka_unit_test(test_addr_private_unknown_family),
		cmocka_unit_test(test_tlsa_parse),
		cmocka_unit_test(test_tlsa_hostile),
		cmocka_unit_test(test_tlsa_name),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
