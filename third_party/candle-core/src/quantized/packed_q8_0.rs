//! (Clarity patch) Q8_0 weights held only in the x86 repacked tile layout.
//!
//! On AVX-512-VNNI/AVX-VNNI machines `QTensor::cpu_fwd` repacks Q8_0 weights into 16-row
//! tiles on the first product and keeps them beside the original blocks: two copies of every
//! matrix. The tiles hold the same bytes (the scale, the quants offset by +128), so
//! `QTensor::into_cpu_packed` keeps the tiles alone; this storage answers everything else
//! (dequantize, embedding, the unpacked product) from them.

use super::k_quants::{self, BlockQ8_0, GgmlType, QK8_0};
use super::repack_x86::{unpack_q8_0_block, TileQ8_0, TILE_N};
use super::{GgmlDType, QuantizedType};
use crate::{CpuStorage, Result};
use half::f16;
use std::sync::Arc;

pub(crate) struct PackedQ8_0 {
    pub(crate) tiles: Arc<Vec<TileQ8_0>>,
    /// Rows (`n`, output features) and row length (`k`).
    pub(crate) n: usize,
    pub(crate) k: usize,
}

impl PackedQ8_0 {
    /// Row `row` as q8_0 blocks.
    fn row_blocks(&self, row: usize) -> Vec<BlockQ8_0> {
        (0..self.k / QK8_0)
            .map(|b| unpack_q8_0_block(&self.tiles, self.k, row, b))
            .collect()
    }

    /// Every row as q8_0 blocks, in the usual row-major order (a transient copy).
    fn blocks(&self) -> Vec<BlockQ8_0> {
        let kb = self.k / QK8_0;
        (0..self.n)
            .flat_map(|row| (0..kb).map(move |b| unpack_q8_0_block(&self.tiles, self.k, row, b)))
            .collect()
    }
}

impl QuantizedType for PackedQ8_0 {
    fn dtype(&self) -> GgmlDType {
        GgmlDType::Q8_0
    }

    fn matmul_t(&self, mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) -> Result<()> {
        k_quants::matmul(mkn, lhs, &self.blocks(), dst)
    }

    fn matmul_t_f16(&self, mkn: (usize, usize, usize), lhs: &[f16], dst: &mut [f16]) -> Result<()> {
        k_quants::matmul_f16(mkn, lhs, &self.blocks(), dst)
    }

    fn embedding(&self, ids: &[u32], rows: usize, hidden: usize) -> Result<CpuStorage> {
        if rows != self.n || hidden != self.k {
            crate::bail!(
                "packed q8_0 embedding: {rows}x{hidden} for {}x{}",
                self.n,
                self.k
            )
        }
        let mut out = vec![0f32; ids.len() * hidden];
        for (dst, &id) in out.chunks_exact_mut(hidden).zip(ids) {
            let row = id as usize;
            if row >= rows {
                crate::bail!("embedding id {row} is out of range for {rows} rows")
            }
            BlockQ8_0::to_float(&self.row_blocks(row), dst);
        }
        Ok(CpuStorage::F32(out))
    }

    fn dequantize(&self, elem_count: usize) -> Result<CpuStorage> {
        if elem_count != self.n * self.k {
            crate::bail!(
                "packed q8_0: {elem_count} elements for {}x{}",
                self.n,
                self.k
            )
        }
        // Tile by tile: 16 rows x 32 values each, written where they belong.
        let (k, kb) = (self.k, self.k / QK8_0);
        let mut ys = vec![0f32; elem_count];
        for (i, tile) in self.tiles.iter().enumerate() {
            let (t, b) = (i / kb, i % kb);
            for r in 0..TILE_N {
                let d = tile.d[r].to_f32();
                let dst = &mut ys[(t * TILE_N + r) * k + b * QK8_0..][..QK8_0];
                for g in 0..QK8_0 / 4 {
                    let src = &tile.qs[(g * TILE_N + r) * 4..][..4];
                    for j in 0..4 {
                        dst[g * 4 + j] = d * (src[j] as i32 - 128) as f32;
                    }
                }
            }
        }
        Ok(CpuStorage::F32(ys))
    }

    fn storage_size_in_bytes(&self) -> usize {
        self.tiles.len() * std::mem::size_of::<TileQ8_0>()
    }

    fn as_ptr(&self) -> *const u8 {
        self.tiles.as_ptr() as *const u8
    }

    fn block_size(&self) -> usize {
        QK8_0
    }

    fn from_float(&mut self, xs: &[f32]) {
        let mut blocks = vec![BlockQ8_0::zeros(); xs.len() / QK8_0];
        BlockQ8_0::from_float(xs, &mut blocks);
        self.tiles = repack(&blocks, self.n, self.k);
    }

    fn from_float_imatrix(&mut self, xs: &[f32], imatrix_weights: &[f32], n_per_row: usize) {
        let mut blocks = vec![BlockQ8_0::zeros(); xs.len() / QK8_0];
        BlockQ8_0::from_float_imatrix(xs, &mut blocks, imatrix_weights, n_per_row);
        self.tiles = repack(&blocks, self.n, self.k);
    }

    fn size(&self) -> usize {
        self.storage_size_in_bytes()
    }

    fn is_repacked(&self) -> bool {
        true
    }
}

/// `blocks` (row-major q8_0, `n` rows of `k`) as tiles.
pub(crate) fn repack(blocks: &dyn QuantizedType, n: usize, k: usize) -> Arc<Vec<TileQ8_0>> {
    match super::repack_x86::pack_q8_0(blocks, n, k) {
        super::repack_x86::PackedX86::Q8_0(tiles) => tiles,
        // `pack_q8_0` makes nothing else.
        _ => Arc::new(Vec::new()),
    }
}
