//! Composition: the whole application (the API, the pages and health under one middleware
//! stack) and `serve`, which runs it until SIGINT or SIGTERM.
//!
//! Middleware, outermost first: request id (taken from `x-request-id` if it is short and plain,
//! else generated) → trace span carrying that id → the id echoed on the response → panic guard
//! → compression (never of pages or `no-store` answers, which carry secrets) → problem documents
//! for middleware errors → body limit → timeout → control characters in the path or query
//! refused (`http::input`). Security headers (CSP without inline script, no framing, nosniff,
//! referrer policy) are set on every response that has none.

use std::time::Duration;

use axum::http::{header, HeaderName, Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::config::ServeConfig;
use crate::db::{Database, DbError};
use crate::http::error::{ApiError, Problem};
use crate::http::{input, AppState, WebSettings, REQUEST_ID_HEADER};

/// Settings of the middleware stack.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
}

/// The whole application.
pub fn app(state: AppState, settings: &HttpSettings) -> Router {
    let provider_origin = state
        .services
        .oidc
        .as_ref()
        .and_then(|p| origin_of(&p.settings.issuer));
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request<_>| {
            let request_id = req
                .extensions()
                .get::<RequestId>()
                .and_then(|id| id.header_value().to_str().ok())
                .unwrap_or("-");
            tracing::info_span!(
                "request",
                request_id = %request_id,
                method = %req.method(),
                uri = %loggable_uri(req.uri()),
                caller = tracing::field::Empty
            )
        })
        .on_response(DefaultOnResponse::new().level(Level::INFO));

    Router::new()
        .merge(crate::http::health::router())
        .merge(crate::api::router())
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            crate::web::session::write_flash_cookie,
        ))
        .with_state(state.clone())
        .layer(axum::middleware::from_fn(input::reject_control_characters))
        // Inner layers (last added runs first): their bare error answers pass through the
        // problem mapper.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(RequestBodyLimitLayer::new(settings.max_body_bytes))
        .layer(axum::middleware::map_response(problem_for_bare_errors))
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::map_request(drop_unusable_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuid))
                .layer(trace)
                .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
                .layer(CatchPanicLayer::custom(|_| {
                    tracing::error!("handler panicked");
                    Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error",
                        "an internal error occurred",
                    )
                    .into_response()
                }))
                .layer(
                    CompressionLayer::new().compress_when(
                        DefaultPredicate::new()
                            .and(NotForContentType::const_new("text/html"))
                            .and(not_marked_no_store),
                    ),
                )
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CONTENT_SECURITY_POLICY,
                    content_security_policy(provider_origin.as_deref()),
                ))
                .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
                .layer(security_header(header::REFERRER_POLICY, "same-origin"))
                .layer(security_header(
                    HeaderName::from_static("cross-origin-opener-policy"),
                    "same-origin",
                )),
        )
        // Outermost, so timeouts (503) and panics (500) are counted too.
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::http::login_metrics::count,
        ))
}

/// A client's `x-request-id` is kept (logs, audit events) only if it is 1-128 characters of
/// `[A-Za-z0-9._:-]`; otherwise it is removed, so the next layer makes a fresh one.
async fn drop_unusable_request_id<B>(mut req: Request<B>) -> Request<B> {
    let usable = |v: &[u8]| {
        (1..=128).contains(&v.len())
            && v.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
    };
    let headers = req.headers().get_all(&REQUEST_ID_HEADER);
    let mut sent = headers.iter();
    let keep = match (sent.next(), sent.next()) {
        (Some(only), None) => usable(only.as_bytes()),
        (None, _) => true,
        // Several ids: none of them is the request's.
        (Some(_), Some(_)) => false,
    };
    if !keep {
        req.headers_mut().remove(&REQUEST_ID_HEADER);
    }
    req
}

