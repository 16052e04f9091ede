//! Row-major f32 matrix products on the CPU for the decoder's fast paths,
//! over all of candle's threads.

/// A matrix view: `rows x cols`, element (r, c) at `r * row_stride + c *
/// col_stride` (row-major with contiguous columns unless transposed).
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        let needed = if rows == 0 || cols == 0 { 0 } else { (rows - 1) * row_stride + cols };
        assert!(cols <= row_stride && data.len() >= needed, "matrix view out of bounds");
        Self { data, rows, cols, row_stride, col_stride: 1 }
    }

    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols)
    }

    /// The same elements read as the transposed matrix (no copy).
    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }
}

fn parallelism() -> gemm::Parallelism {
    let threads = candle_core::utils::get_num_threads();
    if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// `dst (m x n, row stride dst_stride) (+)= lhs (m x k) * rhs (k x n)`;
/// accumulates into `dst` when `accumulate`, else overwrites it.
pub fn matmul(lhs: MatRef, rhs: MatRef, dst: &mut [f32], dst_stride: usize, accumulate: bool) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions");
    assert!(n <= dst_stride && dst.len() >= if m == 0 { 0 } else { (m - 1) * dst_stride + n }, "destination too small");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index of the three views inside
    // their slices; gemm reads lhs/rhs and writes dst only.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(),
        );
    }
}
