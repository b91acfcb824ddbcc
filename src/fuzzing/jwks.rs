//! JWKS files (`auth.jwt.jwks`), checked before Envoy gets them.

/// Never panics; whatever the check accepts holds 1 to `MAX_JWKS_KEYS` keys.
pub fn jwks(data: &[u8]) {
    if let Ok(keys) = crate::config::check_jwks(data) {
        assert!((1..=crate::config::MAX_JWKS_KEYS).contains(&keys));
    }
}
