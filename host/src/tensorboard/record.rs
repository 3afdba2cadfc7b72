//! TFRecord framing, the container of TensorBoard event files:
//!
//! ```text
//! u64 length (little-endian) | u32 masked CRC32C of the length | data | u32 masked CRC32C of the data
//! ```

#[cfg(test)]
use std::io::Read;
use std::io::{self, Write};

/// TensorFlow's CRC mask: CRCs of data that holds CRCs are weak, so they are rotated and offset.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Write one record.
pub fn write_record(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc(data).to_le_bytes())
}

/// Read one record; `None` at a clean end of input. A bad CRC or a cut record is an error.
/// (For tests: TensorBoard reads the files, the host only writes them.)
#[cfg(test)]
pub fn read_record(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 12];
    match input.read_exact(&mut header[..1]) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    input.read_exact(&mut header[1..])?;
    let (len, len_crc) = header.split_at(8);
    let corrupt =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("bad {what} CRC"));
    if masked_crc(len).to_le_bytes() != len_crc {
        return Err(corrupt("length"));
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(len);
    let len = usize::try_from(u64::from_le_bytes(len_bytes))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "record too long"))?;
    let mut data = vec![0u8; len];
    input.read_exact(&mut data)?;
    let mut crc = [0u8; 4];
    input.read_exact(&mut crc)?;
    if masked_crc(&data).to_le_bytes() != crc {
        return Err(corrupt("data"));
    }
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_corruption_is_caught() {
        let mut buf = Vec::new();
        write_record(&mut buf, b"first").unwrap();
        write_record(&mut buf, b"").unwrap();
        let mut input = buf.as_slice();
        assert_eq!(
            read_record(&mut input).unwrap().as_deref(),
            Some(&b"first"[..])
        );
        assert_eq!(read_record(&mut input).unwrap().as_deref(), Some(&b""[..]));
        assert!(read_record(&mut input).unwrap().is_none());

        let mut bad = buf.clone();
        bad[13] ^= 1;
        assert!(read_record(&mut bad.as_slice()).is_err());
        assert!(read_record(&mut &buf[..buf.len() - 2]).is_ok());
        let mut cut = &buf[..20];
        assert!(read_record(&mut cut).is_err());
    }

    #[test]
    fn the_mask_matches_tensorflow() {
        // crc32c("") == 0, so the masked value is TensorFlow's mask delta itself.
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        // TensorFlow's own test vector: crc32c("123456789") == 0xe3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }
}
