//! A latency proxy for the benchmarks: a loopback TCP proxy in front of Redis that delays every
//! chunk of bytes by half a round-trip time in each direction, in order, and counts round trips.
//!
//! Delays: tokio's timer has millisecond granularity, so a 0.25 ms delay through
//! `tokio::time::sleep` would last about 1 ms. Instead every chunk read (on the proxy's own tokio
//! runtime) goes, stamped with its due time, into one FIFO served by a plain thread that sleeps
//! (`nanosleep`, tens of µs late at worst on an idle machine) until each chunk is due and hands it
//! to the connection's writer task. All chunks get the same delay, so due times follow arrival
//! order and one FIFO keeps each direction of each connection in order.
//!
//! Round trips: per connection, a run of client writes with no reply from Redis in between is
//! one round trip (a pipeline, a script call, or several clients' commands multiplexed onto one
//! connection in the same flight); the first client write after a reply starts the next one.
//! Each round trip is also counted under the call it starts with ([`LatencyProxy::calls`]): the
//! command's name, a function's (`FCALL paywatch_submit`), or a script's (`EVALSHA settle` for
//! the queue's scripts, the hash's first 8 digits for others).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A chunk of bytes on its way to one side of one connection, due at `at`.
struct Due {
    at: Instant,
    to: mpsc::UnboundedSender<Vec<u8>>,
    data: Vec<u8>,
}

/// What the proxy has counted so far.
#[derive(Debug, Default)]
struct Counters {
    round_trips: AtomicU64,
    connections: AtomicU64,
    /// Round trips by the call they start with.
    calls: Mutex<HashMap<String, u64>>,
    /// Script hash → name, for the queue's scripts.
    scripts: HashMap<String, &'static str>,
}

impl Counters {
    /// Counts a round trip that starts with the bytes `first`.
    fn count(&self, first: &[u8]) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let label = self.label(first);
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        *calls.entry(label).or_default() += 1;
    }

    /// What a request starting with `first` calls.
    fn label(&self, first: &[u8]) -> String {
        let mut parts = resp_words(first, 2).into_iter();
        let Some(name) = parts.next() else {
            return "?".into();
        };
        let name = name.to_ascii_uppercase();
        let arg = parts.next().unwrap_or_default();
        match name.as_str() {
            "FCALL" | "FCALL_RO" => format!("{name} {arg}"),
            "EVALSHA" => match self.scripts.get(&arg.to_ascii_lowercase()) {
                Some(script) => format!("EVALSHA {script}"),
                None => format!("EVALSHA {}", arg.get(..8).unwrap_or(&arg)),
            },
            _ => name,
        }
    }
}

/// The first `n` words of a RESP request (`*<count> $<len> <word> …`), as far as `bytes` holds
/// them whole.
fn resp_words(bytes: &[u8], n: usize) -> Vec<String> {
    let mut words = Vec::new();
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    if !lines.next().is_some_and(|l| l.starts_with(b"*")) {
        return words;
    }
    while words.len() < n {
        match (lines.next(), lines.next()) {
            (Some(len), Some(word)) if len.starts_with(b"$") => {
                words.push(String::from_utf8_lossy(word).into_owned());
            }
            _ => break,
        }
    }
    words
}

