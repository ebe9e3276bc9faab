//! The token layer for tower-sessions: put it *outside* tower-sessions'
//! `SessionManagerLayer` (see [`super::token`] for what it does).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{HeaderValue, COOKIE, RETRY_AFTER, SET_COOKIE};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};
use tower_cookies::cookie::SameSite;

use super::token::{scoped, TokenCookie};
use crate::http::STALE_HEADER;

/// Carries sessionmesh's session token beside tower-sessions' own cookie,
/// so that whichever node serves a user's next request serves at least the
/// state the user has seen. A cheap `Clone` of its cookie settings.
///
/// # Examples
///
/// ```
/// use axum::Router;
/// use sessionmesh::adapters::tower_sessions::{MeshStore, TokenLayer};
/// use tower_sessions::SessionManagerLayer;
///
/// # async fn app(node: sessionmesh::Node) -> Router {
/// Router::new()
///     .layer(SessionManagerLayer::new(MeshStore::new(node)).with_secure(false))
///     .layer(TokenLayer::new().with_secure(false)) // outside the session layer
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct TokenLayer {
    cookie: TokenCookie,
}

impl TokenLayer {
    /// A token cookie named `id_seen`, `HttpOnly`, `Secure`,
    /// `SameSite=Strict`, `Path=/`.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The token cookie's name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.cookie.name = name.into();
        self
    }

    /// `Secure` (default on; match the session cookie).
    #[must_use]
    pub fn with_secure(mut self, on: bool) -> Self {
        self.cookie.secure = on;
        self
    }

    /// `SameSite` (default `Strict`).
    #[must_use]
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.cookie.same_site = same_site;
        self
    }

    /// `Path` (default `/`).
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.cookie.path = path.into();
        self
    }

    /// `Domain` (default none).
    #[must_use]
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.cookie.domain = Some(domain.into());
        self
    }
}

impl<S> Layer<S> for TokenLayer {
    type Service = TokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenService {
            inner,
            cookie: self.cookie.clone(),
        }
    }
}

/// The service [`TokenLayer`] wraps around the inner one.
#[derive(Debug, Clone)]
pub struct TokenService<S> {
    inner: S,
    cookie: TokenCookie,
}

impl<ReqBody, ResBody, S> Service<Request<ReqBody>> for TokenService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Default + Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was made ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cookie = self.cookie.clone();
        let incoming = cookie.find(
            req.headers()
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        Box::pin(async move {
            let (response, outcome) = scoped(incoming, inner.call(req)).await;
            if outcome.unavailable {
                let mut unavailable = Response::new(ResBody::default());
                *unavailable.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                unavailable
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                return Ok(unavailable);
            }
            let mut response = response?;
            if outcome.behind {
                response
                    .headers_mut()
                    .insert(STALE_HEADER, HeaderValue::from_static("true"));
            }
            // Appended: the framework's own cookie comes first.
            if let Some(value) = cookie
                .set_cookie(&outcome)
                .and_then(|v| HeaderValue::from_str(&v).ok())
            {
                response.headers_mut().append(SET_COOKIE, value);
            }
            Ok(response)
        })
    }
}
