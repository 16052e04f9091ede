//! Reading an architecture off a checkpoint's tensor shapes. Files say
//! nothing of their own validity: every shape is checked for its rank
//! before it is indexed, so a tensor of the wrong rank is an error that
//! names it, never a panic.

use std::collections::HashMap;

/// Tensor name -> dims.
pub type Shapes = HashMap<String, Vec<usize>>;

/// The `N` dims of `name`; an error naming it when it is absent or has
/// another rank.
pub fn dims<const N: usize>(shapes: &Shapes, name: &str) -> Result<[usize; N], String> {
    let found = shapes.get(name).ok_or_else(|| format!("cannot tell the architecture: no {name}"))?;
    <[usize; N]>::try_from(found.as_slice())
        .map_err(|_| format!("{name} has shape {found:?}: a model of this kind stores it with {N} dimensions"))
}

/// As [`dims`], `None` when the tensor is absent.
pub fn dims_if_present<const N: usize>(shapes: &Shapes, name: &str) -> Result<Option<[usize; N]>, String> {
    if shapes.contains_key(name) {
        dims(shapes, name).map(Some)
    } else {
        Ok(None)
    }
}

/// How many consecutive blocks `prefix.0.`, `prefix.1.`, ... hold tensors.
pub fn count_layers(shapes: &Shapes, prefix: &str) -> usize {
    (0..).take_while(|i| {
        let block = format!("{prefix}.{i}.");
        shapes.keys().any(|k| k.starts_with(&block))
    })
    .count()
}

/// The side of a square grid of positions stored as `rows` = side² +
/// `extra` (the class position), or an error naming `what`.
pub fn square_grid(rows: usize, extra: usize, what: &str) -> Result<usize, String> {
    let cells = rows.checked_sub(extra).ok_or_else(|| format!("{what} has {rows} rows, fewer than {extra}"))?;
    let side = (cells as f64).sqrt().round() as usize;
    if side == 0 || side * side != cells {
        let plus = if extra > 0 { " plus the class position" } else { "" };
        return Err(format!("{what} has {rows} rows, not a square grid{plus}"));
    }
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &[usize])]) -> Shapes {
        entries.iter().map(|(n, d)| (n.to_string(), d.to_vec())).collect()
    }

    #[test]
    fn a_wrong_rank_is_an_error_naming_the_tensor() {
        let t = table(&[("a.weight", &[3, 4]), ("scalar", &[])]);
        assert_eq!(dims::<2>(&t, "a.weight").unwrap(), [3, 4]);
        let err = dims::<4>(&t, "a.weight").unwrap_err();
        assert!(err.contains("a.weight") && err.contains("4 dimensions"), "{err}");
        assert!(dims::<1>(&t, "scalar").unwrap_err().contains("scalar"));
        assert!(dims::<1>(&t, "missing").unwrap_err().contains("no missing"));
        assert_eq!(dims_if_present::<2>(&t, "missing").unwrap(), None);
        assert!(dims_if_present::<1>(&t, "a.weight").is_err());
    }

    #[test]
    fn layers_are_counted_until_the_first_gap() {
        let t = table(&[("l.0.w", &[1]), ("l.1.w", &[1]), ("l.3.w", &[1]), ("l.10x", &[1])]);
        assert_eq!(count_layers(&t, "l"), 2);
        assert_eq!(count_layers(&t, "m"), 0);
    }

    #[test]
    fn grids_are_square() {
        assert_eq!(square_grid(197, 1, "pos").unwrap(), 14);
        assert_eq!(square_grid(49, 0, "pos").unwrap(), 7);
        assert!(square_grid(0, 1, "pos").is_err());
        assert!(square_grid(1, 1, "pos").is_err());
        assert!(square_grid(51, 1, "pos").unwrap_err().contains("class position"));
    }
}
