//! `coffer users ...`: user accounts, as the local system administrator (audited as
//! `system:<your OS user>`).

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use coffer_application::UserService;
use coffer_config::Settings;
use coffer_domain::auth::{Actor, Role};
use coffer_domain::ports::UserChanges;
use coffer_http::schema::{UserDto, to_json};

use super::{local_admin, password_input, print_json, services};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Operator,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Self::Admin,
            RoleArg::Operator => Self::Operator,
            RoleArg::Viewer => Self::Viewer,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user. The password is read from standard input with --password-stdin,
    /// otherwise generated and printed once.
    Add {
        username: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        /// Machine-readable output: the API's `User` schema, one per user.
        #[arg(long)]
        json: bool,
    },
    /// Change a user's role (ends their sessions).
    SetRole {
        username: String,
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Deactivate a user (ends their sessions; they can no longer log in).
    Disable { username: String },
    /// Reactivate a deactivated user.
    Enable { username: String },
    /// Set a new password (ends their sessions). Read from standard input with
    /// --password-stdin, otherwise generated and printed once.
    ResetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

pub async fn run(settings: &Settings, command: UsersCommand) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let result = users(&services.users, command).await;
    services.db.close().await?;
    result.map(|()| ExitCode::SUCCESS)
}

async fn users(svc: &UserService, command: UsersCommand) -> anyhow::Result<()> {
    let actor = local_admin();
    match command {
        UsersCommand::Add {
            username,
            role,
            password_stdin,
        } => {
            let (password, generated) = password_input(password_stdin)?;
            let user = svc
                .create(&actor, &username, &password, role.into())
                .await?;
            out!(
                "created user `{}` (id {}, {})",
                user.username,
                user.id,
                user.role
            );
            if generated {
                out!("password: {}", password.expose());
            }
        }
        UsersCommand::List { json } => {
            let users = svc.list(&actor).await?;
            if json {
                let rows: Vec<serde_json::Value> =
                    users.iter().map(|u| to_json(&UserDto::from(u))).collect();
                print_json(&serde_json::Value::Array(rows))?;
            } else {
                out!(
                    "{:>4}  {:<24} {:<9} {:<8} last login",
                    "id",
                    "username",
                    "role",
                    "active"
                );
                for u in &users {
                    out!(
                        "{:>4}  {:<24} {:<9} {:<8} {}",
                        u.id,
                        u.username.as_str(),
                        u.role.as_str(),
                        if u.is_active { "yes" } else { "no" },
                        u.last_login.map_or_else(
                            || "never".to_owned(),
                            |t| t.format("%Y-%m-%d %H:%M UTC").to_string()
                        )
                    );
                }
            }
        }
        UsersCommand::SetRole { username, role } => {
            let user = svc.get_by_name(&actor, &username).await?;
            let changes = UserChanges {
                role: Some(role.into()),
                is_active: None,
            };
            let user = svc.update(&actor, user.id, &changes).await?;
            out!("`{}` is now {}", user.username, user.role);
        }
        UsersCommand::Disable { username } => set_active(svc, &actor, &username, false).await?,
        UsersCommand::Enable { username } => set_active(svc, &actor, &username, true).await?,
        UsersCommand::ResetPassword {
            username,
            password_stdin,
        } => {
            let user = svc.get_by_name(&actor, &username).await?;
            let (password, generated) = password_input(password_stdin)?;
            svc.reset_password(&actor, user.id, &password).await?;
            out!(
                "password of `{}` reset; their sessions have ended",
                user.username
            );
            if generated {
                out!("password: {}", password.expose());
            }
        }
    }
    Ok(())
}

async fn set_active(
    svc: &UserService,
    actor: &Actor,
    username: &str,
    active: bool,
) -> anyhow::Result<()> {
    let user = svc.get_by_name(actor, username).await?;
    let changes = UserChanges {
        role: None,
        is_active: Some(active),
    };
    let user = svc.update(actor, user.id, &changes).await?;
    out!(
        "`{}` is {}",
        user.username,
        if user.is_active {
            "active"
        } else {
            "disabled; their sessions have ended"
        }
    );
    Ok(())
}