/// A running latency proxy in front of one Redis; stops when dropped.
pub struct LatencyProxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl LatencyProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`, adding `rtt` to every
    /// round trip (`rtt / 2` each way). It runs on a runtime thread and a delay thread of its
    /// own, so it neither waits for nor slows the caller's runtime.
    pub fn start(upstream: SocketAddr, rtt: Duration) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("latency-proxy")
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let counters = Arc::new(Counters {
            scripts: paywatch_queue::script_names()
                .into_iter()
                .map(|(sha, name)| (sha.to_ascii_lowercase(), name))
                .collect(),
            ..Counters::default()
        });
        let one_way = rtt / 2;
        // Without a delay the chunks go straight to their writer, with no thread in between.
        let due = if one_way.is_zero() {
            None
        } else {
            let (tx, rx) = std::sync::mpsc::channel::<Due>();
            std::thread::Builder::new()
                .name("latency-proxy-delay".into())
                .spawn(move || deliver_when_due(rx))?;
            Some(tx)
        };
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let c = counters.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let link = Link {
                    upstream,
                    one_way,
                    due: due.clone(),
                    counters: c.clone(),
                };
                tokio::spawn(async move {
                    if let Err(e) = link.serve(client).await {
                        eprintln!("latency proxy: a connection ended: {e:#}");
                    }
                });
            }
        });
        Ok(Self {
            addr,
            counters,
            runtime: Some(runtime),
        })
    }

    /// Starts a proxy in front of the single Redis at `url` (`redis://host:port[/db]`).
    pub fn in_front_of(url: &str, rtt: Duration) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url).context("the Redis URL is not a URL")?;
        let upstream = parsed
            .socket_addrs(|| Some(6379))
            .context("cannot resolve the Redis URL's host")?
            .into_iter()
            .next()
            .context("the Redis URL's host has no address")?;
        Self::start(upstream, rtt)
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` (a Redis URL) pointed at this proxy instead: same scheme, credentials and database.
    pub fn url_for(&self, url: &str) -> anyhow::Result<String> {
        let mut parsed = url::Url::parse(url).context("the Redis URL is not a URL")?;
        parsed
            .set_ip_host(self.addr().ip())
            .map_err(|()| anyhow::anyhow!("cannot point the Redis URL at the proxy"))?;
        parsed
            .set_port(Some(self.addr().port()))
            .map_err(|()| anyhow::anyhow!("cannot point the Redis URL at the proxy's port"))?;
        Ok(parsed.to_string())
    }

    /// Round trips counted so far, over every connection.
    pub fn round_trips(&self) -> u64 {
        self.counters.round_trips.load(Ordering::Relaxed)
    }

    /// Round trips so far by the call each started with (see the module's doc).
    pub fn calls(&self) -> BTreeMap<String, u64> {
        let calls = self
            .counters
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        calls.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        // The owner may be inside another runtime, where a blocking shutdown would panic.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The delay thread: hands every chunk to its writer once it is due; ends when every sender
/// (the proxy's listener and connections) is gone.
fn deliver_when_due(rx: std::sync::mpsc::Receiver<Due>) {
    while let Ok(d) = rx.recv() {
        let now = Instant::now();
        if d.at > now {
            std::thread::sleep(d.at - now);
        }
        // A closed connection's chunks have nowhere to go.
        let _ = d.to.send(d.data);
    }
}

/// What one proxied connection needs.
struct Link {
    upstream: SocketAddr,
    one_way: Duration,
    due: Option<std::sync::mpsc::Sender<Due>>,
    counters: Arc<Counters>,
}

impl Link {
    async fn serve(self, client: TcpStream) -> anyhow::Result<()> {
        let server = TcpStream::connect(self.upstream)
            .await
            .with_context(|| format!("connecting to {}", self.upstream))?;
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let to_server = writer(server_write);
        let to_client = writer(client_write);
        // True from a client write until Redis's next reply: the writes in between are one flight.
        let in_flight = Arc::new(AtomicBool::new(false));
        let requests = {
            let in_flight = in_flight.clone();
            let counters = self.counters.clone();
            let hop = self.hop();
            tokio::spawn(async move {
                pump(client_read, to_server, hop, |chunk| {
                    if !in_flight.swap(true, Ordering::Relaxed) {
                        counters.count(chunk);
                    }
                })
                .await
            })
        };
        let replies = pump(server_read, to_client, self.hop(), |_| {
            in_flight.store(false, Ordering::Relaxed);
        })
        .await;
        requests.abort();
        replies
    }

    fn hop(&self) -> Hop {
        Hop {
            one_way: self.one_way,
            due: self.due.clone(),
        }
    }
}

/// How chunks cross the proxy in one direction: after `one_way`, through the delay thread.
struct Hop {
    one_way: Duration,
    due: Option<std::sync::mpsc::Sender<Due>>,
}

/// Reads `from` until it closes, calling `seen` on every chunk and sending it on through `hop`.
async fn pump(
    mut from: OwnedReadHalf,
    to: mpsc::UnboundedSender<Vec<u8>>,
    hop: Hop,
    seen: impl Fn(&[u8]),
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        seen(&buf[..n]);
        let data = buf[..n].to_vec();
        match &hop.due {
            Some(due) => due
                .send(Due {
                    at: Instant::now() + hop.one_way,
                    to: to.clone(),
                    data,
                })
                .context("the delay thread stopped")?,
            None => to.send(data).context("the writer stopped")?,
        }
    }
}

/// A task writing what it receives to `to`, in order; it closes `to`'s write side once every
/// sender is gone (the other side closed and the last due chunk was written).
fn writer(mut to: OwnedWriteHalf) -> mpsc::UnboundedSender<Vec<u8>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if to.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    tx
}

/// The median of `n` PING round trips through `url`, ms: what a client of the proxy sees.
pub async fn ping_rtt_ms(url: &str, n: usize) -> anyhow::Result<f64> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let start = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-connection echo server on a free loopback port that answers every chunk at once.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_ping_through_a_10ms_proxy_takes_10ms_and_counts_one_round_trip() {
        let redis = paywatch_tests::RedisServer::start().await;
        let url = redis.url();
        let proxy = LatencyProxy::in_front_of(&url, Duration::from_millis(10)).expect("proxy");
        let client = redis::Client::open(proxy.url_for(&url).expect("url")).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect through the proxy");
        let before = proxy.round_trips();
        let start = Instant::now();
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .expect("PING");
        let took = start.elapsed();
        assert_eq!(pong, "PONG");
        assert!(took >= Duration::from_millis(10), "PING took {took:?}");
        assert_eq!(proxy.round_trips() - before, 1);
        // A pipeline of three commands is one flight.
        let before = proxy.round_trips();
        let (a, b, c): (String, String, String) = redis::pipe()
            .cmd("PING")
            .cmd("PING")
            .cmd("PING")
            .query_async(&mut conn)
            .await
            .expect("pipeline");
        assert_eq!(
            (a.as_str(), b.as_str(), c.as_str()),
            ("PONG", "PONG", "PONG")
        );
        assert_eq!(proxy.round_trips() - before, 1);
        assert_eq!(proxy.connections(), 1);
        // Each round trip is named by the call it starts with (the client's handshake may add
        // others of its own).
        assert_eq!(proxy.calls().get("PING"), Some(&2));
    }

    #[tokio::test]
    async fn bytes_arrive_in_order_in_both_directions() {
        let upstream = echo().await;
        let proxy = LatencyProxy::start(upstream, Duration::from_micros(500)).expect("proxy");
        let stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        let (mut read, mut write) = stream.into_split();
        // Many small writes, each its own chunk, racing through the delay thread.
        let sent: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let to_send = sent.clone();
        let sender = tokio::spawn(async move {
            for part in to_send.chunks(7) {
                write.write_all(part).await.expect("write");
            }
            write
        });
        let mut got = vec![0u8; sent.len()];
        tokio::time::timeout(Duration::from_secs(30), read.read_exact(&mut got))
            .await
            .expect("echo within 30 s")
            .expect("read");
        assert!(got == sent, "the bytes came back out of order");
        drop(sender.await.expect("sender"));
    }
}
