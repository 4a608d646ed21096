//! The origin's compressed answers: `/gzip`, `/br`, `/zstd` and `/deflate`
//! send [`plain_body`] in that coding, `/corrupt/{coding}` the first half
//! of it (a stream cut short), so clients can test their decoders.

use std::io::Write;

use bytes::Bytes;

/// What every compressed path decodes to: 1,000 numbered lines.
pub fn plain_body() -> String {
    (0..1000)
        .map(|i| format!("h3fleet compressed line {i}\n"))
        .collect()
}

/// `(content coding, body)` for a compressed path, or `None`.
pub(crate) fn compressed(path: &str) -> Option<(&'static str, Bytes)> {
    let (coding, corrupt) = match path.strip_prefix("/corrupt") {
        Some(rest) => (rest, true),
        None => (path, false),
    };
    let plain = plain_body();
    let (name, mut body) = match coding {
        "/gzip" => (
            "gzip",
            flate(
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()),
                &plain,
            )?,
        ),
        "/deflate" => (
            "deflate",
            flate(
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default()),
                &plain,
            )?,
        ),
        "/br" => ("br", brotli_of(&plain)?),
        "/zstd" => ("zstd", zstd::encode_all(plain.as_bytes(), 3).ok()?),
        _ => return None,
    };
    if corrupt {
        body.truncate(body.len() / 2);
    }
    Some((name, Bytes::from(body)))
}

/// Compresses `plain` with a flate2 writer (gzip or zlib).
fn flate<W: Write + Finish>(mut encoder: W, plain: &str) -> Option<Vec<u8>> {
    encoder.write_all(plain.as_bytes()).ok()?;
    encoder.done().ok()
}

/// flate2's encoders' `finish`.
trait Finish {
    fn done(self) -> std::io::Result<Vec<u8>>;
}

impl Finish for flate2::write::GzEncoder<Vec<u8>> {
    fn done(self) -> std::io::Result<Vec<u8>> {
        self.finish()
    }
}

impl Finish for flate2::write::ZlibEncoder<Vec<u8>> {
    fn done(self) -> std::io::Result<Vec<u8>> {
        self.finish()
    }
}

fn brotli_of(plain: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        writer.write_all(plain.as_bytes()).ok()?;
    }
    Some(out)
}
