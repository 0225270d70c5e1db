//! The wait between two attempts.

use std::time::Duration;

use super::Settings;

/// The longest wait between two attempts, whatever the backoff says.
const MAX: Duration = Duration::from_secs(3600);

/// The wait before attempt `failed + 1`: `retry_delay × backoff^(failed-1)`.
pub(crate) fn delay(settings: &Settings, failed: u32) -> Duration {
    let factor = settings
        .backoff
        .powi(i32::try_from(failed.saturating_sub(1)).unwrap_or(i32::MAX));
    let secs = settings.retry_delay.as_secs_f64() * factor;
    if secs.is_finite() && secs < MAX.as_secs_f64() {
        Duration::from_secs_f64(secs)
    } else {
        MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_the_backoff_and_stops_at_an_hour() {
        let settings = Settings {
            timeout: Duration::from_secs(1),
            retries: 100,
            retry_delay: Duration::from_millis(100),
            backoff: 3.0,
        };
        let waits: Vec<u128> = (1..=3).map(|n| delay(&settings, n).as_millis()).collect();
        assert_eq!(waits, [100, 300, 900]);
        assert_eq!(delay(&settings, 90), MAX);
    }
}
