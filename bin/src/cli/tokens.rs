//! `coffer tokens ...`: personal access tokens, as the local system administrator
//! (audited as `system:<your OS user>`).

use std::process::ExitCode;

use clap::{ArgGroup, Subcommand};
use coffer_application::{TokenRequest, TokenScope, UserService};
use coffer_config::Settings;
use coffer_domain::ApiTokenId;
use coffer_domain::auth::Actor;
use coffer_domain::tokens::ApiToken;
use coffer_http::schema::{TokenDto, to_json};

use super::users::RoleArg;
use super::{local_admin, print_json, services};

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token for a user and print its secret, once. It acts for that user (with
    /// --role, never above it) and stops when they are deactivated or lose the role.
    #[command(group(ArgGroup::new("expiry").required(true).args(["expires_days", "no_expiry"])))]
    Create {
        /// The owner's username.
        #[arg(long)]
        user: String,
        /// What the token is for (shown in listings and the audit trail).
        #[arg(long)]
        name: String,
        /// Days until it stops working.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_days: Option<u32>,
        /// It never expires (revoke it when it is no longer needed).
        #[arg(long)]
        no_expiry: bool,
        /// Limit it to this role (at most the owner's); without it, the owner's role.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
    },
    /// List tokens (never their secrets), newest first.
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Machine-readable output: the API's `Token` schema, one per token.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it stops working at once.
    Revoke { id: i64 },
}

pub async fn run(settings: &Settings, command: TokensCommand) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let result = tokens(&services.tokens, &services.users, command).await;
    services.db.close().await?;
    result.map(|()| ExitCode::SUCCESS)
}

async fn owner_id(
    users: &UserService,
    actor: &Actor,
    username: &str,
) -> anyhow::Result<coffer_domain::UserId> {
    Ok(users.get_by_name(actor, username).await?.id)
}

async fn tokens(
    svc: &coffer_application::TokenService,
    users: &UserService,
    command: TokensCommand,
) -> anyhow::Result<()> {
    let actor = local_admin();
    match command {
        TokensCommand::Create {
            user,
            name,
            expires_days,
            no_expiry: _,
            role,
        } => {
            let owner = owner_id(users, &actor, &user).await?;
            let expires_at =
                expires_days.map(|d| chrono::Utc::now() + chrono::TimeDelta::days(i64::from(d)));
            let (token, secret) = svc
                .create(
                    &actor,
                    TokenRequest {
                        name,
                        expires_at,
                        role: role.map(Into::into),
                        owner: Some(owner),
                    },
                )
                .await?;
            out!(
                "created token {} {:?} for `{}` ({}, {})",
                token.id,
                token.name,
                token.username,
                role_text(&token),
                expiry_text(&token)
            );
            out!("token: {}", secret.expose());
            out!("it is shown only now: store it where the script or CI job reads it");
        }
        TokensCommand::List { user, json } => {
            let scope = match user {
                Some(name) => TokenScope::User(owner_id(users, &actor, &name).await?),
                None => TokenScope::All,
            };
            let list = svc.list(&actor, scope).await?;
            if json {
                let rows: Vec<serde_json::Value> =
                    list.iter().map(|t| to_json(&TokenDto::from(t))).collect();
                print_json(&serde_json::Value::Array(rows))?;
            } else {
                out!(
                    "{:>4}  {:<16} {:<24} {:<9} {:<22} last use",
                    "id",
                    "owner",
                    "name",
                    "role",
                    "expires"
                );
                for t in &list {
                    out!(
                        "{:>4}  {:<16} {:<24} {:<9} {:<22} {}",
                        t.id,
                        t.username,
                        t.name,
                        role_text(t),
                        t.expires_at.map_or_else(
                            || "never".to_owned(),
                            |e| e.format("%Y-%m-%d %H:%M UTC").to_string()
                        ),
                        t.last_used_at.map_or_else(
                            || "never".to_owned(),
                            |u| format!(
                                "{} from {}",
                                u.format("%Y-%m-%d %H:%M UTC"),
                                t.last_used_ip.as_deref().unwrap_or("?")
                            )
                        )
                    );
                }
            }
        }
        TokensCommand::Revoke { id } => {
            let token = svc.revoke(&actor, ApiTokenId::new(id)).await?;
            out!(
                "revoked token {} {:?} of `{}`",
                token.id,
                token.name,
                token.username
            );
        }
    }
    Ok(())
}

fn role_text(token: &ApiToken) -> &'static str {
    token.role.map_or("owner's", |r| r.as_str())
}

fn expiry_text(token: &ApiToken) -> String {
    token.expires_at.map_or_else(
        || "never expires".to_owned(),
        |e| format!("expires {}", e.format("%Y-%m-%d %H:%M UTC")),
    )
}
