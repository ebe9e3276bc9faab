//! Session tokens on the drop-in paths. The frameworks own their session
//! cookie and call the store without the request, so the token rides in a
//! cookie of its own, handled by a small token layer around the framework's
//! session middleware: the layer reads the token before the request and
//! opens a per-request scope; the store, called inside that scope, reads
//! the token when it loads a session (catching up to it, see
//! [`Node::load_seen`]) and notes the state it leaves the session in; the
//! layer then sets (or removes) the token cookie after the framework's own
//! cookie, and answers `503` with `Retry-After` when the store could not
//! serve the state the token names.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tower_cookies::cookie::{Cookie, SameSite};

use crate::{Error, Node, SessionId, SessionView};

tokio::task_local! {
    static SCOPE: Scope;
}

/// One request's token exchange between the token layer and the store.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    /// The token the request carried, as text.
    incoming: Option<String>,
    /// Whether a load has caught up to the token already in this request
    /// (a framework may load a session twice: the second load need not
    /// wait).
    used: std::sync::atomic::AtomicBool,
    // std Mutex: held for a field update only, never across an await.
    out: Mutex<Outcome>,
}

/// What the store did with the session, for the token layer to answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// A new token to send.
    pub(crate) set: Option<String>,
    /// The session ended: remove the token cookie.
    pub(crate) remove: bool,
    /// The state the token names could not be served: answer `503`.
    pub(crate) unavailable: bool,
    /// Served from an older state than the token names (stale reads on).
    pub(crate) behind: bool,
}

impl Scope {
    pub(crate) fn new(incoming: Option<String>) -> Self {
        Self {
            incoming,
            used: std::sync::atomic::AtomicBool::new(false),
            out: Mutex::default(),
        }
    }

    fn out(&self) -> MutexGuard<'_, Outcome> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs `fut` (the framework's handling of one request) inside a token
/// scope for `incoming`, and returns its output with what the store noted.
pub(crate) async fn scoped<F: std::future::Future>(
    incoming: Option<String>,
    fut: F,
) -> (F::Output, Outcome) {
    SCOPE
        .scope(Scope::new(incoming), async move {
            let output = fut.await;
            let outcome = SCOPE.with(|s| s.out().clone());
            (output, outcome)
        })
        .await
}

/// The state the request's token says the client has seen of `id`, for the
/// first load of the request (`None` outside a token scope, without a valid
/// token, or once a load has caught up to it).
pub(crate) fn seen(node: &Node, id: &SessionId) -> Option<crate::Version> {
    SCOPE
        .try_with(|s| {
            if s.used.swap(true, std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            s.incoming.clone()
        })
        .ok()
        .flatten()
        .and_then(|text| node.read_token(id, &text))
}

/// Whether an earlier load of this request could not serve the state the
/// token names: a later one answers the same without waiting again.
pub(crate) fn refused() -> bool {
    SCOPE.try_with(|s| s.out().unavailable).unwrap_or(false)
}

/// The response will show the client `view` of session `id`: send a new
/// token unless the request's names that very state.
pub(crate) fn shown(node: &Node, id: &SessionId, view: &SessionView) {
    let _ = SCOPE.try_with(|s| {
        let current = s.incoming.as_deref().and_then(|t| node.read_token(id, t));
        let mut out = s.out();
        out.behind |= view.behind;
        out.remove = false;
        // Shown an older state than the token names (now, or earlier in
        // this request): keep naming both.
        let version = match &current {
            Some(seen) if out.behind => seen.union(&view.version),
            _ => view.version.clone(),
        };
        out.set = if current.as_ref() == Some(&version) {
            None
        } else {
            node.token(id, &version)
        };
    });
}

/// The session ended (logout, rotation away, or gone): drop the token.
pub(crate) fn ended() {
    let _ = SCOPE.try_with(|s| {
        let mut out = s.out();
        out.set = None;
        out.remove = s.incoming.is_some();
    });
}

/// A store call failed with `e`: note it when it means "cannot serve what
/// the client has seen" (the layer then answers `503`).
pub(crate) fn failed(e: &Error) {
    if matches!(e, Error::Behind { .. } | Error::Unreachable) {
        let _ = SCOPE.try_with(|s| s.out().unavailable = true);
    }
}

/// The token cookie's name and attributes, shared by both token layers.
#[derive(Debug, Clone)]
pub(crate) struct TokenCookie {
    pub(crate) name: String,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
}

impl Default for TokenCookie {
    fn default() -> Self {
        Self {
            name: "id_seen".to_owned(),
            secure: true,
            same_site: SameSite::Strict,
            path: "/".to_owned(),
            domain: None,
        }
    }
}

impl TokenCookie {
    /// The token in a `Cookie` request header, if any.
    pub(crate) fn find<'a>(&self, headers: impl IntoIterator<Item = &'a str>) -> Option<String> {
        headers
            .into_iter()
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == self.name)
            .map(|c| c.value().to_owned())
    }

    /// The `Set-Cookie` header values `outcome` asks for.
    pub(crate) fn set_cookie(&self, outcome: &Outcome) -> Option<String> {
        let value = match (&outcome.set, outcome.remove) {
            (Some(token), _) => token.clone(),
            (None, true) => String::new(),
            (None, false) => return None,
        };
        let mut cookie = Cookie::build((self.name.clone(), value))
            .http_only(true)
            .secure(self.secure)
            .same_site(self.same_site)
            .path(self.path.clone())
            .build();
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        if outcome.set.is_none() {
            cookie.make_removal();
        }
        Some(cookie.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_cookie_is_found_among_others_and_removal_clears_it() {
        let cfg = TokenCookie::default();
        let found = cfg.find(["a=1; id=xyz", "id_seen=TOKEN; b=2"]);
        assert_eq!(found.as_deref(), Some("TOKEN"));
        assert_eq!(cfg.find(["id=xyz"]), None);
        let set = Outcome {
            set: Some("T".into()),
            ..Outcome::default()
        };
        let header = cfg.set_cookie(&set).unwrap();
        assert!(header.starts_with("id_seen=T;"), "{header}");
        assert!(
            header.contains("HttpOnly") && header.contains("Secure"),
            "{header}"
        );
        let removal = cfg
            .set_cookie(&Outcome {
                remove: true,
                ..Outcome::default()
            })
            .unwrap();
        assert!(removal.contains("Max-Age=0"), "{removal}");
        assert_eq!(cfg.set_cookie(&Outcome::default()), None);
    }
}
