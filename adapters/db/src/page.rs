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

/// One page of `select`, newest first (by `created`, then `id`), each row mapped with
/// `map`. `total` is counted with the same filter unless the caller knows it already (from
/// a maintained counter).
pub(crate) async fn newest_first<E, T>(
    conn: &sea_orm::DatabaseConnection,
    select: sea_orm::Select<E>,
    (created, id): (E::Column, E::Column),
    (limit, offset): (u64, u64),
    total: Option<u64>,
    map: impl Fn(E::Model) -> Result<T, coffer_domain::ports::RepoError>,
) -> Result<coffer_domain::ports::Page<T>, coffer_domain::ports::RepoError>
where
    E: sea_orm::EntityTrait,
    E::Model: Sync,
{
    use sea_orm::{PaginatorTrait as _, QueryOrder as _, QuerySelect as _};

    let total = match total {
        Some(known) => known,
        None => select
            .clone()
            .count(conn)
            .await
            .map_err(|e| crate::error::repo_err(&e))?,
    };
    let (limit, offset) = window(limit, offset);
    let items = select
        .order_by_desc(created)
        .order_by_desc(id)
        .limit(limit)
        .offset(offset)
        .all(conn)
        .await
        .map_err(|e| crate::error::repo_err(&e))?
        .into_iter()
        .map(map)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(coffer_domain::ports::Page { items, total })
}
