/*
 * LD_PRELOAD shim for a test's own redis-server: shifts the wall clock
 * (CLOCK_REALTIME, gettimeofday, time) by an offset in milliseconds that the
 * test writes, at any moment, into the first 8 bytes of the file named by
 * CLOCK_SHIFT_FILE (mapped shared, so a write is seen at the next call).
 * Monotonic clocks are left alone, as a real clock step leaves them.
 * Calls the kernel directly (no dlsym), so it is safe inside malloc.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile int64_t *shift_ms = 0;
static int tried = 0;

static int64_t offset_ms(void) {
  if (!tried) {
    tried = 1;
    const char *path = getenv("CLOCK_SHIFT_FILE");
    if (path) {
      int fd = open(path, O_RDONLY);
      if (fd >= 0) {
        void *p = mmap(0, 8, PROT_READ, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) shift_ms = (volatile int64_t *)p;
        close(fd);
      }
    }
  }
  return shift_ms ? *shift_ms : 0;
}

static void shift(struct timespec *ts) {
  int64_t ns = (int64_t)ts->tv_nsec + (offset_ms() % 1000) * 1000000;
  ts->tv_sec += offset_ms() / 1000 + ns / 1000000000;
  ns %= 1000000000;
  if (ns < 0) { ns += 1000000000; ts->tv_sec -= 1; }
  ts->tv_nsec = ns;
}

int clock_gettime(clockid_t clk, struct timespec *ts) {
  int rc = syscall(SYS_clock_gettime, clk, ts);
  if (rc == 0 && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE)) shift(ts);
  return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
  struct timespec ts;
  int rc = syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
  if (rc != 0) return rc;
  shift(&ts);
  if (tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
  (void)tz;
  return 0;
}

time_t time(time_t *out) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (out) *out = ts.tv_sec;
  return ts.tv_sec;
}
