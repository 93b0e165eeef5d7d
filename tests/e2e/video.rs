//! Videos end to end: a test video built by FFmpeg from scikit-image's photos (four scenes at
//! three frame rates: variable frame rate) with espeak-ng narrating each scene, sampled,
//! ingested, searched, asked about and found again from an excerpt, beside a video with no
//! sound track, a truncated one and an empty one.

use std::path::{Path, PathBuf};
use std::process::Command;

use mosaic::media::video::{sample, FrameReason, SamplerSettings};

use crate::common::{clip_pipelines, json, mosaic, ok, real_model, spoken, MINILM};

/// scikit-image's sample photos as setup unpacks them.
fn photo(name: &str) -> PathBuf {
    let path = mosaic::config::default_models_dir()
        .parent()
        .expect("models dir has a parent")
        .join("samples/skimage")
        .join(name);
    assert!(path.is_file(), "{}: run scripts/setup.sh", path.display());
    path
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error"])
        .args(args)
        .output()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The scenes: (photo, seconds, frame rate, narration).
const SCENES: [(&str, u32, u32, &str); 4] = [
    ("chelsea.png", 4, 10, "A cat rests on a chair."),
    ("coffee.png", 4, 25, "A cup of coffee sits on the table."),
    (
        "rocket.jpg",
        12,
        5,
        "The rocket stands on the launch pad, ready for the flight to orbit.",
    ),
    ("astronaut.png", 4, 10, "An astronaut poses for a portrait."),
];

/// Frames the sampler must keep from the scenes video with the default settings: the start,
/// each cut's first frame 200 ms on, and one after 10 s without a kept frame.
const EXPECTED: [(u64, FrameReason); 5] = [
    (0, FrameReason::Start),
    (4200, FrameReason::Cut),
    (8200, FrameReason::Cut),
    (18200, FrameReason::Interval),
    (20200, FrameReason::Cut),
];

/// Builds a video of `scenes` (H.264, 320×240, each scene at its own frame rate, the moov
/// atom first), narrated unless `narrated` is false.
fn scenes_video(
    dir: &Path,
    name: &str,
    scenes: &[(&str, u32, u32, &str)],
    narrated: bool,
) -> PathBuf {
    let mut args: Vec<String> = Vec::new();
    for (file, secs, _, _) in scenes {
        args.extend(["-loop", "1", "-t"].map(String::from));
        args.push(secs.to_string());
        args.push("-i".into());
        args.push(photo(file).display().to_string());
    }
    let n = scenes.len();
    let mut filter = String::new();
    for (i, (_, _, fps, _)) in scenes.iter().enumerate() {
        filter += &format!("[{i}]scale=320:240,setsar=1,fps={fps}[v{i}];");
    }
    for i in 0..n {
        filter += &format!("[v{i}]");
    }
    filter += &format!("concat=n={n}:v=1:a=0,format=yuv420p[v]");
    if narrated {
        for (i, (_, _, _, text)) in scenes.iter().enumerate() {
            let wav = spoken(&dir.join(format!("{name}-{i}.wav")), text);
            args.push("-i".into());
            args.push(wav.display().to_string());
        }
        filter += ";";
        for (i, (_, secs, _, _)) in scenes.iter().enumerate() {
            filter += &format!("[{}]apad,atrim=0:{secs}[a{i}];", n + i);
        }
        for i in 0..n {
            filter += &format!("[a{i}]");
        }
        filter += &format!("concat=n={n}:v=0:a=1[a]");
    }
    args.extend([
        "-filter_complex".into(),
        filter,
        "-map".into(),
        "[v]".into(),
    ]);
    if narrated {
        args.extend(["-map", "[a]", "-c:a", "aac", "-b:a", "64k"].map(String::from));
    }
    let out = dir.join(name);
    args.extend(
        [
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "50",
            "-movflags",
            "+faststart",
        ]
        .map(String::from),
    );
    args.push(out.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&refs);
    out
}

/// FFmpeg's own scene cuts (`select='gt(scene,0.4)'`), in ms.
fn ffmpeg_cuts(video: &Path) -> Vec<u64> {
    let out = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i"])
        .arg(video)
        .args([
            "-an",
            "-vf",
            "select='gt(scene,0.4)',metadata=print:file=-",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("pts_time:"))
        .map(|t| (t.parse::<f64>().unwrap() * 1000.0).round() as u64)
        .collect()
}

/// Mean absolute difference of two same-sized RGB pictures (0-255).
fn mean_difference(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y) as f64)
        .sum::<f64>()
        / a.len() as f64
}

