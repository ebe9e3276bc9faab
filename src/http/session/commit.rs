//! The commit side of a request's session: saving the recorded writes,
//! creating or rotating the session, and the cookie at the end.

use tower_cookies::Cookies;

use super::{adopt, Session, State, CREATE_ATTEMPTS};
use crate::doc::{ExpiryMode, Op};
use crate::http::{CookieConfig, Expiry};
use crate::{Error, SessionId, SessionView};

impl Session {
    /// Commits the recorded writes now, as one persisted commit, and reads
    /// back the merged session. The middleware does this after the handler;
    /// call it to handle a failure yourself or to see other requests' writes.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`], [`Error::Store`], [`Error::Doc`]: the writes were
    /// **not** applied (and are discarded, so the middleware does not fail
    /// the response a second time).
    pub async fn save(&self) -> Result<(), Error> {
        let (id, is_new, rotate_to, ops) = {
            let mut st = self.state();
            let ops = std::mem::take(&mut st.pending);
            (st.id, st.is_new, st.rotate_to.take(), ops)
        };
        let node = &self.inner.node;
        let result = match (id, is_new, rotate_to) {
            (None, _, _) => return Ok(()),
            (Some(id), true, _) => self.create(id, &ops).await.map(|(id, v)| Some((id, v))),
            (Some(_), false, None) if ops.is_empty() => return Ok(()),
            (Some(id), false, None) => node.commit(&id, &ops).await.map(|v| v.map(|v| (id, v))),
            (Some(old), false, Some(new)) => node
                .rotate(&old, &new, &ops)
                .await
                .map(|v| v.map(|v| (new, v))),
        };
        match &result {
            Ok(Some((now_id, _))) => {
                self.settle_transients(id.filter(|old| old != now_id), *now_id);
            }
            Ok(None) => self.end_transients(id),
            Err(_) => {}
        }
        let mut st = self.state();
        match result {
            Ok(Some((id, view))) => {
                st.id = Some(id);
                st.is_new = false;
                adopt(&mut st, view);
                st.set_cookie = true;
                Ok(())
            }
            Ok(None) => {
                // Invalidated (or expired) meanwhile: invalidation wins.
                *st = State {
                    loaded: true,
                    remove_cookie: true,
                    ..State::default()
                };
                Ok(())
            }
            Err(e) => {
                if st.is_new {
                    // Nothing was created.
                    *st = State {
                        loaded: true,
                        ..State::default()
                    };
                } else {
                    // The view held the failed writes: read it again on next use.
                    st.loaded = false;
                }
                Err(e)
            }
        }
    }

    async fn create(
        &self,
        mut id: SessionId,
        ops: &[Op],
    ) -> Result<(SessionId, SessionView), Error> {
        let mut attempts = 0;
        loop {
            match self.inner.node.create(&id, ops).await {
                Err(Error::IdCollision) if attempts + 1 < CREATE_ATTEMPTS => {
                    attempts += 1;
                    id = SessionId::random();
                }
                other => return other.map(|v| (id, v)),
            }
        }
    }

    /// Called by the middleware after the handler: commit, then cookies
    /// (the session's and its token's; `had_token`: the request carried a
    /// token cookie). Returns whether the session was served from an older
    /// state than the client had seen.
    ///
    /// # Errors
    ///
    /// [`Error::Behind`] / [`Error::Unreachable`] when the session could not
    /// be served at all (no cookie is touched then); what
    /// [`save`](Self::save) returns.
    pub(crate) async fn finish(
        &self,
        cookies: &Cookies,
        config: &CookieConfig,
        had_token: bool,
    ) -> Result<bool, Error> {
        let needs_save = {
            let st = self.state();
            if let Some(why) = st.unavailable {
                return Err(why.error());
            }
            !st.pending.is_empty() || st.rotate_to.is_some() || st.is_new
        };
        if needs_save {
            self.save().await?;
        }
        let st = self.state();
        match (st.id, st.set_cookie, st.expiry) {
            (Some(id), true, Some((mode, idle, absolute))) => {
                config.write(cookies, id, mode, idle, absolute);
            }
            (None, _, _) if st.remove_cookie => config.remove(cookies),
            _ => {}
        }
        // Served from an older state than the client had seen: the token
        // keeps naming what it had seen too.
        let version = match (&st.version, &self.inner.seen) {
            (Some(v), Some(seen)) if st.behind && st.id == self.inner.cookie_id => {
                Some(seen.union(v))
            }
            (v, _) => v.clone(),
        };
        match (st.id, version, st.expiry) {
            (Some(id), Some(version), Some(expiry))
                if st.set_cookie || self.inner.seen.as_ref() != Some(&version) =>
            {
                if let Some(token) = self.inner.node.token(&id, &version) {
                    config.write_token(cookies, token, expiry);
                }
            }
            (None, _, _) if st.remove_cookie && had_token => config.remove_token(cookies),
            _ => {}
        }
        Ok(st.behind)
    }

    /// Prepares a write on a session that may not exist yet.
    pub(super) fn begin_write(&self, st: &mut State) {
        if st.id.is_none() {
            st.id = Some(SessionId::random());
            st.is_new = true;
            st.remove_cookie = false;
            if let Some(expiry) = self.inner.expiry {
                let op = self.expiry_op(expiry, st);
                st.pending.insert(0, op);
            }
        }
    }

    pub(super) fn expiry_op(&self, expiry: Expiry, st: &State) -> Op {
        let node = &self.inner.node;
        let idle_default = u64::try_from(node.config().max_idle().as_millis()).unwrap_or(u64::MAX);
        let absolute_now = st.expiry.map(|(_, _, a)| a).unwrap_or_else(|| {
            match u64::try_from(node.config().absolute_timeout().as_millis()).unwrap_or(u64::MAX) {
                0 => 0,
                t => node.now_ms().saturating_add(t),
            }
        });
        match expiry {
            Expiry::OnSessionEnd => Op::SetExpiry {
                mode: ExpiryMode::SessionEnd,
                max_idle_ms: idle_default,
                absolute_ms: absolute_now,
            },
            Expiry::OnInactivity(d) => Op::SetExpiry {
                mode: ExpiryMode::Inactivity,
                max_idle_ms: u64::try_from(d.whole_milliseconds()).unwrap_or(0).max(1),
                absolute_ms: absolute_now,
            },
            Expiry::AtDateTime(t) => Op::SetExpiry {
                mode: ExpiryMode::AtDateTime,
                max_idle_ms: 0,
                absolute_ms: u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                    .unwrap_or(0)
                    .max(1),
            },
        }
    }
}
