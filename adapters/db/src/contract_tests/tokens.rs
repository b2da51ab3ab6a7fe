//! The `ApiTokenRepository` contract, on both backends: tokens round-trip without their
//! secret, are found by the secret's hash only, listed newest first per owner or all,
//! touched, deleted (and with their owner), and hashes are unique.

use coffer_domain::ApiTokenId;
use coffer_domain::auth::{Role, Username};
use coffer_domain::ports::{ApiTokenRepository, NewApiToken, UserRepository};
use coffer_domain::tokens::{encode_secret, secret_hash};
use sea_orm::{ConnectionTrait, Statement};

use super::*;

fn new_token(user: coffer_domain::UserId, name: &str, seed: u8) -> NewApiToken {
    NewApiToken {
        user_id: user,
        name: name.to_owned(),
        role: None,
        secret_hash: secret_hash(&encode_secret(&[seed; 32])),
        created_at: t(0),
        expires_at: None,
    }
}

contract!(tokens_contract, |db: Database| async move {
    let users = db.users();
    let alice = users
        .create(
            &Username::parse("alice").expect("name"),
            "h",
            Role::Operator,
            t(0),
        )
        .await
        .expect("alice");
    let bob = users
        .create(
            &Username::parse("bob").expect("name"),
            "h",
            Role::Viewer,
            t(0),
        )
        .await
        .expect("bob");
    let tokens = db.api_tokens();

    let ci = tokens
        .create(&NewApiToken {
            role: Some(Role::Viewer),
            expires_at: Some(t(3600)),
            ..new_token(alice.id, "ci deploy", 1)
        })
        .await
        .expect("create");
    assert_eq!(ci.user_id, alice.id);
    assert_eq!(ci.username, "alice");
    assert_eq!(ci.name, "ci deploy");
    assert_eq!(ci.role, Some(Role::Viewer));
    assert_eq!(ci.created_at, t(0));
    assert_eq!(ci.expires_at, Some(t(3600)));
    assert_eq!((ci.last_used_at, ci.last_used_ip.as_deref()), (None, None));
    let second = tokens
        .create(&new_token(alice.id, "backup script", 2))
        .await
        .expect("second");
    let bobs = tokens
        .create(&new_token(bob.id, "bob's", 3))
        .await
        .expect("bob's");

    let hash = secret_hash(&encode_secret(&[1; 32]));
    let (found, stored) = tokens
        .find_by_hash(&hash)
        .await
        .expect("find")
        .expect("known hash");
    assert_eq!((found, stored), (ci.clone(), hash));
    assert!(
        tokens
            .find_by_hash(&secret_hash(&encode_secret(&[9; 32])))
            .await
            .expect("find")
            .is_none()
    );
    let err = tokens
        .create(&new_token(bob.id, "same secret", 1))
        .await
        .expect_err("hashes are unique");
    assert!(matches!(err, RepoError::Conflict(_)), "{err}");

    let ids = |list: Vec<coffer_domain::tokens::ApiToken>| {
        list.into_iter().map(|t| t.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(tokens.list(Some(alice.id)).await.expect("list")),
        [second.id, ci.id]
    );
    assert_eq!(
        ids(tokens.list(None).await.expect("list all")),
        [bobs.id, second.id, ci.id]
    );

    tokens
        .touch(ci.id, t(60), Some("192.0.2.9"))
        .await
        .expect("touch");
    let touched = tokens.get(ci.id).await.expect("get").expect("exists");
    assert_eq!(touched.last_used_at, Some(t(60)));
    assert_eq!(touched.last_used_ip.as_deref(), Some("192.0.2.9"));

    assert!(tokens.delete(ci.id).await.expect("delete"));
    assert!(!tokens.delete(ci.id).await.expect("again"), "already gone");
    assert!(tokens.get(ci.id).await.expect("get").is_none());
    assert!(
        tokens
            .find_by_hash(&secret_hash(&encode_secret(&[1; 32])))
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        tokens
            .get(ApiTokenId::new(9999))
            .await
            .expect("get")
            .is_none()
    );

    // Deleting the owner deletes their tokens (no user is deleted through the ports;
    // an operator's manual cleanup must not leave orphans).
    db.connection()
        .execute_raw(Statement::from_string(
            db.connection().get_database_backend(),
            format!("DELETE FROM users WHERE id = {}", bob.id),
        ))
        .await
        .expect("delete bob");
    assert!(tokens.get(bobs.id).await.expect("get").is_none());
    assert_eq!(ids(tokens.list(None).await.expect("list")), [second.id]);
});
