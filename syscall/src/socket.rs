//! Socket calls socket2 leaves to raw code.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

use socket2::{MaybeUninitSlice, MsgHdrMut, SockAddr, Socket};

/// Room for the control messages of one receive: on 64-bit Linux a hop limit takes 24 bytes and
/// a receive timestamp 32, so this holds both with room to spare.
const CONTROL_ROOM: usize = 128;

/// `SO_TIMESTAMPNS`, which is also the type of its control message (`SCM_TIMESTAMPNS`).
const SO_TIMESTAMPNS: i32 = libc::SO_TIMESTAMPNS;

/// One datagram taken by [`recv_with_control`]. Held inline: a receive allocates nothing.
#[derive(Debug)]
pub struct Datagram {
    /// Bytes written to the caller's buffer.
    pub len: usize,
    /// Where it came from.
    pub from: SockAddr,
    control: [u8; CONTROL_ROOM],
    control_len: usize,
}

impl Datagram {
    /// Its control messages, as the kernel laid them out (`cmsghdr` records; see
    /// [`control_messages`]).
    pub fn control(&self) -> &[u8] {
        &self.control[..self.control_len]
    }

    /// When the kernel received it, by the real-time clock (`CLOCK_REALTIME`), if the socket
    /// asked for it ([`set_receive_timestamps`]).
    pub fn received_at(&self) -> Option<SystemTime> {
        control_messages(self.control())
            .find(|m| m.level == libc::SOL_SOCKET && m.kind == SO_TIMESTAMPNS)
            .and_then(|m| timespec(m.data))
    }
}

/// Receives one datagram into `buf` with its source address and control messages (the hop
/// limit of an IPv6 packet, for example, once `IPV6_RECVHOPLIMIT` is on; the receive time once
/// [`set_receive_timestamps`] is). Allocates nothing.
pub fn recv_with_control(socket: &Socket, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut control = [0u8; CONTROL_ROOM];
    // Any address serves as storage: the kernel overwrites it with the source.
    let mut from = SockAddr::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0));
    // SAFETY: reinterpreting initialised bytes as possibly-uninitialised ones is always sound;
    // the kernel only ever writes into them.
    let data = unsafe { &mut *(std::ptr::from_mut::<[u8]>(buf) as *mut [MaybeUninit<u8>]) };
    // SAFETY: as above, for the control buffer.
    let room =
        unsafe { &mut *(std::ptr::from_mut::<[u8]>(&mut control) as *mut [MaybeUninit<u8>]) };
    let mut bufs = [MaybeUninitSlice::new(data)];
    let mut msg = MsgHdrMut::new()
        .with_addr(&mut from)
        .with_buffers(&mut bufs)
        .with_control(room);
    let len = socket.recvmsg(&mut msg, 0)?;
    let control_len = msg.control_len().min(CONTROL_ROOM);
    Ok(Datagram {
        len,
        from,
        control,
        control_len,
    })
}

/// Asks the kernel to stamp every datagram `socket` receives with the time it arrived
/// (`SO_TIMESTAMPNS`, nanoseconds, taken as the packet enters the stack or, at the latest,
/// when it is read), read back with [`Datagram::received_at`].
pub fn set_receive_timestamps(socket: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a valid c_int that outlives the call, which only reads it, and the
    // length given is its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_TIMESTAMPNS,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One control message of a receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlMessage<'a> {
    /// `cmsg_level`, e.g. `SOL_SOCKET` or `IPPROTO_IPV6`.
    pub level: i32,
    /// `cmsg_type`, e.g. `IPV6_HOPLIMIT`.
    pub kind: i32,
    /// What follows the header, up to `cmsg_len`.
    pub data: &'a [u8],
}

