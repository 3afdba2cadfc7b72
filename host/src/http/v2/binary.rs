//! The protocol's binary tensor data extension, which Triton's clients use by default: the
//! body is the JSON request (`Inference-Header-Content-Length` bytes) followed by the raw
//! tensors, each announced by `parameters.binary_data_size`. Numbers are little-endian;
//! a BYTES tensor is each element's 4-byte length followed by its bytes, in row-major order.

use axum::http::HeaderValue;

/// Announces the JSON part's length, in requests and responses.
pub const HEADER: &str = "inference-header-content-length";

/// The JSON part and the binary tail of a body (all JSON without the header).
pub fn split<'a>(
    body: &'a [u8],
    header: Option<&HeaderValue>,
) -> Result<(&'a [u8], &'a [u8]), String> {
    let Some(header) = header else {
        return Ok((body, &[]));
    };
    let length: usize = header
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("{HEADER} must be a byte count, got {header:?}"))?;
    if length > body.len() {
        return Err(format!(
            "{HEADER} says the JSON part is {length} bytes, but the body has {}",
            body.len()
        ));
    }
    Ok(body.split_at(length))
}

/// The binary tail, handed out tensor by tensor.
pub struct Tail<'a> {
    rest: &'a [u8],
}

impl<'a> Tail<'a> {
    /// Over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The next `size` bytes, for input `name`.
    pub fn take(&mut self, name: &str, size: usize) -> Result<&'a [u8], String> {
        if size > self.rest.len() {
            return Err(format!(
                "input `{name}` has binary_data_size {size}, but only {} bytes of binary data are left",
                self.rest.len()
            ));
        }
        let (mine, rest) = self.rest.split_at(size);
        self.rest = rest;
        Ok(mine)
    }

    /// Every byte was claimed by an input.
    pub fn finish(self) -> Result<(), String> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} bytes of binary data belong to no input (check each binary_data_size)",
                self.rest.len()
            ))
        }
    }
}

/// A BYTES tensor's elements, which must be UTF-8 text here.
pub fn decode_bytes(name: &str, mut raw: &[u8]) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    while !raw.is_empty() {
        let Some((length, rest)) = raw.split_first_chunk::<4>() else {
            return Err(format!(
                "input `{name}`: binary BYTES data ends inside an element's 4-byte length"
            ));
        };
        let length = u32::from_le_bytes(*length) as usize;
        if length > rest.len() {
            return Err(format!(
                "input `{name}`: element {} says {length} bytes, but {} are left",
                items.len(),
                rest.len()
            ));
        }
        let (text, rest) = rest.split_at(length);
        let text = std::str::from_utf8(text)
            .map_err(|e| format!("input `{name}`: element {} is not UTF-8 ({e})", items.len()))?;
        items.push(text.to_owned());
        raw = rest;
    }
    Ok(items)
}

/// A BYTES tensor's raw form.
pub fn encode_bytes(items: &[String]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(items.iter().map(|s| s.len() + 4).sum());
    for item in items {
        // Labels are short: a length over u32 cannot happen.
        raw.extend_from_slice(&(item.len() as u32).to_le_bytes());
        raw.extend_from_slice(item.as_bytes());
    }
    raw
}

/// An FP32 tensor's raw form.
pub fn encode_fp32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_bad_data_is_named() {
        let items = vec!["Clear Reply".to_string(), String::new(), "é".to_string()];
        let raw = encode_bytes(&items);
        assert_eq!(&raw[..4], &11u32.to_le_bytes());
        assert_eq!(decode_bytes("x", &raw).unwrap(), items);
        assert!(decode_bytes("x", &raw[..raw.len() - 1])
            .unwrap_err()
            .contains("element 2 says 2 bytes"));
        assert!(decode_bytes("x", &[1, 0])
            .unwrap_err()
            .contains("4-byte length"));
        assert!(decode_bytes("x", &[1, 0, 0, 0, 0xff])
            .unwrap_err()
            .contains("not UTF-8"));
        assert_eq!(encode_fp32(&[1.0]), 1.0f32.to_le_bytes());
    }

    #[test]
    fn the_header_splits_the_body() {
        let body = b"{}tail";
        let two = HeaderValue::from_static("2");
        assert_eq!(split(body, Some(&two)).unwrap(), (&b"{}"[..], &b"tail"[..]));
        assert_eq!(split(body, None).unwrap(), (&body[..], &b""[..]));
        assert!(split(body, Some(&HeaderValue::from_static("99"))).is_err());
        assert!(split(body, Some(&HeaderValue::from_static("x"))).is_err());
        let mut tail = Tail::new(b"abcdef");
        assert_eq!(tail.take("q", 2).unwrap(), b"ab");
        assert!(tail.take("c", 9).is_err());
        assert!(tail.finish().unwrap_err().contains("4 bytes"));
    }
}
