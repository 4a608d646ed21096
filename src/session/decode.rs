//! Decompressing response bodies (`Content-Encoding: gzip, br, zstd,
//! deflate`) as they arrive, as reqwest does when its features are on.
//!
//! Each decoder is fed at most [`FEED`] compressed bytes at a time and its
//! output handed on before the next feed, so a small chunk that inflates
//! enormously (a "zip bomb") never sits in memory whole.

use std::collections::VecDeque;
#[cfg(any(feature = "gzip", feature = "deflate", feature = "brotli", feature = "zstd"))]
use std::io::Write;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH};
use http::HeaderMap;

/// Compressed bytes given to a decoder at once.
const FEED: usize = 4096;

/// `Accept-Encoding` for each set of codings, indexed by gzip (bit 0),
/// br (1), zstd (2) and deflate (3).
const ACCEPT_VALUES: [&str; 16] = [
    "",
    "gzip",
    "br",
    "gzip, br",
    "zstd",
    "gzip, zstd",
    "br, zstd",
    "gzip, br, zstd",
    "deflate",
    "gzip, deflate",
    "br, deflate",
    "gzip, br, deflate",
    "zstd, deflate",
    "gzip, zstd, deflate",
    "br, zstd, deflate",
    "gzip, br, zstd, deflate",
];

/// Which content codings a session asks for and decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Accepts {
    pub(crate) gzip: bool,
    pub(crate) brotli: bool,
    pub(crate) zstd: bool,
    pub(crate) deflate: bool,
}

impl Default for Accepts {
    /// Every coding this build has (its cargo features).
    fn default() -> Self {
        Self {
            gzip: cfg!(feature = "gzip"),
            brotli: cfg!(feature = "brotli"),
            zstd: cfg!(feature = "zstd"),
            deflate: cfg!(feature = "deflate"),
        }
    }
}

impl Accepts {
    /// The `Accept-Encoding` value, or `None` when nothing is accepted:
    /// one of [`ACCEPT_VALUES`], so a request pays no allocation for it.
    fn header(self) -> Option<HeaderValue> {
        let index = usize::from(self.gzip)
            | usize::from(self.brotli) << 1
            | usize::from(self.zstd) << 2
            | usize::from(self.deflate) << 3;
        (index != 0).then(|| HeaderValue::from_static(ACCEPT_VALUES[index]))
    }

    /// Adds `Accept-Encoding` to a request that has none.
    pub(crate) fn set_accept(self, headers: &mut HeaderMap) {
        if headers.contains_key(ACCEPT_ENCODING) {
            return;
        }
        if let Some(value) = self.header() {
            headers.insert(ACCEPT_ENCODING, value);
        }
    }

    /// A decoder for a response with `headers`, if its coding is one this
    /// session decodes; the coding and length headers are then removed
    /// (they describe the bytes on the wire, not those handed out).
    pub(crate) fn decoder_for(self, headers: &mut HeaderMap) -> Option<Decoder> {
        let coding = headers
            .get(CONTENT_ENCODING)?
            .to_str()
            .ok()?
            .trim()
            .to_ascii_lowercase();
        let inner = self.decode(&coding)?;
        headers.remove(CONTENT_ENCODING);
        headers.remove(CONTENT_LENGTH);
        Some(Decoder {
            coding,
            inner: Some(inner),
            ready: VecDeque::new(),
            fed: false,
        })
    }

    /// A streaming decoder of `coding`, if this session decodes it.
    #[cfg_attr(
        not(any(feature = "gzip", feature = "deflate", feature = "brotli", feature = "zstd")),
        allow(unused_variables, unreachable_code)
    )]
    fn decode(self, coding: &str) -> Option<Box<dyn Decode>> {
        Some(match coding {
            #[cfg(feature = "gzip")]
            "gzip" | "x-gzip" if self.gzip => Box::new(Sink(flate2::write::GzDecoder::new(Vec::new()))),
            #[cfg(feature = "deflate")]
            "deflate" if self.deflate => Box::new(Sink(flate2::write::ZlibDecoder::new(Vec::new()))),
            #[cfg(feature = "brotli")]
            "br" if self.brotli => Box::new(Brotli(Some(brotli_decompressor::DecompressorWriter::new(
                Vec::new(),
                FEED,
            )))),
            #[cfg(feature = "zstd")]
            "zstd" if self.zstd => Box::new(Zstd(zstd::stream::write::Decoder::new(Vec::new()).ok()?)),
            _ => return None,
        })
    }
}

