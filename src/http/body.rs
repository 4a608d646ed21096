//! Request bodies: whole ([`Bytes`]) or streamed ([`Body::wrap_stream`]).
//!
//! A request may have to go twice: on a new connection after a pooled one
//! died under it, or to the next hop of a `307`/`308` redirect. A whole
//! body is simply sent again. A streamed one is read once, so the first
//! [`REPLAY_LIMIT`] bytes read from it are kept: while the stream is no
//! longer than that, it can be sent again from the copy; once it is, the
//! copy is dropped (memory stays bounded whatever the stream's length) and
//! the request cannot be repeated (the error, or the redirect response,
//! is the caller's). A streamed body never goes as early data: its length
//! is unknown, and nothing proves it safe to replay.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use hyper::body::{Frame, SizeHint};

use crate::error::BoxError;
use crate::sync::lock;

/// The most of a streamed body kept to send it again.
pub const REPLAY_LIMIT: usize = 256 * 1024;

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// A request body, as reqwest's: bytes, or a stream of them.
///
/// ```
/// use futures_util::stream;
/// use h3fleet::Body;
///
/// let whole = Body::from("name=value");
/// assert_eq!(whole.as_bytes(), Some(&b"name=value"[..]));
/// let chunks = stream::iter(vec![Ok::<_, std::io::Error>("a"), Ok("b")]);
/// let streamed = Body::wrap_stream(chunks);
/// assert!(streamed.as_bytes().is_none());
/// ```
#[derive(Debug)]
pub struct Body(pub(crate) RequestBody);

impl Body {
    /// A body read from `stream` as the request is sent (HTTP/1.1 sends it
    /// chunked unless a `Content-Length` header is set). Never sent as
    /// early data; see the module notes for when it can be sent again.
    pub fn wrap_stream<S, O, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<O, E>> + Send + 'static,
        O: Into<Bytes> + 'static,
        E: Into<BoxError> + 'static,
    {
        use futures_util::TryStreamExt;
        let stream: ByteStream = Box::pin(stream.map_ok(Into::into).map_err(Into::into));
        Self(RequestBody::Stream(Arc::new(Mutex::new(Replay {
            stream: Some(stream),
            kept: Vec::new(),
            kept_len: 0,
            read: 0,
            overflowed: false,
        }))))
    }

    /// The bytes of a whole body; `None` for a stream.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.0 {
            RequestBody::Full(bytes) => Some(bytes),
            RequestBody::Stream(_) => None,
        }
    }
}

impl<T: Into<Bytes>> From<T> for Body {
    fn from(bytes: T) -> Self {
        Self(RequestBody::Full(bytes.into()))
    }
}

/// A request's body as the layers below the session hold it (cloning
/// shares a stream and what was kept of it).
#[derive(Clone)]
pub(crate) enum RequestBody {
    Full(Bytes),
    Stream(Arc<Mutex<Replay>>),
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(bytes) => write!(f, "Full({} bytes)", bytes.len()),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl Default for RequestBody {
    fn default() -> Self {
        Self::Full(Bytes::new())
    }
}

/// A stream being read, and what is kept of it.
pub(crate) struct Replay {
    stream: Option<ByteStream>,
    kept: Vec<Bytes>,
    kept_len: usize,
    /// Pieces read from the stream so far.
    read: usize,
    /// More than [`REPLAY_LIMIT`] was read: nothing is kept any more.
    overflowed: bool,
}

impl RequestBody {
    /// The length of a whole body; `None` for a stream.
    pub(crate) fn len(&self) -> Option<usize> {
        match self {
            Self::Full(bytes) => Some(bytes.len()),
            Self::Stream(_) => None,
        }
    }

    /// True if the body can be sent (again) from its start.
    pub(crate) fn replayable(&self) -> bool {
        match self {
            Self::Full(_) => true,
            Self::Stream(replay) => !lock(replay).overflowed,
        }
    }

    /// The body for one sending of the request.
    pub(crate) fn outgoing(&self) -> Outgoing {
        match self {
            Self::Full(bytes) => Outgoing::Full((!bytes.is_empty()).then(|| bytes.clone())),
            Self::Stream(replay) => Outgoing::Stream {
                replay: Arc::clone(replay),
                next: 0,
            },
        }
    }
}

/// One sending of a request body (hyper's `http_body::Body`).
pub(crate) enum Outgoing {
    Full(Option<Bytes>),
    Stream {
        replay: Arc<Mutex<Replay>>,
        /// The next piece this sending sends.
        next: usize,
    },
}

impl Replay {
    /// Piece `next`: from the copy, or the stream's next one.
    fn poll_piece(&mut self, next: usize, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        if let Some(piece) = self.kept.get(next) {
            return Poll::Ready(Some(Ok(piece.clone())));
        }
        if next != self.read {
            let why = format!("a streamed body longer than {REPLAY_LIMIT} bytes cannot be sent again");
            return Poll::Ready(Some(Err(why.into())));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Ready(None);
        };
        let piece = match stream.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                self.stream = None;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(piece))) => piece,
        };
        self.read += 1;
        if !self.overflowed && self.kept_len + piece.len() <= REPLAY_LIMIT {
            self.kept_len += piece.len();
            self.kept.push(piece.clone());
        } else {
            self.overflowed = true;
            self.kept = Vec::new();
        }
        Poll::Ready(Some(Ok(piece)))
    }
}

impl hyper::body::Body for Outgoing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream { replay, next } => {
                let polled = lock(replay).poll_piece(*next, cx);
                if let Poll::Ready(Some(Ok(_))) = &polled {
                    *next += 1;
                }
                polled.map(|piece| piece.map(|p| p.map(Frame::data)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn pieces(n: usize, size: usize) -> Body {
        let items = (0..n).map(move |_| Ok::<_, std::io::Error>(vec![1u8; size]));
        Body::wrap_stream(futures_util::stream::iter(items))
    }

    async fn send(body: &RequestBody) -> Result<usize, BoxError> {
        let mut out = body.outgoing();
        let mut total = 0;
        while let Some(frame) = out.frame().await {
            total += frame?.into_data().map_or(0, |d| d.len());
        }
        Ok(total)
    }

    #[tokio::test]
    async fn a_short_stream_is_sent_again_from_its_copy() {
        let body = pieces(4, 1000).0;
        assert_eq!(send(&body).await.unwrap(), 4000);
        assert!(body.replayable());
        assert_eq!(send(&body).await.unwrap(), 4000);
    }

    #[tokio::test]
    async fn a_long_stream_keeps_nothing_and_cannot_be_sent_again() {
        let body = pieces(100, 64 * 1024).0;
        assert_eq!(send(&body).await.unwrap(), 100 * 64 * 1024);
        assert!(!body.replayable());
        let RequestBody::Stream(replay) = &body else {
            unreachable!()
        };
        assert_eq!(lock(replay).kept.len(), 0);
        assert!(send(&body).await.is_err());
    }
}
