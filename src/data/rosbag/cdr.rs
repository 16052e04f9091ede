//! The CDR (XCDR1) serialisation ROS 2 stores in bags: a 4-byte
//! encapsulation header (`00 01` little-endian, `00 00` big-endian), then
//! each primitive aligned to its own size counted from the end of that
//! header; strings as a u32 length including the NUL, sequences as a u32
//! count. Every read is bounds-checked: a short or corrupt message is an
//! error naming the field, never a panic.

use super::BagError;

/// Reads CDR fields in order.
pub struct CdrReader<'a> {
    body: &'a [u8],
    pos: usize,
    little: bool,
}

fn err(what: &str, msg: String) -> BagError {
    BagError::Decode(format!("{what}: {msg}"))
}

impl<'a> CdrReader<'a> {
    pub fn new(data: &'a [u8]) -> Result<Self, BagError> {
        if data.len() < 4 {
            return Err(BagError::Decode(format!("message of {} bytes has no CDR header", data.len())));
        }
        let little = match (data[0], data[1]) {
            (0, 1) => true,
            (0, 0) => false,
            (a, b) => {
                return Err(BagError::Decode(format!(
                    "unsupported CDR representation {a:02x} {b:02x} (expected plain CDR, 00 00 or 00 01)"
                )))
            }
        };
        Ok(Self { body: &data[4..], pos: 0, little })
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], BagError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.body.len()).ok_or_else(|| {
            err(what, format!("message ends at byte {} but {n} more are needed at {}", self.body.len() + 4, self.pos + 4))
        })?;
        let s = &self.body[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn align(&mut self, n: usize) {
        self.pos = self.pos.div_ceil(n) * n;
    }

    fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], BagError> {
        self.align(N);
        let mut b: [u8; N] = self.take(N, what)?.try_into().expect("take returns N bytes");
        if !self.little {
            b.reverse();
        }
        Ok(b)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, BagError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn bool(&mut self, what: &str) -> Result<bool, BagError> {
        Ok(self.u8(what)? != 0)
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, BagError> {
        Ok(u32::from_le_bytes(self.fixed::<4>(what)?))
    }

    pub fn i32(&mut self, what: &str) -> Result<i32, BagError> {
        Ok(i32::from_le_bytes(self.fixed::<4>(what)?))
    }

    pub fn f64(&mut self, what: &str) -> Result<f64, BagError> {
        Ok(f64::from_le_bytes(self.fixed::<8>(what)?))
    }

    /// A sequence or string length, checked against what is left so that
    /// a corrupt count cannot ask for a huge allocation.
    fn count(&mut self, elem: usize, what: &str) -> Result<usize, BagError> {
        let n = self.u32(what)? as usize;
        let left = self.body.len() - self.pos;
        if n.saturating_mul(elem) > left {
            return Err(err(what, format!("length {n} does not fit in the {left} bytes left")));
        }
        Ok(n)
    }

    pub fn string(&mut self, what: &str) -> Result<String, BagError> {
        let n = self.count(1, what)?;
        let bytes = self.take(n, what)?;
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        String::from_utf8(bytes.to_vec()).map_err(|_| err(what, "not UTF-8".into()))
    }

    /// `uint8[]`, borrowed.
    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8], BagError> {
        let n = self.count(1, what)?;
        self.take(n, what)
    }

    pub fn f64_seq(&mut self, what: &str) -> Result<Vec<f64>, BagError> {
        let n = self.count(8, what)?;
        (0..n).map(|_| self.f64(what)).collect()
    }

    pub fn f64_array<const N: usize>(&mut self, what: &str) -> Result<[f64; N], BagError> {
        let mut out = [0.0; N];
        for v in &mut out {
            *v = self.f64(what)?;
        }
        Ok(out)
    }
}

/// Writes CDR fields in order (little-endian).
pub struct CdrWriter {
    buf: Vec<u8>,
}

impl Default for CdrWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl CdrWriter {
    pub fn new() -> Self {
        Self { buf: vec![0, 1, 0, 0] }
    }

    fn align(&mut self, n: usize) {
        let body = self.buf.len() - 4;
        self.buf.resize(4 + body.div_ceil(n) * n, 0);
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }

    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn f64(&mut self, v: f64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn string(&mut self, s: &str) {
        self.u32(s.len() as u32 + 1);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
    }

    pub fn f64_seq(&mut self, v: &[f64]) {
        self.u32(v.len() as u32);
        v.iter().for_each(|&x| self.f64(x));
    }

    pub fn f64_array(&mut self, v: &[f64]) {
        v.iter().for_each(|&x| self.f64(x));
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_with_alignment() {
        let mut w = CdrWriter::new();
        w.u8(7);
        w.f64(1.5);
        w.string("ab");
        w.bytes(&[1, 2, 3]);
        w.u32(9);
        let data = w.finish();
        // u8 at 0, f64 aligned to 8, string length at 16, "ab\0" at 20..23,
        // byte count aligned to 24, bytes 28..31, u32 aligned to 32.
        assert_eq!(data.len(), 4 + 36);
        let mut r = CdrReader::new(&data).unwrap();
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.f64("b").unwrap(), 1.5);
        assert_eq!(r.string("c").unwrap(), "ab");
        assert_eq!(r.bytes("d").unwrap(), &[1, 2, 3]);
        assert_eq!(r.u32("e").unwrap(), 9);
        assert!(r.u32("past the end").unwrap_err().to_string().contains("past the end"));
    }

    #[test]
    fn big_endian_and_bad_input() {
        let data = [0, 0, 0, 0, 0, 0, 1, 2];
        assert_eq!(CdrReader::new(&data).unwrap().u32("x").unwrap(), 0x0102);
        assert!(CdrReader::new(&[0, 1]).is_err());
        assert!(CdrReader::new(&[0, 9, 0, 0]).is_err());
        // A length claiming more than the message holds.
        let data = [0, 1, 0, 0, 0xff, 0xff, 0xff, 0x7f, 1];
        assert!(CdrReader::new(&data).unwrap().bytes("data").unwrap_err().to_string().contains("does not fit"));
    }
}
