//! Row-major f32 matrix products on the CPU for the decoder's fast paths,
//! over all of candle's threads.

/// A matrix view: `rows x cols`, element (r, c) at `r * row_stride + c *
/// col_stride` (row-major with contiguous columns unless transposed).
/// Every element lies inside `data`: the constructors check it and the
/// fields are private, so that [`matmul`] (which hands raw pointers to
/// `gemm`) cannot be made to read outside the slice from safe code.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// Panics when the view reaches past `data` (or its rows overlap).
    pub fn new(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        let needed = if rows == 0 || cols == 0 {
            Some(0)
        } else {
            (rows - 1).checked_mul(row_stride).and_then(|n| n.checked_add(cols))
        };
        assert!(cols <= row_stride && needed.is_some_and(|n| data.len() >= n), "matrix view out of bounds");
        Self { data, rows, cols, row_stride, col_stride: 1 }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_past_their_slice_are_refused() {
        let data = [0f32; 6];
        assert!(std::panic::catch_unwind(|| MatRef::new(&data, 3, 3, 3)).is_err());
        assert!(std::panic::catch_unwind(|| MatRef::new(&data, 2, 4, 3)).is_err(), "columns wider than the stride");
        assert!(std::panic::catch_unwind(|| MatRef::new(&data, usize::MAX, 1, usize::MAX)).is_err(), "overflow");
        let m = MatRef::new(&data, 2, 3, 3).t();
        assert_eq!((m.rows(), m.cols()), (3, 2));
    }

    #[test]
    fn a_product_is_the_sum_of_products() {
        let a = [1f32, 2., 3., 4., 5., 6.]; // 2 x 3
        let b = [1f32, 0., 0., 1., 1., 1.]; // 3 x 2
        let mut c = [0f32; 4];
        matmul(MatRef::dense(&a, 2, 3), MatRef::dense(&b, 3, 2), &mut c, 2, false);
        assert_eq!(c, [4., 5., 10., 11.]);
        matmul(MatRef::dense(&b, 3, 2).t(), MatRef::dense(&a, 2, 3).t(), &mut c, 2, false);
        assert_eq!(c, [4., 10., 5., 11.], "(AB)^T = B^T A^T");
    }
}
