//! A CPU f32 tensor's values as a slice, without a copy when the storage allows it: what the
//! encoder's fused ops and the optimizer's host update read.

use candle_core::{CpuStorage, Result, Storage, StorageRef, Tensor};

/// A CPU tensor's f32 values in order: borrowed from its storage when contiguous (the usual
/// case for activations and gradients), copied otherwise.
pub enum Values<'a> {
    /// A read guard on the storage and the tensor's range in it.
    Borrowed(StorageRef<'a>, std::ops::Range<usize>),
    /// A copy (the tensor was strided, on another device, or not f32).
    Owned(Vec<f32>),
}

impl std::ops::Deref for Values<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Values::Borrowed(storage, range) => match &**storage {
                Storage::Cpu(CpuStorage::F32(data)) => &data[range.clone()],
                // `values` only borrows f32 CPU storage.
                _ => &[],
            },
            Values::Owned(data) => data,
        }
    }
}

/// The values of `t` (see [`Values`]).
pub fn values(t: &Tensor) -> Result<Values<'_>> {
    let (storage, layout) = t.storage_and_layout();
    if let (Storage::Cpu(CpuStorage::F32(_)), Some((start, end))) =
        (&*storage, layout.contiguous_offsets())
    {
        return Ok(Values::Borrowed(storage, start..end));
    }
    drop(storage);
    Ok(Values::Owned(t.flatten_all()?.to_vec1::<f32>()?))
}