/// The control messages in `control`, in the Linux layout: each record a `cmsg_len` the size
/// of a `usize`, level and type as `i32`, and its data, all aligned to `usize`. Stops at the
/// first record that does not fit.
pub fn control_messages(control: &[u8]) -> impl Iterator<Item = ControlMessage<'_>> {
    const WORD: usize = std::mem::size_of::<usize>();
    const HEADER: usize = WORD + 8;
    let align = |n: usize| n.div_ceil(WORD) * WORD;
    let mut at = 0;
    std::iter::from_fn(move || {
        let record = control.get(at..)?;
        let len = usize::from_ne_bytes(record.get(..WORD)?.try_into().ok()?);
        let level = i32::from_ne_bytes(record.get(WORD..WORD + 4)?.try_into().ok()?);
        let kind = i32::from_ne_bytes(record.get(WORD + 4..HEADER)?.try_into().ok()?);
        if len < HEADER || len > record.len() {
            return None;
        }
        let data = record.get(align(HEADER)..len).unwrap_or(&[]);
        at += align(len);
        Some(ControlMessage { level, kind, data })
    })
}

/// A `struct timespec` as 64-bit Linux lays it out (seconds, then nanoseconds, both 64-bit),
/// as a time since the epoch; `None` if it is not one.
fn timespec(data: &[u8]) -> Option<SystemTime> {
    let secs = i64::from_ne_bytes(data.get(..8)?.try_into().ok()?);
    let nanos = i64::from_ne_bytes(data.get(8..16)?.try_into().ok()?);
    let secs = u64::try_from(secs).ok()?;
    let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000)?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// The `sockaddr_ll` that sends an `AF_PACKET` datagram socket's frames of `protocol` (an
