//! Logging in and out, and turning a session token back into an [`Actor`].

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, ClientInfo, Permission, Username, check_password};
use coffer_domain::crypto::{
    DeviceClaims, PasswordCheck, PasswordHasher, SessionClaims, TokenCodec,
};
use coffer_domain::ports::{ApiTokenRepository, Clock, SessionRevocations, User, UserRepository};
use coffer_domain::secrets::Secret;
use coffer_domain::throttle::{
    Attempt, LockSubject, LockoutSummary, LoginThrottle, Reservation, ThrottleCounters,
    ThrottlePolicy, ThrottleReason, address_key,
};
use coffer_domain::tokens::{ApiToken, effective_role, hashes_match, is_token, secret_hash};

use crate::audit::AuditLog;
use crate::error::{CodedError, CommonError, ErrorClass};

/// Errors of logging in and out and of sessions.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Common(#[from] CommonError),
    /// `unauthorized`: no valid credentials (or wrong ones; never says which).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// `too_many_attempts`: login throttled; retry after the wait.
    #[error("too many attempts; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// `no_account`: the local administrator has no password to change.
    #[error("the local administrator has no password")]
    NoAccount,
    /// `session_required`: the operation ends or describes a password session, and the
    /// caller authenticated with a token.
    #[error("{0}")]
    SessionRequired(&'static str),
    /// `wrong_password`: the current password given is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// `weak_password`: the new password breaks the rules.
    #[error("{0}")]
    WeakPassword(String),
}

impl CodedError for AuthError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::Unauthenticated(_) => "unauthorized",
            Self::Throttled { .. } => "too_many_attempts",
            Self::NoAccount => "no_account",
            Self::SessionRequired(_) => "session_required",
            Self::WrongPassword => "wrong_password",
            Self::WeakPassword(_) => "weak_password",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::Unauthenticated(_)
            | Self::Throttled { .. }
            | Self::NoAccount
            | Self::SessionRequired(_)
            | Self::WrongPassword
            | Self::WeakPassword(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(AuthError);

/// What a successful login hands out.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: Secret,
    /// Echo in `X-CSRF-Token` on state-changing requests authorised by the cookie.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
    /// The device cookie to (re)set: proof that this client logged in to this account.
    pub device: DeviceToken,
}

/// A device cookie's value and end.
#[derive(Debug, Clone)]
pub struct DeviceToken {
    pub token: Secret,
    pub expires_at: DateTime<Utc>,
}

/// How long a device cookie stays valid; every successful login renews it.
pub const DEVICE_TTL: TimeDelta = TimeDelta::days(90);

/// The message of every failed login, whatever failed: it must not tell an attacker
/// whether the username exists, the account is disabled or the password was wrong.
pub const BAD_CREDENTIALS: &str = "invalid username or password";
const NOT_AUTHENTICATED: &str = "authentication required: log in and send the token";

/// The catalog's stores that logging in needs.
pub struct AuthPorts {
    pub users: Arc<dyn UserRepository>,
    pub revocations: Arc<dyn SessionRevocations>,
    /// The login throttle's failure counters, shared by every server on the catalog.
    pub throttle_counters: Arc<dyn ThrottleCounters>,
    /// Personal access tokens, accepted as bearer values beside session tokens.
    pub api_tokens: Arc<dyn ApiTokenRepository>,
}

/// What a request was authenticated with.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A password session (`POST /api/login`).
    Session(SessionClaims),
    /// A personal access token.
    Token(ApiToken),
}

pub struct AuthService {
    users: Arc<dyn UserRepository>,
    revocations: Arc<dyn SessionRevocations>,
    throttle_counters: Arc<dyn ThrottleCounters>,
    api_tokens: Arc<dyn ApiTokenRepository>,
    hasher: Arc<dyn PasswordHasher>,
    tokens: Arc<dyn TokenCodec>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    /// This process's part of the throttle (attempts in flight, refusals coalesced); the
    /// counters that decide delays and lockouts are in `throttle_counters`.
    throttle: Mutex<LoginThrottle>,
    session_ttl: TimeDelta,
}

