//! A mutex for processes that share memory: a process-shared, robust
//! pthread mutex. Robust means that when a holder dies, the next locker
//! gets the lock instead of waiting forever.

use std::cell::UnsafeCell;
use std::io;
use std::time::Duration;

#[repr(C)]
pub struct ProcessMutex {
    inner: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: the pthread mutex is made for concurrent use; it is only used
// through pthread calls.
unsafe impl Sync for ProcessMutex {}
// SAFETY: as for Sync; a process-shared mutex is not tied to a thread.
unsafe impl Send for ProcessMutex {}

pub struct ProcessMutexGuard<'a> {
    mutex: &'a ProcessMutex,
}

impl ProcessMutex {
    /// Initializes a mutex in place.
    ///
    /// # Safety
    /// `place` must be valid for writes, aligned, not in use as a mutex,
    /// and stay mapped for as long as any process uses it.
    pub unsafe fn init_at(place: *mut ProcessMutex) -> io::Result<()> {
        let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) };
        // SAFETY: all-zero bytes are a valid value to hand to pthread_mutexattr_init.
        let mut attr: libc::pthread_mutexattr_t = unsafe { std::mem::zeroed() };
        // SAFETY: standard attribute set-up on a local attribute object.
        unsafe {
            check(libc::pthread_mutexattr_init(&mut attr))?;
            let result = check(libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED))
                .and_then(|_| check(libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST)))
                .and_then(|_| check(libc::pthread_mutex_init(UnsafeCell::raw_get(&(*place).inner), &attr)));
            libc::pthread_mutexattr_destroy(&mut attr);
            result
        }
    }

    /// Takes the lock, waiting at most `timeout`; `None` if it stayed busy.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<ProcessMutexGuard<'_>> {
        // SAFETY: a timespec is plain integers; zero is valid.
        let mut now: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: writes the current time into `now`.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let nanos = now.tv_nsec as u64 + timeout.subsec_nanos() as u64;
        let deadline = libc::timespec {
            tv_sec: now.tv_sec + timeout.as_secs() as libc::time_t + (nanos / 1_000_000_000) as libc::time_t,
            tv_nsec: (nanos % 1_000_000_000) as _,
        };
        // SAFETY: the mutex was initialized by init_at.
        match unsafe { libc::pthread_mutex_timedlock(self.inner.get(), &deadline) } {
            0 => Some(ProcessMutexGuard { mutex: self }),
            libc::EOWNERDEAD => {
                // The previous holder died; what it guarded is still sound
                // here (a database call), so mark the mutex usable again.
                // SAFETY: we hold the lock.
                unsafe { libc::pthread_mutex_consistent(self.inner.get()) };
                Some(ProcessMutexGuard { mutex: self })
            }
            _ => None,
        }
    }
}

impl Drop for ProcessMutexGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the lock.
        unsafe { libc::pthread_mutex_unlock(self.mutex.inner.get()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::MaybeUninit;

    fn shared_mutex() -> &'static ProcessMutex {
        // SAFETY: an anonymous shared mapping, as Kamailio's shm is.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<ProcessMutex>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            let m = p as *mut ProcessMutex;
            ProcessMutex::init_at(m).unwrap();
            &*m
        }
    }

    #[test]
    fn excludes_and_times_out() {
        let m = shared_mutex();
        let held = m.lock_timeout(Duration::from_millis(10)).expect("free lock");
        // Another thread cannot take it while it is held.
        std::thread::scope(|s| {
            s.spawn(|| assert!(m.lock_timeout(Duration::from_millis(50)).is_none()));
        });
        drop(held);
        assert!(m.lock_timeout(Duration::from_millis(10)).is_some());
    }

    #[test]
    fn a_dead_holder_does_not_block_the_others() {
        let m = shared_mutex();
        // SAFETY: the child only locks and exits without unlocking.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            std::mem::forget(m.lock_timeout(Duration::from_secs(1)));
            // SAFETY: the child leaves without unwinding into the test runner.
            unsafe { libc::_exit(0) };
        }
        let mut status = MaybeUninit::uninit();
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, status.as_mut_ptr(), 0) };
        assert!(m.lock_timeout(Duration::from_secs(1)).is_some(), "lock recovered from a dead holder");
    }
}
