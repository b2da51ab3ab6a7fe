//! Bringing another system's data over: an installation of the Python prototype.

use std::sync::Arc;

use coffer_application::ImportOptions;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::dto::Text;
use super::jobs::JobAccepted;
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

/// Which installation to import, and how.
#[derive(Debug, Object)]
pub struct PrototypeImportRequest {
    /// The installation directory on the server (absolute): it holds `config.json`,
    /// `config/secret.key`, the SQLite database and `storage/backups`.
    #[oai(validator(min_length = 1, max_length = 4096, pattern = "^/"))]
    pub dir: Text,
    /// The database file, relative to `dir`, when `config.json` does not name it and it
    /// is not `backup_system.db`.
    #[oai(nullable, validator(min_length = 1, max_length = 4096))]
    pub db: Option<Text>,
    /// The source the snapshots go to (default `prototype`).
    #[oai(nullable, validator(min_length = 1, max_length = 128))]
    pub source: Option<Text>,
    /// Read everything and report what would be imported; write nothing. Absent or
    /// `null`: `false`.
    #[oai(default, nullable)]
    pub dry_run: bool,
    /// `config.json`'s retention becomes the source's, and its quota the server's.
    /// Absent or `null`: `false`.
    #[oai(default, nullable)]
    pub adopt_settings: bool,
}

pub struct ImportApi;

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Import")]
impl ImportApi {
    /// Import an installation of the Python prototype.
    ///
    /// Queues an import (202 with the job). Each completed backup becomes a snapshot,
    /// dated with its original time, of one source; users come over with their roles
    /// (their old passwords work once, at their next login, and are then re-hashed; the
    /// prototype's default `admin` password is never carried over: that user comes over
    /// disabled); the audit log comes over as imported history (`prototype.<action>`),
    /// then one `import` row. A damaged archive, or one whose checksum matches neither
    /// the stored file nor the zip inside, is skipped and named in the job's result; the
    /// rest goes on. Re-running adds nothing twice. 409 `job_running` while another
    /// import is queued or running.
    ///
    /// Permission: `manage_users` and `manage_system` (an administrator).
    #[oai(
        path = "/import/prototype",
        method = "post",
        operation_id = "importPrototype"
    )]
    async fn import_prototype(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        body: Json<PrototypeImportRequest>,
    ) -> Result<JobAccepted, ApiError> {
        let body = body.0;
        let job = state
            .import
            .start(
                auth.actor(),
                ImportOptions {
                    dir: body.dir.into(),
                    db: body.db.map(Into::into),
                    source: body.source.map(Into::into),
                    dry_run: body.dry_run,
                    adopt_settings: body.adopt_settings,
                },
            )
            .await?;
        Ok(JobAccepted::from_status(job))
    }
}
