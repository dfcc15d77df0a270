/* sink.c - placeholder until volley-sink lands. */
int main(void) { return 0; }
