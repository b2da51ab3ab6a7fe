//! Paging of list queries.

/// The largest row count both databases accept in `LIMIT` / `OFFSET` (PostgreSQL takes a
/// `bigint`).
const MAX_ROWS: u64 = i64::MAX.unsigned_abs();

/// `LIMIT` and `OFFSET` for a filter's `limit` and `offset`. A `limit` of 0 means no
/// limit; it still becomes a number because SQLite refuses an `OFFSET` without `LIMIT`.
pub(crate) fn window(limit: u64, offset: u64) -> (u64, u64) {
    let limit = if limit == 0 {
        MAX_ROWS
    } else {
        limit.min(MAX_ROWS)
    };
    (limit, offset.min(MAX_ROWS))
}
