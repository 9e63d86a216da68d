//! A small JSON writer: the simulator writes its bodies field by field, in vLLM's order, and
//! lets serde_json escape strings and format numbers.

use bytes::Bytes;

/// Appends JSON text to a buffer.
#[derive(Debug, Default)]
pub struct Json(Vec<u8>);

impl Json {
    /// An empty buffer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Json {
        Json(Vec::with_capacity(n))
    }

    /// Appends text as is.
    pub fn raw(&mut self, s: &str) -> &mut Json {
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    /// Appends bytes as is.
    pub fn raw_bytes(&mut self, b: &[u8]) -> &mut Json {
        self.0.extend_from_slice(b);
        self
    }

    /// Appends a quoted, escaped string.
    pub fn str(&mut self, s: &str) -> &mut Json {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.0, s);
        self
    }

    /// Appends a string or `null`.
    pub fn opt_str(&mut self, s: Option<&str>) -> &mut Json {
        match s {
            Some(s) => self.str(s),
            None => self.raw("null"),
        }
    }

    /// Appends an unsigned integer.
    pub fn num(&mut self, n: u64) -> &mut Json {
        let _ = serde_json::to_writer(&mut self.0, &n);
        self
    }

    /// Appends a float.
    pub fn float(&mut self, f: f32) -> &mut Json {
        let _ = serde_json::to_writer(&mut self.0, &f);
        self
    }

    /// Appends a JSON value.
    pub fn value(&mut self, v: &serde_json::Value) -> &mut Json {
        let _ = serde_json::to_writer(&mut self.0, v);
        self
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from(self.0)
    }

    /// The length so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_json() {
        let mut j = Json::default();
        j.raw("{\"a\":")
            .str("x\u{1f}\"é")
            .raw(",\"n\":")
            .num(1234567)
            .raw(",\"z\":")
            .num(0)
            .raw("}");
        let v: serde_json::Value = serde_json::from_slice(&j.into_bytes()).unwrap();
        assert_eq!(v["a"], "x\u{1f}\"é");
        assert_eq!(v["n"], 1234567);
        assert_eq!(v["z"], 0);
        let mut j = Json::default();
        j.num(u64::MAX);
        assert_eq!(&j.into_bytes()[..], u64::MAX.to_string().as_bytes());
    }
}
