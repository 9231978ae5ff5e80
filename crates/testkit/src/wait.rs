//! Waiting for a condition instead of sleeping: poll often, give up after a bound, and say
//! what was awaited (and the last thing seen) when it never came.
//!
//! A condition is a closure returning a [`Condition`]: `bool`, `Option<T>` (`Some` is
//! ready) or `Result<T, E>` (`Err` is "not yet", and the last `Err` is in the timeout
//! message, so a condition can say what it saw).

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// The first pause between polls; it doubles up to [`MAX_INTERVAL`].
const FIRST_INTERVAL: Duration = Duration::from_millis(10);
/// The longest pause between polls.
const MAX_INTERVAL: Duration = Duration::from_millis(100);

/// What a polled closure returns: ready with a value, or not yet (with what it saw).
pub trait Condition {
    type Output;
    /// `Ok(value)` when ready; `Err(description of what was seen)` when not yet.
    fn check(self) -> Result<Self::Output, Option<String>>;
}

impl Condition for bool {
    type Output = ();
    fn check(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Condition for Option<T> {
    type Output = T;
    fn check(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Debug> Condition for Result<T, E> {
    type Output = T;
    fn check(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(format!("{e:?}")))
    }
}

fn timed_out(timeout: Duration, what: &str, attempts: u32, last: Option<String>) -> ! {
    match last {
        Some(seen) => panic!(
            "timed out after {timeout:?} ({attempts} checks) waiting for {what}; last seen: {seen}"
        ),
        None => panic!("timed out after {timeout:?} ({attempts} checks) waiting for {what}"),
    }
}

/// Polls `condition` (at once, then every 10 to 100 ms) until it is ready, and returns its
/// value; panics after `timeout` with a message naming `what` was awaited.
///
/// Blocks the thread: in async code use [`wait_until_async`].
pub fn wait_until<C: Condition>(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> C,
) -> C::Output {
    let deadline = Instant::now() + timeout;
    let mut interval = FIRST_INTERVAL;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = match condition().check() {
            Ok(value) => return value,
            Err(last) => last,
        };
        let now = Instant::now();
        if now >= deadline {
            timed_out(timeout, what, attempts, last);
        }
        std::thread::sleep(interval.min(deadline - now));
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

/// [`wait_until`] for async conditions, on tokio's clock. A check still running at the
/// deadline is abandoned and counts as a timeout.
pub async fn wait_until_async<C, F>(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> F,
) -> C::Output
where
    C: Condition,
    F: Future<Output = C>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut interval = FIRST_INTERVAL;
    let mut attempts = 0;
    let mut last = None;
    loop {
        attempts += 1;
        match tokio::time::timeout_at(deadline, condition()).await {
            Ok(checked) => match checked.check() {
                Ok(value) => return value,
                Err(seen) => last = seen,
            },
            Err(_) => timed_out(timeout, what, attempts, last),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            timed_out(timeout, what, attempts, last);
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_ready() {
        let mut n = 0;
        let got = wait_until(Duration::from_secs(5), "the third call", || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for a thing that never comes; last seen: \"nope\"")]
    fn panics_naming_what_was_awaited() {
        wait_until(
            Duration::from_millis(50),
            "a thing that never comes",
            || Err::<(), _>("nope"),
        );
    }

    #[tokio::test]
    async fn async_returns_the_value_once_ready() {
        let mut n = 0;
        wait_until_async(Duration::from_secs(5), "the third call", || {
            n += 1;
            let ready = n == 3;
            async move { ready }
        })
        .await;
        assert_eq!(n, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a check that hangs")]
    async fn async_abandons_a_hanging_check_at_the_deadline() {
        wait_until_async(Duration::from_millis(50), "a check that hangs", || {
            std::future::pending::<bool>()
        })
        .await;
    }
}
