//! One connection's task: hyper's connection, closed when it sends no request in
//! time, shut down gracefully (or dropped) when the server stops.

use std::{
    future::pending,
    pin::{pin, Pin},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::{watch, Notify};

/// Where the server stands; every connection task watches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// Stop taking requests, finish the open ones.
    Graceful,
    /// The grace period is over: drop the connection.
    Force,
}

/// What a connection task watches besides its connection.
pub(crate) struct Watch {
    /// Set by the service once a complete request head arrived.
    pub(crate) started: Arc<AtomicBool>,
    /// How long the connection may take to send its first request head.
    pub(crate) head_timeout: Duration,
    pub(crate) phase: watch::Receiver<Phase>,
    /// For a connection past the cap: notified once it is answered, then it is shut
    /// down, and it is dropped at `head_timeout` whatever it did.
    pub(crate) answered: Option<Arc<Notify>>,
}

/// Resolves once the server is shutting down (or gone).
pub(crate) async fn stopping(mut phase: watch::Receiver<Phase>) {
    while *phase.borrow_and_update() == Phase::Running {
        if phase.changed().await.is_err() {
            return;
        }
    }
}

/// Drives `conn` to its end, or until the server or a deadline ends it. The
/// connection comes boxed: the task holds a pointer, not hyper's connection state.
pub(crate) async fn drive<C: GracefulConnection>(mut conn: Pin<Box<C>>, watch: Watch) {
    let Watch {
        started,
        head_timeout,
        mut phase,
        answered,
    } = watch;
    let mut deadline = pin!(tokio::time::sleep(head_timeout));
    let mut armed = true;
    loop {
        let answer = async {
            match &answered {
                Some(notify) => notify.notified().await,
                None => pending().await,
            }
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            () = deadline.as_mut(), if armed => {
                // A connection that sent nothing (or less than a request head) in
                // time is closed; so is one past the cap, answered or not.
                if answered.is_some() || !started.load(Ordering::Relaxed) {
                    return;
                }
                armed = false;
            }
            () = answer => conn.as_mut().graceful_shutdown(),
            changed = phase.changed() => match changed.map(|()| *phase.borrow_and_update()) {
                Ok(Phase::Graceful) => conn.as_mut().graceful_shutdown(),
                Ok(Phase::Running) => {}
                Ok(Phase::Force) | Err(_) => return,
            },
        }
    }
}