impl AuthService {
    #[must_use]
    pub fn new(
        ports: AuthPorts,
        hasher: Arc<dyn PasswordHasher>,
        tokens: Arc<dyn TokenCodec>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
        session_ttl: TimeDelta,
    ) -> Self {
        let AuthPorts {
            users,
            revocations,
            throttle_counters,
            api_tokens,
        } = ports;
        Self {
            users,
            revocations,
            throttle_counters,
            api_tokens,
            hasher,
            tokens,
            clock,
            audit,
            throttle: Mutex::new(LoginThrottle::new(ThrottlePolicy::default())),
            session_ttl,
        }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, LoginThrottle> {
        // The throttle holds only counters; a panic elsewhere cannot leave it unsafe.
        self.throttle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks a username and password and opens a session.
    ///
    /// `device_token` is the client's device cookie, if it sent one: valid and issued to
    /// this username, it makes the client a known one, exempt from the per-account limit
    /// (see [`coffer_domain::throttle`]).
    ///
    /// # Errors
    /// `Throttled` (with the wait) after repeated failures, `Unauthenticated` for any bad
    /// credential. Every attempt that reaches the password check is audited; refused
    /// ones once per lockout, then with their count when it ends.
    pub async fn login(
        &self,
        username: &str,
        password: &Secret,
        client: &ClientInfo,
        device_token: Option<&str>,
    ) -> Result<Session, AuthError> {
        let address = address_key(client.ip.as_deref());
        let now = self.clock.now();
        // Audit rows and counters name what was typed, bounded so that a huge name can
        // bloat neither.
        let shown: String = username.chars().take(Username::MAX_LEN).collect();
        let device = device_token
            .and_then(|t| self.tokens.verify_device(t, now).ok())
            .filter(|d| d.username == username);
        let attempt = Attempt {
            username: &shown,
            address: &address,
            device: device.as_ref().map(|d| d.device_id.as_str()),
        };

        // Checked and counted with the attempt's counters locked, on every server that
        // shares the catalog: parallel attempts cannot all pass.
        let (mut counters, lock) = self.throttle_counters.lock(&attempt.counter_keys()).await?;
        let (begun, finished) = {
            let mut throttle = self.throttle();
            (
                throttle.begin(&attempt, &mut counters, now),
                throttle.take_finished(now),
            )
        };
        // Held from here: dropped unsettled, the reservation gives back its place in flight.
        let begun = begun.map(|reservation| Pending {
            service: self,
            reservation: Some(reservation),
        });
        lock.save(&counters).await?;
        self.purge_counters(now).await;
        for summary in finished {
            self.record_lockout_end(summary).await;
        }
        let reservation = match begun {
            Ok(pending) => pending,
            Err(refusal) => {
                let why = match refusal.reason {
                    ThrottleReason::InFlight => {
                        "refused: too many attempts in progress from this client"
                    }
                    ThrottleReason::AddressSlowed => "slowed: too many failures from this address",
                    ThrottleReason::AccountLocked => {
                        "locked: too many failures for this user from unknown clients"
                    }
                };
                let retry_after_secs = refusal.retry_after_secs;
                if refusal.first_of_lockout {
                    tracing::warn!(username = %shown, address, retry_after_secs, "login refused: {why}");
                    self.audit
                        .record(
                            AuditEntry::new(&shown, AuditAction::LoginThrottled, client)
                                .failed()
                                .detail(format!(
                                    "{why}; retry in {retry_after_secs} s (further refusals \
                                     until then are counted in one row when it ends)"
                                )),
                        )
                        .await?;
                } else {
                    tracing::debug!(username = %shown, address, retry_after_secs, "login refused: {why}");
                }
                return Err(AuthError::Throttled { retry_after_secs });
            }
        };

        let credentials = match Username::parse(username) {
            Ok(_) => self.users.credentials(username).await?,
            Err(_) => None,
        };
        let outcome: Result<(User, Option<String>), &'static str> = match credentials {
            None => {
                self.hasher.verify_dummy(password).await;
                Err("unknown username")
            }
            Some(c) => match self.hasher.verify(password, &c.password_hash).await? {
                PasswordCheck::Mismatch => Err("wrong password"),
                PasswordCheck::Match { .. } if !c.user.is_active => Err("account is disabled"),
                PasswordCheck::Match { upgraded_hash } => Ok((c.user, upgraded_hash)),
            },
        };
        match outcome {
            Ok((user, upgraded_hash)) => {
                reservation.succeeded().await;
                self.users
                    .record_login(user.id, now, upgraded_hash.as_deref())
                    .await?;
                let device_id = device.map_or_else(
                    || uuid::Uuid::new_v4().simple().to_string(),
                    |d| d.device_id,
                );
                let session = self.open_session(&user, device_id, now)?;
                tracing::info!(username = %user.username, address, "login");
                self.audit
                    .record(
                        AuditEntry::new(shown, AuditAction::Login, client)
                            .resource(format!("user:{}", user.id)),
                    )
                    .await?;
                Ok(session)
            }
            Err(why) => {
                let known = reservation.known_client();
                let throttled = reservation.failed().await;
                tracing::warn!(username = %shown, address, known, throttled, "login failed: {why}");
                let mut detail = why.to_owned();
                if known {
                    detail.push_str(" (from a known client)");
                }
                if throttled {
                    detail.push_str("; further attempts are now throttled");
                }
                self.audit
                    .record(
                        AuditEntry::new(&shown, AuditAction::LoginFailed, client)
                            .failed()
                            .detail(detail),
                    )
                    .await?;
                Err(AuthError::Unauthenticated(BAD_CREDENTIALS))
            }
        }
    }

    /// Forgets the shared counters idle past the window, and the stalest beyond the
    /// policy's bound, at most once per `purge_every` from this process.
    async fn purge_counters(&self, now: DateTime<Utc>) {
        let (due, policy) = {
            let mut throttle = self.throttle();
            (throttle.purge_due(now), throttle.policy().clone())
        };
        if !due {
            return;
        }
        let keep = u64::try_from(policy.max_entries).unwrap_or(u64::MAX);
        // Housekeeping: a login must not fail for it.
        if let Err(e) = self
            .throttle_counters
            .purge(now, now - policy.window, keep)
            .await
        {
            tracing::warn!(error = %e, "cannot purge the login throttle's idle counters");
        }
    }

    /// The one row that counts what a lockout refused after its first refusal.
    async fn record_lockout_end(&self, summary: LockoutSummary) {
        let what = match &summary.subject {
            LockSubject::Address(a) => format!("address {a}"),
            LockSubject::Account(u) => format!("user {u} (unknown clients)"),
            LockSubject::Device(_) => "a device cookie".to_owned(),
        };
        let client = ClientInfo {
            ip: Some(summary.address.clone()),
            user_agent: None,
            credential: None,
        };
        let entry = AuditEntry::new(&summary.username, AuditAction::LoginThrottled, &client)
            .failed()
            .detail(format!(
                "lockout of {what} over: {} attempts refused from {} to {}",
                summary.refused,
                summary.first.format("%Y-%m-%dT%H:%M:%SZ"),
                summary.last.format("%Y-%m-%dT%H:%M:%SZ"),
            ));
        // The login being handled must not fail for the bookkeeping of an older one.
        if let Err(e) = self.audit.record(entry).await {
            tracing::error!(error = %e, "cannot record the end of a login lockout");
        }
    }

    fn open_session(
        &self,
        user: &User,
        device_id: String,
        now: DateTime<Utc>,
    ) -> Result<Session, AuthError> {
        let expires_at = now + self.session_ttl;
        let claims = SessionClaims {
            subject: user.id.get(),
            token_id: uuid::Uuid::new_v4().simple().to_string(),
            issued_at: now,
            expires_at,
            generation: user.token_generation,
            csrf: uuid::Uuid::new_v4().simple().to_string(),
        };
        let token = self.tokens.issue(&claims)?;
        let device = DeviceClaims {
            username: user.username.to_string(),
            device_id,
            issued_at: now,
            expires_at: now + DEVICE_TTL,
        };
        Ok(Session {
            token,
            csrf: claims.csrf,
            expires_at,
            user: user.clone(),
            device: DeviceToken {
                token: self.tokens.issue_device(&device)?,
                expires_at: device.expires_at,
            },
        })
    }

    /// The actor a bearer value stands for: a session token, with the user's *current*
    /// role, or a personal access token (`coffer_pat_…`), with the narrower of its role
    /// and its owner's current one.
    ///
    /// # Errors
    /// `Unauthenticated` for a session token that is malformed, forged, expired, revoked,
    /// of a deactivated user or issued before the user's sessions were ended, and for a
    /// personal access token that is unknown, revoked, expired, of a deactivated owner
    /// or limited to a role above its owner's current one.
    pub async fn authenticate(
        &self,
        token: &str,
        client: &ClientInfo,
    ) -> Result<(Actor, Credential), AuthError> {
        if is_token(token) {
            return self.authenticate_token(token, client).await;
        }
        let claims = self
            .tokens
            .verify(token, self.clock.now())
            .map_err(|_| AuthError::Unauthenticated(NOT_AUTHENTICATED))?;
        if self.revocations.is_revoked(&claims.token_id).await? {
            return Err(AuthError::Unauthenticated(NOT_AUTHENTICATED));
        }
        let user = self
            .users
            .get(coffer_domain::UserId::new(claims.subject))
            .await?
            .filter(|u| u.is_active && u.token_generation == claims.generation)
            .ok_or(AuthError::Unauthenticated(NOT_AUTHENTICATED))?;
        let actor = Actor {
            username: user.username.to_string(),
            user_id: Some(user.id),
            role: user.role,
            client: client.clone(),
        };
        Ok((actor, Credential::Session(claims)))
    }

    async fn authenticate_token(
        &self,
        secret: &str,
        client: &ClientInfo,
    ) -> Result<(Actor, Credential), AuthError> {
        let refused = || AuthError::Unauthenticated(NOT_AUTHENTICATED);
        let hash = secret_hash(secret);
        let Some((token, stored)) = self.api_tokens.find_by_hash(&hash).await? else {
            tracing::debug!(
                ip = client.ip.as_deref(),
                "unknown or revoked access token refused"
            );
            return Err(refused());
        };
        if !hashes_match(&hash, &stored) {
            return Err(refused());
        }
        let now = self.clock.now();
        let owner = self.users.get(token.user_id).await?.ok_or_else(refused)?;
        let role = match effective_role(&token, owner.role, owner.is_active, now) {
            Ok(role) => role,
            Err(why) => {
                tracing::info!(token = token.id.get(), owner = %owner.username, "access token refused: {why}");
                return Err(refused());
            }
        };
        if token.last_use_due(now) {
            // Bookkeeping: the request must not fail for it.
            if let Err(e) = self
                .api_tokens
                .touch(token.id, now, client.ip.as_deref())
                .await
            {
                tracing::warn!(error = %e, token = token.id.get(), "cannot record an access token's use");
            }
        }
        let mut client = client.clone();
        client.credential = Some(token.credential());
        let actor = Actor {
            username: owner.username.to_string(),
            user_id: Some(owner.id),
            role,
            client,
        };
        Ok((actor, Credential::Token(token)))
    }

    /// The caller's own account.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `Unauthenticated` when the account is gone.
    pub async fn current_user(
        &self,
        actor: &Actor,
        id: coffer_domain::UserId,
    ) -> Result<User, AuthError> {
        actor.require(Permission::View)?;
        self.users
            .get(id)
            .await?
            .ok_or(AuthError::Unauthenticated(NOT_AUTHENTICATED))
    }

    /// Ends the session at once, server-side.
    ///
    /// # Errors
    /// `SessionRequired` for a token (tokens are revoked, not logged out); when the
    /// revocation cannot be stored.
    pub async fn logout(&self, actor: &Actor, credential: &Credential) -> Result<(), AuthError> {
        let Credential::Session(claims) = credential else {
            return Err(AuthError::SessionRequired(
                "a token is not logged out: revoke it with DELETE /api/tokens/{id}",
            ));
        };
        self.revocations
            .revoke(&claims.token_id, claims.expires_at)
            .await?;
        self.audit
            .record(AuditEntry::new(
                &actor.username,
                AuditAction::Logout,
                &actor.client,
            ))
            .await?;
        // Housekeeping: forget revocations whose tokens have expired anyway.
        if let Err(e) = self.revocations.purge_expired(self.clock.now()).await {
            tracing::warn!(error = %e, "cannot purge expired session revocations");
        }
        Ok(())
    }

    /// Changes the caller's own password; every session of theirs ends, this one too.
    ///
    /// # Errors
    /// `Invalid` for a wrong current password or a new one that breaks the rules.
    pub async fn change_own_password(
        &self,
        actor: &Actor,
        current: &Secret,
        new: &Secret,
    ) -> Result<(), AuthError> {
        actor.require(Permission::View)?;
        if actor.client.credential.is_some() {
            return Err(AuthError::SessionRequired(
                "a password is changed in a password session, not with a token",
            ));
        }
        let user_id = actor.user_id.ok_or_else(|| AuthError::NoAccount)?;
        let credentials = self
            .users
            .credentials(&actor.username)
            .await?
            .filter(|c| c.user.id == user_id)
            .ok_or(AuthError::Unauthenticated(NOT_AUTHENTICATED))?;
        let entry = AuditEntry::new(&actor.username, AuditAction::PasswordChange, &actor.client)
            .resource(format!("user:{user_id}"));
        if self
            .hasher
            .verify(current, &credentials.password_hash)
            .await?
            == PasswordCheck::Mismatch
        {
            self.audit
                .record(entry.failed().detail("current password is wrong"))
                .await?;
            return Err(AuthError::WrongPassword);
        }
        if let Err(e) = check_password(new.expose(), &credentials.user.username) {
            self.audit
                .record(entry.failed().detail(e.to_string()))
                .await?;
            return Err(AuthError::WeakPassword(e.to_string()));
        }
        let hash = self.hasher.hash(new).await?;
        self.users
            .set_password_hash(user_id, &hash, self.clock.now())
            .await?;
        self.audit
            .record(entry.detail("all sessions ended"))
            .await?;
        Ok(())
    }
}

/// A reserved login attempt. Settled as a success or a failure, with its counters locked
/// again; dropped unsettled (the request was abandoned, or an error cut it short), its
/// failure stays counted as it was reserved and only its place in flight is given back,
/// so that no reservation is ever lost.
struct Pending<'a> {
    service: &'a AuthService,
    reservation: Option<Reservation>,
}

