//! Refused requests keep their connection readable: when a server answers an error before it
//! has read the request body (a bad signature, an expired URL, a body over a limit), closing the
//! socket with unread data makes the kernel reset the connection, and a client still sending
//! its body then sees a broken pipe instead of the error. A browser would retry that blindly
//! instead of, say, asking for a fresh URL.
//!
//! [`reclaimable`] wraps a request body so that, if the handler drops it unfinished, the rest
//! comes back to the caller; [`drain`] then reads and discards it, up to a cap and a deadline,
//! before the error is sent. Bodies beyond the cap still get the reset: reading gigabytes to
//! refuse them would cost more than it saves.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::sync::oneshot;

/// Most bytes read and discarded from a refused request (a few typical parts).
pub const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
/// Longest time spent draining one refused request.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// A body that hands itself back when dropped before its end.
#[derive(Debug)]
pub struct Reclaimable<B> {
    inner: Option<B>,
    finished: bool,
    back: Option<oneshot::Sender<B>>,
}

/// Wraps `body`; the receiver gets what is left of it if it is dropped unfinished.
pub fn reclaimable<B>(body: B) -> (Reclaimable<B>, oneshot::Receiver<B>) {
    let (tx, rx) = oneshot::channel();
    (Reclaimable { inner: Some(body), finished: false, back: Some(tx) }, rx)
}

impl<B: Body<Data = Bytes> + Unpin> Body for Reclaimable<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Body::size_hint).unwrap_or_default()
    }
}

impl<B> Drop for Reclaimable<B> {
    fn drop(&mut self) {
        if !self.finished
            && let (Some(body), Some(back)) = (self.inner.take(), self.back.take())
        {
            let _ = back.send(body);
        }
    }
}

/// Reads and discards what is left of a refused request's body (if the handler left any), up to
/// [`DRAIN_LIMIT`] bytes and [`DRAIN_TIME`]; returns the bytes discarded.
pub async fn drain<B: Body<Data = Bytes> + Unpin>(mut rest: oneshot::Receiver<B>) -> u64 {
    let Ok(mut body) = rest.try_recv() else { return 0 };
    if body.size_hint().lower() > DRAIN_LIMIT {
        return 0;
    }
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while read <= DRAIN_LIMIT {
            match body.frame().await {
                Some(Ok(f)) => read += f.data_ref().map_or(0, |d| d.len() as u64),
                _ => break,
            }
        }
    })
    .await;
    read
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn an_unfinished_body_comes_back_and_is_drained() {
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
            (0..4).map(|_| Ok(Frame::data(Bytes::from(vec![0u8; 1000])))).collect();
        let (mut body, back) = reclaimable(StreamBody::new(futures::stream::iter(chunks)));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.data_ref().unwrap().len(), 1000);
        drop(body); // the handler gave up after one chunk
        assert_eq!(drain(back).await, 3000);
    }

    #[tokio::test]
    async fn a_finished_body_is_not_handed_back() {
        let (mut body, back) = reclaimable(Full::new(Bytes::from_static(b"abc")));
        while body.frame().await.is_some() {}
        drop(body);
        assert_eq!(drain(back).await, 0);
    }
}
