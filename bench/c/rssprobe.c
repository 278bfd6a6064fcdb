/* rssprobe: report this process's memory right after start-up (the preload's
 * constructor has run by then: the policy is loaded).
 *
 * Prints: vmrss_kb=A private_kb=B pss_kb=C anon_kb=D   (from /proc/self/status and
 * /proc/self/smaps_rollup; private = Private_Clean + Private_Dirty; anon = Anonymous:
 * heap, stacks and written data pages, the part no other process can ever share,
 * unlike the library's code, which is private here only because no other process
 * happens to map it at the same time). */
#include "procmem.h"

int main(void) {
    return procmem_report("rssprobe");
}
