//! Batches of datagrams, each batch moved by one system call: `recvmmsg(2)` and
//! `sendmmsg(2)`.
//!
//! A [`Batch`] owns its slots (a payload buffer, a length and a peer address each), allocated
//! once; receiving and sending build the kernel's message headers on the stack for the call,
//! so moving a datagram allocates nothing, and the batch holds no pointer into itself (it can
//! move, and cross threads, freely).

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The most datagrams one call moves; also the most slots a batch has.
pub const MAX_BATCH: usize = 64;

/// Datagram slots for `recvmmsg` and `sendmmsg`.
pub struct Batch {
    /// `slots × slot_size` bytes, slot `i` at `i × slot_size`.
    buf: Box<[u8]>,
    slot_size: usize,
    lens: Box<[usize]>,
    truncated: Box<[bool]>,
    peers: Box<[libc::sockaddr_storage]>,
    peer_lens: Box<[libc::socklen_t]>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("slots", &self.lens.len())
            .field("slot_size", &self.slot_size)
            .finish()
    }
}

impl Batch {
    /// `slots` slots (at most [`MAX_BATCH`]) of `slot_size` bytes each. The buffer is taken
    /// zeroed from the allocator, so its pages become resident only as datagrams land in them.
    pub fn new(slots: usize, slot_size: usize) -> Self {
        let slots = slots.clamp(1, MAX_BATCH);
        // SAFETY: an all-zero `sockaddr_storage` is a valid value (family AF_UNSPEC).
        let empty: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Self {
            buf: vec![0u8; slots * slot_size].into_boxed_slice(),
            slot_size,
            lens: vec![0; slots].into_boxed_slice(),
            truncated: vec![false; slots].into_boxed_slice(),
            peers: vec![empty; slots].into_boxed_slice(),
            peer_lens: vec![0; slots].into_boxed_slice(),
        }
    }

    pub fn slots(&self) -> usize {
        self.lens.len()
    }

    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// The datagram in slot `i` (as received, or as set by [`Batch::slot_mut`]).
    pub fn payload(&self, i: usize) -> &[u8] {
        let start = i * self.slot_size;
        &self.buf[start..start + self.lens[i].min(self.slot_size)]
    }

