//! Strided, single-threaded matrix products for ops that split their work over rayon tasks
//! themselves (one task per attention head): each task multiplies views into shared
//! buffers in place through gemm's strides, without copying heads out.

/// A strided matrix view for gemm.
#[derive(Debug, Clone, Copy)]
pub struct Mat {
    /// Element (0, 0).
    pub ptr: *const f32,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Elements from one row to the next.
    pub row_stride: isize,
    /// Elements from one column to the next.
    pub col_stride: isize,
}

impl Mat {
    /// An `n × n` row-major block (one head's scores).
    pub fn square(ptr: *const f32, n: usize) -> Mat {
        Mat::row_major(ptr, n, n)
    }

    /// A `rows × cols` row-major block.
    pub fn row_major(ptr: *const f32, rows: usize, cols: usize) -> Mat {
        Mat {
            ptr,
            rows,
            cols,
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    /// Columns `first .. first + cols` of the `rows` rows of a row-major buffer `width`
    /// wide that starts at `base`: one head of a `[seq, heads · head_dim]` activation.
    pub fn columns(base: *const f32, rows: usize, width: usize, first: usize, cols: usize) -> Mat {
        Mat {
            // SAFETY (for users of the view): the caller keeps it inside the buffer.
            ptr: base.wrapping_add(first),
            rows,
            cols,
            row_stride: width as isize,
            col_stride: 1,
        }
    }

    /// Rows `row0 .. row0 + rows` and columns `col0 .. col0 + cols` of this view.
    pub fn block(self, row0: usize, rows: usize, col0: usize, cols: usize) -> Mat {
        let offset = row0 as isize * self.row_stride + col0 as isize * self.col_stride;
        Mat {
            // SAFETY (for users of the view): the caller keeps it inside this view.
            ptr: self.ptr.wrapping_offset(offset),
            rows,
            cols,
            ..self
        }
    }

    /// The transpose (the same memory, strides swapped).
    pub fn t(self) -> Mat {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// `dst = scale · a b`, single-threaded (the parallelism is over heads).
///
/// # Safety
/// `a`, `b` and `dst` must describe memory valid for their shapes and strides, `dst` must
/// not overlap `a` or `b`, and no other thread may touch `dst`'s elements meanwhile.
pub unsafe fn matmul(dst: Mat, a: Mat, b: Mat, scale: f32) {
    // SAFETY: the caller's contract.
    unsafe { product(dst, a, b, scale, false) }
}

/// `dst += scale · a b`, as [`matmul`] (for gradients summed over several products).
///
/// # Safety
/// As [`matmul`], and `dst` must hold initialised values.
pub unsafe fn matmul_add(dst: Mat, a: Mat, b: Mat, scale: f32) {
    // SAFETY: the caller's contract.
    unsafe { product(dst, a, b, scale, true) }
}

/// `dst += a b` as one product split over `threads` of rayon's pool by gemm itself (for a
/// layer's whole product, where [`matmul_add`] is one head's).
///
/// # Safety
/// As [`matmul_add`].
pub unsafe fn matmul_add_threaded(dst: Mat, a: Mat, b: Mat, threads: usize) {
    let parallelism = match threads {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    };
    // SAFETY: the caller's contract.
    unsafe { product_with(dst, a, b, 1.0, true, parallelism) }
}

/// # Safety
/// As [`matmul_add`] when `accumulate`, else as [`matmul`].
unsafe fn product(dst: Mat, a: Mat, b: Mat, scale: f32, accumulate: bool) {
    // SAFETY: the caller's contract.
    unsafe { product_with(dst, a, b, scale, accumulate, gemm::Parallelism::None) }
}

/// # Safety
/// As [`product`].
unsafe fn product_with(
    dst: Mat,
    a: Mat,
    b: Mat,
    scale: f32,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    debug_assert!(a.cols == b.rows && dst.rows == a.rows && dst.cols == b.cols);
    // SAFETY: the caller's contract; gemm reads `a` and `b` (and `dst` when accumulating)
    // and writes only `dst`.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            a.cols,
            dst.ptr as *mut f32,
            dst.col_stride,
            dst.row_stride,
            accumulate,
            a.ptr,
            a.col_stride,
            a.row_stride,
            b.ptr,
            b.col_stride,
            b.row_stride,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// A pointer the rayon tasks share; each task writes only its own head's elements.
#[derive(Clone, Copy)]
pub struct Shared(pub *mut f32);
// SAFETY: tasks write disjoint elements (their head's columns of their sequence's rows).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer (a method, so closures capture the whole `Shared`, not its field).
    pub fn get(self) -> *mut f32 {
        self.0
    }
}
