//! The `paywatch` Redis Function library: its source, its contract version, and loading it
//! without ever replacing a newer one (rolling upgrades).

use redis::aio::ConnectionLike;

use super::StoreError;

/// The library's parts, in the order they are joined: files in `lua/`, one concept each (the
/// header of `lua/prelude.lua` says what each holds), and the queue's own writes, so the queue's
/// keys have one writer. A part may use the locals of the parts before it.
const PARTS: [&str; 9] = [
    include_str!("lua/prelude.lua"),
    include_str!("lua/json.lua"),
    include_str!("lua/fast_path.lua"),
    include_str!("lua/ip.lua"),
    include_str!("lua/targets.lua"),
    include_str!("lua/order.lua"),
    paywatch_queue::JOB_WRITES_LUA,
    include_str!("lua/storage.lua"),
    include_str!("lua/functions.lua"),
];

/// The assembled library's length.
const SOURCE_LEN: usize = joined_len(&PARTS);

/// The assembled library, joined at compile time (a static, so its 48 KB exist once).
static SOURCE_BYTES: [u8; SOURCE_LEN] = join(&PARTS);

/// The library's source (`#!lua name=paywatch`), assembled from [`PARTS`] at compile time.
pub const SOURCE: &str = match std::str::from_utf8(&SOURCE_BYTES) {
    Ok(source) => source,
    Err(_) => panic!("the paywatch library's parts are UTF-8, so their join is"),
};

/// The total length of `parts`.
const fn joined_len(parts: &[&str]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < parts.len() {
        len += parts[i].len();
        i += 1;
    }
    len
}

/// `parts` one after another. Each must end with a newline: a part's last line glued to the
/// next part's first (a comment swallowing a `local`) would change the program silently.
const fn join<const N: usize>(parts: &[&str]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < parts.len() {
        let bytes = parts[i].as_bytes();
        assert!(
            !bytes.is_empty() && bytes[bytes.len() - 1] == b'\n',
            "every part of the paywatch library ends with a newline"
        );
        let mut j = 0;
        while j < bytes.len() {
            out[at] = bytes[j];
            at += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(
        at == N,
        "the paywatch library's length was computed from the same parts"
    );
    out
}

/// The contract this build speaks; `paywatch_version` returns the loaded library's.
pub const CONTRACT: i64 = 1;

/// The revision of [`SOURCE`]: between two libraries of one contract, the higher revision wins.
pub const REVISION: i64 = 15;

/// CRC-32 of [`SOURCE`], so a change to the library cannot ship without a new [`REVISION`]
/// (a test compares them).
pub const SOURCE_CRC32: u32 = 238160486;

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
            "the paywatch library changed (a file in store/lua/ or the queue's lua/writes.lua): \
             bump REVISION in lua/prelude.lua and library.rs (so running fleets load it), then \
             set SOURCE_CRC32 to {crc}"
        );
        let declared = format!("local REVISION = {REVISION} ");
        assert!(
            SOURCE.contains(&declared),
            "lua/prelude.lua must declare {declared}"
        );
    }
}
