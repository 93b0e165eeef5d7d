//! `dtype = "auto"`: the fastest product path within cosine 0.999 of f32 is chosen at load,
//! said in the log, remembered per machine, and the choice falls back correctly when a library
//! is absent (`MOSAIC_BLAS=off`) or the CPU-specific kernels are off (`MOSAIC_CPU=generic`).

use mosaic::embed::encoder::{choose, PARITY_BAR};
use mosaic::embed::TextEmbedder;
use mosaic::kernels::path::ProductPath;
use mosaic::models::TextModelSpec;

use crate::common::{mosaic, ok, real_model, MINILM};

fn minilm() -> TextEmbedder {
    let dir = real_model(MINILM);
    let spec = TextModelSpec::load(MINILM, &dir, None, None).unwrap();
    TextEmbedder::load(spec, &dir, 8192).unwrap()
}

#[test]
fn auto_takes_the_fastest_path_within_the_parity_bar_and_remembers_it() {
    for (path, why) in ProductPath::unavailable() {
        eprintln!("skipped {}: {why}", path.id());
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("paths.json");
    let mut first = minilm();
    let choice = first.set_dtype("auto", Some(&cache)).unwrap();
    eprintln!("{}", choice.explain());
    assert!(!choice.remembered);
    // Every path this machine offers was measured, the default f32 path first (the reference,
    // cosine 1 to itself).
    let measured: Vec<ProductPath> = choice.measures.iter().map(|m| m.path).collect();
    assert_eq!(measured, ProductPath::all_available());
    assert_eq!(choice.measures[0].worst_cosine, 1.0);
    // The choice is the fastest of those that pass the bar.
    let best = choose(&choice.measures).unwrap();
    assert_eq!(choice.path, best.path);
    assert!(best.worst_cosine >= PARITY_BAR);
    for m in &choice.measures {
        if m.worst_cosine >= PARITY_BAR {
            assert!(m.per_s <= best.per_s, "{m:?} beats {best:?}");
        }
    }
    assert!(choice.explain().contains(&choice.path.describe()));
    // A second load on this machine reads the measurement instead of repeating it.
    let remembered: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    let key = remembered["choices"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    assert!(key.ends_with(MINILM), "{key}");
    let mut second = minilm();
    let again = second.set_dtype("auto", Some(&cache)).unwrap();
    assert!(again.remembered);
    assert_eq!(again.path, choice.path);
    // Both give the same embeddings.
    let texts = vec!["The ferry leaves every forty minutes.".to_string()];
    let (a, b) = (
        first
            .embed(&texts, mosaic::embed::Purpose::Passage)
            .unwrap(),
        second
            .embed(&texts, mosaic::embed::Purpose::Passage)
            .unwrap(),
    );
    assert_eq!(a, b);
}

/// `mosaic bench embed --dtype auto` under an environment: (chosen path, measured paths,
/// skipped paths).
fn auto_under(env: &[(&str, &str)]) -> (String, Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("texts.json");
    std::fs::write(
        &texts,
        r#"["The pump draws 550 W.", "The tunnel is unlit."]"#,
    )
    .unwrap();
    let report = ok(&mosaic(
        &dir.path().join("data"),
        &[
            "--json",
            "bench",
            "embed",
            "--dtype",
            "auto",
            "--texts",
            texts.to_str().unwrap(),
        ],
        env,
    ));
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let probe: Vec<String> = report["auto"]["probe"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap().to_string())
        .collect();
    let chosen = report["auto"]["path"].as_str().unwrap().to_string();
    // The one row measured is the chosen path.
    assert_eq!(report["paths"][0]["path"], chosen.as_str(), "{report}");
    (chosen, probe, strings(&report["cpu"]["skipped_paths"]))
}

#[test]
fn auto_falls_back_when_a_library_or_a_cpu_feature_is_missing() {
    // Neither BLAS library nor CPU-specific kernels: the portable f32 path is all there is.
    let (chosen, probe, skipped) = auto_under(&[("MOSAIC_BLAS", "off"), ("MOSAIC_CPU", "generic")]);
    assert_eq!(chosen, "f32-rust");
    assert_eq!(probe, ["f32-rust"]);
    for id in ["f32-openblas", "f32-mkl", "bf16-mkl", "bf16-avx512"] {
        assert!(
            skipped.iter().any(|s| s.starts_with(id)),
            "{id} not reported skipped: {skipped:?}"
        );
    }
    assert!(skipped
        .iter()
        .any(|s| s == "bf16-avx512: MOSAIC_CPU=generic"));

    // No library, kernels on: the pure-Rust f32 path and, where the CPU has AVX512_BF16,
    // Mosaic's bf16 kernel compete.
    let (chosen, probe, _) = auto_under(&[("MOSAIC_BLAS", "off")]);
    let mut expected = vec!["f32-rust"];
    if mosaic::kernels::bf16::avx512_bf16_detected() {
        expected.push("bf16-avx512");
    } else {
        eprintln!("no AVX512_BF16 on this CPU: only f32-rust competes without a library");
    }
    assert_eq!(probe, expected);
    assert!(expected.contains(&chosen.as_str()));

    // One library named: only its paths (and the kernels) compete; MKL's are not offered.
    let openblas = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0";
    if std::path::Path::new(openblas).exists() {
        let (chosen, probe, skipped) = auto_under(&[("MOSAIC_BLAS", openblas)]);
        assert_eq!(probe[0], "f32-openblas");
        assert!(!probe.iter().any(|p| p.ends_with("-mkl")), "{probe:?}");
        assert!(skipped.iter().any(|s| s == "bf16-mkl: MKL not loaded"));
        assert!(probe.contains(&chosen));
    } else {
        eprintln!("skipped the OpenBLAS-only case: {openblas} is not installed");
    }
}

#[test]
fn loading_a_model_logs_what_auto_chose_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("pump.txt"),
        "The garden pump is rated at 550 W and lifts water nine metres.",
    )
    .unwrap();
    let out = mosaic(
        &data,
        &["--json", "ingest", docs.to_str().unwrap()],
        // A fresh measurement logs at info, a remembered one at debug.
        &[("RUST_LOG", "mosaic=debug")],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("dtype auto chose"))
        .unwrap_or_else(|| panic!("no choice in the log:\n{log}"));
    eprintln!("{line}");
    assert!(line.contains(MINILM), "{line}");
    assert!(line.contains("cosine"), "{line}");
    for path in ProductPath::all_available() {
        assert!(line.contains(path.id()), "{} missing: {line}", path.id());
    }
}
