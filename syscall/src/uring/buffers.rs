//! The receive buffers the kernel picks from (an io_uring "provided buffer ring").
//!
//! A receive posted on an idle connection names no buffer: the kernel takes one from this
//! pool only when bytes arrive, and the relay hands it back once they are sent on. An idle
//! connection therefore holds no buffer at all, as on the epoll path, however many receives
//! wait. The pool starts small and grows in chunks when the kernel finds it empty, up to
//! `MAX_BUFFERS`.

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::cell::{Cell, RefCell};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering::Release};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// Bytes per buffer. A receive that fills one is the sign of a bulk stream, which the relay
/// then moves with splice instead.
pub const BUF_SIZE: usize = 16 * 1024;

/// Slots in the ring (a power of two; the most buffers the pool can ever hold).
const RING_ENTRIES: u16 = 4096;

/// Buffers added at a time: at start and whenever the kernel finds none free.
pub const CHUNK: usize = 64;

/// The pool stops growing here (64 MiB); past it a receive waits for buffers to come back.
const MAX_BUFFERS: usize = RING_ENTRIES as usize;

/// Buffer group id the receives name.
pub const GROUP: u16 = 0;

const PAGE: usize = 4096;

/// One buffer taken by the kernel for a receive, with the number of bytes it holds. It must be
/// given back (`uring::give_back`); while it is out nobody else can receive into it.
///
/// Only this crate makes or changes one: its fields say which pool memory may be read as
/// initialised bytes, so a forged or altered `Buf` would read memory the kernel is writing,
/// or hand one buffer out twice.
#[derive(Debug)]
pub struct Buf {
    /// The ring whose pool it belongs to.
    pub(crate) ring: u32,
    pub(crate) id: u16,
    pub(crate) len: usize,
}

impl Buf {
    /// The bytes the receive brought.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing (a receive never completes with an empty buffer).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub struct Buffers {
    /// The ring the kernel reads buffer addresses from (page-aligned, shared with the kernel).
    ring: *mut BufRingEntry,
    /// Our copy of the ring's tail: the next slot to fill.
    tail: Cell<u16>,
    /// The buffers' memory, in chunks that never move once allocated. Raw memory, not boxes:
    /// the kernel writes into it behind Rust's back.
    chunks: RefCell<Vec<*mut u8>>,
    /// Buffers the kernel handed out with a completion and we have not given back yet.
    out: Cell<usize>,
}

impl Buffers {
    /// Allocates the ring and the first chunk and registers them with `uring`.
    pub fn register(uring: &IoUring) -> io::Result<Self> {
        let layout = ring_layout();
        // SAFETY: the layout has a non-zero size.
        let ring = unsafe { alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if ring.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let buffers = Self {
            ring,
            tail: Cell::new(0),
            chunks: RefCell::new(Vec::new()),
            out: Cell::new(0),
        };
        // SAFETY: the ring memory is page-aligned, RING_ENTRIES entries long, and freed only
        // after the io_uring that reads it is closed with nothing in flight (`Ring`'s field
        // order; `ring::uninstall`).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, RING_ENTRIES, GROUP, 0)?
        };
        buffers.grow();
        Ok(buffers)
    }

    /// Adds a chunk of buffers; false once the pool is at its limit.
    pub fn grow(&self) -> bool {
        let mut chunks = self.chunks.borrow_mut();
        let first = chunks.len() * CHUNK;
        if first + CHUNK > MAX_BUFFERS {
            return false;
        }
        // Not zeroed: only bytes the kernel wrote are ever read (`bytes` stops at the length
        // of the receive), and zeroing a page-aligned allocation writes every page, making the
        // whole chunk resident (1 MiB per data thread) before any byte arrives.
        // SAFETY: the layout has a non-zero size.
        let chunk = unsafe { alloc(chunk_layout()) };
        if chunk.is_null() {
            return false;
        }
        let base = chunk as u64;
        chunks.push(chunk);
        drop(chunks);
        for i in 0..CHUNK {
            self.push((first + i) as u16, base + (i * BUF_SIZE) as u64);
        }
        self.publish();
        true
    }

    /// The bytes a buffer holds.
    pub fn bytes(&self, buf: &Buf) -> &[u8] {
        // SAFETY: a taken buffer is ours until given back (the kernel wrote it before posting
        // the completion and will not touch it again), and chunks live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.addr(buf.id), buf.len.min(BUF_SIZE)) }
    }

    fn addr(&self, id: u16) -> *const u8 {
        let chunk = self.chunks.borrow()[id as usize / CHUNK];
        // SAFETY: the offset stays inside the chunk.
        unsafe { chunk.add(id as usize % CHUNK * BUF_SIZE) }
    }

    /// Returns a buffer to the kernel's pool.
    pub fn give_back(&self, id: u16) {
        self.out.set(self.out.get().saturating_sub(1));
        self.push(id, self.addr(id) as u64);
        self.publish();
    }

    /// A completion carried a buffer out of the pool.
    pub fn taken(&self) {
        self.out.set(self.out.get() + 1);
    }

    /// Every buffer of the pool is out: the kernel's "no buffers" was not a race with one
    /// coming back.
    pub fn all_out(&self) -> bool {
        self.out.get() >= self.chunks.borrow().len() * CHUNK
    }

    fn push(&self, id: u16, addr: u64) {
        let tail = self.tail.get();
        // Field by field through raw pointers, never a `&mut` to the entry: entry 0 also holds
        // the ring's tail, which the kernel reads at any time. Offsets are those of the
        // kernel's `struct io_uring_buf { u64 addr; u32 len; u16 bid; u16 resv; }`.
        const _: () = assert!(size_of::<BufRingEntry>() == 16);
        // SAFETY: the index is masked into the ring; the kernel only reads slots before the
        // published tail, and this one is past it; the offsets stay inside the 16-byte entry.
        unsafe {
            let entry = self
                .ring
                .add((tail & (RING_ENTRIES - 1)) as usize)
                .cast::<u8>();
            entry.cast::<u64>().write(addr);
            entry.add(8).cast::<u32>().write(BUF_SIZE as u32);
            entry.add(12).cast::<u16>().write(id);
        }
        self.tail.set(tail.wrapping_add(1));
    }

    /// Makes the entries pushed so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry of the ring we own; the kernel reads
        // it concurrently, hence the atomic release store.
        unsafe {
            let tail = BufRingEntry::tail(self.ring).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail.get(), Release);
        }
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: allocated in `register` and `grow` with these layouts. A pool is dropped when
        // setting up its ring failed, or with a ring taken down with nothing in flight (after
        // the io_uring closed): no operation can still write into it.
        unsafe {
            for &chunk in self.chunks.get_mut().iter() {
                dealloc(chunk, chunk_layout());
            }
            dealloc(self.ring.cast(), ring_layout());
        }
    }
}

fn chunk_layout() -> Layout {
    Layout::from_size_align(CHUNK * BUF_SIZE, PAGE).expect("a valid layout")
}

fn ring_layout() -> Layout {
    Layout::from_size_align(RING_ENTRIES as usize * size_of::<BufRingEntry>(), PAGE)
        .expect("a valid layout")
}
