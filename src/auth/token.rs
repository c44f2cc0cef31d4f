//! PASETO v4.local tokens: the user id as `sub`, an `exp` claim, and an
//! implicit assertion binding the token to this service.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pasetors::{
    Local,
    claims::{Claims, ClaimsValidationRules},
    keys::SymmetricKey,
    local,
    token::UntrustedToken,
    version4::V4,
};

use crate::{domain::UserId, error::Error};

const IMPLICIT: &[u8] = b"monitor.v1";

/// The key tokens are made and checked with, and how long they live.
pub struct TokenKeys {
    key: SymmetricKey<V4>,
    /// During a rotation: tokens it signed still verify.
    previous: Option<SymmetricKey<V4>>,
    ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("key", &"<redacted>")
            .field("previous", &self.previous.as_ref().map(|_| "<redacted>"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A freshly issued token.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl TokenKeys {
    pub fn new(key: &[u8; 32], ttl: Duration) -> Self {
        Self {
            key: SymmetricKey::from(key).expect("a 32-byte key is always valid"),
            previous: None,
            ttl,
        }
    }

    /// Also accepts tokens signed with `previous` (a key rotation).
    #[must_use]
    pub fn with_previous(mut self, previous: &[u8; 32]) -> Self {
        self.previous = Some(SymmetricKey::from(previous).expect("a 32-byte key is always valid"));
        self
    }

    pub fn issue(&self, user: UserId) -> Result<IssuedToken, Error> {
        let fail = |e: pasetors::errors::Error| Error::internal(anyhow::anyhow!("token: {e}"));
        let mut claims = Claims::new_expires_in(&self.ttl).map_err(fail)?;
        claims.subject(&user.0.to_string()).map_err(fail)?;
        let expires_at = claims
            .get_claim("exp")
            .and_then(|v| v.as_str())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| Error::internal(anyhow::anyhow!("token has no exp claim")))?;
        let token = local::encrypt(&self.key, &claims, None, Some(IMPLICIT)).map_err(fail)?;
        Ok(IssuedToken { token, expires_at })
    }

    /// Verifies a token and returns its user. Every failure is the same
    /// UNAUTHENTICATED answer: which check failed is not the client's business.
    pub fn verify(&self, token: &str) -> Result<UserId, Error> {
        let invalid = || Error::Unauthenticated("invalid or expired token; log in again".into());
        let untrusted = UntrustedToken::<Local, V4>::try_from(token).map_err(|_| invalid())?;
        let rules = ClaimsValidationRules::new();
        let trusted = std::iter::once(&self.key)
            .chain(self.previous.as_ref())
            .find_map(|key| local::decrypt(key, &untrusted, &rules, None, Some(IMPLICIT)).ok())
            .ok_or_else(invalid)?;
        trusted
            .payload_claims()
            .and_then(|c| c.get_claim("sub"))
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok())
            .map(UserId)
            .ok_or_else(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_verifies_to_its_user() {
        let keys = TokenKeys::new(&[7; 32], Duration::from_secs(60));
        let t = keys.issue(UserId(42)).unwrap();
        assert!(t.token.starts_with("v4.local."));
        assert_eq!(keys.verify(&t.token).unwrap(), UserId(42));
        let left = t.expires_at - Utc::now();
        assert!(left.num_seconds() > 50 && left.num_seconds() <= 60);
    }

    #[test]
    fn token_from_another_key_is_rejected() {
        let a = TokenKeys::new(&[1; 32], Duration::from_secs(60));
        let b = TokenKeys::new(&[2; 32], Duration::from_secs(60));
        let t = a.issue(UserId(1)).unwrap();
        assert!(b.verify(&t.token).is_err());
    }

    #[test]
    fn garbage_and_tampered_tokens_are_rejected() {
        let keys = TokenKeys::new(&[1; 32], Duration::from_secs(60));
        let t = keys.issue(UserId(1)).unwrap().token;
        assert!(keys.verify("").is_err());
        assert!(keys.verify("v4.local.AAAA").is_err());
        // Flip one character in the middle of the payload.
        let mid = t.len() / 2;
        let flipped = if &t[mid..=mid] == "A" { "B" } else { "A" };
        let tampered = format!("{}{flipped}{}", &t[..mid], &t[mid + 1..]);
        assert!(keys.verify(&tampered).is_err());
    }
}
