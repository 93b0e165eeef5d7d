//! ggml's block quantizations, as whisper.cpp's `quantize` tool writes them (the reference
//! rounding of `quantize_row_q8_0_ref` and `quantize_row_q5_1_ref` in ggml-quants.c): blocks
//! of 32 values, each with its own f16 scale (and minimum, for q5_1).

/// A ggml file's matrix type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    F16,
    /// 8-bit, symmetric: `d = max|x| / 127`, `q = round(x / d)`; 34 bytes per 32 values.
    Q8_0,
    /// 5-bit, asymmetric: `d = (max - min) / 31`, `q = trunc((x - min) / d + 0.5)`; 24 bytes
    /// per 32 values.
    Q5_1,
}

/// Values per quantized block.
pub const BLOCK: usize = 32;

impl Quant {
    /// The suffix of the file name (`ggml-tiny.en-q8_0.bin`), as whisper.cpp's published files
    /// are named; none for f16.
    pub fn suffix(self) -> &'static str {
        match self {
            Quant::F16 => "",
            Quant::Q8_0 => "-q8_0",
            Quant::Q5_1 => "-q5_1",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "f16" => Quant::F16,
            "q8_0" => Quant::Q8_0,
            "q5_1" => Quant::Q5_1,
            _ => return None,
        })
    }

    /// ggml's tensor type id (`GGML_TYPE_*`).
    pub fn tensor_type(self) -> usize {
        match self {
            Quant::F16 => 1,
            Quant::Q5_1 => 7,
            Quant::Q8_0 => 8,
        }
    }

    /// The header's `ftype` (`GGML_FTYPE_MOSTLY_*`, plus `GGML_QNT_VERSION` (2) × 1000 for the
    /// quantized types, as whisper.cpp's quantizer writes it).
    pub fn file_type(self) -> usize {
        match self {
            Quant::F16 => 1,
            Quant::Q8_0 => 2_000 + 7,
            Quant::Q5_1 => 2_000 + 9,
        }
    }

    /// Quantizes `x` (a multiple of [`BLOCK`] values) into ggml's block layout.
    pub fn quantize(self, x: &[f32]) -> Vec<u8> {
        match self {
            Quant::F16 => x
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            Quant::Q8_0 => q8_0(x),
            Quant::Q5_1 => q5_1(x),
        }
    }
}

fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

fn q8_0(x: &[f32]) -> Vec<u8> {
    assert!(x.len().is_multiple_of(BLOCK), "q8_0 takes whole blocks");
    let mut out = Vec::with_capacity(x.len() / BLOCK * 34);
    for block in x.chunks_exact(BLOCK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend(f16_bytes(d));
        // `roundf`: halves away from zero, as `f32::round`.
        out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

fn q5_1(x: &[f32]) -> Vec<u8> {
    assert!(x.len().is_multiple_of(BLOCK), "q5_1 takes whole blocks");
    let mut out = Vec::with_capacity(x.len() / BLOCK * 24);
    for block in x.chunks_exact(BLOCK) {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in block {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend(f16_bytes(d));
        out.extend(f16_bytes(min));
        let mut qh = 0u32;
        let mut qs = [0u8; BLOCK / 2];
        for j in 0..BLOCK / 2 {
            // `(uint8_t)(x + 0.5f)`: truncation of a value in [0.5, 31.5].
            let x0 = ((block[j] - min) * id + 0.5) as u8;
            let x1 = ((block[BLOCK / 2 + j] - min) * id + 0.5) as u8;
            qs[j] = (x0 & 0x0f) | ((x1 & 0x0f) << 4);
            qh |= (((x0 & 0x10) >> 4) as u32) << j;
            qh |= (((x1 & 0x10) >> 4) as u32) << (j + BLOCK / 2);
        }
        out.extend(qh.to_le_bytes());
        out.extend(qs);
    }
    out
}

/// The values a block layout stands for (ggml's `dequantize_row_*`), for checks.
pub fn dequantize(quant: Quant, bytes: &[u8]) -> Vec<f32> {
    let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    match quant {
        Quant::F16 => bytes.chunks_exact(2).map(f16).collect(),
        Quant::Q8_0 => bytes
            .chunks_exact(34)
            .flat_map(|b| {
                let d = f16(&b[..2]);
                b[2..].iter().map(move |&q| q as i8 as f32 * d)
            })
            .collect(),
        Quant::Q5_1 => bytes
            .chunks_exact(24)
            .flat_map(|b| {
                let (d, m) = (f16(&b[..2]), f16(&b[2..4]));
                let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                let qs = &b[8..24];
                let mut v = [0f32; BLOCK];
                for j in 0..BLOCK / 2 {
                    let h0 = ((qh >> j) & 1) << 4;
                    let h1 = ((qh >> (j + 16)) & 1) << 4;
                    v[j] = ((qs[j] & 0x0f) as u32 | h0) as f32 * d + m;
                    v[j + 16] = ((qs[j] >> 4) as u32 | h1) as f32 * d + m;
                }
                v
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * 0.37).sin() * 0.2) + if i % 7 == 0 { 0.05 } else { 0.0 })
            .collect()
    }

    /// Each block's round trip is within half a quantization step (plus the f16 scale's
    /// rounding) of the input.
    #[test]
    fn round_trips_stay_within_half_a_step() {
        let x = values(32 * 40);
        for (quant, levels) in [(Quant::Q8_0, 254.0), (Quant::Q5_1, 31.0)] {
            let back = dequantize(quant, &quant.quantize(&x));
            assert_eq!(back.len(), x.len());
            for (block, got) in x.chunks(32).zip(back.chunks(32)) {
                let range = match quant {
                    Quant::Q8_0 => 2.0 * block.iter().fold(0f32, |m, v| m.max(v.abs())),
                    _ => {
                        block.iter().cloned().fold(f32::MIN, f32::max)
                            - block.iter().cloned().fold(f32::MAX, f32::min)
                    }
                };
                let step = range / levels;
                for (a, b) in block.iter().zip(got) {
                    assert!(
                        (a - b).abs() <= 0.5 * step * 1.01 + 1e-3 * range,
                        "{quant:?}: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// Byte for byte against the reference quantizer (gguf-py's port of ggml-quants.c; see
    /// scripts/make_quant_fixtures.py).
    #[test]
    fn blocks_match_the_reference_quantizer() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/quant/reference.json"
        );
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let x: Vec<f32> = fixture["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        for (name, quant) in [("q8_0", Quant::Q8_0), ("q5_1", Quant::Q5_1)] {
            let want = fixture[name].as_str().unwrap();
            let got: String = quant
                .quantize(&x)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(got.len(), want.len(), "{name}: size");
            if got != want {
                let at = got
                    .bytes()
                    .zip(want.bytes())
                    .position(|(a, b)| a != b)
                    .unwrap()
                    / 2;
                panic!("{name}: first difference at byte {at}");
            }
        }
    }

    #[test]
    fn a_zero_block_quantizes_to_zeros() {
        let zero = vec![0f32; 32];
        assert!(Quant::Q8_0.quantize(&zero).iter().all(|&b| b == 0));
        assert_eq!(dequantize(Quant::Q5_1, &Quant::Q5_1.quantize(&zero)), zero);
    }
}
