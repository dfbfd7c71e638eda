//! The embedded backend's transfer URLs, attacked: a URL is the permission
//! (no bearer token), so every way of bending one — a tampered signature,
//! another user's or another blob's name written into it, a download URL
//! used to upload, an expired one — is refused with a 403 problem, and an
//! upload that breaks what its URL pinned (size, type, hash) is refused
//! too; in every case nothing is stored. (moto checks neither signatures
//! nor checksums, so this is tested here, on the server that signs.)

#[path = "support/rest.rs"]
mod rest;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloud_lambda::storage::embedded::{EmbeddedBlobs, Grant};
use core_sync::blob::sha256_hex;
use core_sync::sync::protocol::TransferUrl;
use rest::{Options, Resp, png, world};
use serde_json::json;

/// An upload URL for `bytes` (as PNG), asked by `user`.
async fn upload_url(w: &rest::World, user: &rest::User, bytes: &[u8]) -> TransferUrl {
    let r = w
        .post(
            user,
            "/upload-url",
            json!({"sha256": sha256_hex(bytes), "bytes": bytes.len(), "contentType": "image/png"}),
        )
        .await;
    serde_json::from_value(r.json(200)).unwrap()
}

/// The signed token of a transfer URL.
fn token(url: &TransferUrl) -> String {
    url.url.split_once("?t=").unwrap().1.to_owned()
}

/// The grant a token carries (its payload, unverified).
fn grant(token: &str) -> Grant {
    let payload = URL_SAFE_NO_PAD
        .decode(token.split_once('.').unwrap().0)
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// `grant` with the signature of `token` kept: a payload edited by hand.
fn forged(token: &str, grant: &Grant) -> String {
    let sig = token.split_once('.').unwrap().1;
    format!(
        "{}.{sig}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(grant).unwrap())
    )
}

async fn put(w: &rest::World, token: &str, content_type: &str, bytes: Vec<u8>) -> Resp {
    let r = w
        .http
        .put(format!("{}/v1/blob-transfer?t={token}", w.url))
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    Resp::of(r).await
}

async fn get(w: &rest::World, token: &str) -> Resp {
    let r = w
        .http
        .get(format!("{}/v1/blob-transfer?t={token}", w.url))
        .send()
        .await
        .unwrap();
    Resp::of(r).await
}

/// (what is bent, token, content type, body, status, problem code)
type Case<'a> = (&'a str, String, &'a str, Vec<u8>, u16, &'a str);

#[tokio::test]
async fn bent_transfer_urls_are_refused_and_store_nothing() {
    let w = world(Options::default()).await;
    let image = png(40, 30);
    let sha = sha256_hex(&image);
    let url = upload_url(&w, &w.alice, &image).await;
    let t = token(&url);
    let g = grant(&t);
    assert_eq!(
        (g.user.as_str(), g.sha256.as_str()),
        (w.alice.sub.as_str(), sha.as_str())
    );
    let other = png(30, 40);

    // The server's own key signs a grant that expired a second ago: only
    // the expiry is wrong.
    let keys = EmbeddedBlobs::open(w.dir.path()).unwrap();
    let expired = keys.sign(&Grant {
        expires_at: g.expires_at - 3_600,
        ..g.clone()
    });
    let mut tampered = t.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let as_bob = forged(
        &t,
        &Grant {
            user: w.bob.sub.clone(),
            ..g.clone()
        },
    );
    let other_blob = forged(
        &t,
        &Grant {
            sha256: sha256_hex(&other),
            ..g.clone()
        },
    );
    let bigger = forged(
        &t,
        &Grant {
            bytes: g.bytes * 10,
            ..g.clone()
        },
    );
    let as_get = forged(
        &t,
        &Grant {
            op: "get".into(),
            ..g.clone()
        },
    );
    let cases: Vec<Case> = vec![
        (
            "tampered signature",
            tampered,
            "image/png",
            image.clone(),
            403,
            "bad_transfer_url",
        ),
        (
            "another user",
            as_bob,
            "image/png",
            image.clone(),
            403,
            "bad_transfer_url",
        ),
        (
            "another blob",
            other_blob,
            "image/png",
            other.clone(),
            403,
            "bad_transfer_url",
        ),
        (
            "a larger size",
            bigger,
            "image/png",
            image.clone(),
            403,
            "bad_transfer_url",
        ),
        (
            "made for a download",
            as_get,
            "image/png",
            image.clone(),
            403,
            "bad_transfer_url",
        ),
        (
            "not a token",
            "nonsense".into(),
            "image/png",
            image.clone(),
            403,
            "bad_transfer_url",
        ),
        (
            "expired",
            expired,
            "image/png",
            image.clone(),
            403,
            "transfer_url_expired",
        ),
        (
            "another type",
            t.clone(),
            "image/jpeg",
            image.clone(),
            415,
            "unsupported_image",
        ),
        (
            "other bytes",
            t.clone(),
            "image/png",
            {
                let mut b = image.clone();
                let n = b.len();
                b[n - 20] ^= 1;
                b
            },
            400,
            "image_mismatch",
        ),
        (
            "more bytes",
            t.clone(),
            "image/png",
            [image.clone(), vec![0; 10]].concat(),
            413,
            "image_too_large",
        ),
        (
            "not an image",
            t.clone(),
            "image/png",
            vec![0x42; image.len()],
            415,
            "unsupported_image",
        ),
    ];
    for (what, token, content_type, body, status, code) in cases {
        let r = put(&w, &token, content_type, body).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text());
        r.problem(status, code);
        for user in [&w.alice, &w.bob] {
            for blob in [&sha, &sha256_hex(&other)] {
                w.get(user, &format!("/download-url?sha256={blob}"))
                    .await
                    .problem(404, "not_found");
            }
        }
    }

    // The URL as given works, once the bent ones have failed.
    let r = put(&w, &t, "image/png", image.clone()).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let down = w.download(&w.alice, &sha).await;
    assert_eq!(down.body, image);
    // A download URL cannot be bent either: Alice's for Bob, or used to
    // upload, or expired.
    let dl: TransferUrl = serde_json::from_value(
        w.get(&w.alice, &format!("/download-url?sha256={sha}"))
            .await
            .json(200),
    )
    .unwrap();
    let dt = token(&dl);
    let dg = grant(&dt);
    for (what, token, status, code) in [
        (
            "another user",
            forged(
                &dt,
                &Grant {
                    user: w.bob.sub.clone(),
                    ..dg.clone()
                },
            ),
            403,
            "bad_transfer_url",
        ),
        (
            "expired",
            keys.sign(&Grant {
                expires_at: dg.expires_at - 3_600,
                ..dg.clone()
            }),
            403,
            "transfer_url_expired",
        ),
        ("an upload URL", t.clone(), 403, "bad_transfer_url"),
    ] {
        let r = get(&w, &token).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text());
        r.problem(status, code);
    }
    let r = put(&w, &dt, "image/png", image.clone()).await;
    r.problem(403, "bad_transfer_url");
    assert_eq!(get(&w, &dt).await.body, image);
}
