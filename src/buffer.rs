//! Large buffers made ready to be filled.

/// An empty buffer for `cap` bytes. A large one has its pages made present
/// in one call (Linux: MADV_POPULATE_WRITE), not by one page fault per
/// 4 KiB as it is filled: for tens of MB that was most of the build's time.
pub(crate) fn buffer(cap: usize) -> Vec<u8> {
    #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
    let mut v: Vec<u8> = Vec::with_capacity(cap);
    #[cfg(target_os = "linux")]
    if cap >= 1 << 20 {
        // Linux 5.14.
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        // SAFETY: page-aligned range inside the buffer's own allocation; the
        // advice only makes pages present (zeroed, as fresh pages are) and
        // fails harmlessly (EINVAL) where the kernel does not know it.
        unsafe {
            let page = 4096;
            let start = (v.as_mut_ptr() as usize).next_multiple_of(page);
            let end = (v.as_mut_ptr() as usize + cap) / page * page;
            if end > start {
                libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_WRITE);
            }
        }
    }
    v
}
