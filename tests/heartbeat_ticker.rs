//! `Heartbeat::shared_ticker`: one ticker per layer and interval, on tokio's paused clock.

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt};
use tower::{service_fn, Layer, ServiceExt};
use tower_sse::{Event, Heartbeat, SseBody, SseLayer, SseResponse};

const INTERVAL: Duration = Duration::from_millis(100);

async fn body<St>(layer: SseLayer, source: St) -> SseBody<St>
where
    St: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let mut source = Some(source);
    let svc = layer.layer(service_fn(move |_req: Request<()>| {
        let source = source.take().expect("one request");
        async move { Ok::<_, Infallible>(SseResponse::new(source)) }
    }));
    svc.oneshot(Request::new(())).await.unwrap().into_body()
}

async fn next(
    body: &mut (impl http_body::Body<Data = Bytes, Error = tower_sse::BoxError> + Unpin),
) -> Bytes {
    tokio::time::timeout(Duration::from_secs(3600), body.frame())
        .await
        .expect("a frame within the hour")
        .expect("stream open")
        .expect("no error")
        .into_data()
        .expect("data frame")
}

#[tokio::test(start_paused = true)]
async fn idle_streams_get_one_heartbeat_per_interval() {
    let layer = SseLayer::new().heartbeat(Heartbeat::new(INTERVAL).shared_ticker());
    let mut a = body(layer.clone(), tokio_stream::pending()).await;
    let mut b = body(layer.clone(), tokio_stream::pending()).await;
    let start = Instant::now();
    let mut at = Vec::new();
    for _ in 0..5 {
        assert_eq!(&next(&mut a).await[..], b":\n\n");
        at.push(start.elapsed());
        assert_eq!(&next(&mut b).await[..], b":\n\n");
    }
    // The first after 1 to 9/8 intervals of silence (plus tokio's 1 ms timer
    // resolution), then exactly one interval apart.
    assert!(
        at[0] > INTERVAL && at[0] <= INTERVAL * 9 / 8 + Duration::from_millis(1),
        "{at:?}"
    );
    for pair in at.windows(2) {
        assert_eq!(pair[1] - pair[0], INTERVAL, "{at:?}");
    }
    assert_eq!(layer.stats().heartbeats_sent(), 10);
}

