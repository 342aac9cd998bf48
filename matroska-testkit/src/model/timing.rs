//! Time as a case of the model-based checker sees it.

use std::time::{Duration, Instant};

use super::op::{Life, STEPS};

/// Time as the case sees it: a mock clock that moves only when the case advances it, or real
/// time with a tolerance for the server's clock.
pub(crate) struct Timing {
    exact: bool,
    origin: Instant,
    pub(crate) mock: Duration,
    pub(crate) tolerance: Duration,
    short: Duration,
    long: Duration,
    pub(crate) steps: [Duration; STEPS as usize],
}

impl Timing {
    pub(crate) fn new(exact: bool, window: Duration) -> Self {
        let ms = Duration::from_millis;
        if exact {
            Self {
                exact,
                origin: Instant::now(),
                mock: Duration::ZERO,
                tolerance: Duration::ZERO,
                short: ms(1_000),
                long: ms(5_000),
                steps: [
                    ms(100),
                    ms(500),
                    ms(1_000),
                    ms(1_000),
                    ms(2_000),
                    ms(5_000),
                    ms(30_000),
                    window + ms(1),
                ],
            }
        } else {
            Self {
                exact,
                origin: Instant::now(),
                mock: Duration::ZERO,
                tolerance: ms(100),
                short: ms(250),
                long: ms(1_200),
                steps: [
                    ms(5),
                    ms(20),
                    ms(50),
                    ms(100),
                    ms(200),
                    ms(300),
                    ms(700),
                    window + ms(150),
                ],
            }
        }
    }

    pub(crate) fn now(&self) -> Duration {
        if self.exact {
            self.mock
        } else {
            self.origin.elapsed()
        }
    }

    pub(crate) fn ttl(&self, life: Life) -> Option<Duration> {
        match life {
            Life::Forever => None,
            Life::Short => Some(self.short),
            Life::Long => Some(self.long),
        }
    }
}
