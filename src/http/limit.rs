//! How often one client may make this node ask its peers for a session id
//! it does not hold. Each unknown id costs a round of requests to every
//! peer; with unsigned cookies anyone can send made-up ids, so a client
//! (by its address, when the server provides it through axum's
//! `ConnectInfo`) gets a bucket of such lookups that refills at a steady
//! rate. Past it, an unknown id is answered as unknown without asking.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Clients remembered at most (the least recently seen go first).
const CLIENTS: usize = 16_384;

/// Lookups at the peers per client: a bucket of `burst`, refilled at
/// `per_second`.
#[derive(Debug)]
pub(crate) struct FetchLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<lru::LruCache<IpAddr, (f64, Instant)>>,
}

impl FetchLimiter {
    pub(crate) fn new(per_second: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(per_second.saturating_mul(2).max(1)),
            buckets: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(CLIENTS).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// Whether `client` may make one more lookup now (and takes it).
    pub(crate) fn allow(&self, client: IpAddr) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, at) = buckets.get_or_insert_mut(client, || (self.burst, now));
        let refill = now.duration_since(*at).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_the_rate_and_others_their_own() {
        let limiter = FetchLimiter::new(10);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let allowed = (0..100).filter(|_| limiter.allow(a)).count();
        assert!((20..=21).contains(&allowed), "{allowed}");
        assert!(limiter.allow(b));
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(limiter.allow(a), "refilled");
    }
}
