//! The OpenID Connect relying party, protocol only: discovery, the authorization request (PKCE
//! S256, `state`, `nonce`), the code exchange, ID token verification (signature, issuer,
//! audience, expiry, nonce) with the JWKS fetched again on an unknown `kid`, userinfo, refresh
//! and the RP-initiated logout address. What a sign-in means to keyportal (accounts, groups,
//! sessions, audit) is in `service::oidc`.
//!
//! The `openidconnect` crate does the checking; this module adds what it leaves to the caller:
//! caching the provider's metadata, fetching the key set again when a token names a key it
//! does not have (key rotation), and reading the claims whose names are configured.

use crate::telemetry::error_chain;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreIdToken, CoreJsonWebKeySet,
    CoreTokenResponse,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};
use serde_json::{Map, Value};
use tokio::sync::RwLock;

/// How this portal is registered at its provider, and how to read the provider's claims.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The issuer URL; discovery reads `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// `<public URL>/auth/oidc/callback`, registered at the provider.
    pub redirect_url: String,
    /// Where the provider sends the browser after RP-initiated logout (`<public URL>/login`).
    pub post_logout_url: String,
    /// Scopes besides `openid`.
    pub scopes: Vec<String>,
    /// Shown on the sign-in button: "Sign in with <label>".
    pub label: String,
    pub username_claim: String,
    pub name_claim: String,
    pub email_claim: String,
    pub groups_claim: String,
    /// Members of this provider group are admins; others are members. `None` leaves roles to
    /// the portal.
    pub admin_group: Option<String>,
    /// How often a signed-in user's account is checked again at the provider.
    pub recheck: time::Duration,
    /// A first sign-in whose username belongs to an existing local account links to it
    /// (otherwise it is refused).
    pub link_existing: bool,
}

/// What went wrong talking to the provider. `reason()` is the stable code in audit events and
/// on the refusal page.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the provider could not be reached or answered badly: {0}")]
    Unreachable(String),
    #[error("the provider refused the request: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("the provider's answer has no ID token")]
    NoIdToken,
    #[error("the ID token was refused: {detail}")]
    IdToken {
        reason: &'static str,
        detail: String,
    },
    #[error("the provider's claims are not usable: {0}")]
    Claims(String),
}

impl OidcError {
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::Unreachable(_) => "provider_unreachable",
            OidcError::Refused { .. } => "provider_refused",
            OidcError::NoIdToken => "no_id_token",
            OidcError::IdToken { reason, .. } => reason,
            OidcError::Claims(_) => "claims_unusable",
        }
    }

    /// The provider said no to a refresh token or code (`invalid_grant`): the grant is gone,
    /// as when the account was disabled or removed.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, OidcError::Refused { error, .. } if error == "invalid_grant")
    }
}

/// The redirect to the provider, and what the callback must be checked against.
pub struct AuthorizationRequest {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Verified claims and the tokens that came with them.
pub struct SignedIn {
    pub claims: Map<String, Value>,
    pub id_token: String,
    pub refresh_token: Option<String>,
}

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

struct Discovered {
    metadata: ProviderMetadataWithLogout,
    /// When the key set was last fetched again for an unknown `kid` (not at discovery).
    refetched: Option<Instant>,
}

/// Largest userinfo answer read (claims of a person, groups included).
const MAX_USERINFO_BYTES: usize = 1024 * 1024;

/// A provider's metadata is fetched once and kept; its key set again on an unknown `kid`: the
/// first time at once, then at most once per this long (tokens naming unknown keys cannot make
/// the portal fetch in a loop).
const JWKS_REFETCH_MIN: Duration = Duration::from_secs(10);

/// The relying party for one provider; shared by every request of a process.
pub struct OidcProvider {
    pub settings: OidcSettings,
    redirect: RedirectUrl,
    http: reqwest::Client,
    discovered: RwLock<Option<Arc<Discovered>>>,
}

impl OidcProvider {
    pub fn new(settings: OidcSettings) -> Result<OidcProvider, OidcError> {
        IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| OidcError::Unreachable(format!("issuer URL: {e}")))?;
        let redirect = RedirectUrl::new(settings.redirect_url.clone())
            .map_err(|e| OidcError::Unreachable(format!("redirect URL: {e}")))?;
        let http = reqwest::Client::builder()
            // A redirect from the provider's endpoints is not followed (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OidcError::Unreachable(format!("HTTP client: {e}")))?;
        Ok(OidcProvider {
            settings,
            redirect,
            http,
            discovered: RwLock::new(None),
        })
    }

