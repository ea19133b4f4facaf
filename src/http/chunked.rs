//! Chunked transfer coding (RFC 9112 §7.1): an incremental decoder that works
//! on any split of its input, and the encoder side.
//!
//! The decoder is strict: every line ends in CRLF, a chunk-size line is at
//! most [`MAX_SIZE_LINE`] bytes (extensions are skipped), a size has at most 16
//! hex digits, and the trailer section is skipped but bounded by
//! [`MAX_TRAILER_BYTES`]. Every violation is a 400 (the proxy maps errors on
//! the upstream side to 502 itself).

use super::HttpError;

/// The last chunk with no trailers: ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// Longest chunk-size line (size, whitespace, extensions), CRLF excluded.
pub const MAX_SIZE_LINE: usize = 1024;
/// Most bytes of the trailer section, CRLFs included.
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;
/// Most hex digits in a chunk size (16 fill a u64).
const MAX_SIZE_DIGITS: u32 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size (`digits` so far).
    Size {
        size: u64,
        digits: u32,
    },
    /// Whitespace after the size, before `;` or CR.
    SizeWs {
        size: u64,
    },
    /// Inside chunk extensions, up to CR.
    Ext {
        size: u64,
    },
    /// CR of the size line seen, LF expected.
    SizeLf {
        size: u64,
    },
    /// Chunk payload still to come.
    Data {
        remaining: u64,
    },
    /// CR after the payload expected.
    DataCr,
    /// LF after the payload expected.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field line, up to CR.
    Trailer,
    /// CR of a trailer line seen, LF expected.
    TrailerLf,
    /// CR of the final empty line seen, LF expected.
    EndLf,
    Done,
    Failed(HttpError),
}

/// How far a [`ChunkedDecoder::feed`] call got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes consumed; never past the end of the chunked body.
    pub consumed: usize,
    /// The whole chunked body (trailers and final CRLF included) was consumed.
    pub done: bool,
}

/// Incremental chunked-body decoder.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the current size line, or of the whole trailer section.
    line_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

const fn err(message: &'static str) -> HttpError {
    HttpError::new(400, message)
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            line_bytes: 0,
        }
    }

    /// The whole body has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes `input` up to and including the end of the chunked body, never
    /// past it (what follows belongs to the next message), calling `on_data`
    /// with each piece of chunk payload. After an error the decoder keeps
    /// returning that error.
    pub fn feed(
        &mut self,
        input: &[u8],
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<Progress, HttpError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Failed(e) => return Err(e),
                State::Data { remaining } => {
                    // Bulk path: hand over as much payload as we have.
                    let take = remaining.min((input.len() - i) as u64) as usize;
                    on_data(&input[i..i + take]);
                    i += take;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining }
                    };
                }
                _ => {
                    if let Err(e) = self.step(input[i]) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                    i += 1;
                }
            }
        }
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        Ok(Progress {
            consumed: i,
            done: self.is_done(),
        })
    }

    /// Advances the state machine by one framing byte (not payload).
    #[inline]
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        self.state = match self.state {
            State::Size { size, digits } => {
                self.count_size_line()?;
                match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= MAX_SIZE_DIGITS {
                            return Err(err("chunk size too large"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        State::Size {
                            size: (size << 4) | d,
                            digits: digits + 1,
                        }
                    }
                    _ if digits == 0 => return Err(err("invalid chunk size")),
                    b' ' | b'\t' => State::SizeWs { size },
                    b';' => State::Ext { size },
                    b'\r' => State::SizeLf { size },
                    _ => return Err(err("invalid chunk size")),
                }
            }
            State::SizeWs { size } => {
                self.count_size_line()?;
                match b {
                    b' ' | b'\t' => State::SizeWs { size },
                    b';' => State::Ext { size },
                    b'\r' => State::SizeLf { size },
                    _ => return Err(err("invalid chunk size line")),
                }
            }
            State::Ext { size } => {
                self.count_size_line()?;
                match b {
                    b'\r' => State::SizeLf { size },
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Ext { size },
                    _ => return Err(err("invalid chunk extension")),
                }
            }
            State::SizeLf { size } => {
                if b != b'\n' {
                    return Err(err("chunk size line not ended by CRLF"));
                }
                self.line_bytes = 0;
                if size == 0 {
                    State::TrailerStart
                } else {
                    State::Data { remaining: size }
                }
            }
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err(err("missing CRLF after chunk data")),
            },
            State::DataLf => match b {
                b'\n' => State::Size { size: 0, digits: 0 },
                _ => return Err(err("missing CRLF after chunk data")),
            },
            State::TrailerStart => {
                self.count_trailer()?;
                match b {
                    b'\r' => State::EndLf,
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Trailer,
                    _ => return Err(err("invalid trailer")),
                }
            }
            State::Trailer => {
                self.count_trailer()?;
                match b {
                    b'\r' => State::TrailerLf,
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Trailer,
                    _ => return Err(err("invalid trailer")),
                }
            }
            State::TrailerLf => {
                self.count_trailer()?;
                match b {
                    b'\n' => State::TrailerStart,
                    _ => return Err(err("trailer line not ended by CRLF")),
                }
            }
            State::EndLf => match b {
                b'\n' => State::Done,
                _ => return Err(err("chunked body not ended by CRLF")),
            },
            // Handled by `feed`.
            s @ (State::Data { .. } | State::Done | State::Failed(_)) => s,
        };
        Ok(())
    }

    #[inline]
    fn count_size_line(&mut self) -> Result<(), HttpError> {
        self.line_bytes += 1;
        if self.line_bytes > MAX_SIZE_LINE {
            return Err(err("chunk size line too long"));
        }
        Ok(())
    }

    #[inline]
    fn count_trailer(&mut self) -> Result<(), HttpError> {
        self.line_bytes += 1;
        if self.line_bytes > MAX_TRAILER_BYTES {
            return Err(err("chunked trailers too large"));
        }
        Ok(())
    }
}

/// Appends `data` as one chunk: `<hex size>\r\n<data>\r\n`. Empty data
/// appends nothing (an empty chunk would end the body: use [`LAST_CHUNK`]).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    let mut n = data.len();
    let mut i = hex.len();
    while n > 0 {
        i -= 1;
        hex[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
    }
    out.reserve(hex.len() - i + data.len() + 4);
    out.extend_from_slice(&hex[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}