/// EtherType, host order) to `mac` on interface `index`; the kernel builds the Ethernet header.
pub fn link_layer_addr(index: u32, protocol: u16, mac: [u8; 6]) -> io::Result<SockAddr> {
    let index = i32::try_from(index).map_err(|_| io::Error::other("interface index too large"))?;
    // SAFETY: `try_init` hands us zeroed storage large enough for any socket address; we
    // write a `sockaddr_ll` into it (which fits) and report exactly its size.
    let ((), addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            let ll = &mut *storage.cast::<libc::sockaddr_ll>();
            ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
            ll.sll_protocol = protocol.to_be();
            ll.sll_ifindex = index;
            ll.sll_halen = 6;
            ll.sll_addr[..6].copy_from_slice(&mac);
            *len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            Ok(())
        })
    }?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use socket2::{Domain, Type};

    use super::*;

    #[test]
    fn a_datagram_arrives_whole_with_its_source_and_the_control_messages_asked_for() {
        let rx = Socket::new(Domain::IPV6, Type::DGRAM, None).unwrap();
        rx.set_only_v6(true).unwrap();
        rx.bind(&SockAddr::from(
            "[::1]:0".parse::<std::net::SocketAddr>().unwrap(),
        ))
        .unwrap();
        rx.set_recv_hoplimit_v6(true).unwrap();
        let to = rx.local_addr().unwrap().as_socket().unwrap();
        let tx = UdpSocket::bind("[::1]:0").unwrap();
        tx.send_to(b"advert", to).unwrap();
        let mut buf = [0u8; 32];
        let got = recv_with_control(&rx, &mut buf).unwrap();
        assert_eq!(&buf[..got.len], b"advert");
        assert_eq!(got.from.as_socket(), Some(tx.local_addr().unwrap()));
        // One IPV6_HOPLIMIT record: a header (len, level, type) and a 4-byte value.
        let messages: Vec<_> = control_messages(got.control()).collect();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(messages[0].level, libc::IPPROTO_IPV6);
        assert_eq!(messages[0].kind, libc::IPV6_HOPLIMIT);
        assert_eq!(
            messages[0].data,
            64i32.to_ne_bytes(),
            "loopback's hop limit"
        );
        assert_eq!(got.received_at(), None, "no timestamp was asked for");
    }

    #[test]
    fn a_datagram_asked_to_be_stamped_carries_the_time_the_kernel_received_it() {
        let rx = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        rx.bind(&SockAddr::from(
            "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(),
        ))
        .unwrap();
        set_receive_timestamps(&rx).unwrap();
        let to = rx.local_addr().unwrap().as_socket().unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 32];
        // Linux turns stamping on for the whole stack shortly after the first socket asks (in
        // deferred work); until then a datagram is stamped when it is read. Let that happen.
        tx.send_to(b"warm-up", to).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let warm_up = recv_with_control(&rx, &mut buf).unwrap();
        assert!(
            warm_up.received_at().is_some(),
            "stamped, if only at the read"
        );
        let before = SystemTime::now();
        tx.send_to(b"advert", to).unwrap();
        // Read well after it arrived: the stamp is the arrival, not the read.
        std::thread::sleep(Duration::from_millis(50));
        let read = SystemTime::now();
        let got = recv_with_control(&rx, &mut buf).unwrap();
        assert_eq!(&buf[..got.len], b"advert");
        let stamped = got.received_at().expect("a receive timestamp");
        assert!(
            stamped >= before,
            "{stamped:?} before the send at {before:?}"
        );
        assert!(
            read.duration_since(stamped).unwrap() >= Duration::from_millis(40),
            "stamped at {stamped:?}, read at {read:?}: the stamp is the read"
        );
    }

    /// A control message as 64-bit Linux lays it out, padded to the next word.
    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut c = Vec::new();
        c.extend_from_slice(&(16 + data.len()).to_ne_bytes());
        c.extend_from_slice(&level.to_ne_bytes());
        c.extend_from_slice(&kind.to_ne_bytes());
        c.extend_from_slice(data);
        c.resize(c.len().div_ceil(8) * 8, 0);
        c
    }

    #[test]
    fn control_messages_are_walked_record_by_record_and_stop_at_a_broken_one() {
        let mut control = cmsg(41, 52, &255i32.to_ne_bytes());
        let mut stamp = 1_700_000_000i64.to_ne_bytes().to_vec();
        stamp.extend_from_slice(&5i64.to_ne_bytes());
        control.extend(cmsg(libc::SOL_SOCKET, SO_TIMESTAMPNS, &stamp));
        let all: Vec<_> = control_messages(&control).collect();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].level, all[0].kind), (41, 52));
        assert_eq!(all[0].data, 255i32.to_ne_bytes());
        assert_eq!(all[1].data, &stamp[..]);
        assert_eq!(
            timespec(all[1].data),
            Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5))
        );
        assert_eq!(control_messages(&[]).count(), 0);
        assert_eq!(
            control_messages(&[0xff; 20]).count(),
            0,
            "a length past the end"
        );
        assert_eq!(
            control_messages(&[0; 16]).count(),
            0,
            "a length shorter than a header"
        );
        let mut cut = control.clone();
        cut.truncate(control.len() - 1);
        assert_eq!(
            control_messages(&cut).count(),
            1,
            "the second record is cut short"
        );
    }

    #[test]
    fn a_timespec_out_of_range_is_no_time() {
        let ts = |secs: i64, nanos: i64| {
            let mut b = secs.to_ne_bytes().to_vec();
            b.extend_from_slice(&nanos.to_ne_bytes());
            timespec(&b)
        };
        assert_eq!(ts(0, 0), Some(SystemTime::UNIX_EPOCH));
        assert_eq!(ts(-1, 0), None);
        assert_eq!(ts(1, 1_000_000_000), None);
        assert_eq!(ts(1, -1), None);
        assert_eq!(timespec(&[0; 8]), None, "32-bit fields");
    }

    #[test]
    fn a_link_layer_address_names_the_interface_protocol_and_destination() {
        let addr = link_layer_addr(7, 0x0806, [0xff; 6]).unwrap();
        assert_eq!(addr.family(), libc::AF_PACKET as libc::sa_family_t);
        assert_eq!(
            addr.len() as usize,
            std::mem::size_of::<libc::sockaddr_ll>()
        );
        assert!(link_layer_addr(u32::MAX, 0x0806, [0xff; 6]).is_err());
    }
}