/// The hit for the video `name` among what `similar --image` returns for the sample `photo`.
fn similar_image_hit(data: &Path, photo_name: &str, name: &str) -> serde_json::Value {
    let found = ok(&mosaic(
        data,
        &[
            "--json",
            "similar",
            "--image",
            photo(photo_name).to_str().unwrap(),
        ],
        &[],
    ));
    found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| {
            h["source"]["uri"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{name}"))
        })
        .cloned()
        .unwrap_or_else(|| panic!("{name} not found for {photo_name}: {found}"))
}

#[test]
fn frames_are_sampled_at_ffmpegs_cuts_and_intervals_upright() {
    let dir = tempfile::tempdir().unwrap();
    let video = scenes_video(dir.path(), "scenes.mp4", &SCENES, false);
    let settings = SamplerSettings::default();
    let (info, frames) = sample(&video, &settings).expect("sample");
    let got: Vec<(u64, FrameReason)> = frames.iter().map(|f| (f.at_ms, f.reason)).collect();
    assert_eq!(got, EXPECTED, "{info:?}");
    assert_eq!((info.width, info.height, info.rotation), (320, 240, 0));
    assert!(!info.has_audio);
    // FFmpeg finds the same cuts; each kept cut frame is the first 200 ms after one of them.
    let reference = ffmpeg_cuts(&video);
    let ours: Vec<u64> = frames
        .iter()
        .filter(|f| f.reason == FrameReason::Cut)
        .map(|f| f.at_ms - settings.cut_delay_ms)
        .collect();
    assert_eq!(ours, reference, "cuts against FFmpeg's scene filter");
    // Each kept frame shows its scene: it is FFmpeg's decode of that time.
    for frame in &frames {
        let png = dir.path().join(format!("at-{}.png", frame.at_ms));
        ffmpeg(&[
            "-ss",
            &format!("{:.3}", frame.at_ms as f64 / 1000.0),
            "-i",
            video.to_str().unwrap(),
            "-frames:v",
            "1",
            png.to_str().unwrap(),
        ]);
        let want = mosaic::media::image::decode_file(&png, u64::MAX)
            .unwrap()
            .rgb;
        assert_eq!(
            (frame.rgb.width, frame.rgb.height),
            (want.width, want.height)
        );
        let diff = mean_difference(&frame.rgb.data, &want.data);
        assert!(
            diff < 3.0,
            "frame at {}: mean difference {diff}",
            frame.at_ms
        );
    }

    // Rotation metadata: frames come out upright, as FFmpeg's autorotation shows them.
    let rotated = dir.path().join("rotated.mp4");
    ffmpeg(&[
        "-i",
        video.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v",
        "rotate=90",
        rotated.to_str().unwrap(),
    ]);
    let (info, turned) = sample(&rotated, &settings).expect("sample rotated");
    assert_ne!(info.rotation, 0);
    let upright = dir.path().join("upright.png");
    ffmpeg(&[
        "-i",
        rotated.to_str().unwrap(),
        "-frames:v",
        "1",
        upright.to_str().unwrap(),
    ]);
    let want = mosaic::media::image::decode_file(&upright, u64::MAX)
        .unwrap()
        .rgb;
    assert_eq!((want.width, want.height), (240, 320));
    assert_eq!((turned[0].rgb.width, turned[0].rgb.height), (240, 320));
    let diff = mean_difference(&turned[0].rgb.data, &want.data);
    assert!(diff < 3.0, "rotated first frame: mean difference {diff}");

    // The budget keeps the cuts when it must drop frames.
    let tight = SamplerSettings {
        max_frames: 4,
        ..settings.clone()
    };
    let (_, thinned) = sample(&video, &tight).unwrap();
    let reasons: Vec<FrameReason> = thinned.iter().map(|f| f.reason).collect();
    assert_eq!(
        reasons,
        [
            FrameReason::Start,
            FrameReason::Cut,
            FrameReason::Cut,
            FrameReason::Cut
        ]
    );
    // Key frames only (every 50th frame here, and each scene's first): fewer frames decoded.
    let fast = SamplerSettings {
        keyframes_only: true,
        ..settings
    };
    let (fast_info, fast_frames) = sample(&video, &fast).unwrap();
    assert!(fast_info.keyframes_only);
    assert!(fast_info.frames_decoded < 30, "{fast_info:?}");
    assert_eq!(fast_frames[0].at_ms, 0);
}

