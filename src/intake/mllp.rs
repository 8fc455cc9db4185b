//! MLLP over a byte stream: the async read/write side of the pure framing in
//! [`crate::hl7::mllp`] (which decodes and encodes frames without any I/O).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::hl7::mllp::{encode_frame, Decoder, FrameResult};

/// Read from `reader` until the decoder yields an item. Returns `Ok(None)` once the
/// stream ended and every item was taken. Framing errors are items (`Ok(Some(Err(_)))`):
/// log them and call again. Reads at most 8 KiB at a time, so memory stays bounded by
/// the decoder's limit plus one read. Wrap the call in `tokio::time::timeout` for an
/// idle/read timeout.
pub async fn read_frame<R>(
    reader: &mut R,
    decoder: &mut Decoder,
) -> std::io::Result<Option<FrameResult>>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut buf = [0u8; 8192];
    loop {
        if let Some(item) = decoder.next_frame() {
            return Ok(Some(item));
        }
        if decoder.is_finished() {
            return Ok(None);
        }
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            decoder.finish();
        } else {
            decoder.push(&buf[..n]);
        }
    }
}

/// Write one framed payload and flush.
pub async fn write_frame<W>(writer: &mut W, payload: &[u8]) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    writer.write_all(&encode_frame(payload)).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::mllp::FrameError;

    #[tokio::test]
    async fn read_frame_over_a_stream() {
        let (mut client, mut server) = tokio::io::duplex(16);
        let writer = tokio::spawn(async move {
            write_frame(&mut client, b"MSH|1").await?;
            client.write_all(b"junk").await?;
            write_frame(&mut client, b"MSH|2").await?;
            Ok::<_, std::io::Error>(())
        });
        let mut d = Decoder::default();
        let mut got = Vec::new();
        while let Some(item) = read_frame(&mut server, &mut d).await.unwrap() {
            got.push(item);
        }
        writer.await.unwrap().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Ok(b"MSH|1".to_vec()));
        assert!(matches!(
            got[1],
            Err(FrameError::Garbage { skipped: 4, .. })
        ));
        assert_eq!(got[2], Ok(b"MSH|2".to_vec()));
    }
}
