//! Low-latency hand-overs. A thread parked on a channel takes tens of microseconds to wake on a busy host (futex
//! wake-up, idle CPU states); a thread that knows roughly *when* its next message comes — the next observation one
//! period after the last, a step's result one step time after it started — sleeps until shortly before, then polls
//! the channel in a spin loop for a short window. The CPU cost is bounded: at most twice the window per message.

use std::time::{Duration, Instant};

/// When to poll instead of sleep: around `expected`, for `window` either side (no spinning with a zero window or
/// no expectation).
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// When the message is expected.
    pub expected: Option<Instant>,
    /// Half-width of the polling window.
    pub window: Duration,
}

impl Expect {
    /// The spin window `[start, end)` clipped to `limit`, if it has not passed yet.
    fn span(&self, limit: Instant) -> Option<(Instant, Instant)> {
        let expected = self.expected.filter(|_| !self.window.is_zero())?;
        let start = expected.checked_sub(self.window).unwrap_or(expected);
        let end = (expected + self.window).min(limit);
        (Instant::now() < end).then_some((start, end))
    }

    /// Waits until `limit` for `poll` to return something: `sleep(timeout)` (a blocking receive that returns
    /// early with a message) until the spin window opens, `poll` (a non-blocking receive) in a spin loop inside it,
    /// `sleep` again after it.
    pub fn wait<T>(
        &self,
        limit: Instant,
        mut poll: impl FnMut() -> Option<T>,
        mut sleep: impl FnMut(Duration) -> Option<T>,
    ) -> Option<T> {
        if let Some((start, end)) = self.span(limit) {
            let now = Instant::now();
            if now < start {
                if let Some(v) = sleep(start - now) {
                    return Some(v);
                }
            }
            while Instant::now() < end {
                if let Some(v) = poll() {
                    return Some(v);
                }
                std::hint::spin_loop();
            }
        }
        let left = limit.saturating_duration_since(Instant::now());
        if left.is_zero() {
            poll()
        } else {
            sleep(left)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    #[test]
    fn a_message_sent_inside_the_window_is_taken_by_polling() {
        let (tx, rx) = bounded(1);
        // A window wide enough that a loaded CI host's scheduling delays (tens of ms) keep the send inside it.
        let expect =
            Expect { expected: Some(Instant::now() + Duration::from_millis(100)), window: Duration::from_millis(60) };
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            tx.send(Instant::now()).unwrap();
        });
        let (mut polled, mut slept) = (0, 0);
        let got = expect.wait(
            Instant::now() + Duration::from_secs(1),
            || {
                polled += 1;
                rx.try_recv().ok()
            },
            |t| {
                slept += 1;
                rx.recv_timeout(t).ok()
            },
        );
        sender.join().unwrap();
        let sent = got.expect("the message");
        assert!(sent.elapsed() < Duration::from_millis(25), "taken {:?} after it was sent", sent.elapsed());
        assert!(polled > 1 && slept == 1, "polled {polled}, slept {slept}");
    }

    #[test]
    fn without_an_expectation_or_window_it_only_sleeps_and_honours_the_limit() {
        let (_tx, rx) = bounded::<u8>(1);
        for expect in [
            Expect { expected: None, window: Duration::from_millis(1) },
            Expect { expected: Some(Instant::now()), window: Duration::ZERO },
        ] {
            let start = Instant::now();
            let mut polled = 0;
            let got = expect.wait(
                start + Duration::from_millis(10),
                || {
                    polled += 1;
                    rx.try_recv().ok()
                },
                |t| rx.recv_timeout(t).ok(),
            );
            assert!(got.is_none() && polled == 0);
            assert!(start.elapsed() >= Duration::from_millis(10));
        }
    }
}
