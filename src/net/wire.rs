//! The byte form of [`Request`] and [`Response`]: CBOR, one message per
//! request-response stream, at most [`MAX_MESSAGE`] bytes. The transport's
//! codec and the decoder property tests use these same functions.

use std::io;

use futures::prelude::*;
use libp2p::StreamProtocol;

use super::message::{Request, Response};

/// Largest request or response: a sync message can carry a whole document
/// (sessions are capped at 1 MiB of attributes by default, plus history).
pub const MAX_MESSAGE: usize = 16 << 20;

/// Bytes that are not a message of this protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct WireError(pub String);

/// Encodes a request.
#[must_use]
pub fn encode_request(req: &Request) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail.
    cbor4ii::serde::to_vec(Vec::new(), req).unwrap_or_default()
}

/// Encodes a response.
#[must_use]
pub fn encode_response(resp: &Response) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), resp).unwrap_or_default()
}

/// Decodes a request from a peer.
///
/// # Errors
///
/// [`WireError`] for bytes that are not one well-formed request or are
/// larger than [`MAX_MESSAGE`].
pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    decode(bytes)
}

/// Decodes a response from a peer.
///
/// # Errors
///
/// [`WireError`] as for [`decode_request`].
pub fn decode_response(bytes: &[u8]) -> Result<Response, WireError> {
    decode(bytes)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError(format!(
            "{} bytes, over the limit of {MAX_MESSAGE}",
            bytes.len()
        )));
    }
    cbor4ii::serde::from_slice(bytes).map_err(|e| WireError(e.to_string()))
}

/// The request-response codec: reads at most one byte past the limit, so an
/// oversized message is refused rather than truncated into something else.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Codec;

async fn read_all<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(MAX_MESSAGE as u64 + 1)
        .read_to_end(&mut buf)
        .await?;
    Ok(buf)
}

fn invalid(e: WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode_request(&read_all(io).await?).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode_response(&read_all(io).await?).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode_request(&req)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode_response(&resp)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_bytes::{ByteArray, ByteBuf};

    #[test]
    fn round_trip_and_refuse_junk() {
        let req = Request::Push {
            items: vec![crate::net::Pushed {
                key: ByteArray::new([3; 16]),
                changes: ByteBuf::from(vec![1, 2, 3]),
                lineage: crate::net::Lineage::default(),
            }],
        };
        let back = decode_request(&encode_request(&req)).unwrap();
        assert!(
            matches!(back, Request::Push { items } if items[0].changes.as_slice() == [1, 2, 3])
        );
        for junk in [&b""[..], b"\xff\xff", b"not cbor at all"] {
            assert!(decode_request(junk).is_err());
            assert!(decode_response(junk).is_err());
        }
        assert!(decode_request(&vec![0u8; MAX_MESSAGE + 1]).is_err());
    }
}
