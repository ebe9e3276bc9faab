use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};
use tower_cookies::cookie::time::Duration;
use tower_cookies::cookie::{Key, SameSite};
use tower_cookies::{CookieManager, Cookies};

use super::{CookieConfig, Expiry, Session};
use crate::{Error, Node};

/// The header on a response served from an older state than the client had
/// seen (under [`StaleReads::Serve`](crate::net::StaleReads::Serve)).
pub const STALE_HEADER: &str = "x-session-stale";

/// The session middleware: put it around an axum `Router` (or any tower
/// service) and handlers get a [`Session`]. A cheap `Clone` of its
/// configuration; the cookie options carry tower-sessions' names and
/// defaults.
///
/// # Examples
///
/// ```
/// use axum::{routing::get, Router};
/// use sessionmesh::http::{Expiry, Session, SessionLayer};
/// use sessionmesh::{Config, Node};
/// use time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sessionmesh::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let node = Node::open(Config::new(dir.path())).await?;
/// let layer = SessionLayer::new(node.clone())
///     .with_name("sid")
///     .with_secure(false)
///     .with_expiry(Expiry::OnInactivity(Duration::minutes(30)));
/// let app: Router = Router::new()
///     .route("/", get(|s: Session| async move { s.get::<String>("user").await.ok().flatten().unwrap_or_default() }))
///     .layer(layer);
/// # node.shutdown().await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SessionLayer {
    node: Node,
    config: Arc<CookieConfig>,
}

impl SessionLayer {
    /// Sessions of `node`, with the default cookie configuration.
    #[must_use]
    pub fn new(node: Node) -> Self {
        Self {
            node,
            config: Arc::new(CookieConfig::default()),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut CookieConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The cookie's name (default `id`).
    #[must_use]
    pub fn with_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.edit(|c| c.name = name)
    }

    /// `HttpOnly` (default on).
    #[must_use]
    pub fn with_http_only(self, on: bool) -> Self {
        self.edit(|c| c.http_only = on)
    }

    /// `Secure` (default on).
    #[must_use]
    pub fn with_secure(self, on: bool) -> Self {
        self.edit(|c| c.secure = on)
    }

    /// `SameSite` (default `Strict`).
    #[must_use]
    pub fn with_same_site(self, same_site: SameSite) -> Self {
        self.edit(|c| c.same_site = same_site)
    }

    /// `Path` (default `/`).
    #[must_use]
    pub fn with_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|c| c.path = path)
    }

    /// `Domain` (default none: a host-only cookie).
    #[must_use]
    pub fn with_domain(self, domain: impl Into<String>) -> Self {
        let domain = domain.into();
        self.edit(|c| c.domain = Some(domain))
    }

    /// How new sessions expire (default: a browser-session cookie with the
    /// node's idle and absolute timeouts).
    #[must_use]
    pub fn with_expiry(self, expiry: Expiry) -> Self {
        self.edit(|c| c.expiry = Some(expiry))
    }

    /// The name of the session-token cookie (default: the session cookie's
    /// name followed by `_seen`).
    #[must_use]
    pub fn with_token_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.edit(|c| c.token_name = Some(name))
    }

    /// How many times a second one client may make this node ask its peers
    /// for a session id it does not hold (twice that at once); past it the
    /// id is answered as unknown. Default 10. Clients are told apart by
    /// their address, when the server provides it (axum's
    /// `into_make_service_with_connect_info`); behind a balancer that hides
    /// it, signed cookies ([`with_signed`](Self::with_signed)) are what
    /// keeps made-up ids from costing lookups.
    #[must_use]
    pub fn with_fetch_limit(self, per_second: u32) -> Self {
        self.edit(|c| c.fetch_limit = Arc::new(super::limit::FetchLimiter::new(per_second)))
    }

    /// Signs the cookie with `key`: a tampered or foreign cookie reads as no
    /// session.
    #[must_use]
    pub fn with_signed(self, key: Key) -> Self {
        self.edit(|c| c.key = Some(key))
    }

    /// Shorthand for `with_expiry(Expiry::OnInactivity(idle))`.
    #[must_use]
    pub fn with_max_idle(self, idle: Duration) -> Self {
        self.with_expiry(Expiry::OnInactivity(idle))
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = CookieManager<SessionService<S>>;

    fn layer(&self, inner: S) -> Self::Service {
        CookieManager::new(SessionService {
            inner,
            node: self.node.clone(),
            config: Arc::clone(&self.config),
        })
    }
}

/// The service [`SessionLayer`] wraps around the inner one (inside
/// tower-cookies' `CookieManager`).
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    node: Node,
    config: Arc<CookieConfig>,
}

impl<ReqBody, ResBody, S> Service<Request<ReqBody>> for SessionService<S>
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

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The clone that was made ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let node = self.node.clone();
        let config = Arc::clone(&self.config);
        let counted = node.clone();
        let answer = async move {
            let Some(cookies) = req.extensions().get::<Cookies>().cloned() else {
                tracing::error!("SessionService runs without tower-cookies' CookieManager");
                return Ok(status(StatusCode::INTERNAL_SERVER_ERROR));
            };
            let id = config.read(&cookies);
            let token = config.read_token(&cookies);
            let seen = id
                .zip(token.as_deref())
                .and_then(|(id, t)| node.read_token(&id, t));
            // The client, when the server says (axum's `ConnectInfo`): its
            // lookups of ids this node lacks are limited.
            let gate = req
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| (Arc::clone(&config.fetch_limit), c.0.ip()));
            let session = Session::new(node, id, seen, config.expiry, gate);
            req.extensions_mut().insert(session.clone());
            let mut response = inner.call(req).await?;
            match session.finish(&cookies, &config, token.is_some()).await {
                Ok(behind) => {
                    if behind {
                        response
                            .headers_mut()
                            .insert(STALE_HEADER, HeaderValue::from_static("true"));
                    }
                    Ok(response)
                }
                Err(Error::Behind { .. } | Error::Unreachable) => {
                    let mut response = status(StatusCode::SERVICE_UNAVAILABLE);
                    response
                        .headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                    Ok(response)
                }
                Err(Error::TooLarge { size, limit }) => {
                    tracing::warn!(size, limit, "session over its size limit; writes refused");
                    Ok(status(StatusCode::PAYLOAD_TOO_LARGE))
                }
                Err(e) => {
                    tracing::error!(error = %e, "session commit failed; answering 500");
                    Ok(status(StatusCode::INTERNAL_SERVER_ERROR))
                }
            }
        };
        Box::pin(async move {
            let answer = answer.await;
            if let Ok(response) = &answer {
                counted.count_answer(response.status());
            }
            answer
        })
    }
}

fn status<B: Default>(code: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = code;
    response
}
