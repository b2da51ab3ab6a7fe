//! `coffer-application`: Coffer's use cases. Each one takes the ports it needs as
//! `Arc<dyn Port>`, checks the caller's permission first, does its work and records it in
//! the audit trail. The CLI and the HTTP API both call these services, so both obey the
//! same rules.
//!
//! This crate never names an adapter: no database, web framework or object store.

pub mod system;

pub use system::{ComponentHealth, HealthReport, SystemService};
