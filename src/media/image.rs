//! Picture decoding for ingestion and image queries: JPEG, PNG, WebP, GIF, BMP and TIFF with
//! the `image` crate, the EXIF orientation applied, the first frame of an animation or a
//! multi-page TIFF, and a pixel limit checked from the header before anything is decoded (so a
//! decompression bomb costs nothing). Thumbnails for results are small JPEGs.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use thiserror::Error;

use crate::embed::image::preprocess::{resize, Filter, Rgb};

/// Pictures larger than this many pixels are refused unless configured otherwise (about
/// 16k × 16k; a 40000 × 40000 PNG would need 4.8 GB decoded).
pub const DEFAULT_MAX_PIXELS: u64 = 268_435_456;

#[derive(Debug, Error)]
pub enum ImageDecodeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("not a picture in a supported format (JPEG, PNG, WebP, GIF, BMP, TIFF)")]
    Unsupported,
    #[error("{format} header says {width}x{height} pixels, over the limit of {limit} pixels (ingest.max_image_pixels): refused before decoding")]
    TooLarge {
        format: &'static str,
        width: u32,
        height: u32,
        limit: u64,
    },
    #[error("{format} picture has no pixels ({width}x{height})")]
    Empty {
        format: &'static str,
        width: u32,
        height: u32,
    },
    #[error("corrupt {format} picture: {reason}")]
    Corrupt {
        format: &'static str,
        reason: String,
    },
}

/// A decoded picture and what its file said about it.
#[derive(Debug, Clone)]
pub struct Picture {
    pub rgb: Rgb,
    pub format: &'static str,
}

/// The picture format of `head` (the first bytes of a file), if it is one Mosaic decodes.
pub fn format_of(head: &[u8]) -> Option<&'static str> {
    let format = image::guess_format(head).ok()?;
    format_name(format)
}

fn format_name(format: ImageFormat) -> Option<&'static str> {
    Some(match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::WebP => "WebP",
        ImageFormat::Gif => "GIF",
        ImageFormat::Bmp => "BMP",
        ImageFormat::Tiff => "TIFF",
        _ => return None,
    })
}

/// File extensions of the formats Mosaic decodes.
pub fn is_picture_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .is_some_and(|e| {
            matches!(
                e.as_str(),
                "jpg" | "jpeg" | "png" | "webp" | "gif" | "bmp" | "tif" | "tiff"
            )
        })
}

/// Decodes a picture file.
pub fn decode_file(path: &Path, max_pixels: u64) -> Result<Picture, ImageDecodeError> {
    let bytes = std::fs::read(path).map_err(|source| ImageDecodeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(&bytes, max_pixels)
}

/// Decodes a picture from its bytes: header first, refused when over `max_pixels`, then the
/// pixels (first frame), oriented as its EXIF data says, as 8-bit RGB (alpha dropped).
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<Picture, ImageDecodeError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| ImageDecodeError::Unsupported)?;
    let format = reader
        .format()
        .and_then(format_name)
        .ok_or(ImageDecodeError::Unsupported)?;
    let corrupt = |e: image::ImageError| ImageDecodeError::Corrupt {
        format,
        reason: e.to_string(),
    };
    let within_limit = |(width, height): (u32, u32)| {
        if width as u64 * height as u64 > max_pixels {
            return Err(ImageDecodeError::TooLarge {
                format,
                width,
                height,
                limit: max_pixels,
            });
        }
        Ok(())
    };
    // The size from the header alone, before any decoder reads further (a PNG decoder reads
    // up to the first pixel data, which a bomb may not even have).
    if let Some(size) = header_size(bytes) {
        within_limit(size)?;
    }
    let mut reader = reader;
    // The pixel limit below is the one that matters; the crate's own allocation limit is
    // lifted to match it.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(16));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    within_limit((width, height))?;
    if width == 0 || height == 0 {
        return Err(ImageDecodeError::Empty {
            format,
            width,
            height,
        });
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut picture = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    picture.apply_orientation(orientation);
    let rgb = picture.into_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(Picture {
        rgb: Rgb::new(w, h, rgb.into_raw()),
        format,
    })
}

