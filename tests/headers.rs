//! Response headers of SSE responses, and responses that are not SSE.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;

use futures_util::StreamExt;
use http::{header, Response, StatusCode};
use support::{
    client::{h2_client, http_client, RawClient},
    server::serve_sse,
    sources::then_pending,
    within,
};
use tower_sse::{Event, SseLayer, SseResponse};

type Source = std::pin::Pin<Box<dyn futures_core::Stream<Item = Result<Event, Infallible>> + Send>>;

fn one_event() -> Source {
    Box::pin(then_pending(vec![Ok(Event::new().data("hi"))]))
}

#[tokio::test]
async fn sse_response_has_event_stream_headers_and_no_content_length() {
    let server = serve_sse(SseLayer::new(), |_req| async {
        SseResponse::new(one_event())
    })
    .await;

    let res = within("response head", http_client().get(server.url("/")).send())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_11);
    let headers = res.headers();
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache, no-transform");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(headers.get(header::CONTENT_LENGTH).is_none(), "{headers:?}");
    assert_eq!(headers[header::TRANSFER_ENCODING], "chunked");

    // And the first event arrives while the stream stays open.
    let mut body = res.bytes_stream();
    let first = within("first frame", body.next()).await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: hi\n\n");
}

#[tokio::test]
async fn headers_on_the_wire_are_exactly_one_of_each() {
    let server = serve_sse(SseLayer::new(), |_req| async {
        SseResponse::new(one_event())
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    let head = client.read_head().await;
    assert_eq!(head.status, 200);
    for name in ["content-type", "cache-control", "x-accel-buffering"] {
        let count = head.headers.iter().filter(|(n, _)| n == name).count();
        assert_eq!(count, 1, "{name} in {:?}", head.headers);
    }
    assert_eq!(head.get("content-type"), Some("text/event-stream"));
    assert_eq!(head.get("content-length"), None);
}

#[tokio::test]
async fn headers_set_by_the_inner_service_are_kept() {
    let server = serve_sse(SseLayer::new(), |_req| async {
        SseResponse::from_response(
            Response::builder()
                .status(StatusCode::ACCEPTED)
                .header("x-stream", "prices")
                .header(header::CACHE_CONTROL, "no-store")
                .header("x-accel-buffering", "yes")
                // Wrong for a stream: the layer must remove it and pick the content type.
                .header(header::CONTENT_LENGTH, "5")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(one_event())
                .unwrap(),
        )
    })
    .await;

    let res = within("response head", http_client().get(server.url("/")).send())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let headers = res.headers();
    assert_eq!(headers["x-stream"], "prices");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers["x-accel-buffering"], "yes");
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    assert!(headers.get(header::CONTENT_LENGTH).is_none(), "{headers:?}");

    let mut body = res.bytes_stream();
    let first = within("first frame", body.next()).await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: hi\n\n");
}

#[tokio::test]
async fn non_sse_responses_pass_through_untouched() {
    let server = serve_sse(SseLayer::new(), |req| async move {
        match req.uri().path() {
            "/missing" => SseResponse::<Source>::other(
                Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .header(header::CONTENT_TYPE, "text/plain")
                    .body(String::from("no such topic"))
                    .unwrap(),
            ),
            _ => SseResponse::<Source>::other(
                Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header(header::WWW_AUTHENTICATE, "Bearer")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            ),
        }
    })
    .await;
    let client = http_client();

    let res = within("404", client.get(server.url("/missing")).send())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let headers = res.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain");
    assert_eq!(headers[header::CONTENT_LENGTH], "13");
    assert!(headers.get(header::CACHE_CONTROL).is_none(), "{headers:?}");
    assert!(headers.get("x-accel-buffering").is_none(), "{headers:?}");
    assert_eq!(
        within("404 body", res.text()).await.unwrap(),
        "no such topic"
    );

    let res = within("401", client.get(server.url("/private")).send())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let headers = res.headers().clone();
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    assert!(headers.get(header::CONTENT_TYPE).is_none(), "{headers:?}");
    assert!(headers.get(header::CACHE_CONTROL).is_none(), "{headers:?}");
    assert!(headers.get("x-accel-buffering").is_none(), "{headers:?}");
    assert_eq!(within("401 body", res.text()).await.unwrap(), "");
}

#[tokio::test]
async fn sse_over_http2_has_the_same_headers_and_events() {
    let server = serve_sse(SseLayer::new(), |_req| async {
        SseResponse::new(tokio_stream::iter(
            (1..=3).map(|i| Ok::<_, Infallible>(Event::new().data(format!("n{i}")))),
        ))
    })
    .await;

    let res = within("h2 response", h2_client().get(server.url("/")).send())
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(
        res.headers()[header::CACHE_CONTROL],
        "no-cache, no-transform"
    );
    assert_eq!(res.headers()["x-accel-buffering"], "no");
    assert!(res.headers().get(header::CONTENT_LENGTH).is_none());
    let body = within("h2 body", res.bytes()).await.unwrap();
    assert_eq!(&body[..], b"data: n1\n\ndata: n2\n\ndata: n3\n\n");
}
