//! A small streaming JSON framing scanner: finds where one JSON value ends without parsing it,
//! tracking string / escape state and nesting depth, with `memchr` over string bodies.

use std::io::{self, BufRead};

use memchr::memchr2;

/// How a [`Scanner::read_value`] call ended.
pub(crate) struct ValueScan {
    /// The value ended (false: the input ended first).
    pub complete: bool,
    /// Bytes the value spans (may exceed what was buffered).
    pub total: u64,
}

/// A position-tracking reader of JSON values over a `BufRead`.
pub(crate) struct Scanner<R> {
    pub r: R,
    /// Bytes consumed so far.
    pub offset: u64,
    /// 1-based line of the next unconsumed byte.
    pub line: u64,
}

fn fill<R: BufRead>(r: &mut R) -> io::Result<&[u8]> {
    loop {
        match r.fill_buf() {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    r.fill_buf()
}

fn newlines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

impl<R: BufRead> Scanner<R> {
    pub fn new(r: R) -> Scanner<R> {
        Scanner {
            r,
            offset: 0,
            line: 1,
        }
    }

    /// The buffered bytes (filling the buffer if empty); empty at end of input.
    pub fn buffer(&mut self) -> io::Result<&[u8]> {
        fill(&mut self.r)
    }

    /// Consumes `n` buffered bytes (n must not exceed the buffer).
    fn advance(&mut self, n: usize) -> io::Result<()> {
        let buf = fill(&mut self.r)?;
        let n = n.min(buf.len());
        self.line += buf.get(..n).map(newlines).unwrap_or(0);
        self.offset += n as u64;
        self.r.consume(n);
        Ok(())
    }

    /// Consumes one byte.
    pub fn bump(&mut self) -> io::Result<()> {
        self.advance(1)
    }

    /// Skips a UTF-8 byte-order mark at the current position.
    pub fn skip_bom(&mut self) -> io::Result<()> {
        if self.buffer()?.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.advance(3)?;
        }
        Ok(())
    }

    /// Skips JSON white space; returns the next byte (not consumed), `None` at end of input.
    pub fn skip_ws(&mut self) -> io::Result<Option<u8>> {
        loop {
            let buf = fill(&mut self.r)?;
            if buf.is_empty() {
                return Ok(None);
            }
            let n = buf
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(buf.len());
            let next = buf.get(n).copied();
            self.advance(n)?;
            if next.is_some() {
                return Ok(next);
            }
        }
    }

    /// Reads one JSON value starting at the current (non-white-space) byte: an object or array
    /// up to its matching close, a string up to its closing quote, or a scalar up to the next
    /// `,` `]` `}` or white space. Appends at most `limit` bytes of it to `out` (the rest is
    /// scanned but not kept, bounding memory).
    pub fn read_value(&mut self, out: &mut Vec<u8>, limit: usize) -> io::Result<ValueScan> {
        let mut depth: u64 = 0;
        let mut in_str = false;
        let mut esc = false;
        let mut started = false;
        let mut scalar = false;
        let mut total: u64 = 0;
        loop {
            let buf = fill(&mut self.r)?;
            if buf.is_empty() {
                // A scalar may end at end of input; anything else is cut short.
                return Ok(ValueScan {
                    complete: started && scalar,
                    total,
                });
            }
            let mut i = 0usize;
            let mut done = false;
            while let Some(&c) = buf.get(i) {
                if esc {
                    esc = false;
                    i += 1;
                    continue;
                }
                if in_str {
                    match buf.get(i..).and_then(|rest| memchr2(b'"', b'\\', rest)) {
                        None => i = buf.len(),
                        Some(j) => {
                            i += j;
                            if buf.get(i) == Some(&b'\\') {
                                esc = true;
                            } else {
                                in_str = false;
                                if depth == 0 {
                                    i += 1;
                                    done = true;
                                    break;
                                }
                            }
                            i += 1;
                        }
                    }
                    continue;
                }
                if !started {
                    started = true;
                    match c {
                        b'{' | b'[' => depth = 1,
                        b'"' => in_str = true,
                        _ => scalar = true,
                    }
                    i += 1;
                    continue;
                }
                if scalar {
                    if matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        done = true;
                        break;
                    }
                    i += 1;
                    continue;
                }
                match c {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            i += 1;
                            done = true;
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            let chunk = buf.get(..i).unwrap_or(buf);
            if out.len() < limit {
                let room = limit - out.len();
                out.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or(chunk));
            }
            total += i as u64;
            self.advance(i)?;
            if done {
                return Ok(ValueScan {
                    complete: true,
                    total,
                });
            }
        }
    }

    /// Reads one line (without its `\n` / `\r\n`), keeping at most `limit` bytes of it. Returns
    /// `None` at end of input, else the line's full length.
    pub fn read_line(&mut self, out: &mut Vec<u8>, limit: usize) -> io::Result<Option<u64>> {
        let mut total: u64 = 0;
        let mut any = false;
        loop {
            let buf = fill(&mut self.r)?;
            if buf.is_empty() {
                return Ok(if any { Some(total) } else { None });
            }
            any = true;
            let (n, done) = match memchr::memchr(b'\n', buf) {
                Some(j) => (j, true),
                None => (buf.len(), false),
            };
            let chunk = buf.get(..n).unwrap_or(buf);
            if out.len() < limit {
                let room = limit - out.len();
                out.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or(chunk));
            }
            total += n as u64;
            // consume the line and its newline together
            self.advance(if done { n + 1 } else { n })?;
            if done {
                if out.last() == Some(&b'\r') {
                    out.pop();
                }
                return Ok(Some(total));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(input: &str) -> Vec<(String, bool)> {
        let mut s = Scanner::new(io::BufReader::with_capacity(3, input.as_bytes()));
        let mut out = Vec::new();
        loop {
            match s.skip_ws().unwrap() {
                None => return out,
                Some(b',') => s.bump().unwrap(),
                Some(_) => {
                    let mut v = Vec::new();
                    let r = s.read_value(&mut v, usize::MAX).unwrap();
                    out.push((String::from_utf8(v).unwrap(), r.complete));
                }
            }
        }
    }

    #[test]
    fn splits_values_across_tiny_buffers() {
        let v = values(r#"{"a":"x\"}{","b":[1,{"c":2}]} , "s\\" , 12,true {"t":"#);
        assert_eq!(
            v,
            vec![
                (r#"{"a":"x\"}{","b":[1,{"c":2}]}"#.to_string(), true),
                (r#""s\\""#.to_string(), true),
                ("12".to_string(), true),
                ("true".to_string(), true),
                (r#"{"t":"#.to_string(), false),
            ]
        );
    }

    #[test]
    fn tracks_lines_and_limits_memory() {
        let mut s = Scanner::new(io::BufReader::with_capacity(
            4,
            "\n\n{\"a\":\n\"bbbbbbbbbb\"}\n".as_bytes(),
        ));
        assert_eq!(s.skip_ws().unwrap(), Some(b'{'));
        assert_eq!(s.line, 3);
        let mut v = Vec::new();
        let r = s.read_value(&mut v, 5).unwrap();
        assert!(r.complete);
        assert_eq!(r.total, 19);
        assert_eq!(v, b"{\"a\":");
        assert_eq!(s.line, 4);
    }
}