/// Width and height read straight from the first bytes of a PNG, GIF, BMP, WebP or JPEG.
fn header_size(b: &[u8]) -> Option<(u32, u32)> {
    let be32 = |at: usize| Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let le16 = |at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as u32);
    let le32 = |at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let le24 = |at: usize| {
        let v = b.get(at..at + 3)?;
        Some(v[0] as u32 | (v[1] as u32) << 8 | (v[2] as u32) << 16)
    };
    if b.starts_with(b"\x89PNG\r\n\x1a\n") && b.get(12..16) == Some(b"IHDR") {
        return Some((be32(16)?, be32(20)?));
    }
    if b.starts_with(b"GIF8") {
        return Some((le16(6)?, le16(8)?));
    }
    if b.starts_with(b"BM") {
        return Some((le32(18)?, (le32(22)? as i32).unsigned_abs()));
    }
    if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        return match b.get(12..16)? {
            b"VP8X" => Some((le24(24)? + 1, le24(27)? + 1)),
            b"VP8 " => Some((le16(26)? & 0x3fff, le16(28)? & 0x3fff)),
            b"VP8L" => {
                let v = le32(21)?;
                Some(((v & 0x3fff) + 1, ((v >> 14) & 0x3fff) + 1))
            }
            _ => None,
        };
    }
    if b.starts_with(&[0xff, 0xd8]) {
        // Walk the markers to the first start-of-frame.
        let mut at = 2;
        while at + 9 < b.len() {
            if b[at] != 0xff {
                return None;
            }
            let marker = b[at + 1];
            let len = u16::from_be_bytes([b[at + 2], b[at + 3]]) as usize;
            if matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
                let h = u16::from_be_bytes([b[at + 5], b[at + 6]]) as u32;
                let w = u16::from_be_bytes([b[at + 7], b[at + 8]]) as u32;
                return Some((w, h));
            }
            at += 2 + len;
        }
    }
    None
}

/// A JPEG thumbnail whose longer side is at most `max_side` pixels.
pub fn thumbnail_jpeg(rgb: &Rgb, max_side: u32) -> Result<Vec<u8>, ImageDecodeError> {
    let longer = rgb.width.max(rgb.height).max(1);
    let small = if longer > max_side {
        let scale = max_side as f64 / longer as f64;
        let w = ((rgb.width as f64 * scale).round() as u32).max(1);
        let h = ((rgb.height as f64 * scale).round() as u32).max(1);
        resize(rgb, w, h, Filter::Bilinear)
    } else {
        rgb.clone()
    };
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
    image::ImageEncoder::write_image(
        encoder,
        &small.data,
        small.width,
        small.height,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| ImageDecodeError::Corrupt {
        format: "JPEG",
        reason: e.to_string(),
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let pixels: Vec<u8> = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut out),
            &pixels,
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
        .expect("encode");
        out
    }

    #[test]
    fn decodes_and_refuses_by_header() {
        let bytes = png(5, 3);
        let p = decode(&bytes, 1000).expect("decode");
        assert_eq!((p.rgb.width, p.rgb.height, p.format), (5, 3, "PNG"));
        assert_eq!(&p.rgb.data[..3], &[0, 1, 2]);
        assert!(matches!(
            decode(&bytes, 10),
            Err(ImageDecodeError::TooLarge {
                width: 5,
                height: 3,
                ..
            })
        ));
        assert!(matches!(
            decode(b"hello, this is text", 1000),
            Err(ImageDecodeError::Unsupported)
        ));
        let truncated = &bytes[..bytes.len() - 20];
        assert!(matches!(
            decode(truncated, 1000),
            Err(ImageDecodeError::Corrupt { .. })
        ));
    }

    #[test]
    fn thumbnails_are_small_jpegs() {
        let p = decode(&png(600, 300), u64::MAX).expect("decode");
        let jpeg = thumbnail_jpeg(&p.rgb, 128).expect("thumbnail");
        let t = decode(&jpeg, u64::MAX).expect("decode thumbnail");
        assert_eq!((t.rgb.width, t.rgb.height, t.format), (128, 64, "JPEG"));
    }
}
