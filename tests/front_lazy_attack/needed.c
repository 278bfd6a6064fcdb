/* One of many libraries a program needs (built as libnN.so with -DN=N). */
int sx_needed(void) { return 1; }
