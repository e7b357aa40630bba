//! A real hyper server (auto: HTTP/1.1 and h2c) on `127.0.0.1:0`, serving a tower
//! service or an [`SseLayer`] over a handler, with knobs for its socket and hyper
//! buffers.

use std::{convert::Infallible, future::Future, net::SocketAddr};

use futures_core::Stream;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpSocket, sync::oneshot, task::JoinHandle};
use tower::ServiceBuilder;
use tower_sse::{BoxError, Encode, SseLayer, SseResponse};

/// Knobs of the test server's sockets and hyper, to make its buffers small and known.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ServerOptions {
    /// `SO_SNDBUF` of the accepted sockets (set on the listener, inherited).
    pub(crate) send_buffer: Option<u32>,
    /// hyper's HTTP/1 `max_buf_size` (its write buffer cap; at least 8192).
    pub(crate) max_buf_size: Option<usize>,
}

/// A hyper server (auto: HTTP/1.1 and h2c) on `127.0.0.1:0`, one task per connection,
/// every connection watched by hyper-util's [`GracefulShutdown`].
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// `http://127.0.0.1:PORT{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting and runs hyper-util's graceful shutdown; resolves when every
    /// connection has finished.
    pub(crate) async fn graceful_shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task panicked");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves `svc` (a tower service answering `Response<B>`) with default options.
pub(crate) async fn serve<S, B>(svc: S) -> TestServer
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve_with(svc, ServerOptions::default()).await
}

/// Serves `svc` with the given socket and hyper options.
pub(crate) async fn serve_with<S, B>(svc: S, opts: ServerOptions) -> TestServer
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = opts.send_buffer {
        socket.set_send_buffer_size(size).unwrap();
    }
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(128).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        if let Some(max) = opts.max_buf_size {
            builder.http1().max_buf_size(max);
        }
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let conn = builder
                        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(svc.clone()))
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                _ = &mut stopped => break,
            }
        }
        drop(listener);
        graceful.shutdown().await;
    });
    TestServer {
        addr,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Serves `layer` around `handler`, a function from the request to an [`SseResponse`].
pub(crate) async fn serve_sse<F, Fut, St, T, E>(layer: SseLayer, handler: F) -> TestServer
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = SseResponse<St>> + Send + 'static,
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    serve_sse_with(layer, ServerOptions::default(), handler).await
}

/// [`serve_sse`] with socket and hyper options.
pub(crate) async fn serve_sse_with<F, Fut, St, T, E>(
    layer: SseLayer,
    opts: ServerOptions,
    handler: F,
) -> TestServer
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = SseResponse<St>> + Send + 'static,
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |req: Request<Incoming>| {
            let fut = handler(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
    serve_with(svc, opts).await
}
