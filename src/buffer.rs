//! Large buffers made ready to be filled, and filled while being read.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// An empty buffer for `cap` bytes. A large one has its pages made present
/// in one call (Linux: MADV_POPULATE_WRITE), not by one page fault per
/// 4 KiB as it is filled: for tens of MB that was most of the build's time.
pub(crate) fn buffer(cap: usize) -> Vec<u8> {
    #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
    let mut v: Vec<u8> = Vec::with_capacity(cap);
    if cap >= 1 << 20 {
        populate(v.as_mut_ptr(), cap);
    }
    v
}

/// Makes the pages of `cap` bytes at `ptr` (one allocation) present
/// (Linux; elsewhere nothing).
#[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
fn populate(ptr: *mut u8, cap: usize) {
    #[cfg(target_os = "linux")]
    {
        // Linux 5.14.
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        // SAFETY: page-aligned range inside the buffer's own allocation; the
        // advice only makes pages present (zeroed, as fresh pages are) and
        // fails harmlessly (EINVAL) where the kernel does not know it.
        unsafe {
            let page = 4096;
            let start = (ptr as usize).next_multiple_of(page);
            let end = (ptr as usize + cap) / page * page;
            if end > start {
                libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_WRITE);
            }
        }
    }
}

/// A buffer of a known length that one producer fills, on another thread,
/// while others read what it has filled so far: a large message is sent
/// while its attachments are still being encoded. Bytes once filled are
/// never written again, so a reader's slice of them stays valid.
pub struct Growing {
    ptr: *mut u8,
    cap: usize,
    len: usize,
    /// Its last bytes (at most 2), known before they are filled.
    tail: [u8; 2],
    tail_len: u8,
    /// Bytes filled so far, from the start.
    ready: AtomicUsize,
    /// Set once, when the producer stopped without filling every byte.
    failed: AtomicBool,
    /// The producer's filler was handed out.
    taken: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
}

// SAFETY: the buffer is owned by the Growing; the one Filler writes only
// bytes past `ready`, and readers read only bytes before it (published
// with Release, read with Acquire).
unsafe impl Send for Growing {}
// SAFETY: as above.
unsafe impl Sync for Growing {}

/// What stopped a producer before it filled its buffer.
#[derive(Debug)]
pub struct Unfilled;

impl Growing {
    /// A buffer for exactly `len` bytes, none filled yet, whose last
    /// bytes will be `tail` (at most 2, and at most `len`).
    pub fn new(len: usize, tail: &[u8]) -> Growing {
        assert!(
            tail.len() <= 2 && tail.len() <= len,
            "a short tail within the buffer"
        );
        let mut v = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(len));
        let mut t = [0; 2];
        t[..tail.len()].copy_from_slice(tail);
        Growing {
            ptr: v.as_mut_ptr(),
            cap: v.capacity(),
            len,
            tail: t,
            tail_len: tail.len() as u8,
            ready: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            taken: AtomicBool::new(false),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }

    /// Its length once filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (a length of 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The producer's side; there is one (a second call panics).
    pub fn filler(self: &Arc<Self>) -> Filler {
        assert!(!self.taken.swap(true, Ordering::AcqRel), "one filler per buffer");
        Filler {
            g: self.clone(),
            at: 0,
            done: false,
        }
    }

    /// The first `to` bytes, once they are filled (waiting for the producer
    /// until then); `Unfilled` if it stopped short of them.
    pub fn upto(&self, to: usize) -> Result<&[u8], Unfilled> {
        assert!(to <= self.len, "within the buffer");
        if self.ready.load(Ordering::Acquire) < to {
            let mut guard = self.lock.lock();
            while self.ready.load(Ordering::Acquire) < to {
                if self.failed.load(Ordering::Acquire) {
                    return Err(Unfilled);
                }
                self.cond.wait(&mut guard);
            }
        }
        // SAFETY: bytes [0, to) were written by the filler before it
        // published `ready` >= to (Release, read above with Acquire), and
        // are never written again.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr, to) })
    }

    /// Every byte, once filled.
    pub fn all(&self) -> Result<&[u8], Unfilled> {
        self.upto(self.len)
    }

    /// The bytes filled so far (no wait).
    pub fn filled(&self) -> &[u8] {
        let ready = self.ready.load(Ordering::Acquire);
        // SAFETY: as in `upto`.
        unsafe { std::slice::from_raw_parts(self.ptr, ready) }
    }

    /// Its last bytes as `new` was told them.
    pub fn tail(&self) -> &[u8] {
        &self.tail[..usize::from(self.tail_len)]
    }

