//! The storage interface's contract as tests that every backend must pass. Each case is
//! generic over the store it is given, a fresh and empty one; `conformance!` runs them all
//! against one backend, and the sled backend's line is at the end. A new backend adds its own.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{
    Backend, BindError, Binding, LoginCursor, LoginMethod, NewSession, OpenId, Phone, SessionToken,
    Store, StoreError, UnionId,
};

const HOUR: Duration = Duration::from_secs(3600);

fn openid(s: &str) -> OpenId {
    OpenId::parse(s).unwrap()
}

fn phone(s: &str) -> Phone {
    Phone::parse(s).unwrap()
}

/// A login under `binding`: opens a session for a new token, as a scene's login does.
pub(crate) async fn log_in(
    store: &dyn Backend,
    binding: &Binding,
    ttl: Duration,
    method: LoginMethod,
    client_ip: &str,
) -> Result<SessionToken, StoreError> {
    let token = SessionToken::generate();
    store
        .open_session(NewSession {
            binding,
            digest: &token.digest(),
            ttl,
            method,
            client_ip,
        })
        .await?;
    Ok(token)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub async fn a_phone_belongs_to_one_openid(store: Store) {
    store
        .bind(&openid("alice"), &phone("13800000001"), 0)
        .await
        .unwrap();
    let err = store
        .bind(&openid("bob"), &phone("13800000001"), 0)
        .await
        .unwrap_err();
    assert!(matches!(err, BindError::PhoneTaken));
    assert!(store.binding(&openid("bob")).await.unwrap().is_none());
    // Binding the same pair again is harmless.
    store
        .bind(&openid("alice"), &phone("13800000001"), 0)
        .await
        .unwrap();
}

pub async fn rebinding_an_openid_frees_its_old_phone(store: Store) {
    store
        .bind(&openid("alice"), &phone("13800000001"), 0)
        .await
        .unwrap();
    store
        .bind(&openid("alice"), &phone("13800000002"), 0)
        .await
        .unwrap();
    store
        .bind(&openid("bob"), &phone("13800000001"), 0)
        .await
        .unwrap();
    assert_eq!(
        store
            .binding(&openid("alice"))
            .await
            .unwrap()
            .unwrap()
            .phone,
        phone("13800000002")
    );
}

pub async fn sessions_live_until_logout_or_expiry(store: Store) {
    let alice = openid("alice");
    let bound = store.bind(&alice, &phone("13800000001"), 0).await.unwrap();
    let token = log_in(&*store, &bound, HOUR, LoginMethod::Bind, "10.0.0.1")
        .await
        .unwrap();
    assert_eq!(
        store.session(&token).await.unwrap().unwrap().binding.openid,
        alice
    );
    assert!(store
        .session(&SessionToken::from_bearer("nope"))
        .await
        .unwrap()
        .is_none());
    assert!(store.close_session(&token).await.unwrap());
    assert!(store.session(&token).await.unwrap().is_none());
    assert!(!store.close_session(&token).await.unwrap());

    let expired = log_in(&*store, &bound, Duration::ZERO, LoginMethod::Scan, "ip").await;
    let expired = expired.unwrap();
    assert!(store.session(&expired).await.unwrap().is_none());
    assert_eq!(store.purge_expired_sessions().await.unwrap(), 1);
    assert_eq!(store.purge_expired_sessions().await.unwrap(), 0);
}

pub async fn a_session_digest_opens_one_session(store: Store) {
    let bound = store
        .bind(&openid("alice"), &phone("13800000001"), 0)
        .await
        .unwrap();
    let token = SessionToken::generate();
    let digest = token.digest();
    let session = |client_ip| NewSession {
        binding: &bound,
        digest: &digest,
        ttl: HOUR,
        method: LoginMethod::Scan,
        client_ip,
    };
    store.open_session(session("10.0.0.1")).await.unwrap();
    // Opened by its digest, the session is the token's.
    assert!(store.session(&token).await.unwrap().is_some());
    // A second login under the same digest is refused, and records nothing.
    assert!(store.open_session(session("10.0.0.2")).await.is_err());
    let logins = store.logins(&bound.openid, 10, None).await.unwrap();
    assert_eq!(logins.records.len(), 1);
    assert_eq!(logins.records[0].client_ip, "10.0.0.1");
    assert!(store.session(&token).await.unwrap().is_some());
}

pub async fn unbind_revokes_sessions_and_tokens_and_frees_the_phone(store: Store) {
    let alice = openid("alice");
    let bound = store.bind(&alice, &phone("13800000001"), 0).await.unwrap();
    let a = log_in(&*store, &bound, HOUR, LoginMethod::Bind, "ip")
        .await
        .unwrap();
    let b = log_in(&*store, &bound, HOUR, LoginMethod::Scan, "ip")
        .await
        .unwrap();
    let t = store
        .issue_access_token(&bound, "shop", "openid", HOUR)
        .await
        .unwrap();
    assert!(store.unbind(&alice).await.unwrap());
    assert!(store.session(&a).await.unwrap().is_none());
    assert!(store.session(&b).await.unwrap().is_none());
    assert!(store.access_token(&t).await.unwrap().is_none());
    assert!(!store.unbind(&alice).await.unwrap());
    store
        .bind(&openid("bob"), &phone("13800000001"), 0)
        .await
        .unwrap();
}

pub async fn a_session_or_token_of_a_replaced_binding_is_refused(store: Store) {
    let alice = openid("alice");
    let first = store.bind(&alice, &phone("13800000001"), 0).await.unwrap();
    assert!(store.unbind(&alice).await.unwrap());
    let second = store.bind(&alice, &phone("13800000002"), 0).await.unwrap();
    // Writes that raced the unbind and landed after it, under the first binding.
    let late = log_in(&*store, &first, HOUR, LoginMethod::Scan, "ip")
        .await
        .unwrap();
    assert!(store.session(&late).await.unwrap().is_none());
    let late = store
        .issue_access_token(&first, "shop", "openid", HOUR)
        .await
        .unwrap();
    assert!(store.access_token(&late).await.unwrap().is_none());
    let current = log_in(&*store, &second, HOUR, LoginMethod::Scan, "ip")
        .await
        .unwrap();
    assert!(store.session(&current).await.unwrap().is_some());
}

pub async fn a_bind_started_before_an_unfollow_is_refused(store: Store) {
    let alice = openid("alice");
    let scanned = store.follow_generation(&alice).await.unwrap();
    assert!(!store.unfollow(&alice, now()).await.unwrap());
    assert!(matches!(
        store.bind(&alice, &phone("13800000001"), scanned).await,
        Err(BindError::Unfollowed)
    ));
    assert!(store.binding(&alice).await.unwrap().is_none());
    // Scanned again after following again: the bind goes through.
    let rescanned = store.follow_generation(&alice).await.unwrap();
    assert_ne!(rescanned, scanned);
    assert!(store
        .bind(&alice, &phone("13800000001"), rescanned)
        .await
        .is_ok());
}

pub async fn the_last_unfollow_is_remembered_in_wechats_clock(store: Store) {
    let alice = openid("alice");
    assert_eq!(store.unfollowed_at(&alice).await.unwrap(), None);
    store.unfollow(&alice, 1000).await.unwrap();
    assert_eq!(store.unfollowed_at(&alice).await.unwrap(), Some(1000));
    store.record_follow(&alice, 1200).await.unwrap();
    // Late: from before the follow at 1200, so it changes nothing.
    store.unfollow(&alice, 1100).await.unwrap();
    assert_eq!(store.unfollowed_at(&alice).await.unwrap(), Some(1000));
    store.unfollow(&alice, 1300).await.unwrap();
    assert_eq!(store.unfollowed_at(&alice).await.unwrap(), Some(1300));
}

pub async fn a_late_unsubscribe_does_not_undo_a_newer_bind(store: Store) {
    let alice = openid("alice");
    // Followed (again) at 1000 in WeChat's clock, then bound, whatever our clock said.
    store.record_follow(&alice, 1000).await.unwrap();
    store.record_follow(&alice, 900).await.unwrap();
    let scanned = store.follow_generation(&alice).await.unwrap();
    store
        .bind(&alice, &phone("13800000001"), scanned)
        .await
        .unwrap();
    // An unsubscribe from before that follow, delivered late: nothing changes, not even the
    // follow generation.
    assert!(!store.unfollow(&alice, 999).await.unwrap());
    assert!(store.binding(&alice).await.unwrap().is_some());
    assert_eq!(store.follow_generation(&alice).await.unwrap(), scanned);
    // One from after it unbinds.
    assert!(store.unfollow(&alice, 1000).await.unwrap());
    assert!(store.binding(&alice).await.unwrap().is_none());
}

pub async fn logins_are_paged_newest_first_per_user_and_expire(store: Store) {
    let alice = openid("alice");
    let bound = store.bind(&alice, &phone("13800000001"), 0).await.unwrap();
    for ip in ["1", "2", "3", "4", "5"] {
        log_in(&*store, &bound, HOUR, LoginMethod::Scan, ip)
            .await
            .unwrap();
    }
    let other = store
        .bind(&openid("alicex"), &phone("13800000002"), 0)
        .await
        .unwrap();
    log_in(&*store, &other, HOUR, LoginMethod::Bind, "x")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.logins(&alice, 2, before).await.unwrap();
        seen.extend(page.records.iter().map(|r| r.client_ip.clone()));
        match page.next {
            Some(next) => before = Some(LoginCursor::parse(&next.to_string()).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, ["5", "4", "3", "2", "1"]);
    assert_eq!(store.purge_old_logins(HOUR).await.unwrap(), 0);
    assert_eq!(store.purge_old_logins(Duration::ZERO).await.unwrap(), 6);
    assert!(store
        .logins(&alice, 10, None)
        .await
        .unwrap()
        .records
        .is_empty());
}

pub async fn access_tokens_live_until_revoked_or_expired(store: Store) {
    let alice = store
        .bind(&openid("alice"), &phone("13800000001"), 0)
        .await
        .unwrap();
    let a = store
        .issue_access_token(&alice, "shop", "openid phone", HOUR)
        .await
        .unwrap();
    let b = store
        .issue_access_token(&alice, "blog", "openid", HOUR)
        .await
        .unwrap();
    let (grant, binding) = store.access_token(&a).await.unwrap().unwrap();
    assert_eq!(
        (grant.client_id.as_str(), grant.scope.as_str()),
        ("shop", "openid phone")
    );
    assert_eq!(binding.phone, phone("13800000001"));
    assert!(store.revoke_access_token(&a).await.unwrap());
    assert!(!store.revoke_access_token(&a).await.unwrap());
    assert!(store.access_token(&a).await.unwrap().is_none());
    assert!(store.access_token(&b).await.unwrap().is_some());
    assert_eq!(store.revoke_access_tokens(&alice.openid).await.unwrap(), 1);
    assert!(store.access_token(&b).await.unwrap().is_none());

    let expired = store
        .issue_access_token(&alice, "shop", "openid", Duration::ZERO)
        .await;
    assert!(store
        .access_token(&expired.unwrap())
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.purge_expired_access_tokens().await.unwrap(), 1);
}

pub async fn consent_is_remembered_per_client_under_its_binding(store: Store) {
    let alice = openid("alice");
    let bound = store.bind(&alice, &phone("13800000001"), 0).await.unwrap();
    assert_eq!(store.consent(&bound, "shop").await.unwrap(), None);
    store
        .remember_consent(&bound, "shop", "openid phone")
        .await
        .unwrap();
    assert_eq!(
        store.consent(&bound, "shop").await.unwrap().as_deref(),
        Some("openid phone")
    );
    // Per client, and per user.
    assert_eq!(store.consent(&bound, "shopx").await.unwrap(), None);
    let bob = store
        .bind(&openid("bob"), &phone("13800000002"), 0)
        .await
        .unwrap();
    assert_eq!(store.consent(&bob, "shop").await.unwrap(), None);
    // A later answer replaces the earlier one.
    store
        .remember_consent(&bound, "shop", "openid")
        .await
        .unwrap();
    assert_eq!(
        store.consent(&bound, "shop").await.unwrap().as_deref(),
        Some("openid")
    );
    // Another phone is another binding: the user is asked again.
    let moved = store.bind(&alice, &phone("13800000003"), 0).await.unwrap();
    assert_eq!(store.consent(&moved, "shop").await.unwrap(), None);
}

pub async fn a_signature_signs_one_body_once(store: Store) {
    use crate::SignatureUse;
    let (a, b) = ([1; 32], [2; 32]);
    assert_eq!(
        store.use_signature("ABC", 10, a).await.unwrap(),
        SignatureUse::First
    );
    assert_eq!(
        store.use_signature("abc", 10, a).await.unwrap(),
        SignatureUse::SameBody
    );
    assert_eq!(
        store.use_signature("abc", 10, b).await.unwrap(),
        SignatureUse::OtherBody
    );
    assert_eq!(
        store.use_signature("abc", 11, b).await.unwrap(),
        SignatureUse::First
    );
    assert_eq!(store.purge_old_signatures(11).await.unwrap(), 1);
    assert_eq!(
        store.use_signature("abc", 10, b).await.unwrap(),
        SignatureUse::First
    );
}

/// What a backup streams, as (openid, phone) pairs.
async fn backup_of(store: &Store) -> Vec<(String, String)> {
    let mut stream = store.backup().unwrap();
    let mut all = Vec::new();
    while let Some(batch) = stream.next_batch().await {
        for binding in batch.unwrap() {
            all.push((
                binding.openid.to_string(),
                binding.phone.as_str().to_owned(),
            ));
        }
    }
    all.sort();
    all
}

pub async fn backups_restore_into_an_empty_store(store: Store, empty: Store) {
    assert!(store.has_no_bindings().await.unwrap());
    store
        .bind(&openid("alice"), &phone("13800000001"), 0)
        .await
        .unwrap();
    store
        .bind(&openid("bob"), &phone("13800000002"), 0)
        .await
        .unwrap();
    assert_eq!(
        store
            .binding_by_phone(&phone("13800000002"))
            .await
            .unwrap()
            .unwrap()
            .openid,
        openid("bob")
    );
    assert!(store
        .binding_by_phone(&phone("13800000003"))
        .await
        .unwrap()
        .is_none());
    let mut stream = store.backup().unwrap();
    let mut all: Vec<Binding> = Vec::new();
    while let Some(batch) = stream.next_batch().await {
        all.extend(batch.unwrap());
    }
    assert_eq!(all.len(), 2);
    for binding in &all {
        empty
            .restore_binding(&binding.openid, &binding.phone, binding.bound_at)
            .await
            .unwrap();
    }
    empty.flush().await.unwrap();
    assert!(!empty.has_no_bindings().await.unwrap());
    let (restored, original) = (
        empty.binding(&openid("alice")).await.unwrap().unwrap(),
        store.binding(&openid("alice")).await.unwrap().unwrap(),
    );
    assert_eq!(
        (restored.phone, restored.bound_at),
        (original.phone, original.bound_at)
    );
    assert!(matches!(
        empty
            .restore_binding(&openid("carol"), &phone("13800000001"), 1)
            .await,
        Err(BindError::PhoneTaken)
    ));
    assert_eq!(backup_of(&empty).await.len(), 2);
}

/// Phones move between openids all through a backup: whatever the moment it stands for, no
/// phone is in it twice and nobody is missing (every phone here is always bound to someone,
/// except during a move, which a backup must see whole or not at all).
pub async fn a_backup_is_one_moment_while_phones_move(store: Store) {
    const USERS: usize = 300;
    for i in 0..USERS {
        let phone = phone(&format!("138{i:08}"));
        store
            .bind(&openid(&format!("u{i}")), &phone, 0)
            .await
            .unwrap();
    }
    let mover = {
        let store = store.clone();
        tokio::spawn(async move {
            // Phone i moves between u{i} and v{i}: unbind one, bind the other.
            for round in 0..4 * USERS {
                let i = round % USERS;
                let phone = phone(&format!("138{i:08}"));
                let (from, to) = match (round / USERS) % 2 {
                    0 => (format!("u{i}"), format!("v{i}")),
                    _ => (format!("v{i}"), format!("u{i}")),
                };
                store.unbind(&openid(&from)).await.unwrap();
                store.bind(&openid(&to), &phone, 0).await.unwrap();
            }
        })
    };
    let mut backups = 0;
    while !mover.is_finished() {
        let all = backup_of(&store).await;
        let phones: HashSet<_> = all.iter().map(|(_, phone)| phone.clone()).collect();
        assert_eq!(
            phones.len(),
            all.len(),
            "a phone under two openids in one backup"
        );
        // A move in flight (unbound, not yet bound again) is missing from its moment; there is
        // at most one at a time.
        assert!(all.len() >= USERS - 1, "{} of {USERS} bindings", all.len());
        backups += 1;
    }
    mover.await.unwrap();
    assert!(backups > 1, "the backups ran while phones moved");
}

/// A backup far larger than one batch the stream carries: every binding once, none lost at a
/// batch's edge.
pub async fn a_large_backup_holds_every_binding_once(store: Store) {
    const USERS: usize = 1_300;
    for i in 0..USERS {
        store
            .restore_binding(&openid(&format!("u{i}")), &phone(&format!("139{i:08}")), 0)
            .await
            .unwrap();
    }
    store.flush().await.unwrap();
    let all = backup_of(&store).await;
    let openids: HashSet<_> = all.iter().map(|(openid, _)| openid.clone()).collect();
    assert_eq!((all.len(), openids.len()), (USERS, USERS));
}

pub async fn a_unionid_is_kept_only_by_the_binding_it_was_fetched_for(store: Store) {
    let alice = openid("alice");
    let union = UnionId::parse("oUnionAlice0000000000000000").unwrap();
    let first = store.bind(&alice, &phone("13800000001"), 0).await.unwrap();
    assert_eq!(first.unionid, None, "a new binding has none yet");
    assert!(store.set_unionid(&first, &union).await.unwrap());
    let read = store.binding(&alice).await.unwrap().unwrap();
    assert_eq!(read.unionid.as_ref(), Some(&union));
    assert_eq!(
        (read.phone.clone(), read.generation),
        (first.phone.clone(), first.generation)
    );
    // Sessions opened under the binding still see it, unionid and all.
    let token = log_in(&*store, &read, HOUR, LoginMethod::Scan, "ip")
        .await
        .unwrap();
    let session = store.session(&token).await.unwrap().unwrap();
    assert_eq!(session.binding.unionid.as_ref(), Some(&union));
    // Rebound meanwhile: a lookup made for the old binding writes nothing on the new one.
    let second = store.bind(&alice, &phone("13800000002"), 0).await.unwrap();
    assert!(!store.set_unionid(&first, &union).await.unwrap());
    assert_eq!(store.binding(&alice).await.unwrap().unwrap().unionid, None);
    assert!(store
        .binding_by_phone(&phone("13800000002"))
        .await
        .unwrap()
        .unwrap()
        .unionid
        .is_none());
    // Removed meanwhile: nothing comes back.
    store.unbind(&alice).await.unwrap();
    assert!(!store.set_unionid(&second, &union).await.unwrap());
    assert!(store.binding(&alice).await.unwrap().is_none());
}

/// Runs every case against one backend: `$open` is an async function that makes a fresh, empty
/// store (and whatever must live as long as it, such as its directory or database server).
macro_rules! conformance {
    ($backend:ident, $open:expr, $have:meta) => {
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    #[cfg_attr(not($have), ignore = "needs its backend's server")]
                    async fn $name() {
                        let (_keep, store) = $open().await;
                        super::$name(store).await;
                    }
                };
            }

            case!(a_phone_belongs_to_one_openid);
            case!(rebinding_an_openid_frees_its_old_phone);
            case!(sessions_live_until_logout_or_expiry);
            case!(a_session_digest_opens_one_session);
            case!(unbind_revokes_sessions_and_tokens_and_frees_the_phone);
            case!(a_session_or_token_of_a_replaced_binding_is_refused);
            case!(a_bind_started_before_an_unfollow_is_refused);
            case!(a_late_unsubscribe_does_not_undo_a_newer_bind);
            case!(the_last_unfollow_is_remembered_in_wechats_clock);
            case!(logins_are_paged_newest_first_per_user_and_expire);
            case!(access_tokens_live_until_revoked_or_expired);
            case!(a_backup_is_one_moment_while_phones_move);
            case!(a_large_backup_holds_every_binding_once);
            case!(consent_is_remembered_per_client_under_its_binding);
            case!(a_signature_signs_one_body_once);
            case!(a_unionid_is_kept_only_by_the_binding_it_was_fetched_for);

            #[tokio::test]
            #[cfg_attr(not($have), ignore = "needs its backend's server")]
            async fn backups_restore_into_an_empty_store() {
                let ((_a, store), (_b, empty)) = ($open().await, $open().await);
                super::backups_restore_into_an_empty_store(store, empty).await;
            }
        }
    };
}

async fn fresh_sled_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

conformance!(sled, fresh_sled_store, all());

/// A database of its own on a server of its own (nextest runs each test in its own process).
async fn fresh_postgres_store() -> (std::sync::Arc<crate::test_server::TestServer>, Store) {
    let server = std::sync::Arc::new(crate::test_server::TestServer::start());
    let settings = crate::PgSettings {
        url: server.new_database().await,
        pool_size: 8,
        ca_file: None,
    };
    let store = Store::new(crate::PgBackend::open(&settings).await.unwrap());
    (server, store)
}

conformance!(postgres, fresh_postgres_store, has_postgres);
