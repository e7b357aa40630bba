//! In process: the layer's response body driven frame by frame, with no socket (for
//! tests on tokio's paused clock, where time matters).

use std::{convert::Infallible, pin::Pin};

use bytes::Bytes;
use futures_core::Stream;
use http::Request;
use tower::ServiceBuilder;
use tower_sse::{BoxError, Encode, SseLayer, SseResponse};

/// The response of `layer` around a handler answering `SseResponse::new(stream)`,
/// called in process (no socket): for tests that drive the body frame by frame,
/// on tokio's paused clock where time matters.
pub(crate) async fn sse_body<St, T, E>(
    layer: SseLayer,
    stream: St,
) -> Pin<Box<tower_sse::SseBody<St>>>
where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    sse_body_of(layer, SseResponse::new(stream)).await
}

/// Like [`sse_body`], for a handler answering `response`.
pub(crate) async fn sse_body_of<St, T, E>(
    layer: SseLayer,
    response: SseResponse<St>,
) -> Pin<Box<tower_sse::SseBody<St>>>
where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    use tower::ServiceExt;
    // `service_fn` needs `FnMut`; hand the response over through an Option.
    let mut response = Some(response);
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |_req: Request<()>| {
            let response = response.take().expect("called once");
            async move { Ok::<_, Infallible>(response) }
        });
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    Box::pin(res.into_body())
}

/// The next data frame of `body`, or `None` at its end. Panics on a body error.
pub(crate) async fn next_frame<B>(body: &mut Pin<Box<B>>) -> Option<Bytes>
where
    B: http_body::Body<Data = Bytes> + ?Sized,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    let frame = body.frame().await?.expect("body error");
    Some(frame.into_data().expect("a data frame"))
}

/// Every frame of the response of `layer` around a handler streaming `events`, in
/// process, concatenated: the bytes a client would read.
pub(crate) async fn layer_bytes<T>(layer: SseLayer, events: Vec<T>) -> Vec<u8>
where
    T: Encode + Send + 'static,
{
    let source = futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>));
    let mut body = sse_body(layer, source).await;
    let mut bytes = Vec::new();
    while let Some(frame) = next_frame(&mut body).await {
        bytes.extend_from_slice(&frame);
    }
    bytes
}
