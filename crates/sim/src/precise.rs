//! A timer with the kernel's resolution, for fixed timing (`engine.fixed_timing`) and for the
//! load generator's open-loop schedule (`inferscope-bench`).
//!
//! Tokio's timer wheel fires on 1 ms ticks, so `sleep_until` wakes anywhere up to a
//! millisecond after its deadline. In the fixed-timing mode that spread was the widest part of
//! the TTFT and token-gap distributions (direct: TTFT p50 22.30 ms, p90 23.03 ms for a 20 ms
//! first token), wider than the 150 µs and 20 µs differences the overhead goals are about, so
//! the medians of the shifts moved by tens of microseconds between runs. A `timerfd` armed
//! with the time left fires within microseconds of it (hrtimers; no timer slack is applied to
//! timerfds) and is awaited through Tokio's reactor.
//!
//! Linux only; elsewhere, or if a timerfd cannot be made (the process is out of file
//! descriptors), the engine falls back to Tokio's timer.

use std::time::Instant;

#[cfg(target_os = "linux")]
mod imp {
    use std::time::Instant;

    use rustix::fd::OwnedFd;
    use rustix::time::{
        Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
        timerfd_settime,
    };
    use tokio::io::unix::AsyncFd;

    /// One timerfd, re-armed for each sleep.
    #[derive(Debug)]
    pub(crate) struct Timer(AsyncFd<OwnedFd>);

    impl Timer {
        pub(crate) fn new() -> std::io::Result<Timer> {
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            // SAFETY: `register` needs the descriptor to stay open and the same for the
            // AsyncFd's lifetime. It is an `OwnedFd` moved into the AsyncFd, which owns it
            // until it is dropped; nothing else can close it.
            #[allow(unsafe_code)]
            let fd = unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)?;
            Ok(Timer(fd))
        }

        pub(crate) async fn sleep_until(&self, deadline: Instant) -> std::io::Result<()> {
            let left = deadline.saturating_duration_since(Instant::now());
            // A zero value would disarm the timer instead of firing it.
            if left.is_zero() {
                return Ok(());
            }
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let value = Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            timerfd_settime(
                self.0.get_ref(),
                TimerfdTimerFlags::empty(),
                &Itimerspec {
                    it_interval: zero,
                    it_value: value,
                },
            )?;
            loop {
                let mut ready = self.0.readable().await?;
                let mut expirations = [0u8; 8];
                match rustix::io::read(ready.get_inner(), &mut expirations) {
                    Ok(_) => return Ok(()),
                    Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

/// Sleeps until `deadline` on `timer`, made at first use; Tokio's timer when none can be.
pub async fn sleep_until(timer: &mut Option<Timer>, deadline: Instant) {
    #[cfg(target_os = "linux")]
    {
        if timer.is_none() {
            *timer = imp::Timer::new().ok().map(Timer);
        }
        if let Some(Timer(t)) = timer.as_ref()
            && t.sleep_until(deadline).await.is_ok()
        {
            return;
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = timer;
    tokio::time::sleep_until(deadline.into()).await;
}

/// A precise timer (see the module docs); `None` until its first [`sleep_until`].
#[derive(Debug)]
pub struct Timer(#[cfg(target_os = "linux")] imp::Timer);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_at_the_deadline_not_at_the_next_millisecond() {
        let mut timer = None;
        let mut late = Vec::new();
        for i in 0..20u64 {
            // Deadlines at odd sub-millisecond offsets.
            let deadline = Instant::now() + Duration::from_micros(1_300 + 37 * i);
            sleep_until(&mut timer, deadline).await;
            late.push(Instant::now().saturating_duration_since(deadline));
            assert!(Instant::now() >= deadline);
        }
        late.sort();
        #[cfg(target_os = "linux")]
        {
            assert!(timer.is_some(), "a timerfd was made");
            // Median lateness well under Tokio's 1 ms tick (a loaded test machine may delay
            // some wake-ups, so only the median is checked, and loosely).
            assert!(
                late[late.len() / 2] < Duration::from_micros(500),
                "{late:?}"
            );
        }
        // A deadline already past returns at once.
        sleep_until(&mut timer, Instant::now() - Duration::from_millis(1)).await;
    }
}
