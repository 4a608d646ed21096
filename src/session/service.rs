//! `Session` as a [`tower_service::Service`]: an `http::Request` in, a
//! [`Response`] out, so tower middleware (timeouts, retries, rate limits,
//! tower-http's layers) stacks on the fleet client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::{Response, Session};
use crate::error::Error;

/// The future a `Session` service call returns.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Error>> + Send>>;

impl Session {
    /// Sends an `http::Request` as it is: its method, URI, headers and
    /// body, under the session's rules (0-RTT only if replay-safe,
    /// redirects, decoding).
    ///
    /// # Errors
    ///
    /// As [`RequestBuilder::send`](crate::RequestBuilder::send).
    pub async fn execute_request<B: Into<Bytes>>(
        &self,
        request: http::Request<B>,
    ) -> Result<Response, Error> {
        let (head, body) = request.into_parts();
        let mut builder = self.request(head.method, head.uri.to_string()).body(body.into());
        builder = builder.headers(head.headers);
        builder.send().await
    }
}

/// One call of either service: the request sent on `session`.
fn serve<B: Into<Bytes> + Send + 'static>(session: Session, request: http::Request<B>) -> ResponseFuture {
    Box::pin(async move { session.execute_request(request).await })
}

/// Sessions are always ready: connections are opened per request.
impl<B> tower_service::Service<http::Request<B>> for Session
where
    B: Into<Bytes> + Send + 'static,
{
    type Response = Response;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> ResponseFuture {
        serve(self.clone(), request)
    }
}

impl<B> tower_service::Service<http::Request<B>> for &Session
where
    B: Into<Bytes> + Send + 'static,
{
    type Response = Response;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> ResponseFuture {
        serve((*self).clone(), request)
    }
}
