//! A slow link between a primary and its replicas: a loopback TCP relay that holds every byte
//! from the primary for a fixed delay before passing it on (the other direction passes at once),
//! so the replicas lag by that delay. When the primary dies, what the relay still holds is
//! dropped, as a machine that dies takes its unsent buffers with it: the writes a failover loses
//! without durable mode.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A running relay; stops when dropped.
#[derive(Debug)]
pub struct SlowLink {
    /// The port replicas connect to instead of the primary's.
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlowLink {
    /// Relays connections on a free loopback port to `127.0.0.1:upstream`, delaying what
    /// `upstream` sends by `delay`.
    pub async fn start(upstream: u16, delay: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", crate::free_port())).await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            let mut relays = Vec::new();
            while let Ok((downstream, _)) = listener.accept().await {
                relays.push(tokio::spawn(relay(downstream, upstream, delay)));
            }
        });
        Ok(Self { port, task })
    }
}

/// One relayed connection: ends (closing both sides) when either side closes.
async fn relay(downstream: TcpStream, upstream: u16, delay: Duration) {
    let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = (up.set_nodelay(true), downstream.set_nodelay(true));
    let (mut up_read, mut up_write) = up.into_split();
    let (mut down_read, mut down_write) = downstream.into_split();
    // Replica to primary: at once.
    let ahead = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut down_read, &mut up_write).await;
    });
    // Primary to replica: each chunk leaves `delay` after it arrived. Bytes the primary sent
    // but that are still held here when it dies never reach the replica.
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let behind = tokio::spawn(async move {
        while let Some((arrived, chunk)) = rx.recv().await {
            tokio::time::sleep_until(arrived + delay).await;
            if down_write.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match up_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    // The primary is gone: what it sent in its last `delay` is dropped with the connection,
    // as a dead machine's unsent packets are.
    ahead.abort();
    behind.abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RedisServer, wait_for};

    async fn get(port: u16, key: &str) -> Option<String> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .ok()?
    }

    #[tokio::test]
    async fn a_replica_behind_the_link_lags_and_loses_what_a_dead_primary_still_had_on_it() {
        let mut primary = RedisServer::start().await;
        let link = SlowLink::start(primary.port(), Duration::from_millis(300))
            .await
            .expect("link");
        let link_port = link.port.to_string();
        let replica = RedisServer::start_of(
            &crate::ServerBinary {
                kind: crate::ServerKind::Redis7,
                path: crate::redis_server_binary().into(),
                version: String::new(),
            },
            false,
            &["--replicaof", "127.0.0.1", &link_port],
        )
        .await;
        let client = redis::Client::open(primary.url()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let _: () = redis::cmd("SET")
            .arg("first")
            .arg("1")
            .query_async(&mut conn)
            .await
            .expect("SET");
        wait_for(
            "the replica to get the first key",
            Duration::from_secs(30),
            || get(replica.port(), "first"),
        )
        .await;
        // It may have arrived with the initial sync; once streaming, a write takes the delay.
        let _: () = redis::cmd("SET")
            .arg("second")
            .arg("2")
            .query_async(&mut conn)
            .await
            .expect("SET");
        let sent = Instant::now();
        wait_for(
            "the replica to get the second key",
            Duration::from_secs(5),
            || get(replica.port(), "second"),
        )
        .await;
        assert!(sent.elapsed() >= Duration::from_millis(300), "no lag");
        let _: () = redis::cmd("SET")
            .arg("last")
            .arg("3")
            .query_async(&mut conn)
            .await
            .expect("SET");
        primary.kill();
        // Once the replica has lost its link, nothing more can reach it.
        wait_for(
            "the replica to lose its link",
            Duration::from_secs(10),
            || async {
                let client = redis::Client::open(replica.url()).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                info.contains("master_link_status:down").then_some(())
            },
        )
        .await;
        assert_eq!(get(replica.port(), "last").await, None);
        assert_eq!(get(replica.port(), "second").await.as_deref(), Some("2"));
    }
}
