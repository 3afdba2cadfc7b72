//! A `pytorch_model.bin` writer for tests: PyTorch's zip format as `torch.save` writes a
//! state dict (candle reads it, but cannot write it, and torch is not installed).
//!
//! The zip holds `archive/data.pkl`, a protocol-2 pickle of an `OrderedDict` whose values are
//! `torch._utils._rebuild_tensor_v2(persistent_load(('storage', torch.FloatStorage, key,
//! 'cpu', numel)), offset, size, stride, requires_grad, OrderedDict())`, and one raw
//! little-endian storage per tensor in `archive/data/<key>`.

use std::io::Write;
use std::path::Path;

/// One tensor: name, shape, row-major f32 values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Write `tensors` to `path` as a PyTorch state dict.
pub fn write_pth(path: &Path, tensors: &[NamedTensor]) {
    let file = std::fs::File::create(path).expect("create .bin");
    let mut zip = zip::ZipWriter::new(file);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", options)
        .expect("zip entry");
    zip.write_all(&state_dict_pickle(tensors))
        .expect("write pickle");
    for (key, (_, _, values)) in tensors.iter().enumerate() {
        zip.start_file(format!("archive/data/{key}"), options)
            .expect("zip entry");
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        zip.write_all(&bytes).expect("write storage");
    }
    zip.start_file("archive/version", options)
        .expect("zip entry");
    zip.write_all(b"3\n").expect("write version");
    zip.finish().expect("finish zip");
}

/// The pickle opcodes `torch.save` emits for a state dict (protocol 2).
fn state_dict_pickle(tensors: &[NamedTensor]) -> Vec<u8> {
    let mut p = Pickle(vec![0x80, 2]);
    p.global("collections", "OrderedDict");
    p.0.extend([b')', b'R', b'(']); // OrderedDict(), then MARK for SETITEMS
    for (key, (name, shape, values)) in tensors.iter().enumerate() {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
        p.unicode(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.0.push(b'('); // args of _rebuild_tensor_v2
        p.0.push(b'('); // the persistent id tuple
        p.unicode("storage");
        p.global("torch", "FloatStorage");
        p.unicode(&key.to_string());
        p.unicode("cpu");
        p.int(values.len());
        p.0.extend([b't', b'Q']); // TUPLE, BINPERSID
        p.int(0); // storage offset
        p.tuple(shape);
        let strides: Vec<usize> = (0..shape.len())
            .map(|i| shape[i + 1..].iter().product())
            .collect();
        p.tuple(&strides);
        p.0.push(0x89); // requires_grad = False
        p.global("collections", "OrderedDict");
        p.0.extend([b')', b'R']); // backward_hooks = OrderedDict()
        p.0.extend([b't', b'R']); // TUPLE, REDUCE
    }
    p.0.extend([b'u', b'.']); // SETITEMS, STOP
    p.0
}

struct Pickle(Vec<u8>);

impl Pickle {
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").as_bytes());
    }

    fn unicode(&mut self, s: &str) {
        self.0.push(b'X');
        self.0
            .extend(u32::try_from(s.len()).expect("short").to_le_bytes());
        self.0.extend(s.as_bytes());
    }

    fn int(&mut self, n: usize) {
        self.0.push(b'J');
        self.0
            .extend(i32::try_from(n).expect("fits BININT").to_le_bytes());
    }

    fn tuple(&mut self, values: &[usize]) {
        self.0.push(b'(');
        for &v in values {
            self.int(v);
        }
        self.0.push(b't');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candle_reads_back_what_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pytorch_model.bin");
        let tensors = vec![
            (
                "a.weight".to_string(),
                vec![2, 3],
                vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5],
            ),
            ("a.bias".to_string(), vec![2], vec![-1.0, 0.25]),
            (
                "big".to_string(),
                vec![300],
                (0..300).map(|i| i as f32).collect(),
            ),
        ];
        write_pth(&path, &tensors);
        let read = candle_core::pickle::read_all(&path).unwrap();
        assert_eq!(read.len(), 3);
        for (name, shape, values) in &tensors {
            let (_, t) = read.iter().find(|(n, _)| n == name).expect(name);
            assert_eq!(t.dims(), shape.as_slice(), "{name}");
            let got = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(&got, values, "{name}");
        }
    }
}
