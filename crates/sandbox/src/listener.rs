//! A TCP listener whose connections a handler can kill, so a "drop" fault reaches the client as a
//! connection error rather than as an HTTP status.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Wraps a [`TcpListener`] so every accepted stream carries a [`ConnControl`].
#[derive(Debug)]
pub(crate) struct SandboxListener {
    inner: TcpListener,
}

impl SandboxListener {
    pub(crate) fn new(inner: TcpListener) -> Self {
        Self { inner }
    }
}

impl Listener for SandboxListener {
    type Io = ControlledStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        if let Err(err) = stream.set_nodelay(true) {
            tracing::trace!("cannot set TCP_NODELAY: {err}");
        }
        let io = ControlledStream {
            inner: stream,
            control: ConnControl::default(),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A switch shared between a connection's stream and the handlers serving it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnControl(Arc<AtomicBool>);

impl ConnControl {
    /// Makes the stream refuse further writes, so hyper abandons the connection unanswered.
    pub(crate) fn kill(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn killed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Connected<IncomingStream<'_, SandboxListener>> for ConnControl {
    fn connect_info(stream: IncomingStream<'_, SandboxListener>) -> Self {
        stream.io().control.clone()
    }
}

/// A TCP stream that fails every write once its [`ConnControl`] is killed.
#[derive(Debug)]
pub(crate) struct ControlledStream {
    inner: TcpStream,
    control: ConnControl,
}

fn killed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by sandbox fault",
    )
}

impl AsyncRead for ControlledStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.control.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ControlledStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.control.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.control.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.control.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The current connection's kill switch, absent when the router is served by plain `axum::serve`.
#[derive(Debug, Clone)]
pub(crate) struct Conn(pub(crate) Option<ConnControl>);

impl<S: Send + Sync> FromRequestParts<S> for Conn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<ConnControl>>()
                .map(|info| info.0.clone()),
        ))
    }
}

impl Conn {
    /// Answers nothing: kills the connection, or without a kill switch sends a body that fails
    /// before its first byte, which makes hyper abort the connection too.
    pub(crate) fn drop_response(&self) -> Response {
        if let Some(control) = &self.0 {
            control.kill();
        }
        let failing = futures::stream::once(async { Err::<Bytes, io::Error>(killed_error()) });
        Body::from_stream(failing).into_response()
    }
}
