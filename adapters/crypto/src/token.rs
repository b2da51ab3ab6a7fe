//! Session tokens: JWT (RFC 7519) signed with HMAC-SHA256, and nothing else, through the
//! `jsonwebtoken` crate (its RustCrypto backend: one crypto stack).
//!
//! Verification pins the algorithm: a header that says anything but `HS256` (`none`,
//! `RS256`, `hs256`, ...) is refused before the signature is looked at, the signature is
//! compared in constant time, and `iss`, `aud`, `exp`, `iat`, `jti`, `sub` must all be
//! present and right. Expiry is judged against the caller's clock (the application's
//! `Clock` port), not the process's, with no leeway; `iat` may be up to a minute ahead
//! (clock skew between instances).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use coffer_domain::crypto::{CryptoError, DeviceClaims, SessionClaims, TokenCodec, TokenError};
use coffer_domain::secrets::Secret;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "coffer";
pub const AUDIENCE: &str = "coffer-api";
/// The audience of device cookies: no session token passes for one, nor the reverse.
pub const DEVICE_AUDIENCE: &str = "coffer-device";
/// Clock skew tolerated on `iat`.
const LEEWAY_SECS: i64 = 60;

/// HS256 tokens under one 256-bit key.
pub struct Hs256Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    device_validation: Validation,
}

impl std::fmt::Debug for Hs256Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hs256Tokens(***)")
    }
}

/// The header fields looked at before anything else.
#[derive(Deserialize)]
struct AlgorithmHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    jti: String,
    iat: i64,
    exp: i64,
    #[serde(rename = "gen")]
    generation: i64,
    csrf: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    iss: String,
    aud: String,
    /// The username.
    sub: String,
    /// The device id.
    jti: String,
    iat: i64,
    exp: i64,
}

impl Hs256Tokens {
    #[must_use]
    pub fn new(key: [u8; 32]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Judged against the caller's `now` below: the application's clock, not the
        // process's.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        let mut device_validation = validation.clone();
        device_validation.set_audience(&[DEVICE_AUDIENCE]);
        Self {
            // A 32-byte key is never empty, the only key HS256 refuses.
            encoding: EncodingKey::from_secret(&key).expect("a 256-bit HMAC key"),
            decoding: DecodingKey::from_secret(&key).expect("a 256-bit HMAC key"),
            validation,
            device_validation,
        }
    }
}

fn map_decode_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.into_kind() {
        ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        _ => TokenError::Malformed,
    }
}

/// The times of a decoded token, checked against `now` (no leeway on expiry).
fn check_times(
    iat: i64,
    exp: i64,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), TokenError> {
    let issued_at = DateTime::from_timestamp(iat, 0).ok_or(TokenError::Malformed)?;
    let expires_at = DateTime::from_timestamp(exp, 0).ok_or(TokenError::Malformed)?;
    if now >= expires_at {
        return Err(TokenError::Expired);
    }
    if issued_at > now + TimeDelta::seconds(LEEWAY_SECS) || issued_at >= expires_at {
        return Err(TokenError::Malformed);
    }
    Ok((issued_at, expires_at))
}

/// Refuses, before the signature is checked, a token whose header names any algorithm
/// but HS256 (or a `typ` other than JWT): `alg` is never taken from the token.
fn pin_algorithm(token: &str) -> Result<(), TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: AlgorithmHeader = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(TokenError::Malformed)?;
    if header.alg != "HS256" || header.typ.as_deref().is_some_and(|t| t != "JWT") {
        return Err(TokenError::Algorithm);
    }
    Ok(())
}

