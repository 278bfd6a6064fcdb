/* A library whose constructor takes 3 s: the loader's lock is held meanwhile. */
#include <unistd.h>
__attribute__((constructor)) static void slow(void) { sleep(3); }
int sx_slow(void) { return 1; }
