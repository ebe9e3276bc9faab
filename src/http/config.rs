use tower_cookies::cookie::time::{Duration, OffsetDateTime};
use tower_cookies::cookie::{Key, SameSite};
use tower_cookies::{Cookie, Cookies};

use crate::doc::ExpiryMode;
use crate::id::SessionId;

/// When a session expires; the same variants as tower-sessions' `Expiry`.
///
/// # Examples
///
/// ```
/// use sessionmesh::http::Expiry;
/// use time::Duration;
///
/// let expiry = Expiry::OnInactivity(Duration::minutes(15));
/// assert_ne!(expiry, Expiry::OnSessionEnd);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A browser-session cookie; the server applies the node's idle and
    /// absolute timeouts.
    OnSessionEnd,
    /// Expires after this long without access; the cookie's `Max-Age` is
    /// refreshed whenever the session is used.
    OnInactivity(Duration),
    /// Expires at this instant, however active the session is.
    AtDateTime(OffsetDateTime),
}

/// The session cookie's attributes, with tower-sessions' names and defaults:
/// name `id`, `HttpOnly`, `Secure`, `SameSite=Strict`, `Path=/`, no
/// `Domain`, a browser-session cookie, unsigned. The session token (see
/// [`Node::token`](crate::Node::token)) travels in a second cookie with the
/// same attributes, named `<name>_seen` unless set otherwise.
#[derive(Clone)]
pub struct CookieConfig {
    pub(crate) name: String,
    pub(crate) token_name: Option<String>,
    pub(crate) http_only: bool,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) expiry: Option<Expiry>,
    pub(crate) key: Option<Key>,
    /// Lookups at the peers per client (see `http/limit.rs`).
    pub(crate) fetch_limit: std::sync::Arc<super::limit::FetchLimiter>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "id".to_owned(),
            token_name: None,
            http_only: true,
            secure: true,
            same_site: SameSite::Strict,
            path: "/".to_owned(),
            domain: None,
            expiry: None,
            key: None,
            fetch_limit: std::sync::Arc::new(super::limit::FetchLimiter::new(10)),
        }
    }
}

impl std::fmt::Debug for CookieConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieConfig")
            .field("name", &self.name)
            .field("token_name", &self.token_name())
            .field("http_only", &self.http_only)
            .field("secure", &self.secure)
            .field("same_site", &self.same_site)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("expiry", &self.expiry)
            .field("signed", &self.key.is_some())
            .field("fetch_limit", &self.fetch_limit)
            .finish()
    }
}

impl CookieConfig {
    /// The id carried by the request's cookie, if well formed (and, when
    /// signing is on, correctly signed).
    pub(crate) fn read(&self, cookies: &Cookies) -> Option<SessionId> {
        let cookie = match &self.key {
            Some(key) => cookies.signed(key).get(&self.name),
            None => cookies.get(&self.name).map(Cookie::into_owned),
        }?;
        cookie.value().parse().ok()
    }

    /// The name of the session-token cookie.
    pub(crate) fn token_name(&self) -> String {
        self.token_name
            .clone()
            .unwrap_or_else(|| format!("{}_seen", self.name))
    }

    /// The session token the request carries, as text (the token checks
    /// itself; it is not signed with the cookie key).
    pub(crate) fn read_token(&self, cookies: &Cookies) -> Option<String> {
        cookies
            .get(&self.token_name())
            .map(|c| c.value().to_owned())
    }

    /// Sends the session token `token`, with the session cookie's
    /// attributes and lifetime.
    pub(crate) fn write_token(
        &self,
        cookies: &Cookies,
        token: String,
        (mode, max_idle_ms, absolute_ms): (ExpiryMode, u64, u64),
    ) {
        let mut cookie = self.build_named(self.token_name(), token);
        expire(&mut cookie, mode, max_idle_ms, absolute_ms);
        cookies.add(cookie);
    }

    /// Removes the session-token cookie.
    pub(crate) fn remove_token(&self, cookies: &Cookies) {
        cookies.remove(self.build_named(self.token_name(), String::new()));
    }

    /// Sends the cookie for `id`.
    pub(crate) fn write(
        &self,
        cookies: &Cookies,
        id: SessionId,
        mode: ExpiryMode,
        max_idle_ms: u64,
        absolute_ms: u64,
    ) {
        let mut cookie = self.build(id.to_string());
        expire(&mut cookie, mode, max_idle_ms, absolute_ms);
        match &self.key {
            Some(key) => cookies.signed(key).add(cookie),
            None => cookies.add(cookie),
        }
    }

    /// Sends a removal cookie with the same path, domain, `Secure` and
    /// `HttpOnly` as the session cookie (browsers ignore a removal that
    /// differs in path or domain).
    pub(crate) fn remove(&self, cookies: &Cookies) {
        cookies.remove(self.build(String::new()));
    }

    fn build(&self, value: String) -> Cookie<'static> {
        self.build_named(self.name.clone(), value)
    }

    fn build_named(&self, name: String, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::build((name, value))
            .http_only(self.http_only)
            .secure(self.secure)
            .same_site(self.same_site)
            .path(self.path.clone())
            .build();
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }
}

/// Gives `cookie` the lifetime of a session whose cookie expires by `mode`.
fn expire(cookie: &mut Cookie<'static>, mode: ExpiryMode, max_idle_ms: u64, absolute_ms: u64) {
    match mode {
        ExpiryMode::SessionEnd => {}
        ExpiryMode::Inactivity => {
            cookie.set_max_age(Duration::milliseconds(
                i64::try_from(max_idle_ms).unwrap_or(i64::MAX),
            ));
        }
        ExpiryMode::AtDateTime => {
            let at = i128::from(absolute_ms) * 1_000_000;
            if let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(at) {
                cookie.set_expires(t);
            }
        }
    }
}
