//! The vendored candle-core (third_party/README.md) changes how `backward` sums gradients:
//! the first one is stored as it is, later ones are added. These check the sums against
//! closed forms where a tensor reaches the loss by several paths, through each kind of
//! accumulation (add, subtract, broadcast, matmul, shared intermediates).

use candle_core::{Device, Result, Tensor, Var};

fn close(got: &Tensor, want: &[f32]) -> Result<()> {
    let got = got.flatten_all()?.to_vec1::<f32>()?;
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "element {i}: {g} != {w}"
        );
    }
    Ok(())
}

#[test]
fn a_tensor_used_by_several_ops_gets_the_sum_of_its_gradients() -> Result<()> {
    let x = Var::new(&[1f32, -2., 3.], &Device::Cpu)?;
    // loss = sum(x*x + 3x - x - (x*2)) = sum(x^2); d/dx = 2x. Each term reaches x separately,
    // through mul (twice), add, sub (negated) and an affine op.
    let loss = ((x.mul(&x)? + x.affine(3.0, 0.0)?)? - x.as_tensor())?;
    let loss = (loss - x.affine(2.0, 0.0)?)?.sum_all()?;
    let grads = loss.backward()?;
    let g = grads.get(&x).expect("x reaches the loss");
    close(g, &[2., -4., 6.])
}

#[test]
fn a_first_gradient_that_is_subtracted_is_stored_negated() -> Result<()> {
    let a = Var::new(&[1f32, 2.], &Device::Cpu)?;
    let b = Var::new(&[5f32, 7.], &Device::Cpu)?;
    // loss = sum(a - b) + sum(b * 4): b's first gradient arrives through the subtraction.
    let loss = ((a.as_tensor() - b.as_tensor())?.sum_all()? + b.affine(4.0, 0.0)?.sum_all()?)?;
    let grads = loss.backward()?;
    close(grads.get(&a).expect("a"), &[1., 1.])?;
    close(grads.get(&b).expect("b"), &[3., 3.])
}

#[test]
fn broadcast_and_matmul_gradients_of_a_shared_weight_add_up() -> Result<()> {
    let dev = Device::Cpu;
    let w = Var::new(&[[1f32, 2.], [3., 4.]], &dev)?;
    let bias = Var::new(&[0.5f32, -0.5], &dev)?;
    let x = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &dev)?;
    // h = x·w + bias (broadcast over 3 rows), then w is used again: loss = sum(h) + sum(h·w).
    let h = x.matmul(w.as_tensor())?.broadcast_add(bias.as_tensor())?;
    let loss = (h.sum_all()? + h.matmul(w.as_tensor())?.sum_all()?)?;
    let grads = loss.backward()?;
    // dL/dh = 1 + (row sums of w)ᵀ per row = 1 + [3, 7] = [4, 8] on every row.
    // dL/dbias = sum over rows of dL/dh = [12, 24].
    close(grads.get(&bias).expect("bias"), &[12., 24.])?;
    // dL/dw = xᵀ·dL/dh + hᵀ·1: xᵀ·dL/dh = [[2*4, 2*8], [2*4, 2*8]] (column sums of x are 2, 2);
    // h = [[1.5, 1.5], [3.5, 3.5], [4.5, 5.5]]; the direct use adds h's column sums
    // [9.5, 10.5] along each row of w.
    close(
        grads.get(&w).expect("w"),
        &[8. + 9.5, 16. + 9.5, 8. + 10.5, 16. + 10.5],
    )
}

#[test]
fn stored_gradients_are_contiguous_even_when_the_op_gives_a_strided_one() -> Result<()> {
    let w = Var::new(&[[1f32, 2., 3.], [4., 5., 6.]], &Device::Cpu)?;
    // The gradient of a transpose is a transposed (strided) view of the incoming one.
    let loss = w
        .t()?
        .mul(&Tensor::new(
            &[[1f32, 2.], [3., 4.], [5., 6.]],
            &Device::Cpu,
        )?)?
        .sum_all()?;
    let grads = loss.backward()?;
    let g = grads.get(&w).expect("w");
    assert!(
        g.is_contiguous(),
        "the optimizer reads gradients as flat slices"
    );
    close(g, &[1., 3., 5., 2., 4., 6.])
}
