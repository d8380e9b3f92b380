//! The wakeup handle of a client's completion queue: readable (signalled)
//! exactly while completions are queued, so a GUI main loop can wait on it.
//!
//! Linux: an eventfd. Other POSIX systems: a non-blocking pipe.
//! Windows: a manual-reset event HANDLE.

#[cfg(target_os = "linux")]
mod imp {
    pub struct Wakeup {
        fd: libc::c_int,
    }

    impl Wakeup {
        pub fn new() -> std::io::Result<Wakeup> {
            // SAFETY: plain syscall; the fd is owned by the Wakeup from here on.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Wakeup { fd })
        }

        /// Makes the handle readable. Called with the queue's lock held.
        pub fn set(&self) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
            unsafe { libc::write(self.fd, &one as *const u64 as *const libc::c_void, 8) };
        }

        /// Makes the handle unreadable again. Called with the queue's lock held.
        pub fn clear(&self) {
            let mut v: u64 = 0;
            // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd.
            unsafe { libc::read(self.fd, &mut v as *mut u64 as *mut libc::c_void, 8) };
        }

        pub fn handle(&self) -> i64 {
            self.fd as i64
        }
    }

    impl Drop for Wakeup {
        fn drop(&mut self) {
            // SAFETY: we own the fd and close it once.
            unsafe { libc::close(self.fd) };
        }
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
mod imp {
    pub struct Wakeup {
        read: libc::c_int,
        write: libc::c_int,
    }

    impl Wakeup {
        pub fn new() -> std::io::Result<Wakeup> {
            let mut fds = [0 as libc::c_int; 2];
            // SAFETY: pipe writes two fds into the array.
            if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for fd in fds {
                // SAFETY: fcntl on fds we just created.
                unsafe {
                    libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(Wakeup {
                read: fds[0],
                write: fds[1],
            })
        }

        /// Called with the queue's lock held, only when the queue turns non-empty.
        pub fn set(&self) {
            let b = 1u8;
            // SAFETY: one byte into our own pipe.
            unsafe { libc::write(self.write, &b as *const u8 as *const libc::c_void, 1) };
        }

        /// Called with the queue's lock held, only when the queue turns empty.
        pub fn clear(&self) {
            let mut buf = [0u8; 64];
            // SAFETY: reads into a live buffer from our own non-blocking pipe.
            while unsafe { libc::read(self.read, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) } > 0 {}
        }

        pub fn handle(&self) -> i64 {
            self.read as i64
        }
    }

    impl Drop for Wakeup {
        fn drop(&mut self) {
            // SAFETY: we own both fds and close them once.
            unsafe {
                libc::close(self.read);
                libc::close(self.write);
            }
        }
    }
}

// ---- Windows: a manual-reset event (not built or tested on this project's CI) ----
#[cfg(windows)]
mod imp {
    use std::ffi::c_void;

    extern "system" {
        fn CreateEventW(attrs: *mut c_void, manual_reset: i32, initial: i32, name: *const u16)
            -> *mut c_void;
        fn SetEvent(h: *mut c_void) -> i32;
        fn ResetEvent(h: *mut c_void) -> i32;
        fn CloseHandle(h: *mut c_void) -> i32;
    }

    pub struct Wakeup {
        event: *mut c_void,
    }

    // SAFETY: an event HANDLE may be used from any thread.
    unsafe impl Send for Wakeup {}
    unsafe impl Sync for Wakeup {}

    impl Wakeup {
        pub fn new() -> std::io::Result<Wakeup> {
            // SAFETY: creates an unnamed manual-reset event, initially not signalled.
            let event = unsafe { CreateEventW(std::ptr::null_mut(), 1, 0, std::ptr::null()) };
            if event.is_null() {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Wakeup { event })
        }

        pub fn set(&self) {
            // SAFETY: our own live event handle.
            unsafe { SetEvent(self.event) };
        }

        pub fn clear(&self) {
            // SAFETY: our own live event handle.
            unsafe { ResetEvent(self.event) };
        }

        pub fn handle(&self) -> i64 {
            self.event as i64
        }
    }

    impl Drop for Wakeup {
        fn drop(&mut self) {
            // SAFETY: we own the handle and close it once.
            unsafe { CloseHandle(self.event) };
        }
    }
}

pub use imp::Wakeup;

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn readable(fd: i64) -> bool {
        let mut p = libc::pollfd {
            fd: fd as libc::c_int,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one live pollfd without waiting.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn readable_exactly_while_set() {
        let w = Wakeup::new().unwrap();
        assert!(!readable(w.handle()));
        w.set();
        assert!(readable(w.handle()));
        w.clear();
        assert!(!readable(w.handle()));
    }
}