impl Pending<'_> {
    fn known_client(&self) -> bool {
        self.reservation
            .as_ref()
            .is_some_and(Reservation::known_client)
    }

    async fn succeeded(self) {
        self.settle(true).await;
    }

    /// Whether further attempts like it are now throttled.
    async fn failed(self) -> bool {
        self.settle(false).await
    }

    async fn settle(mut self, success: bool) -> bool {
        let Some(keys) = self.reservation.as_ref().map(Reservation::counter_keys) else {
            return false;
        };
        // Cancelled while this waits, the reservation is still held: `drop` gives it back.
        let locked = self.service.throttle_counters.lock(&keys).await;
        let Some(reservation) = self.reservation.take() else {
            return false;
        };
        let (mut counters, lock) = match locked {
            Ok(locked) => locked,
            Err(e) => {
                tracing::error!(error = %e, "cannot settle a login attempt's throttle counters");
                self.service.throttle().abandoned(reservation);
                return false;
            }
        };
        let throttled = {
            let mut throttle = self.service.throttle();
            if success {
                throttle.succeeded(reservation, &mut counters);
                false
            } else {
                throttle.failed(reservation, &mut counters, self.service.clock.now())
            }
        };
        if let Err(e) = lock.save(&counters).await {
            tracing::error!(error = %e, "cannot save a login attempt's throttle counters");
        }
        throttled
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.reservation.take() {
            self.service.throttle().abandoned(r);
        }
    }
}
