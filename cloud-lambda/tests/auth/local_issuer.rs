//! The local issuer (`LocalIssuer`): the tokens it mints verify and are
//! shaped like Cognito access tokens; its key file is private, reused on
//! reload, tightened if loose and never replaced when corrupt; its JWKS
//! holds public parts only; its verifier expects access tokens.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloud_lambda::auth::{AuthConfig, AuthError, Jwks, LocalIssuer, TokenUse};
use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::fixtures::{AUD, ISS, bearer, fx, now};

#[tokio::test]
async fn minted_token_verifies() {
    let fx = fx();
    let token = fx.issuer.mint("alice", Duration::from_secs(300));
    let claims = fx
        .issuer
        .verifier()
        .verify(Some(&bearer(&token)))
        .await
        .unwrap();
    assert_eq!(claims.sub, LocalIssuer::user_id("alice"));
    assert_eq!(claims.username, "alice");
    assert_eq!(claims.token_use, TokenUse::Access);
    assert!(claims.expires_at >= now() + 299 && claims.expires_at <= now() + 301);
}

#[tokio::test]
async fn minted_token_is_shaped_like_cognito_access_token() {
    let fx = fx();
    let token = fx.issuer.mint("bob", Duration::from_secs(3600));
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some(fx.issuer.kid()));
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
    assert_eq!(claims["sub"], LocalIssuer::user_id("bob"));
    assert_eq!(claims["username"], "bob");
    assert_eq!(claims["iss"], ISS);
    assert_eq!(claims["client_id"], AUD);
    assert_eq!(claims["token_use"], "access");
    assert!(claims.get("aud").is_none());
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
    // Same user, same id; other user, other id; each token its own jti.
    let again: Value = jsonwebtoken::dangerous::insecure_decode_claims(
        fx.issuer.mint("bob", Duration::from_secs(60)),
    )
    .unwrap();
    assert_eq!(again["sub"], claims["sub"]);
    assert_ne!(again["jti"], claims["jti"]);
    assert_ne!(LocalIssuer::user_id("bob"), LocalIssuer::user_id("alice"));
}

#[cfg(unix)]
#[test]
fn key_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let path = fx().dir.join(LocalIssuer::KEY_FILE_NAME);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(fx().issuer.key_path(), Some(path.as_path()));
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    // No temp files are left behind.
    let names: Vec<_> = std::fs::read_dir(&fx().dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [LocalIssuer::KEY_FILE_NAME]);
}

#[tokio::test]
async fn key_file_is_reused_on_reload() {
    let fx = fx();
    let reloaded = LocalIssuer::load_or_create(&fx.dir, ISS, AUD).unwrap();
    assert_eq!(reloaded.kid(), fx.issuer.kid());
    assert_eq!(reloaded.jwks_json(), fx.issuer.jwks_json());
    // Tokens survive a restart.
    let token = fx.issuer.mint("alice", Duration::from_secs(60));
    reloaded
        .verifier()
        .verify(Some(&bearer(&token)))
        .await
        .unwrap();
}

#[cfg(unix)]
#[test]
fn loose_key_file_permissions_are_tightened() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LocalIssuer::KEY_FILE_NAME);
    std::fs::copy(fx().dir.join(LocalIssuer::KEY_FILE_NAME), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let issuer = LocalIssuer::load_or_create(dir.path(), ISS, AUD).unwrap();
    assert_eq!(issuer.kid(), fx().issuer.kid());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn corrupt_key_file_is_an_error_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LocalIssuer::KEY_FILE_NAME);
    std::fs::write(&path, "not a key").unwrap();
    let err = LocalIssuer::load_or_create(dir.path(), ISS, AUD).unwrap_err();
    assert!(matches!(err, AuthError::KeyFile { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key");
}

#[test]
fn jwks_json_has_public_parts_only() {
    let fx = fx();
    let jwks = fx.issuer.jwks_json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = keys[0].as_object().unwrap();
    let mut members: Vec<&str> = key.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use"]);
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert!(!key.contains_key(private));
    }
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], fx.issuer.kid());
    assert_eq!(fx.issuer.kid().len(), 16);
    let n = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
    assert_eq!(n.len(), 256, "2048-bit modulus");
    assert_eq!(key["e"], "AQAB");
    // Different keys, different kids; and the JWKS round-trips into a key set.
    assert_ne!(fx.other.kid(), fx.issuer.kid());
    assert!(
        Jwks::parse(&jwks.to_string())
            .unwrap()
            .contains(fx.issuer.kid())
    );
}

#[test]
fn local_auth_config_expects_access_tokens() {
    let config = fx().issuer.auth_config();
    assert_eq!(config.issuer, ISS);
    assert_eq!(config.audiences, [AUD]);
    assert_eq!(config.token_use, TokenUse::Access);
    assert_eq!(config.leeway_secs, AuthConfig::DEFAULT_LEEWAY_SECS);
}