/// Pages carry the CSRF token beside text reflected from the request, and `no-store` answers
/// carry fresh secrets: compressed, their size would leak the secret byte by byte (BREACH).
/// So neither is compressed; JSON lists and authorized_keys still are.
fn not_marked_no_store(
    _: StatusCode,
    _: axum::http::Version,
    headers: &axum::http::HeaderMap,
    _: &axum::http::Extensions,
) -> bool {
    !headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-store"))
}

/// The request's URI as logged: the identity provider's callback without its query, which
/// holds the authorization code and the state.
fn loggable_uri(uri: &axum::http::Uri) -> std::borrow::Cow<'_, str> {
    match (uri.path(), uri.query()) {
        ("/auth/oidc/callback", Some(_)) => "/auth/oidc/callback?(not logged)".into(),
        _ => uri
            .path_and_query()
            .map_or_else(|| uri.path().into(), |pq| pq.as_str().into()),
    }
}

/// The pages' CSP. Forms post to this portal only; sign-out, whose redirect continues at the
/// identity provider (RP-initiated logout), also needs the provider's origin, since browsers
/// apply `form-action` to a form's redirects too.
fn content_security_policy(provider_origin: Option<&str>) -> axum::http::HeaderValue {
    let form_action = match provider_origin {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    axum::http::HeaderValue::from_str(&csp).unwrap_or_else(|_| {
        axum::http::HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
    })
}

/// `scheme://host[:port]` of a URL, for a CSP source; `None` if it has no usable one.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    let ok = matches!(scheme, "https" | "http")
        && !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then(|| format!("{scheme}://{host}"))
}

fn security_header(
    name: HeaderName,
    value: &'static str,
) -> SetResponseHeaderLayer<axum::http::HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, axum::http::HeaderValue::from_static(value))
}

/// Errors produced by middleware (body limit, timeout) become problem documents too.
async fn problem_for_bare_errors(res: axum::response::Response) -> axum::response::Response {
    let is_problem = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    // The timeout's answer has no body; a handler's 503 (a page, "busy") has its own.
    let is_bare = !res.headers().contains_key(axum::http::header::CONTENT_TYPE);
    match res.status() {
        StatusCode::PAYLOAD_TOO_LARGE if !is_problem => ApiError::PayloadTooLarge.into_response(),
        StatusCode::SERVICE_UNAVAILABLE if is_bare => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long and was stopped",
        )
        .into_response(),
        _ => res,
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
}