    /// The provider's metadata: discovered on first use (so the portal starts while the
    /// provider is down) and kept.
    async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.discovered.read().await.as_ref() {
            return Ok(d.clone());
        }
        let mut slot = self.discovered.write().await;
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|e| OidcError::Unreachable(format!("issuer URL: {e}")))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Unreachable(format!("discovery: {}", error_chain(&e))))?;
        let d = Arc::new(Discovered {
            metadata,
            refetched: None,
        });
        *slot = Some(d.clone());
        Ok(d)
    }

    /// Fetches the key set again, unless `seen` is already stale or it was fetched moments
    /// ago; true when a new set is in place.
    async fn refetch_jwks(&self, seen: &Arc<Discovered>) -> Result<bool, OidcError> {
        let mut slot = self.discovered.write().await;
        if let Some(current) = slot.as_ref() {
            if !Arc::ptr_eq(current, seen) {
                return Ok(true);
            }
        }
        if seen
            .refetched
            .is_some_and(|at| at.elapsed() < JWKS_REFETCH_MIN)
        {
            return Ok(false);
        }
        let jwks = CoreJsonWebKeySet::fetch_async(seen.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| OidcError::Unreachable(format!("key set: {}", error_chain(&e))))?;
        let metadata = seen.metadata.clone().set_jwks(jwks);
        *slot = Some(Arc::new(Discovered {
            metadata,
            refetched: Some(Instant::now()),
        }));
        tracing::info!(issuer = %self.settings.issuer, "fetched the provider's key set again (unknown kid)");
        Ok(true)
    }

    fn client(&self, d: &Discovered) -> Client {
        CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// A new authorization request: fresh state, nonce and PKCE verifier.
    pub async fn authorization_request(&self) -> Result<AuthorizationRequest, OidcError> {
        let d = self.discovered().await?;
        let client = self.client(&d);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(AuthorizationRequest {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the callback's code (with the attempt's PKCE verifier) and verifies the ID
    /// token against the attempt's nonce.
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<SignedIn, OidcError> {
        let d = self.discovered().await?;
        let client = self.client(&d);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Unreachable(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;
        let expected = Nonce::new(nonce.to_owned());
        self.verify(d, id_token, Some(&expected)).await?;
        self.signed_in(&response, id_token, None).await
    }

    /// Uses a refresh token: the provider answers only while the account and its grant are
    /// live. The new ID token, if any, must name the same subject.
    pub async fn refresh(&self, refresh_token: &str, subject: &str) -> Result<SignedIn, OidcError> {
        let d = self.discovered().await?;
        let client = self.client(&d);
        let token = RefreshToken::new(refresh_token.to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .map_err(|e| OidcError::Unreachable(format!("token endpoint: {e}")))?
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let mut signed_in = match response.id_token() {
            Some(id_token) => {
                self.verify(d, id_token, None).await?;
                self.signed_in(&response, id_token, Some(subject)).await?
            }
            // No new ID token: the provider vouched for the account by answering; the claims
            // come from userinfo, when it has one.
            None => SignedIn {
                claims: self
                    .userinfo(response.access_token().secret(), subject)
                    .await?
                    .unwrap_or_default(),
                id_token: String::new(),
                refresh_token: None,
            },
        };
        if signed_in.refresh_token.is_none() {
            signed_in.refresh_token = response.refresh_token().map(|t| t.secret().clone());
        }
        if subject_of(&signed_in.claims).is_some_and(|s| s != subject) {
            return Err(OidcError::IdToken {
                reason: "subject_changed",
                detail: "the refreshed ID token names another subject".into(),
            });
        }
        Ok(signed_in)
    }

    /// Checks the ID token; on an unknown signing key, fetches the key set again once.
    async fn verify(
        &self,
        d: Arc<Discovered>,
        id_token: &CoreIdToken,
        nonce: Option<&Nonce>,
    ) -> Result<(), OidcError> {
        match self.check(&d, id_token, nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) if self.refetch_jwks(&d).await? => {
                // Once more with the new set; a second miss is final.
                let d = self.discovered().await?;
                self.check(&d, id_token, nonce).map_err(claims_error)
            }
            checked => checked.map_err(claims_error),
        }
    }

    fn check(
        &self,
        d: &Discovered,
        id_token: &CoreIdToken,
        nonce: Option<&Nonce>,
    ) -> Result<(), ClaimsVerificationError> {
        let client = self.client(d);
        let verifier = client.id_token_verifier();
        match nonce {
            Some(n) => id_token.claims(&verifier, n).map(|_| ()),
            // A refreshed ID token carries no nonce of this login (OIDC Core 12.2).
            None => id_token
                .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                .map(|_| ()),
        }
    }

    /// The ID token's claims (already verified), with userinfo's added where the ID token has
    /// none.
    async fn signed_in(
        &self,
        response: &CoreTokenResponse,
        id_token: &CoreIdToken,
        subject: Option<&str>,
    ) -> Result<SignedIn, OidcError> {
        let raw = id_token.to_string();
        let mut claims = payload_claims(&raw)?;
        let sub = subject_of(&claims)
            .ok_or_else(|| OidcError::Claims("the ID token has no sub".into()))?
            .to_owned();
        if let Some(expected) = subject {
            if sub != expected {
                return Err(OidcError::IdToken {
                    reason: "subject_changed",
                    detail: "the refreshed ID token names another subject".into(),
                });
            }
        }
        if let Some(extra) = self
            .userinfo(response.access_token().secret(), &sub)
            .await?
        {
            for (name, value) in extra {
                claims.entry(name).or_insert(value);
            }
        }
        Ok(SignedIn {
            claims,
            id_token: raw,
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        })
    }

    /// The userinfo endpoint's claims, if the provider has one; its `sub` must be the ID
    /// token's (OIDC Core 5.3.2).
    async fn userinfo(
        &self,
        access_token: &str,
        subject: &str,
    ) -> Result<Option<Map<String, Value>>, OidcError> {
        let d = self.discovered().await?;
        let Some(url) = d.metadata.userinfo_endpoint() else {
            return Ok(None);
        };
        let response = self
            .http
            .get(url.url().clone())
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| OidcError::Unreachable(format!("userinfo: {}", error_chain(&e))))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(OidcError::Refused {
                error: "invalid_token".into(),
                description: Some("userinfo refused the access token".into()),
            });
        }
        if !status.is_success() {
            return Err(OidcError::Unreachable(format!(
                "userinfo answered {status}"
            )));
        }
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            // A signed or encrypted userinfo answer: the ID token's claims are used alone.
            return Ok(None);
        }
        // Bounded: a provider's (or an impostor's) endless answer must not fill memory.
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| OidcError::Unreachable(format!("userinfo: {}", error_chain(&e))))?
        {
            if body.len() + chunk.len() > MAX_USERINFO_BYTES {
                return Err(OidcError::Claims(format!(
                    "userinfo is larger than {MAX_USERINFO_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let claims: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| OidcError::Claims(format!("userinfo is not a JSON object: {e}")))?;
        if subject_of(&claims) != Some(subject) {
            return Err(OidcError::Claims(
                "userinfo names another subject than the ID token".into(),
            ));
        }
        Ok(Some(claims))
    }

    /// Where to send the browser at sign-out: the provider's `end_session_endpoint` with the
    /// ID token as hint, if the provider has one.
    pub async fn logout_url(&self, id_token: &str) -> Option<String> {
        let d = self.discovered().await.ok()?;
        let endpoint = d
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()?;
        let mut url = endpoint.url().clone();
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("post_logout_redirect_uri", &self.settings.post_logout_url);
        Some(url.to_string())
    }
}

/// A verified JWT's payload as a claims object. The signature was checked by the caller; this
/// reads claims whose names are configured, which the typed claims cannot.
fn payload_claims(jwt: &str) -> Result<Map<String, Value>, OidcError> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| OidcError::Claims("the ID token is not a JWT".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| OidcError::Claims(format!("the ID token's payload: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| OidcError::Claims(format!("the ID token's payload: {e}")))
}

fn subject_of(claims: &Map<String, Value>) -> Option<&str> {
    claims.get("sub").and_then(Value::as_str)
}

fn claims_error(e: ClaimsVerificationError) -> OidcError {
    let reason = match &e {
        ClaimsVerificationError::Expired(_) => "id_token_expired",
        ClaimsVerificationError::InvalidAudience(_) => "id_token_audience",
        ClaimsVerificationError::InvalidIssuer(_) => "id_token_issuer",
        ClaimsVerificationError::InvalidNonce(_) => "id_token_nonce",
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => "id_token_unknown_key",
        ClaimsVerificationError::SignatureVerification(_) => "id_token_signature",
        _ => "id_token_invalid",
    };
    OidcError::IdToken {
        reason,
        detail: error_chain(&e),
    }
}

fn token_error<E: std::error::Error + 'static>(
    e: RequestTokenError<E, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError {
    match e {
        RequestTokenError::ServerResponse(r) => OidcError::Refused {
            error: r.error().as_ref().to_owned(),
            description: r.error_description().cloned(),
        },
        RequestTokenError::Request(e) => {
            OidcError::Unreachable(format!("token endpoint: {}", error_chain(&e)))
        }
        RequestTokenError::Parse(e, _) => {
            OidcError::Unreachable(format!("token endpoint's answer: {e}"))
        }
        RequestTokenError::Other(e) => OidcError::Unreachable(format!("token endpoint: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_configured_claims_from_a_jwt_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"u1","groups":["ops"],"preferred_username":"alice"}"#);
        let claims = payload_claims(&format!("e30.{payload}.c2ln")).unwrap();
        assert_eq!(subject_of(&claims), Some("u1"));
        assert_eq!(claims["groups"], serde_json::json!(["ops"]));
        assert!(payload_claims("not-a-jwt").is_err());
        assert!(payload_claims("a.!!!.c").is_err());
    }
}
