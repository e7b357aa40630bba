use super::*;

fn stream_event(seq: u64) -> String {
    let digits = seq.to_string();
    let pad = "x".repeat(64 - 17 - digits.len());
    format!("data: {{\"seq\":{digits},\"pad\":\"{pad}\"}}\n\n")
}

fn state(scenario: Scenario) -> State {
    State::new(scenario, Fields::new("seq", "ts_ns", 1), 1)
}

/// A chunked response with heartbeats and `/stream` events, fed in pieces of every
/// size from 1 byte: the same counts each time.
#[test]
fn chunked_sse_in_any_pieces() {
    let mut body = String::new();
    let mut payload = 0;
    for chunk in [
        stream_event(0) + &stream_event(1),
        ":\n\n".to_owned(),
        stream_event(2),
        stream_event(3) + ": hb\n\n" + &stream_event(4),
    ] {
        payload += chunk.len();
        body += &format!("{:x};ext=1\r\n{chunk}\r\n", chunk.len());
    }
    body += "0\r\n\r\n";
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    let wire = format!("{head}{body}");
    for piece in 1..=wire.len() {
        let mut state = state(Scenario::Stream);
        let now = Instant::now();
        let mut end = false;
        for bytes in wire.as_bytes().chunks(piece) {
            match state.feed(0, bytes, true, now, 0) {
                Feed::More => {}
                Feed::End => end = true,
                Feed::Failed(f) => panic!("piece {piece}: {f}"),
            }
        }
        assert!(end, "piece {piece}: the last chunk was not seen");
        assert_eq!(state.opened, 1);
        assert_eq!(state.w.events, 5, "piece {piece}");
        assert_eq!(state.w.heartbeats, 2, "piece {piece}");
        assert_eq!(
            state.w.bad_events + state.w.seq_gaps + state.w.out_of_order,
            0
        );
        assert_eq!(state.w.body_bytes, payload as u64, "piece {piece}");
        assert_eq!(state.w.wire_bytes, wire.len() as u64, "piece {piece}");
    }
}

#[test]
fn gaps_and_latency() {
    let mut state = state(Scenario::Fanout);
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
    let now = Instant::now();
    let ns = 1_000_000_000;
    let body = format!(
        "{head}data: {{\"seq\":7,\"ts_ns\":{}}}\n\ndata: {{\"seq\":10,\"ts_ns\":{}}}\n\n: lagged 2\n\n",
        ns - 1000,
        ns - 3000
    );
    assert!(matches!(
        state.feed(0, body.as_bytes(), true, now, ns),
        Feed::More
    ));
    assert_eq!(state.w.events, 2);
    assert_eq!((state.w.seq_gaps, state.w.missed), (1, 2));
    assert_eq!((state.w.lagged_comments, state.w.lagged_reported), (1, 2));
    assert_eq!(state.latency.max, 3000);
    assert_eq!(state.max_seq, Some(10));
}

#[test]
fn events_without_fields_are_counted() {
    let mut state = state(Scenario::Stream);
    let wire = "HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\
                event: tick\ndata: hello\ndata: {\"seq\":1}\n\ndata: {\"seq\":1}\n\n";
    assert!(matches!(
        state.feed(0, wire.as_bytes(), true, Instant::now(), 0),
        Feed::More
    ));
    assert_eq!((state.w.events, state.w.bad_events), (2, 1));
}

#[test]
fn non_200_fails() {
    let mut state = state(Scenario::Idle);
    let head = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
    match state.feed(0, head, false, Instant::now(), 0) {
        Feed::Failed(f) => assert_eq!(
            f.to_string(),
            "http: the server answered 503 Service Unavailable, not 200"
        ),
        _ => panic!("a 503 was accepted"),
    }
}

/// `idle --heartbeat-event ping`: `event: ping` events are heartbeats, other events are
/// events; comments stay heartbeats.
#[test]
fn heartbeat_events() {
    let mut fields = Fields::new("seq", "", 1);
    fields.heartbeat_event = Some(b"ping".to_vec());
    let mut state = State::new(Scenario::Idle, fields, 1);
    let wire = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\
                event: ping\ndata: {}\n\nevent: ping\n\n: c\n\ndata: x\n\nevent: other\ndata: y\n\n";
    assert!(matches!(
        state.feed(0, wire.as_bytes(), true, Instant::now(), 0),
        Feed::More
    ));
    assert_eq!((state.w.heartbeats, state.w.events), (3, 2));

    let mut fields = Fields::new("seq", "", 1);
    fields.heartbeat_event = Some(b"message".to_vec());
    let mut state = State::new(Scenario::Idle, fields, 1);
    assert!(matches!(
        state.feed(0, wire.as_bytes(), true, Instant::now(), 0),
        Feed::More
    ));
    // `ping` with data and `other`: events; `event: ping` without data: nothing (not
    // dispatched, as in a browser); the comment and the untyped `data: x`: heartbeats.
    assert_eq!((state.w.heartbeats, state.w.events), (2, 2));
}

/// The time between two events of a connection: a heartbeat does not end the gap, and
/// the first event has none.
#[test]
fn fanout_event_gaps() {
    let mut state = state(Scenario::Fanout);
    let t0 = Instant::now();
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
    let event = |seq: u64| format!("data: {{\"seq\":{seq},\"ts_ns\":1}}\n\n");
    let feeds = [
        (0, format!("{head}{}", event(0))),
        (100, event(1)),
        (1500, ":\n\n".to_owned()),
        (3100, event(2)),
    ];
    for (ms, bytes) in feeds {
        let at = t0 + Duration::from_millis(ms);
        assert!(matches!(
            state.feed(0, bytes.as_bytes(), true, at, 2),
            Feed::More
        ));
    }
    assert_eq!(state.event_gaps.total, 2);
    assert_eq!(state.event_gaps.max, 3_000_000_000);
    assert_eq!(state.w.missed, 0);
}