/// Runs the portal until SIGINT or SIGTERM, then finishes in-flight requests, closes the pool
/// and stops the private cluster if no other keyportal process still uses it.
pub async fn serve(cfg: ServeConfig) -> Result<(), ServeError> {
    let started = std::time::Instant::now();
    // Configuration mistakes are reported before anything starts.
    let provider = match cfg.oidc.settings(cfg.public_url.as_deref()) {
        Ok(Some(settings)) => Some(std::sync::Arc::new(
            crate::oidc::OidcProvider::new(settings)
                .map_err(|e| ServeError::Config(e.to_string()))?,
        )),
        Ok(None) => None,
        Err(e) => return Err(ServeError::Config(e)),
    };
    let transports = match cfg.notify.transports() {
        Ok((mailer, webhook)) => std::sync::Arc::new(crate::service::notifications::Transports {
            mailer,
            webhook,
            public_url: cfg.public_url.clone(),
        }),
        Err(e) => return Err(ServeError::Config(e)),
    };
    let db = Database::open(&cfg.database).await?;
    let supervisor = db.supervise_cluster();
    // After the database: the private cluster decides how the data directory is made.
    let authorities = match cfg.ca.load(&cfg.database.data_dir) {
        Ok(a) => std::sync::Arc::new(a),
        Err(e) => {
            if let Some(supervisor) = &supervisor {
                supervisor.abort();
            }
            db.close().await;
            return Err(ServeError::Config(e.to_string()));
        }
    };
    let settings = HttpSettings {
        request_timeout: cfg.request_timeout(),
        max_body_bytes: cfg.max_body_bytes,
    };
    let mut state = AppState::new(db.pool.clone());
    let replicas = match crate::db::replicas::ReadReplicas::connect(
        &cfg.replicas.read_urls,
        cfg.replicas.replica_max_lag_bytes,
    ) {
        Ok(r) => std::sync::Arc::new(r),
        Err(e) => {
            if let Some(supervisor) = &supervisor {
                supervisor.abort();
            }
            db.close().await;
            return Err(e.into());
        }
    };
    let replica_monitor = replicas.monitor(db.pool.clone());
    state.services.replicas = replicas.clone();
    state.services.sessions.idle = time::Duration::minutes(cfg.session_idle_minutes.into());
    state.services.sessions.absolute = time::Duration::hours(cfg.session_max_hours.into());
    state.web = WebSettings {
        secure_cookies: cfg
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
        public_url: cfg.public_url.clone(),
    };
    state.services.oidc = provider;
    state.services.ca = Some(authorities);
    let scheduled_scan = crate::service::compromised::spawn_scheduled_scan(
        state.services.clone(),
        cfg.shared_prime_scan_hours,
    );
    if !transports.is_empty() {
        tracing::info!(
            smtp = transports.mailer.as_ref().map(|m| m.server()),
            webhook = transports.webhook.as_ref().map(|w| w.shown()),
            interval_secs = cfg.notify.notify_interval,
            "notifications are on"
        );
    }
    let scheduled_notifications = crate::service::notifications::spawn_scheduled_notifications(
        state.services.clone(),
        transports,
        cfg.notify.notify_interval,
    );
    let app = app(state, &settings);
    let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
        Ok(l) => l,
        Err(source) => {
            if let Some(supervisor) = &supervisor {
                supervisor.abort();
            }
            if let Some(monitor) = &replica_monitor {
                monitor.abort();
            }
            if let Some(scan) = &scheduled_scan {
                scan.abort();
            }
            if let Some(round) = &scheduled_notifications {
                round.abort();
            }
            replicas.close().await;
            db.close().await;
            return Err(ServeError::Bind {
                addr: cfg.listen,
                source,
            });
        }
    };
    let checks_refresh = crate::service::compromised::spawn_refresh(db.pool.clone());
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(%addr, startup_ms = started.elapsed().as_millis() as u64, "keyportal is listening on http://{addr}");
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await;
    tracing::info!("shutting down");
    checks_refresh.abort();
    if let Some(scan) = scheduled_scan {
        scan.abort();
    }
    if let Some(round) = scheduled_notifications {
        round.abort();
    }
    if let Some(supervisor) = supervisor {
        supervisor.abort();
    }
    if let Some(monitor) = replica_monitor {
        monitor.abort();
    }
    replicas.close().await;
    db.close().await;
    served.map_err(ServeError::Serve)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for shutdown signals; stop with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_providers_callback_is_logged_without_its_code_and_state() {
        let uri: axum::http::Uri = "/auth/oidc/callback?code=secret-code&state=s"
            .parse()
            .unwrap();
        assert_eq!(loggable_uri(&uri), "/auth/oidc/callback?(not logged)");
        let uri: axum::http::Uri = "/keys?cursor=abc".parse().unwrap();
        assert_eq!(loggable_uri(&uri), "/keys?cursor=abc");
    }

    #[test]
    fn the_providers_origin_joins_form_action_and_nothing_else_can() {
        assert_eq!(
            origin_of("https://login.example.com/realms/ops?x=1").as_deref(),
            Some("https://login.example.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:5556/dex").as_deref(),
            Some("http://127.0.0.1:5556")
        );
        // Anything that could add a CSP directive or source is refused.
        assert_eq!(origin_of("https://a.example; script-src *"), None);
        assert_eq!(origin_of("javascript://x"), None);
        assert_eq!(origin_of("https://"), None);
        let csp = content_security_policy(Some("https://idp.example"));
        assert!(csp
            .to_str()
            .unwrap()
            .contains("form-action 'self' https://idp.example;"));
        assert!(content_security_policy(None)
            .to_str()
            .unwrap()
            .contains("form-action 'self';"));
    }
}
