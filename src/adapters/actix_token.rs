//! The token middleware for actix-session: wrap it *outside* actix-session's
//! `SessionMiddleware` (see [`super::token`] for what it does).

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::EitherBody;
use actix_web::cookie::SameSite;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue, COOKIE, RETRY_AFTER, SET_COOKIE};
use actix_web::{HttpResponse, ResponseError};

use super::token::{scoped, TokenCookie};
use crate::http::STALE_HEADER;

/// This node cannot serve the state the client's token names (yet): `503`
/// with `Retry-After`.
#[derive(Debug)]
struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the session is not available on this node yet")
    }
}

impl ResponseError for Unavailable {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::ServiceUnavailable()
            .insert_header((RETRY_AFTER, "1"))
            .finish()
    }
}

/// Carries sessionmesh's session token beside actix-session's own cookie,
/// so that whichever node serves a user's next request serves at least the
/// state the user has seen.
///
/// # Examples
///
/// ```no_run
/// use actix_session::SessionMiddleware;
/// use actix_web::{cookie::Key, App};
/// use sessionmesh::adapters::actix::{MeshStore, TokenMiddleware};
///
/// # fn app(node: sessionmesh::Node, key: Key) {
/// let app = App::new()
///     .wrap(SessionMiddleware::new(MeshStore::new(node), key))
///     .wrap(TokenMiddleware::new()); // registered last: runs outside
/// # let _ = app; }
/// ```
#[derive(Debug, Clone, Default)]
pub struct TokenMiddleware {
    cookie: TokenCookie,
}

impl TokenMiddleware {
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
        self.cookie.same_site = match same_site {
            SameSite::Strict => tower_cookies::cookie::SameSite::Strict,
            SameSite::Lax => tower_cookies::cookie::SameSite::Lax,
            SameSite::None => tower_cookies::cookie::SameSite::None,
        };
        self
    }

    /// `Path` (default `/`).
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.cookie.path = path.into();
        self
    }
}

impl<S, B> Transform<S, ServiceRequest> for TokenMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = TokenService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(TokenService {
            service: Rc::new(service),
            cookie: Rc::new(self.cookie.clone()),
        }))
    }
}

/// The service [`TokenMiddleware`] wraps around the inner one.
#[derive(Debug)]
pub struct TokenService<S> {
    service: Rc<S>,
    cookie: Rc<TokenCookie>,
}

impl<S, B> Service<ServiceRequest> for TokenService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let incoming = self.cookie.find(
            req.headers()
                .get_all(COOKIE)
                .filter_map(|v| v.to_str().ok()),
        );
        let service = Rc::clone(&self.service);
        let cookie = Rc::clone(&self.cookie);
        Box::pin(async move {
            let (response, outcome) =
                scoped(incoming, async move { service.call(req).await }).await;
            // actix-session turns the store's refusal into an error (a 500):
            // the answer is a 503 the client retries, whatever came back.
            if outcome.unavailable {
                return match response {
                    Ok(response) => Ok(response
                        .into_response(Unavailable.error_response())
                        .map_into_right_body()),
                    Err(_) => Err(Unavailable.into()),
                };
            }
            let mut response = response?;
            if outcome.behind {
                response.headers_mut().insert(
                    HeaderName::from_static(STALE_HEADER),
                    HeaderValue::from_static("true"),
                );
            }
            // Appended: the framework's own cookie comes first.
            if let Some(value) = cookie
                .set_cookie(&outcome)
                .and_then(|v| HeaderValue::from_str(&v).ok())
            {
                response.headers_mut().append(SET_COOKIE, value);
            }
            Ok(response.map_into_left_body())
        })
    }
}
