//! Compile-time checks: the public types can cross threads as servers need.
//!
//! Nothing here runs any logic: if a type loses `Send` or `Sync`, this file stops
//! compiling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{convert::Infallible, future::Ready};

use http::Request;

use futures_util::stream::BoxStream;
use tower_sse::{
    EncodedEvent, Event, EventError, Heartbeat, LastEventId, Message, ShutdownHandle,
    SlowClientError, SseBody, SseLayer, SseResponse, SseService, SseStats,
};

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}
fn assert_unpin<T: Unpin>() {}
fn assert_static<T: 'static>() {}

/// A typical source: boxed, `Send`, not `Sync`.
type Source = BoxStream<'static, Result<Event, Infallible>>;

/// A `Send + Sync` inner service stand-in.
#[derive(Clone)]
struct Inner;

type InnerFuture = Ready<Result<SseResponse<Source>, Infallible>>;

/// An inner tower service answering `InnerFuture`.
type InnerService = tower::util::ServiceFn<fn(Request<()>) -> InnerFuture>;

/// `SseService`'s response future (a `tower_sse::ResponseFuture`), named through the
/// `Service` trait as a server sees it.
type ResponseFutureOf<S> = <SseService<S> as tower::Service<Request<()>>>::Future;

#[test]
fn layer_is_send_and_sync() {
    assert_send::<SseLayer>();
    assert_sync::<SseLayer>();
    assert_static::<SseLayer>();
}

#[test]
fn service_is_send_and_sync_when_the_inner_service_is() {
    assert_send::<SseService<Inner>>();
    assert_sync::<SseService<Inner>>();
    assert_send::<SseService<InnerService>>();
    assert_sync::<SseService<InnerService>>();
}

#[test]
fn body_is_send_for_a_send_source() {
    // hyper needs `Send + 'static` bodies to spawn connections on a multi-threaded
    // runtime. (`SseBody` is not `Sync`: a passed-through body is an `UnsyncBoxBody`.)
    assert_send::<SseBody<Source>>();
    assert_static::<SseBody<Source>>();
    assert_unpin::<SseBody<Source>>();
}

#[test]
fn response_future_is_send_when_the_inner_future_is() {
    assert_send::<ResponseFutureOf<InnerService>>();
    assert_static::<ResponseFutureOf<InnerService>>();
    assert_unpin::<ResponseFutureOf<InnerService>>();
}

#[test]
fn handles_and_values_are_send_and_sync() {
    assert_send::<ShutdownHandle>();
    assert_sync::<ShutdownHandle>();
    assert_send::<SseStats>();
    assert_sync::<SseStats>();
    assert_send::<Event>();
    assert_sync::<Event>();
    assert_send::<EncodedEvent>();
    assert_sync::<EncodedEvent>();
    assert_send::<Message>();
    assert_sync::<Message>();
    assert_send::<Heartbeat>();
    assert_sync::<Heartbeat>();
    assert_send::<LastEventId>();
    assert_sync::<LastEventId>();
    assert_send::<SseResponse<Source>>();
}

#[test]
fn errors_are_send_sync_and_static_std_errors() {
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<SlowClientError>();
    assert_error::<EventError>();
}
