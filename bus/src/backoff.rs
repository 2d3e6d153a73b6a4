//! The waits between tries of a bus operation.

use std::time::Duration;

/// The waits between tries of a bus operation: backon's exponential schedule from 50 ms,
/// doubling up to 2 s, and none that would end past the deadline (a wall-clock bound, so the
/// time the tries themselves take counts too).
#[derive(Debug)]
pub struct Backoff {
    delays: backon::ExponentialBackoff,
    deadline: tokio::time::Instant,
}

impl Backoff {
    /// Waits that end before `deadline`.
    pub fn new(deadline: tokio::time::Instant) -> Self {
        use backon::BackoffBuilder;
        let delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .without_max_times()
            .build();
        Self { delays, deadline }
    }

    /// Returns how long to wait before the next try, or `None` when that wait would reach
    /// the deadline.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let delay = self.delays.next()?;
        (tokio::time::Instant::now() + delay < self.deadline).then_some(delay)
    }

    /// Waits before the next try; returns false, at once, when the wait would reach the
    /// deadline.
    pub async fn wait(&mut self) -> bool {
        match self.next_delay() {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The waits double from 50 ms and stop short of the deadline; the clock only moves on,
    /// so a slow machine ends the schedule earlier, never later.
    #[tokio::test]
    async fn backoff_doubles_and_never_waits_past_the_deadline() {
        let mut backoff = Backoff::new(tokio::time::Instant::now() + Duration::from_millis(1500));
        let first: Vec<u64> = std::iter::from_fn(|| backoff.next_delay())
            .map(|d| d.as_millis() as u64)
            .collect();
        assert!(first.len() <= 5, "{first:?}");
        assert_eq!(first[..], [50, 100, 200, 400, 800][..first.len()]);
        let mut long = Backoff::new(tokio::time::Instant::now() + Duration::from_secs(3600));
        let capped: Vec<u64> = (0..8)
            .map(|_| long.next_delay().unwrap().as_millis() as u64)
            .collect();
        assert_eq!(capped, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
    }
}