    fn publish(&self, ready: usize, failed: bool) {
        let _guard = self.lock.lock();
        self.ready.store(ready, Ordering::Release);
        if failed {
            self.failed.store(true, Ordering::Release);
        }
        self.cond.notify_all();
    }
}

impl Drop for Growing {
    fn drop(&mut self) {
        // SAFETY: the allocation `new` made (u8 needs no drop: length 0).
        unsafe { drop(Vec::from_raw_parts(self.ptr, 0, self.cap)) };
    }
}

impl std::fmt::Debug for Growing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Growing")
            .field("len", &self.len)
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish()
    }
}

/// The producer of a [`Growing`] buffer: fills it in order. Dropped before
/// `finish` (a panic), it tells the readers the rest will not come.
pub struct Filler {
    g: Arc<Growing>,
    at: usize,
    done: bool,
}

impl Filler {
    /// The next `n` bytes' room, to write all of before `commit(n)`.
    pub fn room(&mut self, n: usize) -> &mut [MaybeUninit<u8>] {
        assert!(self.at + n <= self.g.len, "within the buffer");
        // SAFETY: [at, at + n) is inside the allocation and past `ready`:
        // no reader looks at it, and this filler is the only writer.
        unsafe { std::slice::from_raw_parts_mut(self.g.ptr.add(self.at).cast::<MaybeUninit<u8>>(), n) }
    }

    /// The next `n` bytes were all written (through `room`).
    ///
    /// # Safety
    /// Every one of them was written.
    pub unsafe fn commit(&mut self, n: usize) {
        assert!(self.at + n <= self.g.len, "within the buffer");
        self.at += n;
    }

    /// Appends `bytes`.
    pub fn put(&mut self, bytes: &[u8]) {
        let room = self.room(bytes.len());
        for (d, &b) in room.iter_mut().zip(bytes) {
            d.write(b);
        }
        // SAFETY: every byte of the room was written just above.
        unsafe { self.commit(bytes.len()) };
    }

    /// Lets readers have what was written so far.
    pub fn publish(&self) {
        self.g.publish(self.at, false);
    }

    /// The whole buffer is written: publishes it.
    pub fn finish(mut self) {
        assert_eq!(self.at, self.g.len, "every byte written");
        debug_assert!(self.g.filled().len() <= self.at);
        // SAFETY: every byte is written (just checked), none after this.
        let all = unsafe { std::slice::from_raw_parts(self.g.ptr, self.at) };
        assert!(all.ends_with(self.g.tail()), "the tail it was made with");
        self.done = true;
        self.g.publish(self.at, false);
    }

    /// Makes the pages of the next `n` bytes present before they are
    /// written (see `buffer`), a step at a time: readers get the first
    /// bytes without waiting for the whole buffer's pages.
    pub fn populate_next(&self, n: usize) {
        let n = n.min(self.g.cap - self.at);
        // SAFETY: `at + n` is within the allocation.
        populate(unsafe { self.g.ptr.add(self.at) }, n);
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        if !self.done {
            self.g.publish(self.at, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_get_what_the_producer_filled_in_order() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let g = Arc::new(Growing::new(data.len(), &data[data.len() - 2..]));
        let mut f = g.filler();
        let src = data.clone();
        let producer = std::thread::spawn(move || {
            for chunk in src.chunks(100_003) {
                f.populate_next(chunk.len());
                f.put(chunk);
                f.publish();
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            f.finish();
        });
        // Readers ask for growing prefixes while it fills.
        let mut to = 0;
        while to < data.len() {
            to = (to + 77_777).min(data.len());
            assert_eq!(g.upto(to).unwrap(), &data[..to]);
            assert!(g.filled().len() >= to);
        }
        assert_eq!(g.all().unwrap(), &data[..]);
        assert_eq!(g.tail(), &data[data.len() - 2..]);
        producer.join().unwrap();
    }

    #[test]
    fn a_producer_that_stops_short_fails_its_readers() {
        let g = Arc::new(Growing::new(10, b"\r\n"));
        let mut f = g.filler();
        f.put(b"abcd");
        f.publish();
        assert_eq!(g.upto(4).unwrap(), b"abcd");
        let waiting = {
            let g = g.clone();
            std::thread::spawn(move || g.upto(8).is_err())
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(f);
        assert!(waiting.join().unwrap(), "the waiting reader is told");
        assert!(g.all().is_err() && g.upto(4).is_ok());
    }
}
