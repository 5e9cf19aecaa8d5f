/* glibc's own signals (32 and 33, below SIGRTMIN): glibc's posix_spawn sets them to "ignored" in
 * the child unless they are in the POSIX_SPAWN_SETSIGDEF set, and that survives execve, so every
 * program would start with them ignored (djb's tcpserver's children do not). sigaddset() refuses
 * them; the bits are set directly (Linux's sigset_t: bit sig-1 of an array of longs, a stable
 * ABI). Shared by the addon and ucspi-spawner. */
#ifndef UCSPI_GLIBC_SIGNALS_H
#define UCSPI_GLIBC_SIGNALS_H

#include <signal.h>

static inline void add_glibc_signals(sigset_t *set) {
  unsigned long *words = (unsigned long *)set;
  const int bits = 8 * (int)sizeof(unsigned long);
  for (int sig = 32; sig < SIGRTMIN; sig++) words[(sig - 1) / bits] |= 1UL << ((sig - 1) % bits);
}

#endif