impl TokenCodec for Hs256Tokens {
    fn issue(&self, claims: &SessionClaims) -> Result<Secret, CryptoError> {
        let body = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: claims.subject.to_string(),
            jti: claims.token_id.clone(),
            iat: claims.issued_at.timestamp(),
            exp: claims.expires_at.timestamp(),
            generation: claims.generation,
            csrf: claims.csrf.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &body, &self.encoding)
            .map(Secret::new)
            .map_err(|e| CryptoError(e.to_string()))
    }

    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<SessionClaims, TokenError> {
        pin_algorithm(token)?;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(map_decode_error)?
            .claims;
        let (issued_at, expires_at) = check_times(claims.iat, claims.exp, now)?;
        let subject = claims.sub.parse().map_err(|_| TokenError::Malformed)?;
        if claims.jti.is_empty() || claims.csrf.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(SessionClaims {
            subject,
            token_id: claims.jti,
            issued_at,
            expires_at,
            generation: claims.generation,
            csrf: claims.csrf,
        })
    }

    fn issue_device(&self, claims: &DeviceClaims) -> Result<Secret, CryptoError> {
        let body = DeviceBody {
            iss: ISSUER.to_owned(),
            aud: DEVICE_AUDIENCE.to_owned(),
            sub: claims.username.clone(),
            jti: claims.device_id.clone(),
            iat: claims.issued_at.timestamp(),
            exp: claims.expires_at.timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &body, &self.encoding)
            .map(Secret::new)
            .map_err(|e| CryptoError(e.to_string()))
    }

    fn verify_device(&self, token: &str, now: DateTime<Utc>) -> Result<DeviceClaims, TokenError> {
        pin_algorithm(token)?;
        let claims =
            jsonwebtoken::decode::<DeviceBody>(token, &self.decoding, &self.device_validation)
                .map_err(map_decode_error)?
                .claims;
        let (issued_at, expires_at) = check_times(claims.iat, claims.exp, now)?;
        if claims.sub.is_empty() || claims.jti.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(DeviceClaims {
            username: claims.sub,
            device_id: claims.jti,
            issued_at,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use hmac::{Hmac, KeyInit as _, Mac as _};
    use sha2::Sha256;

    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
    }

    fn claims() -> SessionClaims {
        SessionClaims {
            subject: 7,
            token_id: "tok-1".to_owned(),
            issued_at: now(),
            expires_at: now() + TimeDelta::hours(24),
            generation: 3,
            csrf: "csrf-1".to_owned(),
        }
    }

    fn codec() -> Hs256Tokens {
        Hs256Tokens::new([7u8; 32])
    }

    /// A token with the given header and claims JSON, signed with `key` (or unsigned).
    fn forge(header: &str, body: &str, key: Option<&[u8; 32]>) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(body.as_bytes()));
        let sig = key.map_or_else(String::new, |k| {
            let mut mac = <Hmac<Sha256>>::new_from_slice(k).expect("key");
            mac.update(input.as_bytes());
            b64(&mac.finalize().into_bytes())
        });
        format!("{input}.{sig}")
    }

    fn body(exp: i64, iss: &str, aud: &str) -> String {
        format!(
            r#"{{"iss":"{iss}","aud":"{aud}","sub":"7","jti":"j","iat":{},"exp":{exp},"gen":0,"csrf":"c"}}"#,
            now().timestamp()
        )
    }

    #[test]
    fn round_trip() {
        let token = codec().issue(&claims()).expect("issue");
        assert_eq!(codec().verify(token.expose(), now()), Ok(claims()));
    }

    #[test]
    fn tampered_signature_or_body_is_refused() {
        let token = codec().issue(&claims()).expect("issue").expose().to_owned();
        let mut bytes = token.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("utf8");
        assert_eq!(codec().verify(&tampered, now()), Err(TokenError::Signature));
        // Another key.
        assert_eq!(
            Hs256Tokens::new([8u8; 32]).verify(&token, now()),
            Err(TokenError::Signature)
        );
        // Body swapped for one claiming another user, old signature kept.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_body = b64(body(now().timestamp() + 3600, ISSUER, AUDIENCE)
            .replace("\"7\"", "\"1\"")
            .as_bytes());
        let swapped = format!("{}.{}.{}", parts[0], forged_body, parts[2]);
        assert_eq!(codec().verify(&swapped, now()), Err(TokenError::Signature));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let exp = now().timestamp() + 3600;
        let none = forge(
            r#"{"alg":"none","typ":"JWT"}"#,
            &body(exp, ISSUER, AUDIENCE),
            None,
        );
        assert_eq!(codec().verify(&none, now()), Err(TokenError::Algorithm));
        let none_upper = forge(r#"{"alg":"None"}"#, &body(exp, ISSUER, AUDIENCE), None);
        assert_eq!(
            codec().verify(&none_upper, now()),
            Err(TokenError::Algorithm)
        );
        for alg in ["HS512", "RS256", "ES256", "hs256"] {
            let t = forge(
                &format!(r#"{{"alg":"{alg}"}}"#),
                &body(exp, ISSUER, AUDIENCE),
                Some(&[7u8; 32]),
            );
            assert_eq!(
                codec().verify(&t, now()),
                Err(TokenError::Algorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn expired_wrong_audience_and_missing_claims_are_refused() {
        let token = codec().issue(&claims()).expect("issue");
        assert_eq!(
            codec().verify(token.expose(), now() + TimeDelta::hours(24)),
            Err(TokenError::Expired)
        );
        let key = [7u8; 32];
        let h = r#"{"alg":"HS256","typ":"JWT"}"#;
        let exp = now().timestamp() + 3600;
        assert_eq!(
            codec().verify(
                &forge(h, &body(exp, ISSUER, "other-api"), Some(&key)),
                now()
            ),
            Err(TokenError::Audience)
        );
        assert_eq!(
            codec().verify(
                &forge(h, &body(exp, "someone-else", AUDIENCE), Some(&key)),
                now()
            ),
            Err(TokenError::Audience)
        );
        let no_exp =
            r#"{"iss":"coffer","aud":"coffer-api","sub":"7","jti":"j","iat":1,"gen":0,"csrf":"c"}"#;
        assert_eq!(
            codec().verify(&forge(h, no_exp, Some(&key)), now()),
            Err(TokenError::Malformed)
        );
        for junk in ["", "a.b", "a.b.c.d", "...", "not a token"] {
            assert!(codec().verify(junk, now()).is_err(), "{junk}");
        }
    }

    #[test]
    fn device_tokens_and_session_tokens_never_pass_for_each_other() {
        let device = DeviceClaims {
            username: "admin".to_owned(),
            device_id: "dev-1".to_owned(),
            issued_at: now(),
            expires_at: now() + TimeDelta::days(90),
        };
        let token = codec().issue_device(&device).expect("issue");
        assert_eq!(codec().verify_device(token.expose(), now()), Ok(device));
        assert!(codec().verify(token.expose(), now()).is_err());
        let session = codec().issue(&claims()).expect("issue");
        assert!(codec().verify_device(session.expose(), now()).is_err());
        assert_eq!(
            Hs256Tokens::new([8u8; 32]).verify_device(token.expose(), now()),
            Err(TokenError::Signature)
        );
        assert_eq!(
            codec().verify_device(token.expose(), now() + TimeDelta::days(90)),
            Err(TokenError::Expired)
        );
    }
}
