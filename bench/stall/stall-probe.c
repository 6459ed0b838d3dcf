// Stall probe: how late a real-time thread pinned to one CPU wakes from 10 ms sleeps.
//
// What the VRRP election can never do better than: if this thread, at SCHED_RR priority 10,
// wakes 90 ms late, the machine (or the host under it) stopped that CPU, and any advert due
// then was late whatever its thread's priority. Run one per CPU beside a benchmark and compare
// the timestamps: a stall seen on every CPU at once stopped the whole machine.
//
//   cc -O2 -o stall-probe bench/stall/stall-probe.c
//   sudo ./stall-probe SECONDS CPU > cpuN.txt
//
// Prints each wake-up 5 ms or more late (UTC time, lateness, steal jiffies of the whole machine
// meanwhile, from /proc/stat), then a histogram.
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long steal_jiffies(void) {
  FILE *f = fopen("/proc/stat", "r");
  long long v[8] = {0};
  char line[512];
  if (!f) return -1;
  if (fgets(line, sizeof line, f))
    sscanf(line, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3],
           &v[4], &v[5], &v[6], &v[7]);
  fclose(f);
  return v[7];
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s SECONDS CPU\n", argv[0]);
    return 2;
  }
  long seconds = atol(argv[1]);
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(atoi(argv[2]), &cpus);
  if (sched_setaffinity(0, sizeof cpus, &cpus)) perror("sched_setaffinity");
  struct sched_param param = {.sched_priority = 10};
  if (sched_setscheduler(0, SCHED_RR, &param)) perror("sched_setscheduler (runs unprivileged)");

  const double edges[] = {0.1, 1, 2, 5, 10, 20, 50};
  long counts[8] = {0};
  struct timespec due, now;
  clock_gettime(CLOCK_MONOTONIC, &due);
  long long steal_at_start = steal_jiffies();
  for (long i = 0; i < seconds * 100; i++) {
    long long steal_before = steal_jiffies();
    due.tv_nsec += 10 * 1000 * 1000;
    if (due.tv_nsec >= 1000000000) {
      due.tv_nsec -= 1000000000;
      due.tv_sec++;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL);
    clock_gettime(CLOCK_MONOTONIC, &now);
    double late_ms = (now.tv_sec - due.tv_sec) * 1e3 + (now.tv_nsec - due.tv_nsec) / 1e6;
    int bucket = 0;
    while (bucket < 7 && late_ms >= edges[bucket]) bucket++;
    counts[bucket]++;
    if (late_ms >= 5) {
      struct timespec wall;
      struct tm tm;
      clock_gettime(CLOCK_REALTIME, &wall);
      gmtime_r(&wall.tv_sec, &tm);
      printf("%02d:%02d:%02d.%03ld late %.1f ms, steal jiffies in the period %lld\n", tm.tm_hour,
             tm.tm_min, tm.tm_sec, wall.tv_nsec / 1000000, late_ms, steal_jiffies() - steal_before);
      fflush(stdout);
    }
    // After a stall, start the deadlines afresh rather than firing a burst of overdue ones.
    if (late_ms > 10) clock_gettime(CLOCK_MONOTONIC, &due);
  }
  printf("wake-ups %ld: <0.1 ms %ld, <1 %ld, <2 %ld, <5 %ld, <10 %ld, <20 %ld, <50 %ld, >=50 %ld; "
         "steal jiffies %lld\n",
         seconds * 100, counts[0], counts[1], counts[2], counts[3], counts[4], counts[5],
         counts[6], counts[7], steal_jiffies() - steal_at_start);
  return 0;
}
