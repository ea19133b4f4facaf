//! A small Redis client over glommio sockets: `redis-protocol` does the RESP2
//! framing (encode the command as an array of bulk strings, decode replies),
//! this file only moves bytes and keeps one connection.
//!
//! Every call is bounded by a timeout; after any transport error or timeout
//! the connection is dropped (its state is unknown) and the next call opens a
//! fresh one, so a restarted Redis is picked up without special handling.

use std::cell::RefCell;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};

use super::RedisUrl;
use crate::runtime::conn::timed;

/// Why a Redis call failed.
#[derive(Debug, Clone)]
pub enum Error {
    /// Connecting, reading or writing failed, or the call timed out: Redis
    /// is unreachable (the connection was dropped).
    Unreachable(String),
    /// No answer in time (the connection was dropped; the command may or
    /// may not have run).
    Timeout(Duration),
    /// Redis answered with an error reply (the connection is fine).
    Reply(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unreachable(e) => write!(f, "unreachable: {e}"),
            Error::Timeout(d) => write!(f, "unreachable: no answer within {d:?}"),
            Error::Reply(e) => write!(f, "error reply: {e}"),
        }
    }
}

/// One connection, one command at a time (or a subscription).
pub struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Conn {
    /// Connects, authenticates and selects the database.
    pub async fn open(target: &RedisUrl, timeout: Duration) -> Result<Conn, Error> {
        let stream = TcpStream::connect_timeout(target.addr, timeout)
            .await
            .map_err(|e| Error::Unreachable(format!("connect {}: {e}", target.addr)))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            input: Vec::with_capacity(4096),
            output: Vec::with_capacity(512),
        };
        if let Some(password) = &target.password {
            conn.call(&[b"AUTH", password.as_bytes()], timeout).await?;
        }
        if target.db != 0 {
            let db = target.db.to_string();
            conn.call(&[b"SELECT", db.as_bytes()], timeout).await?;
        }
        Ok(conn)
    }

    /// Sends one command (an array of bulk strings).
    pub async fn send(&mut self, args: &[&[u8]]) -> Result<(), Error> {
        let parts: Vec<BorrowedFrame> = args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
        let frame = BorrowedFrame::Array(&parts);
        self.output.clear();
        self.output.resize(frame.encode_len(false), 0);
        let n = encode_borrowed(&mut self.output, &frame, false)
            .map_err(|e| Error::Unreachable(format!("encode: {e}")))?;
        self.stream
            .write_all(&self.output[..n])
            .await
            .map_err(|e| Error::Unreachable(format!("write: {e}")))
    }

    /// Reads one reply; an error reply is `Err(Error::Reply)`.
    pub async fn recv(&mut self) -> Result<OwnedFrame, Error> {
        loop {
            if !self.input.is_empty() {
                match decode(&self.input) {
                    Ok(Some((frame, used))) => {
                        self.input.drain(..used);
                        return match frame {
                            OwnedFrame::Error(e) => Err(Error::Reply(e)),
                            f => Ok(f),
                        };
                    }
                    Ok(None) => {}
                    Err(e) => return Err(Error::Unreachable(format!("protocol: {e:?}"))),
                }
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) => return Err(Error::Unreachable("connection closed".into())),
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(Error::Unreachable(format!("read: {e}"))),
            }
        }
    }

    /// A command and its reply, within `timeout`.
    pub async fn call(&mut self, args: &[&[u8]], timeout: Duration) -> Result<OwnedFrame, Error> {
        timed(timeout, async {
            self.send(args).await?;
            self.recv().await
        })
        .await
        .unwrap_or(Err(Error::Timeout(timeout)))
    }
}

/// A reconnecting client: one connection, used by one call at a time.
pub struct RedisClient {
    pub target: RedisUrl,
    timeout: Duration,
    conn: RefCell<Option<Conn>>,
    turn: Semaphore,
}

impl RedisClient {
    pub fn new(target: RedisUrl, timeout: Duration) -> RedisClient {
        RedisClient {
            target,
            timeout,
            conn: RefCell::new(None),
            turn: Semaphore::new(1),
        }
    }

    /// Runs one command. A kept connection that turns out closed (Redis
    /// restarted since) is replaced once before the failure is reported; a
    /// timeout is not retried (the caller's bound stays one timeout).
    pub async fn call(&self, args: &[&[u8]]) -> Result<OwnedFrame, Error> {
        let _turn = self
            .turn
            .acquire_permit(1)
            .await
            .map_err(|_| Error::Unreachable("client closed".into()))?;
        let kept = self.conn.borrow_mut().take();
        let reused = kept.is_some();
        let mut conn = match kept {
            Some(c) => c,
            None => Conn::open(&self.target, self.timeout).await?,
        };
        let mut result = conn.call(args, self.timeout).await;
        if reused && matches!(result, Err(Error::Unreachable(_))) {
            conn = Conn::open(&self.target, self.timeout).await?;
            result = conn.call(args, self.timeout).await;
        }
        if !matches!(result, Err(Error::Unreachable(_) | Error::Timeout(_))) {
            *self.conn.borrow_mut() = Some(conn);
        }
        result
    }
}

/// An integer reply (or a bulk string holding one; `Null` is 0).
pub fn int(frame: &OwnedFrame) -> Result<i64, Error> {
    match frame {
        OwnedFrame::Integer(i) => Ok(*i),
        OwnedFrame::Null => Ok(0),
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| Error::Reply(format!("not a number: {:?}", String::from_utf8_lossy(b)))),
        other => Err(Error::Reply(format!("unexpected reply {other:?}"))),
    }
}