#[tokio::test(start_paused = true)]
async fn no_heartbeat_while_events_come_faster_than_the_interval() {
    let layer = SseLayer::new().heartbeat(Heartbeat::new(INTERVAL).shared_ticker());
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(INTERVAL / 3))
        .take(30)
        .map(|_| Ok(Event::new().data("x")));
    let mut body = body(layer.clone(), ticks).await;
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    assert_eq!(frames.len(), 30);
    assert!(frames.iter().all(|f| &f[..] == b"data: x\n\n"));
    assert_eq!(layer.stats().heartbeats_sent(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pause_in_the_events_is_filled_with_heartbeats() {
    let layer = SseLayer::new().heartbeat(Heartbeat::new(INTERVAL).shared_ticker());
    // Two events 1 s apart: the silence between them gets heartbeats.
    let events = tokio_stream::iter([0u64, 1000]).then(|ms| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Event::new().data(ms.to_string()))
    });
    let mut body = body(layer.clone(), Box::pin(events)).await;
    let mut wire = Vec::new();
    while let Some(frame) = body.frame().await {
        wire.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    let text = String::from_utf8(wire).unwrap();
    assert!(text.starts_with("data: 0\n\n:\n\n"), "{text:?}");
    assert!(text.ends_with(":\n\ndata: 1000\n\n"), "{text:?}");
    let beats = text.matches(":\n\n").count();
    // Silence of 1 s with a 100 ms interval: the first after 100-112.5 ms, then every
    // 100 ms until the event at 1000 ms: 9 heartbeats.
    assert_eq!(beats, 9, "{text:?}");
}

/// A runtime too busy to run the ticker on time (here: the clock jumps 20 ms at a time,
/// past the 12.5 ms tick period) must not stretch the interval: a late tick is caught
/// up, not pushed back, so heartbeats stay one interval apart on average instead of
/// drifting later with every late tick.
#[tokio::test(start_paused = true)]
async fn late_ticks_are_caught_up_not_pushed_back() {
    let layer = SseLayer::new().heartbeat(Heartbeat::new(INTERVAL).shared_ticker());
    let mut idle = body(layer.clone(), tokio_stream::pending()).await;
    let reader = tokio::spawn(async move {
        loop {
            assert_eq!(&next(&mut idle).await[..], b":\n\n");
        }
    });
    // Two seconds, in steps longer than a tick.
    for _ in 0..100 {
        tokio::time::advance(Duration::from_millis(20)).await;
        tokio::task::yield_now().await;
    }
    reader.abort();
    // 2 s of silence at a 100 ms interval: 19 or 20 heartbeats (the first comes after
    // 1 to 9/8 intervals). A ticker that restarts its period at every late tick ticks
    // once per 20 ms step and sends one every 160 ms: 12.
    let sent = layer.stats().heartbeats_sent();
    assert!((19..=20).contains(&sent), "{sent} heartbeats in 2 s");
}

/// A ticker lives only as long as streams use it. Intervals can come from clients
/// (`/idle?hb_ms=H` in the demo): if every distinct interval left a ticker ticking
/// for the life of the layer, a client could pile up tasks that wake forever.
#[tokio::test(start_paused = true)]
async fn a_ticker_stops_when_its_last_stream_is_gone() {
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = alive();
    let layer = SseLayer::new();
    let mut bodies = Vec::new();
    for ms in 1..=50u64 {
        let heartbeat = Heartbeat::new(Duration::from_millis(ms * 10));
        let mut source = Some(tokio_stream::pending::<Result<Event, Infallible>>());
        let svc = layer.clone().layer(service_fn(move |_req: Request<()>| {
            let source = source.take().expect("one request");
            let heartbeat = heartbeat.clone();
            async move { Ok::<_, Infallible>(SseResponse::new(source).heartbeat(heartbeat)) }
        }));
        let mut body = svc.oneshot(Request::new(())).await.unwrap().into_body();
        assert_eq!(&next(&mut body).await[..], b":\n\n");
        bodies.push(body);
    }
    assert_eq!(alive() - before, 50, "one ticker per interval");
    drop(bodies);
    // Each ticker notices at its next tick that nobody holds it any more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(alive(), before, "every ticker stopped");
    assert_eq!(layer.stats().heartbeats_sent(), 50);
}

/// After a stall (a worker blocked for several intervals; here the clock jumps 350 ms
/// at once, and the ticker catches up the missed ticks), an idle stream gets one
/// heartbeat, then the next one a whole interval later: not one per missed interval
/// back to back, which would add writes exactly when the server is behind.
#[tokio::test(start_paused = true)]
async fn after_a_stall_one_heartbeat_not_a_burst() {
    use futures_util::FutureExt as _;
    let layer = SseLayer::new().heartbeat(Heartbeat::new(INTERVAL).shared_ticker());
    let mut idle = body(layer.clone(), tokio_stream::pending()).await;
    assert_eq!(&next(&mut idle).await[..], b":\n\n");
    tokio::time::advance(Duration::from_millis(350)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await; // the ticker catches up
    }
    // (`now_or_never` polls with a no-op waker: the ticker must then wake the waker
    // of the poll after it, in `next`.)
    let mut ready = 0;
    while let Some(frame) = idle.frame().now_or_never() {
        assert_eq!(&frame.unwrap().unwrap().into_data().unwrap()[..], b":\n\n");
        ready += 1;
    }
    assert_eq!(ready, 1, "heartbeats ready at once after the stall");
    // The next one comes a whole interval later.
    let start = Instant::now();
    assert_eq!(&next(&mut idle).await[..], b":\n\n");
    let at = Instant::now();
    assert_eq!(at - start, INTERVAL, "paused clock: exact");
}