    /// The whole of slot `i`, to write a datagram into; [`Batch::set_len`] says how much.
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        let start = i * self.slot_size;
        &mut self.buf[start..start + self.slot_size]
    }

    pub fn set_len(&mut self, i: usize, len: usize) {
        self.lens[i] = len.min(self.slot_size);
    }

    /// Whether the datagram received in slot `i` was longer than the slot (its tail is lost).
    pub fn truncated(&self, i: usize) -> bool {
        self.truncated[i]
    }

    /// Where the datagram in slot `i` came from (or, after [`Batch::set_peer`], goes to).
    pub fn peer(&self, i: usize) -> Option<SocketAddr> {
        from_storage(&self.peers[i], self.peer_lens[i])
    }

    /// Addresses the datagram in slot `i` to `peer`, for [`Batch::send`] with `to_peers`.
    pub fn set_peer(&mut self, i: usize, peer: SocketAddr) {
        self.peer_lens[i] = to_storage(peer, &mut self.peers[i]);
    }

    /// Receives up to `slots.len()` datagrams into `slots` without waiting: how many came
    /// (`WouldBlock` when none was queued). Each slot gets its datagram, its length, its
    /// source and whether it was cut short.
    pub fn recv(&mut self, fd: BorrowedFd<'_>, slots: Range<usize>) -> io::Result<usize> {
        let slots = slots.start..slots.end.min(self.slots());
        let count = slots.len().min(MAX_BATCH);
        if count == 0 {
            return Ok(0);
        }
        let mut iovs = [MaybeUninit::<libc::iovec>::uninit(); MAX_BATCH];
        let mut hdrs = [MaybeUninit::<libc::mmsghdr>::uninit(); MAX_BATCH];
        let base = self.buf.as_mut_ptr();
        for k in 0..count {
            let i = slots.start + k;
            // SAFETY: slot `i` lies inside `buf` (`i < slots()`), so the offset stays in bounds.
            let data = unsafe { base.add(i * self.slot_size) };
            iovs[k].write(libc::iovec {
                iov_base: data.cast(),
                iov_len: self.slot_size,
            });
            // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths); the fields
            // the kernel reads are set just below.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = std::ptr::from_mut(&mut self.peers[i]).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_iov = iovs[k].as_mut_ptr();
            msg.msg_iovlen = 1;
            hdrs[k].write(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
        // SAFETY: the first `count` headers are initialised above; each points at a slot of
        // `buf` and a peer address of `peers`, which `&mut self` lets the kernel write, and
        // which outlive the call. MSG_DONTWAIT: the call never blocks.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr().cast(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (k, hdr) in hdrs.iter().take(n).enumerate() {
            // SAFETY: the kernel filled in the first `n` headers, all initialised above.
            let hdr = unsafe { hdr.assume_init_ref() };
            let i = slots.start + k;
            self.lens[i] = (hdr.msg_len as usize).min(self.slot_size);
            self.truncated[i] = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.peer_lens[i] = hdr.msg_hdr.msg_namelen;
        }
        Ok(n)
    }

    /// Sends the datagrams of `slots` without waiting, `prefix` before each payload (a PROXY
    /// header; empty for none): each to its peer when `to_peers`, else to the socket's
    /// connected address. Returns how many the kernel took, from the first; an error means
    /// the first could not be sent (`WouldBlock`: the socket's buffer is full).
    pub fn send(
        &self,
        fd: BorrowedFd<'_>,
        slots: Range<usize>,
        prefix: &[u8],
        to_peers: bool,
    ) -> io::Result<usize> {
        let slots = slots.start..slots.end.min(self.slots());
        let count = slots.len().min(MAX_BATCH);
        if count == 0 {
            return Ok(0);
        }
        let mut iovs = [MaybeUninit::<[libc::iovec; 2]>::uninit(); MAX_BATCH];
        let mut hdrs = [MaybeUninit::<libc::mmsghdr>::uninit(); MAX_BATCH];
        for k in 0..count {
            let i = slots.start + k;
            let payload = self.payload(i);
            let pair = [
                libc::iovec {
                    iov_base: prefix.as_ptr().cast_mut().cast(),
                    iov_len: prefix.len(),
                },
                libc::iovec {
                    iov_base: payload.as_ptr().cast_mut().cast(),
                    iov_len: payload.len(),
                },
            ];
            let iov = iovs[k].write(pair);
            // SAFETY: all-zero is a valid `msghdr`; the fields the kernel reads are set below.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            if prefix.is_empty() {
                msg.msg_iov = iov[1..].as_mut_ptr();
                msg.msg_iovlen = 1;
            } else {
                msg.msg_iov = iov.as_mut_ptr();
                msg.msg_iovlen = 2;
            }
            if to_peers {
                msg.msg_name = std::ptr::from_ref(&self.peers[i]).cast_mut().cast();
                msg.msg_namelen = self.peer_lens[i];
            }
            hdrs[k].write(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
        // SAFETY: the first `count` headers are initialised above and point at `prefix`,
        // payloads and peer addresses that outlive the call; the kernel only reads them (the
        // `*mut` the ABI asks for is never written through) and writes each `msg_len`.
        let n = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr().cast(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// `UDP_SEGMENT` (linux/udp.h; the libc crate has it only for some targets): the size of
/// the datagrams one `sendmsg` of a longer buffer is split into (UDP GSO, Linux 4.18).
const UDP_SEGMENT: libc::c_int = 103;

/// The most datagrams one segmented send carries (the kernel's `UDP_MAX_SEGMENTS`, 64 before
/// Linux 6.9 and 128 since; the lower bound holds on both).
pub const MAX_SEGMENTS: usize = 64;

/// The most bytes one segmented send carries: its datagrams, prefixes included, travel as
/// one IP packet until split, so they fit an IPv4 or IPv6 length field with its headers.
pub const MAX_SEGMENTED_BYTES: usize = 65_000;

impl Batch {
    /// Sends the datagrams of `slots`, `prefix` before each payload, to the socket's
    /// connected address in one `sendmsg` with UDP GSO: the kernel carries them through its
    /// stack as one buffer and splits it into datagrams of `prefix + payload(first)` bytes
    /// (at the device, or at a local receiving socket), saving the per-datagram route, queue
    /// and device work. Every payload but the last must be as long as the first and the last
    /// no longer; at most [`MAX_SEGMENTS`] datagrams and [`MAX_SEGMENTED_BYTES`] bytes
    /// (`InvalidInput` otherwise, nothing sent). All go or none: `Ok` is the count. The
    /// kernel refuses a segment longer than the path's MTU allows, or a socket or route that
    /// cannot segment (`EINVAL`, `EIO`, `ENOPROTOOPT`): the caller sends those one by one.
    pub fn send_segmented(
        &self,
        fd: BorrowedFd<'_>,
        slots: Range<usize>,
        prefix: &[u8],
    ) -> io::Result<usize> {
        let slots = slots.start..slots.end.min(self.slots());
        let count = slots.len();
        if count == 0 {
            return Ok(0);
        }
        let segment = prefix.len() + self.payload(slots.start).len();
        let total: usize = slots
            .clone()
            .map(|i| prefix.len() + self.payload(i).len())
            .sum();
        let uniform = slots.clone().enumerate().all(|(k, i)| {
            let len = prefix.len() + self.payload(i).len();
            len == segment || (k + 1 == count && len <= segment)
        });
        let segment_size = u16::try_from(segment).ok().filter(|&s| s > 0);
        let Some(segment_size) = segment_size
            .filter(|_| uniform && count <= MAX_SEGMENTS && total <= MAX_SEGMENTED_BYTES)
        else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "datagrams not of one size, or too many or too long for one segmented send",
            ));
        };
        let mut iovs = [MaybeUninit::<libc::iovec>::uninit(); 2 * MAX_SEGMENTS];
        let mut used = 0;
        for i in slots {
            for part in [prefix, self.payload(i)] {
                if !part.is_empty() {
                    iovs[used].write(libc::iovec {
                        iov_base: part.as_ptr().cast_mut().cast(),
                        iov_len: part.len(),
                    });
                    used += 1;
                }
            }
        }
        // Room for one control message of a u16, aligned as a `cmsghdr`.
        let mut control = [0u64; 4];
        // SAFETY: all-zero is a valid `msghdr`; the fields the kernel reads are set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iovs.as_mut_ptr().cast();
        msg.msg_iovlen = used as _;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a length.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as _;
        debug_assert!(msg.msg_controllen as usize <= std::mem::size_of_val(&control));
        // SAFETY: `msg` points at `control`, which is aligned for a `cmsghdr` and has room
        // for the header and its u16 (checked above), so the first header is in bounds and
        // its data may be written unaligned.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
            libc::CMSG_DATA(cmsg)
                .cast::<u16>()
                .write_unaligned(segment_size);
        }
        // SAFETY: `msg` points at the first `used` iovecs (initialised above, pointing at
        // `prefix` and payloads that outlive the call) and at `control`; the kernel only
        // reads them. MSG_DONTWAIT: the call never blocks.
        let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(count)
        }
    }
}

