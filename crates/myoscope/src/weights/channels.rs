//! ImageNet weights have three input channels; DAPI is one, multiplex panels are many. The
//! first convolution is adapted as segmentation_models.pytorch does, so a grey image that
//! repeats one value in R, G and B gives the same response as the original network.
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Adapts a first-conv weight [O, 3, kh, kw] to `in_channels`: summed over RGB for one
/// channel; otherwise channel i copies RGB channel i mod 3 and all are scaled by 3/N, which
/// keeps the activation scale for inputs whose channels are alike (exactly when N is a
/// multiple of 3).
pub fn adapt_first_conv(weight: &Tensor, in_channels: i64) -> Result<Tensor> {
    let size = weight.size();
    if size.len() != 4 {
        bail!("first convolution weight has shape {size:?}, expected [out, in, kh, kw]");
    }
    let c = size[1];
    if in_channels == c {
        return Ok(weight.shallow_clone());
    }
    if c != 3 {
        bail!("only 3-channel (RGB) weights are adapted to other channel counts; these have {c}");
    }
    if in_channels < 1 {
        bail!("in_channels must be at least 1, got {in_channels}");
    }
    let w = weight.to_kind(Kind::Float);
    if in_channels == 1 {
        return Ok(w.sum_dim_intlist([1i64].as_slice(), true, Kind::Float));
    }
    let index: Vec<i64> = (0..in_channels).map(|i| i % 3).collect();
    let copied = w.index_select(1, &Tensor::from_slice(&index));
    Ok(copied * (3.0 / in_channels as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_channel_sums_rgb_so_grey_images_respond_alike() {
        let w = Tensor::randn([4, 3, 3, 3], (Kind::Float, tch::Device::Cpu));
        let grey = Tensor::rand([1, 1, 8, 8], (Kind::Float, tch::Device::Cpu));
        let w1 = adapt_first_conv(&w, 1).unwrap();
        assert_eq!(w1.size(), [4, 1, 3, 3]);
        let rgb = grey.repeat([1, 3, 1, 1]);
        let a = rgb.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        let b = grey.conv2d(&w1, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        assert!(a.allclose(&b, 1e-5, 1e-5, false));
    }

    #[test]
    fn n_channels_copy_cyclically_scaled_by_3_over_n() {
        let w = Tensor::randn([2, 3, 1, 1], (Kind::Float, tch::Device::Cpu));
        let w5 = adapt_first_conv(&w, 5).unwrap();
        assert_eq!(w5.size(), [2, 5, 1, 1]);
        for (i, src) in [0, 1, 2, 0, 1].iter().enumerate() {
            let got = w5.select(1, i as i64);
            let want = w.select(1, *src) * 0.6;
            assert!(got.allclose(&want, 1e-6, 1e-6, false), "channel {i}");
        }
        // Same-valued channels: 6 channels at half weight give what the 3 channels gave.
        let w6 = adapt_first_conv(&w, 6).unwrap();
        let x3 = Tensor::ones([1, 3, 1, 1], (Kind::Float, tch::Device::Cpu));
        let x6 = Tensor::ones([1, 6, 1, 1], (Kind::Float, tch::Device::Cpu));
        let a = x3.conv2d(&w, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        let b = x6.conv2d(&w6, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        assert!(a.allclose(&b, 1e-5, 1e-5, false));
        assert!(adapt_first_conv(&w, 3).unwrap().equal(&w));
        assert!(adapt_first_conv(&w5, 2).is_err());
    }
}
