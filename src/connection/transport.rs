//! The two halves of a client's byte stream, plain or TLS. A plain socket splits without a lock and keeps
//! the reader's idle path (wait for readability, then read into a small buffer); a TLS stream splits with
//! tokio's lock-backed `split` and reads through rustls.

use crate::tls::Stream;
use bytes::BytesMut;
use std::io;
use tokio::io::{AsyncReadExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub enum ReadSide {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

pub enum WriteSide {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

pub fn split(s: Stream) -> (ReadSide, WriteSide) {
    match s {
        Stream::Plain(tcp) => {
            let (r, w) = tcp.into_split();
            (ReadSide::Plain(r), WriteSide::Plain(w))
        }
        Stream::Tls(tls) => {
            let (r, w) = tokio::io::split(*tls);
            (ReadSide::Tls(r), WriteSide::Tls(w))
        }
    }
}

impl ReadSide {
    /// Read into `buf` once data is there, growing it only by what `reserve` allows: on a plain socket,
    /// wait for readability first so an idle connection holds no read buffer beyond what it had. Returns
    /// the bytes read and whether the read filled the free space (more is probably waiting).
    pub async fn read_small(
        &mut self,
        buf: &mut BytesMut,
        reserve: impl Fn(&mut BytesMut),
    ) -> io::Result<(usize, bool)> {
        match self {
            ReadSide::Plain(rd) => loop {
                rd.readable().await?;
                reserve(buf);
                let free = buf.capacity() - buf.len();
                match rd.try_read_buf(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r.map(|n| (n, n == free)),
                }
            },
            ReadSide::Tls(rd) => {
                reserve(buf);
                let free = buf.capacity() - buf.len();
                rd.read_buf(buf).await.map(|n| (n, n == free))
            }
        }
    }
}

crate::tls::delegate_io!(read ReadSide: Plain, Tls);
crate::tls::delegate_io!(write WriteSide: Plain, Tls);