/// The address in `storage` (`len` bytes of it), if it is IPv4 or IPv6.
fn from_storage(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, and `len` that it is
            // all there; `sockaddr_storage` is aligned for every address type.
            let v4 = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a `sockaddr_in6`.
            let v6 = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `storage` as the kernel lays it out; returns its length.
fn to_storage(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: `sockaddr_storage` is large and aligned enough for a `sockaddr_in`,
            // and all-zero is a valid one before the fields are set.
            let v4 = unsafe { &mut *std::ptr::from_mut(storage).cast::<libc::sockaddr_in>() };
            // SAFETY: all-zero is a valid `sockaddr_in`.
            *v4 = unsafe { std::mem::zeroed() };
            v4.sin_family = libc::AF_INET as libc::sa_family_t;
            v4.sin_port = a.port().to_be();
            v4.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for a `sockaddr_in6`.
            let v6 = unsafe { &mut *std::ptr::from_mut(storage).cast::<libc::sockaddr_in6>() };
            // SAFETY: all-zero is a valid `sockaddr_in6`.
            *v6 = unsafe { std::mem::zeroed() };
            v6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            v6.sin6_port = a.port().to_be();
            v6.sin6_addr.s6_addr = a.ip().octets();
            v6.sin6_flowinfo = a.flowinfo();
            v6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn addresses_go_in_and_out_of_the_kernel_layout_unchanged() {
        // SAFETY: all-zero is a valid `sockaddr_storage`.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        for text in ["192.0.2.7:53", "[2001:db8::1]:4433", "[fe80::1%3]:1"] {
            let addr: SocketAddr = text.parse().unwrap();
            let len = to_storage(addr, &mut storage);
            assert_eq!(from_storage(&storage, len), Some(addr), "{text}");
        }
        assert_eq!(from_storage(&storage, 4), None, "cut short");
    }

    #[test]
    fn a_batch_receives_several_datagrams_whole_and_sends_them_on_with_a_prefix() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let big = vec![7u8; 65_000];
        tx.send_to(b"one", rx.local_addr().unwrap()).unwrap();
        tx.send_to(&big, rx.local_addr().unwrap()).unwrap();
        tx.send_to(b"three", rx.local_addr().unwrap()).unwrap();
        let mut batch = Batch::new(8, 65_536);
        let n = batch.recv(rx.as_fd(), 2..8).unwrap();
        assert_eq!(n, 3);
        assert_eq!(batch.payload(2), b"one");
        assert_eq!(batch.payload(3), &big[..], "64 KiB pass whole");
        assert_eq!(batch.payload(4), b"three");
        assert_eq!(batch.peer(3), Some(tx.local_addr().unwrap()));
        assert!(!batch.truncated(3));
        assert_eq!(
            batch.recv(rx.as_fd(), 0..8).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for i in 2..5 {
            batch.set_peer(i, sink.local_addr().unwrap());
        }
        assert_eq!(batch.send(rx.as_fd(), 2..5, b"P:", true).unwrap(), 3);
        let mut buf = vec![0u8; 70_000];
        let n = sink.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"P:one");
        let n = sink.recv(&mut buf).unwrap();
        assert_eq!(n, 65_002);
        let n = sink.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"P:three");
        // On a connected socket, no addresses and no prefix.
        tx.connect(sink.local_addr().unwrap()).unwrap();
        assert_eq!(batch.send(tx.as_fd(), 4..5, b"", false).unwrap(), 1);
        let n = sink.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"three");
    }

    #[test]
    fn a_segmented_send_arrives_as_separate_datagrams_of_their_own_sizes() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        tx.connect(sink.local_addr().unwrap()).unwrap();
        let mut batch = Batch::new(8, 2048);
        let sizes = [1400, 1400, 1400, 1400, 300];
        for (i, &len) in sizes.iter().enumerate() {
            batch.slot_mut(i + 1)[..len].fill(i as u8 + 1);
            batch.set_len(i + 1, len);
        }
        let mut buf = vec![0u8; 70_000];
        // Plain, and with a prefix before each (PROXY v2 headers).
        for prefix in [&b""[..], b"HDR:"] {
            assert_eq!(batch.send_segmented(tx.as_fd(), 1..6, prefix).unwrap(), 5);
            for (i, &len) in sizes.iter().enumerate() {
                let n = sink.recv(&mut buf).unwrap();
                assert_eq!(n, prefix.len() + len, "datagram {i}");
                assert_eq!(&buf[..prefix.len()], prefix);
                assert!(buf[prefix.len()..n].iter().all(|&b| b == i as u8 + 1));
            }
        }
        // Not of one size (a longer one after the first), or too many bytes: refused whole.
        batch.set_len(2, 1500);
        let err = batch.send_segmented(tx.as_fd(), 1..6, b"").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let mut wide = Batch::new(2, 40_000);
        wide.set_len(0, 40_000);
        wide.set_len(1, 40_000);
        let err = wide.send_segmented(tx.as_fd(), 0..2, b"").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        sink.set_nonblocking(true).unwrap();
        assert!(
            sink.recv(&mut buf).is_err(),
            "nothing of a refused send went"
        );
    }

    #[test]
    fn a_socket_that_cannot_segment_refuses_with_einval_and_sends_one_by_one() {
        // Without UDP checksums (SO_NO_CHECK) the kernel cannot segment: the same refusal a
        // route with a smaller MTU than the segment gives, which callers answer by sending
        // one by one.
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        tx.connect(sink.local_addr().unwrap()).unwrap();
        let on: libc::c_int = 1;
        // SAFETY: a valid descriptor, and a c_int option value of the size given.
        let set = unsafe {
            libc::setsockopt(
                tx.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                std::ptr::from_ref(&on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0);
        let mut batch = Batch::new(2, 64);
        batch.set_len(0, 20);
        batch.set_len(1, 20);
        let err = batch.send_segmented(tx.as_fd(), 0..2, b"").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        assert_eq!(batch.send(tx.as_fd(), 0..2, b"", false).unwrap(), 2);
        let mut buf = [0u8; 64];
        assert_eq!(sink.recv(&mut buf).unwrap(), 20);
        assert_eq!(sink.recv(&mut buf).unwrap(), 20);
    }

    #[test]
    fn a_datagram_longer_than_its_slot_is_marked_cut_short() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&[1u8; 100], rx.local_addr().unwrap()).unwrap();
        let mut batch = Batch::new(1, 10);
        assert_eq!(batch.recv(rx.as_fd(), 0..1).unwrap(), 1);
        assert!(batch.truncated(0));
        assert_eq!(batch.payload(0).len(), 10);
    }

    #[test]
    fn a_refusal_from_the_peer_comes_back_on_the_connected_socket() {
        let closed = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(closed).unwrap();
        let mut batch = Batch::new(2, 64);
        batch.set_len(0, 1);
        batch.send(tx.as_fd(), 0..1, b"", false).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let err = batch.recv(tx.as_fd(), 0..2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
