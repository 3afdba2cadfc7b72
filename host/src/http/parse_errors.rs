//! JSON bodies for the requests hyper rejects itself. A request whose line or headers cannot
//! be parsed (400), whose URI is over hyper's fixed 65,534-byte limit (414) or whose headers
//! are over the size or count limit (431) never reaches the router: hyper answers it on its
//! own, with an empty body, and offers no hook to change that answer (hyper 1.x
//! `proto::h1::Conn::on_parse_error` writes a bare head, then closes the connection).
//!
//! [`JsonParseErrors`] wraps the connection's socket and swaps that bare answer for the same
//! status with the API's JSON error body as it is written. The bare answer is recognised
//! exactly: hyper's head for it is `HTTP/1.1 <status>\r\nconnection: close\r\ncontent-length:
//! 0\r\n`, which no response of the router has (every error of ours carries a JSON body,
//! `content-type` first), and raw CR LF pairs cannot occur inside a JSON body.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The answers hyper writes by itself: status line, its JSON body's kind and message.
const REJECTIONS: [(&[u8], &str, &str); 3] = [
    (
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n",
        "malformed_request",
        "the request line or a header could not be parsed as HTTP/1.1",
    ),
    (
        b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n",
        "uri_too_long",
        "the request URI is over 65534 bytes",
    ),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n",
        "headers_too_large",
        "the request headers are too large or too many (see the README's limits)",
    ),
];

/// A socket whose writes have hyper's bare rejections replaced with JSON ones (see the
/// module docs). Reads pass through untouched.
pub struct JsonParseErrors<S> {
    inner: S,
    /// A rewritten write still going out: the bytes, how many are written, and how many
    /// bytes of hyper's buffer the whole write stands for.
    pending: Option<Pending>,
}

struct Pending {
    bytes: Vec<u8>,
    written: usize,
    stands_for: usize,
}

impl<S> JsonParseErrors<S> {
    /// Wrap `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

/// `buf` with hyper's bare rejection replaced, or `None` if it holds none. The rejection is
/// the last thing hyper writes on a connection, so it ends the buffer; bytes before it (an
/// earlier pipelined response) are kept.
fn rewrite(buf: &[u8]) -> Option<Vec<u8>> {
    for (head, kind, message) in REJECTIONS {
        let Some(start) = find(buf, head) else {
            continue;
        };
        let rest = &buf[start + head.len()..];
        // hyper's remaining headers (its `date`) up to the blank line.
        let end_of_head = find(rest, b"\r\n\r\n")? + 2;
        let status_line_end = find(head, b"\r\n")?;
        let body = serde_json::json!({
            "error": message,
            "kind": kind,
            "detail": message,
        })
        .to_string();
        let mut out = buf[..start].to_vec();
        out.extend_from_slice(&head[..status_line_end + 2]);
        out.extend_from_slice(b"content-type: application/json\r\nconnection: close\r\n");
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        out.extend_from_slice(&rest[..end_of_head]);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
        return Some(out);
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl<S: AsyncWrite + Unpin> JsonParseErrors<S> {
    /// Write out what is pending; `Ready(Ok(n))` once all of it is out, `n` being the size
    /// of hyper's buffer it replaced.
    fn drain_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<usize>>> {
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(Ok(None));
        };
        while pending.written < pending.bytes.len() {
            let n = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &pending.bytes[pending.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            pending.written += n;
        }
        let stands_for = pending.stands_for;
        self.pending = None;
        Poll::Ready(Ok(Some(stands_for)))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonParseErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // hyper repeats a write that returned `Pending` with the same buffer: finish the
        // rewritten one instead of looking at it again.
        if this.pending.is_none() {
            match rewrite(buf) {
                Some(bytes) => {
                    this.pending = Some(Pending {
                        bytes,
                        written: 0,
                        stands_for: buf.len(),
                    })
                }
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        match ready!(this.drain_pending(cx))? {
            Some(n) => Poll::Ready(Ok(n)),
            None => Poll::Ready(Ok(0)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // No vectored writes: hyper then flattens each response into one buffer, so its bare
    // rejection is always whole inside a single `poll_write`.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"date: Sun, 06 Dec 2026 21:18:06 GMT\r\n\r\n";

    fn bare(status_line: &[u8]) -> Vec<u8> {
        let mut out = status_line.to_vec();
        out.extend_from_slice(b"connection: close\r\ncontent-length: 0\r\n");
        out.extend_from_slice(DATE);
        out
    }

    fn split(response: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8(response.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len(), "{text}");
        (head.to_string(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn each_bare_rejection_becomes_the_same_status_with_a_json_body() {
        for (status_line, kind) in [
            (&b"HTTP/1.1 400 Bad Request\r\n"[..], "malformed_request"),
            (b"HTTP/1.1 414 URI Too Long\r\n", "uri_too_long"),
            (
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                "headers_too_large",
            ),
        ] {
            let out = rewrite(&bare(status_line)).expect("rewritten");
            let (head, body) = split(&out);
            assert!(head.as_bytes().starts_with(status_line), "{head}");
            assert!(head.contains("content-type: application/json"), "{head}");
            assert!(head.contains("connection: close"), "{head}");
            assert!(head.contains("date: Sun"), "{head}");
            assert_eq!(body["kind"], kind);
            assert!(body["error"].as_str().unwrap().len() > 10);
            assert_eq!(body["detail"], body["error"]);
        }
    }

    #[test]
    fn an_earlier_pipelined_response_in_the_same_buffer_is_kept() {
        let earlier =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let mut buf = earlier.to_vec();
        buf.extend_from_slice(&bare(b"HTTP/1.1 400 Bad Request\r\n"));
        let out = rewrite(&buf).expect("rewritten");
        assert!(out.starts_with(earlier));
        let (_, body) = split(&out[earlier.len()..]);
        assert_eq!(body["kind"], "malformed_request");
    }

    #[test]
    fn the_routers_own_responses_pass_untouched() {
        for response in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-request-id: 1\r\ncontent-length: 2\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
        ] {
            assert!(rewrite(response).is_none());
        }
    }

    #[tokio::test]
    async fn writes_through_the_wrapper_reach_the_socket_rewritten() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(16);
        let mut wrapped = JsonParseErrors::new(server);
        let bare = bare(b"HTTP/1.1 414 URI Too Long\r\n");
        let writer = async move {
            wrapped.write_all(&bare).await.unwrap();
            wrapped.shutdown().await.unwrap();
        };
        let reader = async move {
            let mut client = client;
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.unwrap();
            out
        };
        let ((), out) = tokio::join!(writer, reader);
        let (head, body) = split(&out);
        assert!(head.starts_with("HTTP/1.1 414"), "{head}");
        assert_eq!(body["kind"], "uri_too_long");
    }
}
