//! The `paywatch` Redis Function library: its source, its contract version, and loading it
//! without ever replacing a newer one (rolling upgrades).

use redis::aio::ConnectionLike;

use super::StoreError;

/// The library's source (`#!lua name=paywatch`).
pub const SOURCE: &str = include_str!("paywatch.lua");

/// The contract this build speaks; `paywatch_version` returns the loaded library's.
pub const CONTRACT: i64 = 1;

/// The revision of [`SOURCE`]: between two libraries of one contract, the higher revision wins.
pub const REVISION: i64 = 9;

/// CRC-32 of [`SOURCE`], so a change to the library cannot ship without a new [`REVISION`]
/// (a test compares them).
pub const SOURCE_CRC32: u32 = 1460424974;

/// The loaded library's version, or `None` when none is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Its contract.
    pub contract: i64,
    /// The oldest contract it still serves.
    pub oldest: i64,
    /// Its revision.
    pub revision: i64,
}

/// The loaded library's version, or `None` when none is.
pub async fn loaded_version<C: ConnectionLike>(conn: &mut C) -> Result<Option<Loaded>, StoreError> {
    // A list rather than a tuple: later libraries may say more, earlier ones said less.
    let reply: redis::RedisResult<Vec<i64>> = redis::cmd("FCALL_RO")
        .arg("paywatch_version")
        .arg(0)
        .query_async(conn)
        .await;
    match reply {
        Ok(v) => Ok(Some(Loaded {
            contract: v.first().copied().unwrap_or(0),
            oldest: v.get(1).copied().unwrap_or(0),
            revision: v.get(2).copied().unwrap_or(0),
        })),
        Err(e) if is_missing_function(&e) => Ok(None),
        // Redis 6, KeyDB, Dragonfly: no Functions at all. Judged by what the server can do,
        // not by its version string (Valkey reports 7.2.4).
        Err(e) if is_unknown_command(&e) => Err(StoreError::NoFunctions),
        Err(e) => Err(e.into()),
    }
}

/// Whether an error says the library (or one of its functions) is not loaded, as after a
/// restart of a Redis that keeps nothing on disk.
pub fn is_missing_function(e: &redis::RedisError) -> bool {
    e.to_string().contains("Function not found")
}

/// Whether an error says the server does not know the command at all.
fn is_unknown_command(e: &redis::RedisError) -> bool {
    e.to_string()
        .to_ascii_lowercase()
        .contains("unknown command")
}

/// Makes sure a library this build can use is loaded: loads ours when there is none or an older
/// one (lower contract, or same contract and lower revision), keeps a newer one that still
/// serves our contract, and refuses one that does not.
pub async fn ensure<C: ConnectionLike>(conn: &mut C) -> Result<(), StoreError> {
    // Two processes of different versions may race; re-reading after each load converges on the
    // newest (the older one only replaces what is older than itself).
    for _ in 0..5 {
        let replace = match loaded_version(conn).await? {
            None => false,
            Some(l) if (l.contract, l.revision) < (CONTRACT, REVISION) => true,
            Some(l) if l.oldest > CONTRACT => {
                return Err(StoreError::Incompatible {
                    loaded: l.contract,
                    oldest: l.oldest,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_library_has_a_new_revision() {
        let crc = crc32fast::hash(SOURCE.as_bytes());
        assert_eq!(
            crc, SOURCE_CRC32,
            "paywatch.lua changed: bump REVISION in paywatch.lua and library.rs (so running \
             fleets load it), then set SOURCE_CRC32 to {crc}"
        );
        let declared = format!("local REVISION = {REVISION} ");
        assert!(
            SOURCE.contains(&declared),
            "paywatch.lua must declare {declared}"
        );
    }
}
