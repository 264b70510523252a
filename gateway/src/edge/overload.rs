//! When a replica says it is overloaded: readiness and the whole-server
//! health follow this watch of admission's counts.

use std::time::Duration;

/// Whether a replica is overloaded: over the last `window` (one-second
/// ticks), calls were shed in at least half of the seconds, and more than half
/// of the calls that arrived were shed. Probes that arrive every few seconds
/// during an overload are enough to say so; one burst is not.
#[derive(Debug)]
pub struct OverloadWatch {
    last: (u64, u64),
    seconds: std::collections::VecDeque<(u64, u64)>,
    window: usize,
}

impl OverloadWatch {
    /// A watch over `window` (at least one second).
    pub fn new(window: Duration) -> Self {
        let window = usize::try_from(window.as_secs()).unwrap_or(usize::MAX).clamp(1, 3600);
        Self { last: (0, 0), seconds: std::collections::VecDeque::with_capacity(window), window }
    }

    /// One tick with the totals now; whether the replica is overloaded.
    pub fn tick(&mut self, arrived: u64, shed: u64) -> bool {
        let second = (arrived.saturating_sub(self.last.0), shed.saturating_sub(self.last.1));
        self.last = (arrived, shed);
        if self.seconds.len() == self.window {
            self.seconds.pop_front();
        }
        self.seconds.push_back(second);
        if self.seconds.len() < self.window {
            return false;
        }
        let shedding_seconds = self.seconds.iter().filter(|(_, s)| *s > 0).count();
        let (arrived, shed) = self.seconds.iter().fold((0, 0), |(a, s), (da, ds)| (a + da, s + ds));
        shedding_seconds * 2 >= self.window && shed * 2 > arrived
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_needs_most_calls_shed_over_the_window() {
        let mut w = OverloadWatch::new(Duration::from_secs(4));
        // A probe every other second, every one shed: overloaded once the
        // window is full.
        let (mut arrived, mut shed) = (0, 0);
        let mut verdicts = Vec::new();
        for second in 0..6 {
            if second % 2 == 0 {
                arrived += 1;
                shed += 1;
            }
            verdicts.push(w.tick(arrived, shed));
        }
        assert_eq!(verdicts, [false, false, false, true, true, true]);
        // Busy but mostly admitted: not overloaded.
        let mut w = OverloadWatch::new(Duration::from_secs(2));
        assert!(!w.tick(1000, 10) && !w.tick(2000, 20) && !w.tick(3000, 30));
        // One burst, then quiet: not overloaded.
        let mut w = OverloadWatch::new(Duration::from_secs(4));
        let v: Vec<bool> = [(100, 90), (100, 90), (100, 90), (100, 90)].iter().map(|(a, s)| w.tick(*a, *s)).collect();
        assert_eq!(v, [false; 4]);
    }
}
