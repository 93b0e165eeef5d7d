//! A SentencePiece model file (`spiece.model`, what SigLIP's Hub repos ship instead of a
//! `tokenizer.json`) read into a `tokenizers` tokenizer, with the recipe transformers' own
//! converters use for SentencePiece Unigram models: the model's precompiled normalisation
//! charsmap, `▁` metaspace with a prefix, the Unigram pieces and scores, the control pieces as
//! special tokens, and `$A </s>`. SigLIP's canonicalisation (lower case, no ASCII punctuation,
//! one space) runs before it, in [`super::siglip::canonicalize`].
//!
//! The file is a protocol buffer (`sentencepiece.ModelProto`); the few fields used here are
//! read with a small wire-format reader rather than a generated parser.

use std::path::Path;

use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::precompiled::Precompiled;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

/// One vocabulary entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    /// `sentencepiece.ModelProto.SentencePiece.Type`: 1 normal, 2 unknown, 3 control,
    /// 4 user-defined, 5 unused, 6 byte.
    pub kind: u64,
}

/// The parts of a `ModelProto` the tokenizer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SpModel {
    pub pieces: Vec<Piece>,
    /// `TrainerSpec.model_type`: 1 Unigram (the default), 2 BPE, 3 word, 4 char.
    pub model_type: u64,
    pub unk_id: i64,
    pub eos_id: i64,
    pub byte_fallback: bool,
    pub precompiled_charsmap: Vec<u8>,
}

const CONTROL: u64 = 3;
const UNIGRAM: u64 = 1;

/// A protocol-buffer field: its number and its value.
enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

/// Reads the fields of one message, in order.
fn fields(mut bytes: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    fn varint(bytes: &mut &[u8]) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first().ok_or("truncated varint")?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => Field::Varint(varint(&mut bytes)?),
            1 => {
                if bytes.len() < 8 {
                    return Err("truncated 64-bit field".into());
                }
                bytes = &bytes[8..];
                continue;
            }
            2 => {
                let len = varint(&mut bytes)? as usize;
                if bytes.len() < len {
                    return Err(format!("field {number} claims {len} bytes past the end"));
                }
                let (value, rest) = bytes.split_at(len);
                bytes = rest;
                Field::Bytes(value)
            }
            5 => {
                let (value, rest) = bytes
                    .split_first_chunk::<4>()
                    .ok_or("truncated 32-bit field")?;
                bytes = rest;
                Field::Fixed32(u32::from_le_bytes(*value))
            }
            other => return Err(format!("field {number}: unsupported wire type {other}")),
        };
        out.push((number, field));
    }
    Ok(out)
}

impl SpModel {
    /// Parses `ModelProto` bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut model = SpModel {
            pieces: Vec::new(),
            model_type: UNIGRAM,
            unk_id: 0,
            eos_id: 2,
            byte_fallback: false,
            precompiled_charsmap: Vec::new(),
        };
        for (number, field) in fields(bytes)? {
            match (number, field) {
                (1, Field::Bytes(message)) => {
                    let mut piece = Piece {
                        piece: String::new(),
                        score: 0.0,
                        kind: 1,
                    };
                    for (number, field) in fields(message)? {
                        match (number, field) {
                            (1, Field::Bytes(text)) => {
                                piece.piece = String::from_utf8(text.to_vec())
                                    .map_err(|_| "a piece is not UTF-8")?;
                            }
                            (2, Field::Fixed32(bits)) => piece.score = f32::from_bits(bits),
                            (3, Field::Varint(kind)) => piece.kind = kind,
                            _ => {}
                        }
                    }
                    model.pieces.push(piece);
                }
                (2, Field::Bytes(trainer)) => {
                    for (number, field) in fields(trainer)? {
                        // int32 fields: negative values arrive as 64-bit two's complement.
                        match (number, field) {
                            (3, Field::Varint(v)) => model.model_type = v,
                            (35, Field::Varint(v)) => model.byte_fallback = v != 0,
                            (40, Field::Varint(v)) => model.unk_id = v as i64 as i32 as i64,
                            (42, Field::Varint(v)) => model.eos_id = v as i64 as i32 as i64,
                            _ => {}
                        }
                    }
                }
                (3, Field::Bytes(normalizer)) => {
                    for (number, field) in fields(normalizer)? {
                        if let (2, Field::Bytes(map)) = (number, field) {
                            model.precompiled_charsmap = map.to_vec();
                        }
                    }
                }
                _ => {}
            }
        }
        if model.pieces.is_empty() {
            return Err("no pieces: not a SentencePiece model".into());
        }
        Ok(model)
    }

    /// The tokenizer the model describes (Unigram models only).
    pub fn tokenizer(&self) -> Result<Tokenizer, String> {
        if self.model_type != UNIGRAM {
            return Err(format!(
                "SentencePiece model type {} (only Unigram, type 1, is read)",
                self.model_type
            ));
        }
        let piece_id = |id: i64, what: &str| {
            usize::try_from(id)
                .ok()
                .filter(|&i| i < self.pieces.len())
                .ok_or_else(|| {
                    format!("{what} id {id} is outside the {} pieces", self.pieces.len())
                })
        };
        let unk = piece_id(self.unk_id, "unknown-piece")?;
        let eos = piece_id(self.eos_id, "end-of-sequence")?;
        let vocab = self
            .pieces
            .iter()
            .map(|p| (p.piece.clone(), f64::from(p.score)))
            .collect();
        let unigram =
            Unigram::from(vocab, Some(unk), self.byte_fallback).map_err(|e| e.to_string())?;
        let mut tokenizer = Tokenizer::new(unigram);
        if !self.precompiled_charsmap.is_empty() {
            let precompiled =
                Precompiled::from(&self.precompiled_charsmap).map_err(|e| e.to_string())?;
            tokenizer
                .with_normalizer(Some(precompiled))
                .map_err(|e| e.to_string())?;
        }
        tokenizer.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::Always, true)));
        let eos_piece = self.pieces[eos].piece.clone();
        let template = TemplateProcessing::builder()
            .try_single(format!("$A {eos_piece}"))
            .and_then(|b| b.try_pair(format!("$A {eos_piece} $B {eos_piece}")))
            .map_err(|e| e.to_string())?
            .special_tokens(vec![(eos_piece, eos as u32)])
            .build()
            .map_err(|e| e.to_string())?;
        tokenizer.with_post_processor(Some(template));
        let specials: Vec<AddedToken> = self
            .pieces
            .iter()
            .filter(|p| p.kind == CONTROL)
            .map(|p| AddedToken::from(p.piece.clone(), true).normalized(false))
            .collect();
        tokenizer
            .add_special_tokens(specials)
            .map_err(|e| e.to_string())?;
        Ok(tokenizer)
    }
}

