//! Copies a strided view out of a storage into row-major order.

/// Copies the view (element `offset`, `shape`, `stride`, all in elements) of `src` (elements of `esize`
/// bytes) into a new row-major buffer. Returns `None` if any index falls outside `src` or overflows; callers
/// validate views beforehand, so this is a second line of defence, not a code path.
pub(crate) fn gather(src: &[u8], esize: usize, offset: u64, shape: &[u64], stride: &[u64]) -> Option<Vec<u8>> {
    let numel = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
    let total = usize::try_from(numel.checked_mul(esize as u64)?).ok()?;
    let mut out = Vec::with_capacity(total);
    if numel == 0 {
        return Some(out);
    }
    // Size-1 dimensions do not move; then fold the innermost dimensions that are contiguous into one run.
    let dims: Vec<(u64, u64)> = shape.iter().zip(stride).filter(|(&s, _)| s != 1).map(|(&s, &t)| (s, t)).collect();
    let mut run = 1u64;
    let mut outer = dims.len();
    while outer > 0 && dims[outer - 1].1 == run {
        run = run.checked_mul(dims[outer - 1].0)?;
        outer -= 1;
    }
    let dims = &dims[..outer];
    let run_bytes = usize::try_from(run.checked_mul(esize as u64)?).ok()?;
    let mut index = vec![0u64; dims.len()];
    let mut base = offset;
    loop {
        let start = usize::try_from(base.checked_mul(esize as u64)?).ok()?;
        out.extend_from_slice(src.get(start..start.checked_add(run_bytes)?)?);
        // Odometer over the outer dimensions, last fastest.
        let mut d = dims.len();
        loop {
            if d == 0 {
                return Some(out);
            }
            d -= 1;
            index[d] += 1;
            base = base.checked_add(dims[d].1)?;
            if index[d] < dims[d].0 {
                break;
            }
            base = base.checked_sub(dims[d].1.checked_mul(dims[d].0)?)?;
            index[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::gather;

    #[test]
    fn transposed_and_offset_views() {
        let src: Vec<u8> = (0..12).collect();
        // 3x4 row-major, transposed to 4x3.
        let t = gather(&src, 1, 0, &[4, 3], &[1, 4]).unwrap();
        assert_eq!(t, vec![0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
        // Contiguous with offset.
        assert_eq!(gather(&src, 2, 1, &[2, 2], &[2, 1]).unwrap(), vec![2, 3, 4, 5, 6, 7, 8, 9]);
        // Expanded (stride 0) and scalar.
        assert_eq!(gather(&src, 1, 5, &[3], &[0]).unwrap(), vec![5, 5, 5]);
        assert_eq!(gather(&src, 1, 7, &[], &[]).unwrap(), vec![7]);
        assert_eq!(gather(&src, 1, 0, &[0, 5], &[5, 1]).unwrap(), Vec::<u8>::new());
        // Out of range is None, never a panic.
        assert!(gather(&src, 1, 11, &[2], &[1]).is_none());
        assert!(gather(&src, 4, u64::MAX, &[2], &[1]).is_none());
    }
}
