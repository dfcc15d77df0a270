/*
 * fuzz_ucl.c - libFuzzer target for the config path: the UCL parser on
 * arbitrary bytes (includes disabled, so garbage never reads files), then,
 * when it parses, the config validation on the same text; and the reply
 * classifier on the same bytes as a reply line.
 *
 * Invariant checked: no crash, no leak, no sanitizer report; an input
 * either yields a tree or exactly one "name:line: message" error.
 *
 *   make fuzz && build/fuzz/fuzz_ucl -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"
#include "config.h"
#include "ucl.h"

static struct classify_rules *rules;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *err = NULL, *errors = NULL, *line;
	struct ucl_node *root;

	root = ucl_parse_string_flags((const char *)data, size, "fuzz.conf", UCL_NO_INCLUDE, &err);
	if ((root == NULL) == (err == NULL))
		abort();
	if (err != NULL && strncmp(err, "fuzz.conf:", 10) != 0)
		abort();
	free(err);
	if (root != NULL) {
		/* no .include in it (or parsing would have failed), so this reads no config file */
		struct config *c = config_load_string((const char *)data, size, "fuzz.conf", &errors);

		if ((c == NULL) == (errors == NULL))
			abort();
		config_free(c);
		free(errors);
	}
	ucl_free(root);

	if (rules == NULL)
		rules = classify_rules_builtin();
	line = malloc(size + 1);
	if (line == NULL)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	(void)classify_line(rules, line, NULL);
	free(line);
	return 0;
}
