/*
 * sockmap relay: an experiment, not part of Tandem.
 *
 * A TCP relay whose bytes never reach user space: both sockets of a connection go into a
 * BPF sockhash keyed by socket cookie, and an sk_skb verdict program redirects every skb
 * that arrives on one socket to the egress of its peer. It answers one question for
 * BENCHMARKS.md: would moving the bytes into the kernel this way beat splice(2) on loopback?
 *
 *   relay LISTEN_PORT BACKEND_PORT      (127.0.0.1 only; needs CAP_BPF / root)
 *
 * Deliberately minimal: one thread per connection, no timeouts, and a FIN is passed on as
 * soon as it is read, without waiting for the redirect queue to empty.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof(*a)); }

static int map_fd;
static int backend_port;

static unsigned long long cookie_of(int fd) {
  unsigned long long c = 0;
  socklen_t len = sizeof c;
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len)) perror("SO_COOKIE");
  return c;
}

/* map[cookie of `from`] = `to`: what arrives on `from` leaves through `to`. */
static void route(int from, int to) {
  union bpf_attr a;
  unsigned long long key = cookie_of(from), value = (unsigned long long)to;
  memset(&a, 0, sizeof a);
  a.map_fd = map_fd;
  a.key = (unsigned long)&key;
  a.value = (unsigned long)&value;
  a.flags = BPF_ANY;
  if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a)) perror("map update");
}

static void *serve(void *arg) {
  int client = (int)(long)arg, one = 1, eof[2] = {0, 0};
  int backend = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(backend_port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (connect(backend, (void *)&sa, sizeof sa)) {
    perror("connect");
    close(client);
    close(backend);
    return 0;
  }
  setsockopt(backend, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  route(client, backend);
  route(backend, client);
  struct pollfd p[2] = {{client, POLLIN | POLLRDHUP, 0}, {backend, POLLIN | POLLRDHUP, 0}};
  char buf[4096];
  while (!(eof[0] && eof[1])) {
    if (poll(p, 2, -1) < 0) break;
    for (int i = 0; i < 2; i++) {
      if (eof[i] || !p[i].revents) continue;
      ssize_t n = recv(p[i].fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) fprintf(stderr, "relay: %zd bytes reached user space\n", n);
      if (n == 0 || (n < 0 && errno != EAGAIN)) {
        eof[i] = 1;
        p[i].events = 0;
        shutdown(p[1 - i].fd, SHUT_WR);
      }
    }
  }
  close(client);
  close(backend);
  return 0;
}

int main(int argc, char **argv) {
  static char log[65536];
  union bpf_attr a;
  if (argc != 3) {
    fprintf(stderr, "usage: relay LISTEN_PORT BACKEND_PORT\n");
    return 2;
  }
  backend_port = atoi(argv[2]);

  memset(&a, 0, sizeof a);
  a.map_type = BPF_MAP_TYPE_SOCKHASH;
  a.key_size = 8;
  a.value_size = 8;
  a.max_entries = 65536;
  map_fd = sys_bpf(BPF_MAP_CREATE, &a);
  if (map_fd < 0) { perror("map create"); return 1; }

  /* r6 = skb; key = get_socket_cookie(skb) on the stack; return sk_redirect_hash(skb, map,
   * &key, 0), where flags 0 means: out of the peer socket (egress). */
  struct bpf_insn prog[] = {
      {BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0},
      {BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_get_socket_cookie},
      {BPF_STX | BPF_MEM | BPF_DW, 10, 0, -8, 0},
      {BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0},
      {BPF_LD | BPF_DW | BPF_IMM, 2, BPF_PSEUDO_MAP_FD, 0, map_fd},
      {0, 0, 0, 0, 0},
      {BPF_ALU64 | BPF_MOV | BPF_X, 3, 10, 0, 0},
      {BPF_ALU64 | BPF_ADD | BPF_K, 3, 0, 0, -8},
      {BPF_ALU64 | BPF_MOV | BPF_K, 4, 0, 0, 0},
      {BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_redirect_hash},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_SK_SKB;
  a.insns = (unsigned long)prog;
  a.insn_cnt = sizeof prog / sizeof prog[0];
  a.license = (unsigned long)"GPL";
  a.log_buf = (unsigned long)log;
  a.log_size = sizeof log;
  a.log_level = 1;
  int prog_fd = sys_bpf(BPF_PROG_LOAD, &a);
  if (prog_fd < 0) { perror("prog load"); fprintf(stderr, "%s\n", log); return 1; }

  memset(&a, 0, sizeof a);
  a.target_fd = map_fd;
  a.attach_bpf_fd = prog_fd;
  a.attach_type = BPF_SK_SKB_VERDICT;
  if (sys_bpf(BPF_PROG_ATTACH, &a)) { perror("attach"); return 1; }

  int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (bind(listener, (void *)&sa, sizeof sa) || listen(listener, 1024)) { perror("listen"); return 1; }
  for (;;) {
    int c = accept(listener, 0, 0);
    if (c < 0) continue;
    pthread_t t;
    if (pthread_create(&t, 0, serve, (void *)(long)c) == 0) pthread_detach(t); else close(c);
  }
}
