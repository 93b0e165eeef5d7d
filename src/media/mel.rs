//! Mel filter banks as librosa builds them (`librosa.filters.mel`, Slaney mel scale and Slaney
//! area normalisation), which both Whisper and PANN use.

/// Hz to mel on the Slaney scale (linear below 1 kHz, logarithmic above).
pub fn hz_to_mel(hz: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() / logstep
    } else {
        hz / f_sp
    }
}

/// Mel to Hz on the Slaney scale.
pub fn mel_to_hz(mel: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        f_sp * mel
    }
}

/// `np.linspace(start, stop, n)`.
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut out: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    out[n - 1] = stop;
    out
}

/// Row-major `[n_mels, n_fft / 2 + 1]` filter bank: triangular filters between mel-spaced
/// edges from `fmin` to `fmax`, each scaled to unit area (`norm="slaney"`).
pub fn filterbank(sample_rate: u32, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    // np.fft.rfftfreq(n_fft, 1 / sr), rounding included.
    let val = 1.0 / (n_fft as f64 * (1.0 / sample_rate as f64));
    let fft_freqs: Vec<f64> = (0..bins).map(|i| i as f64 * val).collect();
    let edges: Vec<f64> = linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
        .into_iter()
        .map(mel_to_hz)
        .collect();
    let mut weights = vec![0f32; n_mels * bins];
    for m in 0..n_mels {
        let lower_width = edges[m + 1] - edges[m];
        let upper_width = edges[m + 2] - edges[m + 1];
        let enorm = 2.0 / (edges[m + 2] - edges[m]);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = -(edges[m] - f) / lower_width;
            let upper = (edges[m + 2] - f) / upper_width;
            let w = lower.min(upper).max(0.0) as f32;
            weights[m * bins + k] = (w as f64 * enorm) as f32;
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_round_trips_and_is_linear_below_1khz() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        for hz in [0.0, 50.0, 999.0, 1000.0, 4000.0, 14000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6);
        }
    }

    #[test]
    fn filters_are_triangles_with_unit_area() {
        let sr = 16000;
        let n_fft = 400;
        let bank = filterbank(sr, n_fft, 80, 0.0, 8000.0);
        let bins = n_fft / 2 + 1;
        assert_eq!(bank.len(), 80 * bins);
        for m in 0..80 {
            let row = &bank[m * bins..(m + 1) * bins];
            assert!(row.iter().all(|&w| w >= 0.0));
            // Nonzero weights form one contiguous run (a triangle).
            let nz: Vec<usize> = (0..bins).filter(|&k| row[k] > 0.0).collect();
            if let (Some(&a), Some(&b)) = (nz.first(), nz.last()) {
                assert_eq!(b - a + 1, nz.len(), "filter {m} is not contiguous");
            }
        }
        // The top filters are wide enough to hit FFT bins and have area ~1 in Hz units.
        let hz_per_bin = sr as f64 / n_fft as f64;
        let row = &bank[79 * bins..80 * bins];
        let area: f64 = row.iter().map(|&w| w as f64 * hz_per_bin).sum();
        assert!((area - 1.0).abs() < 0.1, "area {area}");
    }
}
