/*
 * Does an io_uring's eventfd wake a sleeping thread promptly? An experiment, not part of
 * Tandem: the measurements behind docs/ARCHITECTURE.md, "Waking a ring".
 *
 * For each kind of ring (deferring; plain with cooperative task work; plain), ROUNDS times:
 * arm a receive on one end of a Unix socket pair, let a second thread write a byte into the
 * other end while this thread sleeps in poll() on the ring's eventfd (as tokio sleeps in
 * epoll_wait), and report
 *   - whether the eventfd had been signalled by the time the writer's send returned, and
 *   - how long after the send this thread woke.
 * Then, on a deferring ring, how many completions one enter with no minimum collects when 100
 * are waiting.
 *
 *   gcc -O2 -pthread -o wake bench/uring_wake/wake.c -luring && ./wake
 */
#define _GNU_SOURCE
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 20

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

struct writer { int fd, efd; double sent_at; int signalled_in_send; };

static void *write_one(void *arg) {
  struct writer *w = arg;
  uint64_t count;
  usleep(2000); /* the ring's thread is asleep in poll() by now */
  while (read(w->efd, &count, 8) == 8) {}
  w->sent_at = now_ms();
  if (write(w->fd, "x", 1) != 1) abort();
  w->signalled_in_send = read(w->efd, &count, 8) == 8;
  if (w->signalled_in_send) { count = 1; if (write(w->efd, &count, 8) != 8) abort(); }
  return NULL;
}

static int setup(struct io_uring *ring, unsigned flags, int *efd) {
  struct io_uring_params p = { .flags = flags };
  if (io_uring_queue_init_params(256, ring, &p) < 0) return -1;
  *efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return io_uring_register_eventfd(ring, *efd);
}

static void rounds(const char *name, unsigned flags) {
  struct io_uring ring;
  int efd, sv[2];
  char byte;
  if (setup(&ring, flags, &efd) < 0) { printf("%-24s cannot be set up here\n", name); return; }
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) abort();
  int in_send = 0;
  double worst = 0, total = 0;
  for (int i = 0; i < ROUNDS; i++) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_recv(sqe, sv[0], &byte, 1, 0);
    io_uring_submit_and_get_events(&ring);
    uint64_t count;
    while (read(efd, &count, 8) == 8) {}
    struct writer w = { .fd = sv[1], .efd = efd };
    pthread_t t;
    pthread_create(&t, NULL, write_one, &w);
    struct pollfd pfd = { .fd = efd, .events = POLLIN };
    poll(&pfd, 1, 1000);
    double woke = now_ms();
    pthread_join(t, NULL);
    in_send += w.signalled_in_send;
    double late = woke - w.sent_at;
    total += late;
    if (late > worst) worst = late;
    struct io_uring_cqe *cqe;
    io_uring_submit_and_get_events(&ring);
    while (io_uring_peek_cqe(&ring, &cqe) == 0) io_uring_cqe_seen(&ring, cqe);
  }
  printf("%-24s signalled within the send: %2d of %d; woke after %.3f ms on average (worst %.3f)\n",
         name, in_send, ROUNDS, total / ROUNDS, worst);
  close(sv[0]); close(sv[1]);
  io_uring_queue_exit(&ring);
  close(efd);
}

static void capped_enter(void) {
  struct io_uring ring;
  int efd, sv[100][2];
  char bytes[100];
  if (setup(&ring, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, &efd) < 0) return;
  for (int i = 0; i < 100; i++) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) < 0) abort();
    io_uring_prep_recv(io_uring_get_sqe(&ring), sv[i][0], &bytes[i], 1, 0);
  }
  io_uring_submit_and_get_events(&ring);
  for (int i = 0; i < 100; i++) if (write(sv[i][1], "y", 1) != 1) abort();
  printf("deferring ring, 100 completions waiting: collected per enter:");
  for (int got = 0, k = 0; got < 100 && k < 10; k++) {
    io_uring_get_events(&ring);
    struct io_uring_cqe *cqe;
    int n = 0;
    while (io_uring_peek_cqe(&ring, &cqe) == 0) { io_uring_cqe_seen(&ring, cqe); n++; }
    printf(" %d", n);
    got += n;
  }
  printf("\n");
  io_uring_queue_exit(&ring);
}

int main(void) {
  rounds("deferring", IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  rounds("plain, cooperative", IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
  rounds("plain", 0);
  capped_enter();
  return 0;
}
