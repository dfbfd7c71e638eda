//! `atelier-sync login` against a fake Cognito user pool
//! (`atelier_fixtures::fakes::cognito`, the real `InitiateAuth` wire
//! format and errors), and the session that refreshes its tokens.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use atelier_fixtures::fakes::cognito::{self, AppClient, CognitoConfig, RunningCognito};
use core_sync::auth::cognito::CognitoClient;
use core_sync::auth::session::{CognitoRefresher, Session, SessionError};
use core_sync::auth::tokens::{StoredTokens, TokenFile};

const SERVER: &str = "https://api.example.test";
const NO_PASSWORD_FLOW: &str = "hosted-ui-only-client";

async fn pool() -> RunningCognito {
    cognito::spawn(CognitoConfig {
        clients: vec![
            AppClient {
                client_id: cognito::DEFAULT_CLIENT_ID.into(),
                password_auth: true,
            },
            AppClient {
                client_id: NO_PASSWORD_FLOW.into(),
                password_auth: false,
            },
        ],
        ..CognitoConfig::default()
    })
    .await
    .unwrap()
}

/// Runs `atelier-sync --data DATA --server SERVER login …` with the
/// password in the environment: (success, stdout + stderr).
async fn login(
    data: &Path,
    pool: &RunningCognito,
    client: &str,
    user: &str,
    password: &str,
) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_atelier-sync"))
        .args(["--data"])
        .arg(data)
        .args([
            "--server",
            SERVER,
            "login",
            "--client-id",
            client,
            "--username",
            user,
        ])
        .args(["--cognito-endpoint", &pool.endpoint()])
        .env("ATELIER_PASSWORD", password)
        .env("RUST_LOG", "debug")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(password), "the password was printed: {text}");
    (out.status.success(), text)
}

#[tokio::test]
async fn login_keeps_tokens_readable_by_the_user_only() {
    let p = pool().await;
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = login(
        dir.path(),
        &p,
        cognito::DEFAULT_CLIENT_ID,
        "alice",
        cognito::DEFAULT_PASSWORD,
    )
    .await;
    assert!(ok, "{text}");
    let file = TokenFile::in_dir(dir.path());
    let t = file.load().unwrap().unwrap();
    assert_eq!(t.server, SERVER);
    assert_eq!(t.user.as_deref(), Some("alice"));
    assert_eq!(t.client_id.as_deref(), Some(cognito::DEFAULT_CLIENT_ID));
    assert!(t.refresh_token.is_some());
    assert_eq!(t.access_token.split('.').count(), 3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(p.counts().password_auths, 1);
}

#[tokio::test]
async fn refused_sign_ins_say_why_and_keep_nothing() {
    let p = pool().await;
    let cases = [
        (
            cognito::DEFAULT_CLIENT_ID,
            "alice",
            "wrong password",
            "Incorrect username or password.",
        ),
        (
            cognito::DEFAULT_CLIENT_ID,
            "mallory",
            "whatever it is",
            "no such user",
        ),
        (
            NO_PASSWORD_FLOW,
            "alice",
            cognito::DEFAULT_PASSWORD,
            "USER_PASSWORD_AUTH flow not enabled",
        ),
        (
            "no-such-client",
            "alice",
            cognito::DEFAULT_PASSWORD,
            "ResourceNotFoundException",
        ),
    ];
    for (client, user, password, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (ok, text) = login(dir.path(), &p, client, user, password).await;
        assert!(!ok, "{client}/{user} signed in");
        assert!(text.contains(says), "{client}/{user}: {text}");
        assert_eq!(TokenFile::in_dir(dir.path()).load().unwrap(), None);
    }
}

#[tokio::test]
async fn the_session_refreshes_before_expiry_and_ends_when_refused() {
    let p = pool().await;
    let client = CognitoClient::new(&p.endpoint(), cognito::DEFAULT_CLIENT_ID).unwrap();
    let signed_in = client
        .password_auth("alice", cognito::DEFAULT_PASSWORD)
        .await
        .unwrap();
    let now = Arc::new(AtomicI64::new(1_000_000));
    let clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let dir = tempfile::tempdir().unwrap();
    let file = TokenFile::in_dir(dir.path());
    let tokens = StoredTokens {
        server: SERVER.into(),
        access_token: signed_in.access_token.clone(),
        refresh_token: signed_in.refresh_token.clone(),
        expires_at: Some(1_000_000 + 3600),
        user: Some("alice".into()),
        cognito_endpoint: Some(p.endpoint()),
        client_id: Some(cognito::DEFAULT_CLIENT_ID.into()),
    };
    let session = Session::new(CognitoRefresher(client), file.clone(), tokens, clock);

    // Well before expiry: the token as it is, nothing asked.
    assert_eq!(
        session.access_token().await.unwrap(),
        signed_in.access_token
    );
    assert_eq!(p.counts().refresh_auths, 0);
    // Within a minute of expiry: refreshed first, kept in the file.
    now.store(1_000_000 + 3600 - 30, Ordering::SeqCst);
    let fresh = session.access_token().await.unwrap();
    assert_ne!(fresh, signed_in.access_token);
    assert_eq!(p.counts().refresh_auths, 1);
    let kept = file.load().unwrap().unwrap();
    assert_eq!(kept.access_token, fresh);
    assert_eq!(
        kept.refresh_token, signed_in.refresh_token,
        "Cognito does not rotate it"
    );
    assert_eq!(kept.expires_at, Some(1_000_000 + 3600 - 30 + 3600));
    assert_eq!(
        session.access_token().await.unwrap(),
        fresh,
        "fresh for an hour"
    );
    assert_eq!(p.counts().refresh_auths, 1);

    // The refresh token revoked: the session ends and forgets the tokens.
    assert!(p.revoke(signed_in.refresh_token.as_deref().unwrap()));
    assert_eq!(session.refresh_now().await, Err(SessionError::Ended));
    assert_eq!(file.load().unwrap(), None);
}
