/*
 * io_uring relay: an experiment, not part of Tandem.
 *
 * A single-threaded TCP relay on io_uring that does what Tandem's epoll data plane does for
 * small messages (accept, connect, then per direction recv into a 16 KiB buffer and send it
 * on; FIN becomes shutdown(SHUT_WR); both FINs close), with none of its features (no
 * timeouts, balancing, limits or counters). It answers one question for BENCHMARKS.md: how
 * much of the per-request cost that Tandem and HAProxy share is the epoll/syscall model, i.e.
 * what a data plane on io_uring could win.
 *
 *   relay LISTEN_PORT BACKEND_PORT      (127.0.0.1 only; gcc relay.c -luring)
 */
#define _GNU_SOURCE
#include <liburing.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
enum { OP_ACCEPT = 1, OP_CONNECT, OP_RECV, OP_SEND, OP_SHUT };
struct conn;
struct side { struct conn *c; int fd, i, len, off, eof; char buf[16384]; };
struct conn { struct side s[2]; int refs, closed; };
static struct io_uring ring;
static struct sockaddr_in baddr;
static int listen_fd;
static struct io_uring_sqe *sqe(void) {
  struct io_uring_sqe *e = io_uring_get_sqe(&ring);
  if (!e) { io_uring_submit(&ring); e = io_uring_get_sqe(&ring); }
  return e;
}
static void *tag(struct side *s, int op) { return (void *)((uintptr_t)s | op); }
static void post_recv(struct side *s) { struct io_uring_sqe *e = sqe(); io_uring_prep_recv(e, s->fd, s->buf, sizeof s->buf, 0); io_uring_sqe_set_data(e, tag(s, OP_RECV)); s->c->refs++; }
static void post_send(struct side *s) { struct io_uring_sqe *e = sqe(); io_uring_prep_send(e, s->c->s[1 - s->i].fd, s->buf + s->off, s->len - s->off, MSG_NOSIGNAL); io_uring_sqe_set_data(e, tag(s, OP_SEND)); s->c->refs++; }
static void close_conn(struct conn *c) { if (!c->closed) { c->closed = 1; io_uring_submit(&ring); /* queued ops must take their file before its number is reused */ for (int i = 0; i < 2; i++) { shutdown(c->s[i].fd, SHUT_RDWR); close(c->s[i].fd); } } }
static void put(struct conn *c) { if (--c->refs == 0 && c->closed) free(c); }
static void post_accept(void) { struct io_uring_sqe *e = sqe(); io_uring_prep_multishot_accept(e, listen_fd, 0, 0, 0); io_uring_sqe_set_data(e, (void *)OP_ACCEPT); }
static void on_eof(struct side *s) {
  struct conn *c = s->c; s->eof = 1;
  if (c->s[1 - s->i].eof) { close_conn(c); return; }
  struct io_uring_sqe *e = sqe(); io_uring_prep_shutdown(e, c->s[1 - s->i].fd, SHUT_WR); io_uring_sqe_set_data(e, tag(s, OP_SHUT)); c->refs++;
}
int main(int argc, char **argv) {
  int one = 1;
  struct io_uring_params p; memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (io_uring_queue_init_params(4096, &ring, &p) < 0) { p.flags = 0; if (io_uring_queue_init_params(4096, &ring, &p) < 0) { perror("uring"); return 1; } fprintf(stderr, "no DEFER_TASKRUN\n"); }
  baddr.sin_family = AF_INET; baddr.sin_port = htons(atoi(argv[2])); inet_pton(AF_INET, "127.0.0.1", &baddr.sin_addr);
  listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(listen_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))}; inet_pton(AF_INET, "127.0.0.1", &la.sin_addr);
  if (bind(listen_fd, (void *)&la, sizeof la) || listen(listen_fd, 4096)) { perror("listen"); return 1; }
  post_accept();
  for (;;) {
    io_uring_submit_and_wait(&ring, 1);
    struct io_uring_cqe *cqe; unsigned head, n = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      n++;
      uintptr_t d = (uintptr_t)io_uring_cqe_get_data(cqe); int op = d & 7, res = cqe->res;
      if (op == OP_ACCEPT) {
        if (!(cqe->flags & IORING_CQE_F_MORE)) post_accept();
        if (res < 0) continue;
        struct conn *c = calloc(1, sizeof *c);
        for (int i = 0; i < 2; i++) { c->s[i].c = c; c->s[i].i = i; }
        c->s[0].fd = res; c->s[1].fd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(c->s[1].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct io_uring_sqe *e = sqe(); io_uring_prep_connect(e, c->s[1].fd, (void *)&baddr, sizeof baddr); io_uring_sqe_set_data(e, tag(&c->s[1], OP_CONNECT)); c->refs++;
        continue;
      }
      struct side *s = (struct side *)(d & ~(uintptr_t)7); struct conn *c = s->c;
      if (c->closed) { put(c); continue; }
      switch (op) {
      case OP_CONNECT: if (res < 0) close_conn(c); else { post_recv(&c->s[0]); post_recv(&c->s[1]); } break;
      case OP_RECV: if (res > 0) { s->len = res; s->off = 0; post_send(s); } else if (res == 0) on_eof(s); else close_conn(c); break;
      case OP_SEND: if (res < 0) close_conn(c); else { s->off += res; if (s->off < s->len) post_send(s); else post_recv(s); } break;
      case OP_SHUT: break;
      }
      put(c);
    }
    io_uring_cq_advance(&ring, n);
  }
}
