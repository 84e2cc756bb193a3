//! The `paywatch` Redis Function library: its source, its contract version, and loading it
//! without ever replacing a newer one (rolling upgrades).

use redis::aio::ConnectionLike;

use super::StoreError;

/// The library's source (`#!lua name=paywatch`).
pub const SOURCE: &str = include_str!("paywatch.lua");

/// The contract this build speaks; `paywatch_version` returns the loaded library's.
pub const CONTRACT: i64 = 1;

/// The loaded library's (contract, oldest contract it still serves), or `None` when none is.
pub async fn loaded_version<C: ConnectionLike>(
    conn: &mut C,
) -> Result<Option<(i64, i64)>, StoreError> {
    let reply: redis::RedisResult<(i64, i64)> = redis::cmd("FCALL_RO")
        .arg("paywatch_version")
        .arg(0)
        .query_async(conn)
        .await;
    match reply {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_missing_function(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether an error says the library (or one of its functions) is not loaded, as after a
/// restart of a Redis that keeps nothing on disk.
pub fn is_missing_function(e: &redis::RedisError) -> bool {
    e.to_string().contains("Function not found")
}

/// Makes sure a library this build can use is loaded: loads ours when there is none or an older
/// one, keeps a newer one that still serves our contract, and refuses one that does not.
pub async fn ensure<C: ConnectionLike>(conn: &mut C) -> Result<(), StoreError> {
    // Two processes of different versions may race; re-reading after each load converges on the
    // newest (the older one only replaces what is older than itself).
    for _ in 0..5 {
        let replace = match loaded_version(conn).await? {
            None => false,
            Some((loaded, _)) if loaded < CONTRACT => true,
            Some((loaded, oldest)) if oldest > CONTRACT => {
                return Err(StoreError::Incompatible {
                    loaded,
                    oldest,
                    ours: CONTRACT,
                });
            }
            Some(_) => return Ok(()),
        };
        let mut load = redis::cmd("FUNCTION");
        load.arg("LOAD");
        if replace {
            load.arg("REPLACE");
        }
        let loaded: redis::RedisResult<String> = load.arg(SOURCE).query_async(conn).await;
        match loaded {
            Ok(_) => {
                tracing::info!(contract = CONTRACT, "loaded the paywatch function library");
            }
            // Someone else loaded it between our read and our load: read again.
            Err(e) if e.to_string().contains("already exists") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Corrupt {
        order_id: String::new(),
        reason: "the paywatch library kept changing while loading it".into(),
    })
}
