//! One API struct per tag; each handler parses, calls a service and maps the result.

pub mod system;

use poem_openapi::Tags;

#[derive(Tags)]
pub enum ApiTags {
    /// Server health and status.
    System,
}