/// The one slow video path: ingest (transcribe, sample, embed) beside bad videos, then similar
/// video, similar image, ask, and text search through a CLIP model's text tower.
#[test]
fn videos_ingest_cite_and_are_found_from_an_excerpt() {
    real_model(MINILM);
    let tmp = tempfile::tempdir().unwrap();
    let (videos, work, data) = (
        tmp.path().join("videos"),
        tmp.path().join("work"),
        tmp.path().join("data"),
    );
    std::fs::create_dir_all(&videos).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let scenes = scenes_video(&work, "scenes.mp4", &SCENES, true);
    std::fs::copy(&scenes, videos.join("scenes.mp4")).unwrap();
    // No sound track, other scenes.
    let silent = [
        ("astronaut.png", 5, 10, ""),
        ("motorcycle_left.png", 5, 10, ""),
        ("hubble_deep_field.jpg", 5, 10, ""),
    ];
    scenes_video(&videos, "silent.mp4", &silent, false);
    // Truncated at 60% (the moov atom is first, so what is left decodes).
    let bytes = std::fs::read(&scenes).unwrap();
    std::fs::write(videos.join("truncated.mp4"), &bytes[..bytes.len() * 6 / 10]).unwrap();
    std::fs::write(videos.join("empty.webm"), b"").unwrap();

    let out = mosaic(&data, &["--json", "ingest", videos.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(3), "one input failed: exit 3");
    let report = json(&out);
    assert_eq!(report["ingested"], 3, "{report}");
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{report}");
    assert!(failed[0]["uri"].as_str().unwrap().ends_with("empty.webm"));
    assert!(
        failed[0]["error"].as_str().unwrap().contains("empty"),
        "{report}"
    );
    let status = ok(&mosaic(&data, &["--json", "status"], &[]));
    assert_eq!(status["consistent"], true, "{status}");

    // An excerpt (6-22 s, rescaled, no sound) finds the scenes video aligned 6 s on.
    let excerpt = work.join("excerpt.mp4");
    ffmpeg(&[
        "-ss",
        "6",
        "-t",
        "16",
        "-i",
        scenes.to_str().unwrap(),
        "-vf",
        "scale=256:192",
        "-an",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        excerpt.to_str().unwrap(),
    ]);
    let similar = ok(&mosaic(
        &data,
        &["--json", "similar", "--video", excerpt.to_str().unwrap()],
        &[],
    ));
    let first = &similar["hits"][0];
    assert!(
        first["source"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("/scenes.mp4"),
        "{similar}"
    );
    let m = &first["matches"][0];
    let reference = m["anchor"]["start_ms"].as_i64().unwrap();
    let query = m["query"]["start_ms"].as_i64().unwrap();
    assert!(
        (reference - query - 6000).abs() <= 500,
        "aligned 6 s on: {m}"
    );
    assert!(
        m["anchor"]["end_ms"].as_i64().unwrap() - reference >= 10_000,
        "the aligned range spans the shared footage: {m}"
    );
    assert!(
        similar["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| !h["source"]["uri"]
                .as_str()
                .unwrap()
                .ends_with("/silent.mp4")),
        "no shared footage with the silent video: {similar}"
    );

    // The rocket photo finds the rocket scene's frames (and the truncated copy's, if kept).
    let hit = similar_image_hit(&data, "rocket.jpg", "scenes.mp4");
    let best = &hit["matches"][0]["anchor"];
    assert_eq!(best["kind"], "frame", "{hit}");
    let at = best["at_ms"].as_u64().unwrap();
    assert!((8000..20000).contains(&at), "a rocket frame: {hit}");

    // Ask: the answer cites the scenes video at the time the rocket is spoken of.
    let answer = ok(&mosaic(
        &data,
        &["--json", "ask", "What stands on the launch pad?"],
        &[],
    ));
    let citation = answer["citations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"]["uri"].as_str().unwrap().contains(".mp4"))
        .unwrap_or_else(|| panic!("no video cited: {answer}"));
    assert!(
        citation["url"].as_str().unwrap().contains("#t="),
        "{citation}"
    );
    assert!(
        answer["answer"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("rocket"),
        "{answer}"
    );
    // The rocket is narrated over its scene, 8-20 s: the cited range overlaps it.
    let (start, end) = (
        citation["anchor"]["start_ms"].as_u64().unwrap(),
        citation["anchor"]["end_ms"].as_u64().unwrap(),
    );
    assert!(start < 20_000 && end > 8_000, "{citation}");
    // With the frame on screen while those words were spoken, and its thumbnail.
    let frame = &citation["frame"];
    let at = frame["at_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no frame: {citation}"));
    assert!(
        EXPECTED.iter().any(|(t, _)| *t == at) && (start..=end).contains(&at),
        "a kept frame inside {start}-{end}: {citation}"
    );
    assert!(
        Path::new(frame["thumbnail"].as_str().unwrap()).is_file(),
        "{citation}"
    );

    // The truncated copy keeps the frames before the cut-off, and says so; the silent one
    // says it has no sound track.
    let notices = report["notices"].as_array().cloned().unwrap_or_default();
    let note_of = |name: &str| {
        notices
            .iter()
            .find(|n| n["uri"].as_str().unwrap().ends_with(name))
            .map(|n| n["note"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no notice for {name}: {report}"))
    };
    assert!(note_of("truncated.mp4").contains("truncated"), "{report}");
    assert!(note_of("silent.mp4").contains("no sound track"), "{report}");
    let truncated = similar_image_hit(&data, "chelsea.png", "truncated.mp4");
    assert_eq!(truncated["matches"][0]["anchor"]["at_ms"], 0, "{truncated}");

    // Text search through a CLIP text tower: with tiny-clip as the picture model, the scenes
    // video's frames (random weights: any order) come back as one moment spanning them.
    let (models, pipelines) = clip_pipelines(tmp.path());
    let env = [
        ("MOSAIC__MODELS__DIR", models.to_str().unwrap()),
        ("MOSAIC_PIPELINES", pipelines.to_str().unwrap()),
    ];
    let clip_data = tmp.path().join("clip-data");
    let only = work.join("only");
    std::fs::create_dir_all(&only).unwrap();
    std::fs::copy(&scenes, only.join("scenes.mp4")).unwrap();
    ok(&mosaic(
        &clip_data,
        &["--json", "ingest", only.to_str().unwrap()],
        &env,
    ));
    let found = ok(&mosaic(
        &clip_data,
        &[
            "--json",
            "search",
            "--mode",
            "dense",
            "a rocket on the launch pad",
        ],
        &env,
    ));
    let frames: Vec<&serde_json::Value> = found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["modality"] == "frame")
        .collect();
    assert_eq!(
        frames.len(),
        1,
        "adjacent frames collapse into one moment: {found}"
    );
    assert_eq!(
        (
            &frames[0]["anchor"]["start_ms"],
            &frames[0]["anchor"]["end_ms"]
        ),
        (&EXPECTED[0].0.into(), &EXPECTED[4].0.into()),
        "{found}"
    );
    assert!(frames[0]["url"].as_str().unwrap().contains("#t=0.0,20.2"));
    // The moment carries the words spoken then.
    assert!(!frames[0]["text"].as_str().unwrap().is_empty(), "{found}");
}
