//! Stage versions and awkward paths, through the binary.
//!
//! - A recording's transcript outlives a change of text model: the recording is re-chunked and
//!   re-embedded into the new space, and Whisper does not run again (the second run is given a
//!   models folder without any Whisper model, so a transcription would fail the file).
//! - File names with spaces, `#`, `%` and bytes that are not UTF-8 are ingested, cited with a
//!   URI that decodes back to the file, pruned when deleted and removed by path.

use crate::common::{fixtures, mosaic, ok, real_model, spoken, MINILM, NOTICE};
use std::os::unix::ffi::OsStrExt;

#[test]
fn a_text_model_change_reembeds_recordings_without_transcribing_again() {
    real_model(MINILM);
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::copy(
        fixtures().join("corpus/science-glass-frogs.md"),
        files.join("science-glass-frogs.md"),
    )
    .unwrap();
    spoken(&files.join("notice.wav"), NOTICE);
    let data = dir.path().join("data");
    let first = ok(&mosaic(
        &data,
        &["--json", "ingest", files.to_str().unwrap()],
        &[],
    ));
    assert_eq!(first["ingested"], 2, "{first}");

    // Another text model, in a models folder that holds no Whisper model at all.
    let (models, pipelines) = crate::common::second_text_model(dir.path(), &data);
    assert!(!models.join("whisper").exists());
    let text_toml = std::fs::read_to_string(pipelines.join("text.toml"))
        .unwrap()
        .replace("batch_tokens = 8192", "batch_tokens = 512");
    std::fs::write(pipelines.join("text.toml"), text_toml).unwrap();
    let env = [
        ("MOSAIC__MODELS__DIR", models.to_str().unwrap()),
        ("MOSAIC_PIPELINES", pipelines.to_str().unwrap()),
        ("RUST_LOG", "mosaic=info"),
    ];
    let output = mosaic(&data, &["--json", "ingest", files.to_str().unwrap()], &env);
    let second = ok(&output);
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        (
            &second["ingested"],
            second["failed"].as_array().unwrap().len()
        ),
        (&2.into(), 0),
        "both files re-embedded, the recording without Whisper: {second}\n{log}"
    );
    assert!(log.contains("transcript reused"), "{log}");
    assert!(!log.contains("loading Whisper"), "{log}");
    let status = ok(&mosaic(&data, &["--json", "status"], &env));
    assert_eq!(status["consistent"], true, "{status}");
    let hits = ok(&mosaic(
        &data,
        &[
            "--json",
            "search",
            "car park resurfacing",
            "--modality",
            "transcript",
            "--mode",
            "bm25",
        ],
        &env,
    ));
    let hit = &hits["hits"][0];
    assert!(
        hit["source"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("notice.wav"),
        "{hits}"
    );
    assert!(
        hit["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("car park"),
        "{hits}"
    );

    // A batch size alone invalidates nothing.
    let text_toml = std::fs::read_to_string(pipelines.join("text.toml"))
        .unwrap()
        .replace("batch_tokens = 512", "batch_tokens = 1024");
    std::fs::write(pipelines.join("text.toml"), text_toml).unwrap();
    let third = ok(&mosaic(
        &data,
        &["--json", "ingest", files.to_str().unwrap()],
        &env,
    ));
    assert_eq!(
        (&third["ingested"], &third["skipped"]),
        (&0.into(), &2.into()),
        "{third}"
    );
}

#[test]
fn awkward_file_names_are_ingested_cited_pruned_and_removed() {
    real_model(MINILM);
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("my files");
    std::fs::create_dir_all(&files).unwrap();
    let body = |topic: &str| {
        format!("# {topic}\n\nThe {topic} notes say the quarterly zephyrine count reached 417 in the {topic} survey.\n")
    };
    let names: Vec<std::path::PathBuf> = vec![
        files.join("report #2 (final).md"),
        files.join("100% done.md"),
        files.join(std::ffi::OsStr::from_bytes(b"caf\xe9 notes.md")),
    ];
    for (name, topic) in names.iter().zip(["harbour", "orchard", "quarry"]) {
        std::fs::write(name, body(topic)).unwrap();
    }
    let data = dir.path().join("data");
    let report = ok(&mosaic(
        &data,
        &["--json", "ingest", files.to_str().unwrap()],
        &[],
    ));
    assert_eq!(report["ingested"], 3, "{report}");
    for (name, topic) in names.iter().zip(["harbour", "orchard", "quarry"]) {
        let hits = ok(&mosaic(
            &data,
            &[
                "--json",
                "search",
                &format!("{topic} survey zephyrine"),
                "--mode",
                "bm25",
                "-n",
                "1",
            ],
            &[],
        ));
        let uri = hits["hits"][0]["source"]["uri"].as_str().unwrap();
        assert!(
            uri.is_ascii() && !uri.contains(' ') && !uri.contains('#'),
            "{uri}"
        );
        assert_eq!(
            mosaic::uri::uri_path(uri).unwrap(),
            std::fs::canonicalize(name).unwrap(),
            "the cited URI names the file"
        );
        let url = hits["hits"][0]["url"].as_str().unwrap();
        assert!(url.starts_with(uri), "{url}");
    }
    // Deleted: pruned. Removed by path: gone. The third stays.
    std::fs::remove_file(&names[0]).unwrap();
    let pruned = ok(&mosaic(
        &data,
        &["--json", "ingest", "--prune", files.to_str().unwrap()],
        &[],
    ));
    assert_eq!(pruned["removed"], 1, "{pruned}");
    let removed = ok(&mosaic(
        &data,
        &["--json", "remove", names[1].to_str().unwrap()],
        &[],
    ));
    assert_eq!(removed["removed"], 1, "{removed}");
    let status = ok(&mosaic(&data, &["--json", "status"], &[]));
    assert_eq!(
        (&status["complete"], &status["consistent"]),
        (&1.into(), &true.into()),
        "{status}"
    );
    let hits = ok(&mosaic(
        &data,
        &[
            "--json",
            "search",
            "quarry survey",
            "--mode",
            "bm25",
            "-n",
            "1",
        ],
        &[],
    ));
    assert_eq!(
        mosaic::uri::display_name(hits["hits"][0]["source"]["uri"].as_str().unwrap()),
        "caf\u{fffd} notes.md"
    );
}

#[test]
fn exit_codes_follow_whose_fault_it_is() {
    real_model(MINILM);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let code = |args: &[&str], env: &[(&str, &str)]| mosaic(&data, args, env).status.code();
    // The user's: an unknown source, a bad time, a settings file that is not TOML, a flag.
    assert_eq!(code(&["transcript", "no-such-source"], &[]), Some(2));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "this is = = not toml").unwrap();
    assert_eq!(
        code(&["--config", bad.to_str().unwrap(), "status"], &[]),
        Some(2)
    );
    assert_eq!(code(&["status", "--no-such-flag"], &[]), Some(2));
    assert_eq!(
        code(&["transcript", "x", "--from", "soon"], &[]),
        Some(2),
        "a bad time is the user's"
    );
    // Finished with a failed input: 3, and the good file is in.
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::copy(fixtures().join("bad/good.md"), files.join("good.md")).unwrap();
    std::fs::copy(
        fixtures().join("bad/corrupt.pdf"),
        files.join("corrupt.pdf"),
    )
    .unwrap();
    assert_eq!(code(&["ingest", files.to_str().unwrap()], &[]), Some(3));
    assert_eq!(code(&["status"], &[]), Some(0));
}
