/* What compiler-rt's profile runtime (LLVM 19) needs on wasm32-wasip1 beyond
 * its portable sources, for the training build only (python-wasm/pgo/train).
 *
 * InstrProfilingRuntime.cpp is C++: its one job, done here from a C
 * constructor, is to define the variable every instrumented object refers to
 * and to initialise the runtime (read LLVM_PROFILE_FILE, write the profile
 * when the process exits). WASI has no host name (%h expands to nothing) and
 * no file locks (the training run is one process writing its own file). */
#include "InstrProfiling.h"

COMPILER_RT_VISIBILITY int INSTR_PROF_PROFILE_RUNTIME_VAR = 0;

__attribute__((constructor)) static void register_runtime(void) { __llvm_profile_initialize(); }

int lprofGetHostName(char *Name, int Len) {
  (void)Name;
  (void)Len;
  return -1;
}

int flock(int fd, int op) {
  (void)fd;
  (void)op;
  return 0;
}
