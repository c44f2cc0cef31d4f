//! hyper's own answers on the JSON port, in the JSON error shape.
//!
//! A request hyper cannot parse never reaches the router: a URI of 64 KiB
//! or more (414), a head larger than its read buffer (431), a malformed
//! request line or header (400). hyper answers those itself, with an empty
//! body and `connection: close`, and offers no hook to change the answer.
//! The JSON port's connections write through [`JsonProtocolErrors`], which
//! recognises such an answer — a 4xx head alone, `content-length: 0` and
//! `connection: close`, which the router never writes (its every error has
//! a JSON body, `api/middleware.rs`) — and sends it with a JSON body
//! (`{code, message, details}`) saying what was wrong.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::Code;

/// A connection whose canned hyper error answers get a JSON body.
#[derive(Debug)]
pub struct JsonProtocolErrors<IO> {
    io: IO,
    /// An answer being rewritten: the bytes to send, how many are sent,
    /// and the length of hyper's buffer to report once they all are.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<IO> JsonProtocolErrors<IO> {
    pub fn new(io: IO) -> Self {
        Self { io, pending: None }
    }
}

/// hyper's answer `head` with a JSON body, if it is one of its canned
/// error answers.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let text = text.strip_suffix("\r\n\r\n")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let headers: Vec<&str> = lines.collect();
    let has = |want: &str| headers.iter().any(|h| h.eq_ignore_ascii_case(want));
    if !(400..500).contains(&status) || !has("content-length: 0") || !has("connection: close") {
        return None;
    }
    let message = match status {
        414 => "request URI too long: at most 65,534 bytes",
        431 => "request head too large: the request line and headers are limited to about 400 KiB",
        _ => "malformed HTTP request: the request line or a header could not be parsed",
    };
    let body = serde_json::json!({
        "code": Code::InvalidArgument as i32,
        "message": message,
        "details": [],
    })
    .to_string();
    let mut answer = format!("{status_line}\r\n");
    for header in headers {
        if !header.to_ascii_lowercase().starts_with("content-length:") {
            answer.push_str(header);
            answer.push_str("\r\n");
        }
    }
    answer.push_str("content-type: application/json\r\ncontent-length: ");
    answer.push_str(&body.len().to_string());
    answer.push_str("\r\n\r\n");
    answer.push_str(&body);
    Some(answer.into_bytes())
}

impl<IO: AsyncRead + Unpin> AsyncRead for JsonProtocolErrors<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for JsonProtocolErrors<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() {
            match rewrite(buf) {
                Some(answer) => this.pending = Some((answer, 0, buf.len())),
                None => return Pin::new(&mut this.io).poll_write(cx, buf),
            }
        }
        let Some((answer, sent, reported)) = this.pending.as_mut() else {
            unreachable!("set above")
        };
        while *sent < answer.len() {
            let n = ready!(Pin::new(&mut this.io).poll_write(cx, &answer[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        let reported = *reported;
        this.pending = None;
        Poll::Ready(Ok(reported))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A canned answer is a head alone: one slice. Anything else (heads
        // with bodies) goes out as it is.
        let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (nonempty.next(), nonempty.next()) {
            self.poll_write(cx, only)
        } else {
            Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_canned_errors_are_rewritten() {
        let canned = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 26 Nov 2026 11:43:04 GMT\r\n\r\n";
        let answer = String::from_utf8(rewrite(canned).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("date: Thu"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], 3);

        // The router's own answers have bodies, or are not errors.
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        assert!(rewrite(ok).is_none());
        let json_error =
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n";
        assert!(rewrite(json_error).is_none());
        let with_body =
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n{}";
        assert!(rewrite(with_body).is_none());
    }
}