/// The tokenizer of a `spiece.model` file.
pub fn load(path: &Path) -> Result<Tokenizer, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    SpModel::parse(&bytes)?.tokenizer()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A varint-encoded key or value.
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(number: u64, value: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(value.len() as u64, out);
        out.extend_from_slice(value);
    }

    fn piece(text: &str, score: f32, kind: u64) -> Vec<u8> {
        let mut m = Vec::new();
        bytes_field(1, text.as_bytes(), &mut m);
        varint(2 << 3 | 5, &mut m);
        m.extend_from_slice(&score.to_le_bytes());
        varint(3 << 3, &mut m);
        varint(kind, &mut m);
        m
    }

    fn model(unk: i64) -> Vec<u8> {
        let mut out = Vec::new();
        for (text, score, kind) in [
            ("<pad>", 0.0, CONTROL),
            ("</s>", 0.0, CONTROL),
            ("<unk>", 0.0, 2),
            ("▁", -2.0, 1),
            ("▁cat", -1.0, 1),
            ("s", -3.0, 1),
            ("▁c", -4.0, 1),
            ("at", -4.0, 1),
        ] {
            bytes_field(1, &piece(text, score, kind), &mut out);
        }
        let mut trainer = Vec::new();
        varint(40 << 3, &mut trainer);
        varint(unk as u64, &mut trainer);
        varint(42 << 3, &mut trainer);
        varint(1, &mut trainer);
        // An unknown 64-bit field is skipped.
        varint(99 << 3 | 1, &mut trainer);
        trainer.extend_from_slice(&[0; 8]);
        bytes_field(2, &trainer, &mut out);
        out
    }

    #[test]
    fn reads_pieces_ids_and_builds_a_unigram_tokenizer() {
        let parsed = SpModel::parse(&model(2)).unwrap();
        assert_eq!(parsed.pieces.len(), 8);
        assert_eq!(parsed.pieces[4].piece, "▁cat");
        assert_eq!(parsed.pieces[4].score, -1.0);
        assert_eq!((parsed.unk_id, parsed.eos_id), (2, 1));
        let tokenizer = parsed.tokenizer().unwrap();
        let ids = tokenizer.encode("cats", true).unwrap().get_ids().to_vec();
        // "▁cat" + "s" is the best path (−4 against "▁c" + "at" + "s" at −11), then `</s>`.
        assert_eq!(ids, vec![4, 5, 1]);
        let ids = tokenizer.encode("cat x", true).unwrap().get_ids().to_vec();
        assert_eq!(ids, vec![4, 3, 2, 1], "x is unknown");
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        assert!(SpModel::parse(b"").unwrap_err().contains("no pieces"));
        let mut truncated = model(2);
        truncated.truncate(truncated.len() - 3);
        assert!(SpModel::parse(&truncated).is_err());
        // A negative unknown id (int32 −1, ten bytes on the wire) has no piece.
        let err = SpModel::parse(&model(-1)).unwrap().tokenizer().unwrap_err();
        assert!(err.contains("unknown-piece id -1"), "{err}");
    }
}
