/* main.c - placeholder until the CLI lands. */
#include "util.h"
int main(void) { return 0; }