/// One coding's streaming decoder: compressed bytes in, plain bytes out.
trait Decode: Send + Sync {
    /// Feeds compressed bytes; returns what came out.
    fn feed(&mut self, input: &[u8]) -> std::io::Result<Vec<u8>>;
    /// The end of the compressed stream: the rest of the output, or an
    /// error if the stream was cut short.
    fn end(self: Box<Self>) -> std::io::Result<Vec<u8>>;
}

/// A `Write` decoder whose output collects in a `Vec`.
#[cfg(any(feature = "gzip", feature = "deflate"))]
struct Sink<W>(W);

macro_rules! flate_decoder {
    ($feature:literal, $ty:ty) => {
        #[cfg(feature = $feature)]
        impl Decode for Sink<$ty> {
            fn feed(&mut self, input: &[u8]) -> std::io::Result<Vec<u8>> {
                self.0.write_all(input)?;
                Ok(std::mem::take(self.0.get_mut()))
            }
            fn end(self: Box<Self>) -> std::io::Result<Vec<u8>> {
                self.0.finish()
            }
        }
    };
}

flate_decoder!("gzip", flate2::write::GzDecoder<Vec<u8>>);
flate_decoder!("deflate", flate2::write::ZlibDecoder<Vec<u8>>);

#[cfg(feature = "brotli")]
struct Brotli(Option<brotli_decompressor::DecompressorWriter<Vec<u8>>>);

#[cfg(feature = "brotli")]
impl Decode for Brotli {
    fn feed(&mut self, input: &[u8]) -> std::io::Result<Vec<u8>> {
        let writer = self
            .0
            .as_mut()
            .ok_or_else(|| std::io::Error::other("decoder already closed"))?;
        writer.write_all(input)?;
        writer.flush()?;
        Ok(std::mem::take(writer.get_mut()))
    }
    fn end(mut self: Box<Self>) -> std::io::Result<Vec<u8>> {
        let writer = self
            .0
            .take()
            .ok_or_else(|| std::io::Error::other("decoder already closed"))?;
        writer.into_inner().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the brotli stream is cut short",
            )
        })
    }
}

#[cfg(feature = "zstd")]
struct Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>);

#[cfg(feature = "zstd")]
impl Decode for Zstd {
    fn feed(&mut self, input: &[u8]) -> std::io::Result<Vec<u8>> {
        self.0.write_all(input)?;
        self.0.flush()?;
        Ok(std::mem::take(self.0.get_mut()))
    }
    fn end(self: Box<Self>) -> std::io::Result<Vec<u8>> {
        // `finish` fails if the input did not end on a complete frame.
        self.0.finish()
    }
}

/// A response body's decoder, with the plain pieces not yet handed out.
pub(crate) struct Decoder {
    coding: String,
    inner: Option<Box<dyn Decode>>,
    ready: VecDeque<Bytes>,
    /// Any compressed byte was fed: an empty body (`HEAD`, 204) has no
    /// stream to end.
    fed: bool,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("coding", &self.coding)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// The coding being decoded (`gzip`, `br`, `zstd`, `deflate`).
    pub(crate) fn coding(&self) -> &str {
        &self.coding
    }

    /// The next plain piece ready, if any.
    pub(crate) fn ready(&mut self) -> Option<Bytes> {
        self.ready.pop_front()
    }

    /// Decodes a compressed chunk into ready pieces.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        let inner = self
            .inner
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the body has ended"))?;
        for slice in chunk.chunks(FEED) {
            self.fed = true;
            let out = inner.feed(slice)?;
            if !out.is_empty() {
                self.ready.push_back(Bytes::from(out));
            }
        }
        Ok(())
    }

    /// The compressed stream ended: the last pieces, or an error if it was
    /// cut short.
    pub(crate) fn finish(&mut self) -> std::io::Result<()> {
        let Some(inner) = self.inner.take() else {
            return Ok(());
        };
        if !self.fed {
            return Ok(());
        }
        let out = inner.end()?;
        if !out.is_empty() {
            self.ready.push_back(Bytes::from(out));
        }
        Ok(())
    }
}
