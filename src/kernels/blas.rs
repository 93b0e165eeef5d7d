//! BLAS libraries loaded at run time, so that no build depends on one: OpenBLAS (Debian's
//! `libopenblas0`) and Intel MKL (`libmkl_rt`, e.g. from the `mkl` PyPI wheel, which
//! `scripts/setup.sh` unpacks into `~/.cache/mosaic/lib`). Both may be loaded side by side;
//! a model's products pick one per [`super::path::ProductPath`].
//!
//! - `MOSAIC_BLAS=off` loads none (the pure-Rust GEMM runs).
//! - `MOSAIC_BLAS=/path/lib.so` loads only that library (MKL or OpenBLAS, told apart by the
//!   symbols it exports).
//! - Otherwise OpenBLAS is searched by its usual names, MKL by its names, in
//!   `$MOSAIC_HOME/lib` (or `~/.cache/mosaic/lib`), `$VIRTUAL_ENV/lib`, `~/.local/lib` and
//!   `/usr/local/lib` (where pip puts the wheel's libraries).
//!
//! MKL is put on its sequential threading layer (no OpenMP runtime is needed) and callers split
//! rows across rayon's threads; OpenBLAS threads itself, sized to rayon's pool.
//!
//! MKL also brings bf16 products (`cblas_gemm_bf16bf16f32`, with weights packed once by
//! `cblas_gemm_bf16bf16f32_pack`): MKL runs them on AMX tiles where the CPU has them (MKL asks
//! the kernel for the tile-data permission itself) and on AVX512_BF16 elsewhere.

use std::path::PathBuf;
use std::sync::OnceLock;

use libloading::Library;

pub(super) type CblasSgemm = unsafe extern "C" fn(
    layout: i32,
    trans_a: i32,
    trans_b: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f32,
    a: *const f32,
    lda: i32,
    b: *const f32,
    ldb: i32,
    beta: f32,
    c: *mut f32,
    ldc: i32,
);

/// `size_t cblas_gemm_bf16bf16f32_pack_get_size(CBLAS_IDENTIFIER, m, n, k)`.
type PackGetSize = unsafe extern "C" fn(identifier: i32, m: i32, n: i32, k: i32) -> usize;
/// `cblas_gemm_bf16bf16f32_pack(layout, identifier, trans, m, n, k, src, ld, dest)`.
type Pack = unsafe extern "C" fn(
    layout: i32,
    identifier: i32,
    trans: i32,
    m: i32,
    n: i32,
    k: i32,
    src: *const u16,
    ld: i32,
    dest: *mut u16,
);
/// `cblas_gemm_bf16bf16f32_compute(layout, transa, transb, m, n, k, alpha, a, lda, b, ldb,
/// beta, c, ldc)`; `transb` is `CblasPacked` for a packed `b`.
type Compute = unsafe extern "C" fn(
    layout: i32,
    trans_a: i32,
    trans_b: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f32,
    a: *const u16,
    lda: i32,
    b: *const u16,
    ldb: i32,
    beta: f32,
    c: *mut f32,
    ldc: i32,
);

pub(super) const ROW_MAJOR: i32 = 101;
pub(super) const NO_TRANS: i32 = 111;
pub(super) const TRANS: i32 = 112;
const PACKED: i32 = 151;
const B_MATRIX: i32 = 162;
const MKL_THREADING_SEQUENTIAL: i32 = 1;
const MKL_INTERFACE_LP64: i32 = 0;

/// Which library a [`Blas`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    OpenBlas,
    Mkl,
    /// A library named by `MOSAIC_BLAS` that is neither.
    Other,
}

/// MKL's bf16 product entry points.
pub(super) struct MklBf16 {
    pack_get_size: PackGetSize,
    pack: Pack,
    compute: Compute,
    /// `cblas_gemm_bf16bf16f32` (same signature as `compute`, neither operand packed).
    gemm: Option<Compute>,
}

/// A loaded BLAS library.
pub struct Blas {
    name: String,
    family: Family,
    pub(super) sgemm: CblasSgemm,
    /// Whether each call runs on the calling thread only (MKL's sequential layer): callers
    /// split rows across rayon's threads.
    pub(super) sequential: bool,
    pub(super) bf16: Option<MklBf16>,
    _library: Library,
}

impl Blas {
    /// The library and its version, as logged and benchmarked ("OpenBLAS 0.3.21", "MKL
    /// 2026.0.2").
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// Whether the library has bf16 products (MKL).
    pub fn has_bf16(&self) -> bool {
        self.bf16.is_some()
    }

    /// Whether the library has bf16 products of two unpacked operands (MKL's
    /// `cblas_gemm_bf16bf16f32`).
    pub fn has_bf16_gemm(&self) -> bool {
        self.bf16.as_ref().is_some_and(|b| b.gemm.is_some())
    }

    /// `c = a · op(b)` in bf16 with f32 results, on the calling thread (MKL's sequential layer),
    /// each operand with its leading dimension: `a` is `[m × k]` row-major with rows `lda`
    /// apart; `b` is `[k × n]` row-major (rows `ldb` apart), or, with `b_transposed`, `[n × k]`
    /// row-major read transposed. Panics unless the
    /// library has [`has_bf16_gemm`](Self::has_bf16_gemm), the sizes fit MKL's `int` and the
    /// operands cover what they are read for.
    ///
    /// # Safety
    /// `c` must be valid for writes at `i·ldc + j` for every `i < m`, `j < n`, and no other
    /// reference to those elements may be in use during the call.
    pub(super) unsafe fn bf16_gemm(
        &self,
        (m, n, k): (usize, usize, usize),
        (a, lda): (&[u16], usize),
        (b, ldb, b_transposed): (&[u16], usize, bool),
        (c, ldc): (*mut f32, usize),
    ) {
        let gemm = self
            .bf16
            .as_ref()
            .and_then(|b| b.gemm)
            .expect("MKL with cblas_gemm_bf16bf16f32");
        if m == 0 || n == 0 {
            return;
        }
        let (b_rows, b_cols) = if b_transposed { (n, k) } else { (k, n) };
        assert!(k > 0 && lda >= k && ldc >= n, "leading dimensions");
        assert!(ldb >= b_cols, "leading dimension of b");
        assert!(a.len() >= (m - 1) * lda + k, "a too short");
        assert!(b.len() >= (b_rows - 1) * ldb + b_cols, "b too short");
        let int = |v: usize| i32::try_from(v).expect("size fits MKL's int");
        let trans_b = if b_transposed { TRANS } else { NO_TRANS };
        // `c` is zeroed here and accumulated into: MKL's own `beta = 0` runs a separate
        // scaling pass over `c` first, slower than this fill.
        for i in 0..m {
            // SAFETY: row i's `n` elements from `i·ldc` are valid for writes and not
            // otherwise referenced (the caller's contract).
            unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), n) }.fill(0.0);
        }
        // SAFETY: MKL's documented signature; `a` and `b` cover every element read (checked
        // above), `c` every element written (the caller's contract).
        unsafe {
            gemm(
                ROW_MAJOR,
                NO_TRANS,
                trans_b,
                int(m),
                int(n),
                int(k),
                1.0,
                a.as_ptr(),
                int(lda),
                b.as_ptr(),
                int(ldb),
                1.0,
                c,
                int(ldc),
            )
        }
    }
}

/// A symbol of `library`, copied out.
///
/// # Safety
/// `T` must be the symbol's true type.
unsafe fn symbol<T: Copy>(library: &Library, name: &[u8]) -> Option<T> {
    // SAFETY: the caller vouches for the type.
    unsafe { library.get::<T>(name) }.ok().map(|s| *s)
}

/// Loads `path` as a BLAS library with `threads` threads (OpenBLAS; MKL runs sequentially).
fn load(path: &str, threads: usize) -> Result<Blas, String> {
    // SAFETY: loading a shared library runs its initialisers; the candidates are BLAS
    // libraries whose initialisers only set up their thread pools and dispatch tables.
    let library = unsafe { Library::new(path) }.map_err(|e| e.to_string())?;
    // SAFETY: `cblas_sgemm` has the standard CBLAS signature in every BLAS that exports it.
    let sgemm: CblasSgemm = unsafe { symbol(&library, b"cblas_sgemm\0") }
        .ok_or_else(|| format!("{path} exports no cblas_sgemm"))?;
    let threads = i32::try_from(threads).unwrap_or(i32::MAX);
    // SAFETY: the MKL service functions take and return one int; `MKL_Get_Version_String`
    // writes at most `len` bytes into the buffer; `openblas_set_num_threads` takes one int
    // and `openblas_get_config` returns a static NUL-terminated string.
    unsafe {
        type SetLayer = unsafe extern "C" fn(i32) -> i32;
        type VersionString = unsafe extern "C" fn(*mut u8, i32);
        if let Some(set_threading) = symbol::<SetLayer>(&library, b"MKL_Set_Threading_Layer\0") {
            // Both must be set before MKL's first product.
            if let Some(set_interface) = symbol::<SetLayer>(&library, b"MKL_Set_Interface_Layer\0")
            {
                set_interface(MKL_INTERFACE_LP64);
            }
            set_threading(MKL_THREADING_SEQUENTIAL);
            let mut version = [0u8; 256];
            if let Some(get) = symbol::<VersionString>(&library, b"MKL_Get_Version_String\0") {
                get(version.as_mut_ptr(), version.len() as i32);
            }
            let bf16 = match (
                symbol::<PackGetSize>(&library, b"cblas_gemm_bf16bf16f32_pack_get_size\0"),
                symbol::<Pack>(&library, b"cblas_gemm_bf16bf16f32_pack\0"),
                symbol::<Compute>(&library, b"cblas_gemm_bf16bf16f32_compute\0"),
            ) {
                (Some(pack_get_size), Some(pack), Some(compute)) => Some(MklBf16 {
                    pack_get_size,
                    pack,
                    compute,
                    gemm: symbol::<Compute>(&library, b"cblas_gemm_bf16bf16f32\0"),
                }),
                _ => None,
            };
            return Ok(Blas {
                name: mkl_name(&version),
                family: Family::Mkl,
                sgemm,
                sequential: true,
                bf16,
                _library: library,
            });
        }
        let mut family = Family::Other;
        let mut name = format!("BLAS {path}");
        if let Some(set) =
            symbol::<unsafe extern "C" fn(i32)>(&library, b"openblas_set_num_threads\0")
        {
            set(threads);
            family = Family::OpenBlas;
            name = "OpenBLAS".into();
            if let Some(config) = symbol::<unsafe extern "C" fn() -> *const std::ffi::c_char>(
                &library,
                b"openblas_get_config\0",
            ) {
                let text = std::ffi::CStr::from_ptr(config()).to_string_lossy();
                // "OpenBLAS 0.3.21 NO_AFFINITY Zen MAX_THREADS=64"
                let version = text.split_whitespace().nth(1).unwrap_or("");
                name = format!("OpenBLAS {version}").trim().to_string();
            }
        }
        Ok(Blas {
            name,
            family,
            sgemm,
            sequential: false,
            bf16: None,
            _library: library,
        })
    }
}

/// "MKL 2026.2" from MKL's version string ("Intel(R) oneAPI Math Kernel Library Version
/// 2026.2-Product Build ..."), or plain "MKL".
fn mkl_name(version: &[u8]) -> String {
    let text = String::from_utf8_lossy(version.split(|&b| b == 0).next().unwrap_or(&[]));
    let number = text
        .split("Version ")
        .nth(1)
        .and_then(|rest| rest.split(['-', ' ']).next())
        .filter(|v| !v.is_empty());
    match number {
        Some(v) => format!("MKL {v}"),
        None => "MKL".into(),
    }
}

/// Folders searched for MKL besides the loader's own path.
fn mkl_folders() -> Vec<PathBuf> {
    let mut folders = Vec::new();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match std::env::var_os("MOSAIC_HOME") {
        Some(root) => folders.push(PathBuf::from(root).join("lib")),
        None => {
            if let Some(home) = &home {
                folders.push(home.join(".cache/mosaic/lib"));
            }
        }
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        folders.push(PathBuf::from(venv).join("lib"));
    }
    if let Some(home) = &home {
        folders.push(home.join(".local/lib"));
    }
    folders.push(PathBuf::from("/usr/local/lib"));
    folders
}

const OPENBLAS_NAMES: &[&str] = &[
    "libopenblas.so.0",
    "libopenblas.so",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
];
const MKL_NAMES: &[&str] = &["libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so"];

struct Libraries {
    openblas: Option<Blas>,
    mkl: Option<Blas>,
    /// The library `MOSAIC_BLAS` named when it is neither MKL nor OpenBLAS.
    other: Option<Blas>,
}

fn libraries() -> &'static Libraries {
    static LIBRARIES: OnceLock<Libraries> = OnceLock::new();
    LIBRARIES.get_or_init(|| {
        let threads = rayon::current_num_threads();
        let mut found = Libraries {
            openblas: None,
            mkl: None,
            other: None,
        };
        match std::env::var("MOSAIC_BLAS").ok().as_deref() {
            Some("off") | Some("rust") => {
                tracing::info!("MOSAIC_BLAS=off: products run on the pure-Rust GEMM");
            }
            Some(path) => match load(path, threads) {
                Ok(blas) => match blas.family {
                    Family::Mkl => found.mkl = Some(blas),
                    Family::OpenBlas => found.openblas = Some(blas),
                    Family::Other => found.other = Some(blas),
                },
                Err(e) => tracing::warn!(
                    "MOSAIC_BLAS={path} could not be loaded ({e}); using the pure-Rust GEMM"
                ),
            },
            None => {
                found.openblas = OPENBLAS_NAMES.iter().find_map(|c| {
                    load(c, threads)
                        .ok()
                        .filter(|b| b.family == Family::OpenBlas)
                });
                let mut mkl_paths: Vec<String> = MKL_NAMES.iter().map(|s| s.to_string()).collect();
                for folder in mkl_folders() {
                    for name in MKL_NAMES {
                        let path = folder.join(name);
                        if path.exists() {
                            mkl_paths.push(path.to_string_lossy().into_owned());
                        }
                    }
                }
                found.mkl = mkl_paths
                    .iter()
                    .find_map(|c| load(c, threads).ok().filter(|b| b.family == Family::Mkl));
                if found.openblas.is_none() && found.mkl.is_none() {
                    tracing::info!(
                        "no BLAS library found (OpenBLAS, e.g. Debian's libopenblas0, or MKL): \
                         using the pure-Rust GEMM"
                    );
                }
            }
        }
        for blas in [&found.openblas, &found.mkl, &found.other]
            .into_iter()
            .flatten()
        {
            tracing::debug!("loaded {}", blas.name);
        }
        found
    })
}

/// OpenBLAS, when loaded.
pub fn openblas() -> Option<&'static Blas> {
    libraries().openblas.as_ref()
}

/// MKL, when loaded.
pub fn mkl() -> Option<&'static Blas> {
    libraries().mkl.as_ref()
}

/// The library f32 products use unless a model's path picks another (what `dtype = "f32"` and
/// the convolutional image and audio networks run): the one `MOSAIC_BLAS` named; else, on an
/// Intel CPU, MKL; else OpenBLAS, else MKL. Measured side by side (docs/performance.md): MKL's
/// f32 products beat OpenBLAS's on each Intel CPU this project has run on (1.14× on one AMX
/// Xeon, 3.7× on a later one that Debian's OpenBLAS 0.3.21 predates), and lose on AMD, where
/// MKL takes its generic code path. The rule is fixed per CPU, not timed at each start, so
/// every process on a machine takes the same path.
pub fn default_library() -> Option<&'static Blas> {
    let l = libraries();
    let mkl_first = l.mkl.as_ref().filter(|_| intel_cpu());
    l.other
        .as_ref()
        .or(mkl_first)
        .or(l.openblas.as_ref())
        .or(l.mkl.as_ref())
}

/// Whether the CPU is Intel's (CPUID vendor "GenuineIntel"). Read once: [`default_library`]
/// is asked on every f32 product, and CPUID is slow (under a hypervisor it leaves the guest).
fn intel_cpu() -> bool {
    static INTEL: OnceLock<bool> = OnceLock::new();
    *INTEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // The vendor string's twelve bytes are in EBX, EDX, ECX, in that order.
            let leaf = std::arch::x86_64::__cpuid(0);
            [leaf.ebx, leaf.edx, leaf.ecx] == [*b"Genu", *b"ineI", *b"ntel"].map(u32::from_le_bytes)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Every loaded library.
pub fn loaded() -> Vec<&'static Blas> {
    let l = libraries();
    [&l.openblas, &l.mkl, &l.other]
        .into_iter()
        .flatten()
        .collect()
}

/// The library of `family`, when loaded.
pub fn library(family: Family) -> Option<&'static Blas> {
    let l = libraries();
    match family {
        Family::OpenBlas => l.openblas.as_ref(),
        Family::Mkl => l.mkl.as_ref(),
        Family::Other => l.other.as_ref(),
    }
}

/// 64-byte aligned storage for MKL's packed matrices.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; 32]);

/// A weight `[n × k]` rounded to bf16 and packed by MKL for `out = x · wᵀ`.
pub struct MklPackedBf16 {
    n: usize,
    k: usize,
    data: Vec<Line>,
    blas: &'static Blas,
}

impl MklPackedBf16 {
    pub fn inputs(&self) -> usize {
        self.k
    }

    pub fn outputs(&self) -> usize {
        self.n
    }

    /// Packs row-major `w[n × k]` for MKL's bf16 products, or `None` where MKL is not
    /// loaded, lacks bf16 products or the sizes exceed its `int`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Option<Self> {
        assert_eq!(w.len(), n * k, "weight size");
        let blas = mkl()?;
        let fns = blas.bf16.as_ref()?;
        let (ni, ki) = (i32::try_from(n).ok()?, i32::try_from(k).ok()?);
        if n == 0 || k == 0 {
            return None;
        }
        let bits: Vec<u16> = w
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect();
        // `b` of `x[m × k] · b[k × n]` is `wᵀ`: `w` read transposed, leading dimension k.
        // SAFETY: MKL's documented signature; m is not part of b's packed size.
        let bytes = unsafe { (fns.pack_get_size)(B_MATRIX, 1, ni, ki) };
        if bytes == 0 {
            return None;
        }
        let mut data = vec![Line([0; 32]); bytes.div_ceil(std::mem::size_of::<Line>())];
        // SAFETY: `bits` holds the `n × k` row-major source (`ld = k`, transposed), `data`
        // has at least the `bytes` MKL asked for, 64-byte aligned.
        unsafe {
            (fns.pack)(
                ROW_MAJOR,
                B_MATRIX,
                TRANS,
                1,
                ni,
                ki,
                bits.as_ptr(),
                ki,
                data.as_mut_ptr().cast::<u16>(),
            )
        };
        Some(Self { n, k, data, blas })
    }

    /// `c[m × n] += a[m × k] · wᵀ` for bf16 `a` (row-major, `lda = k`) on the calling thread;
    /// `c` row-major with `ldc = n`.
    pub(super) fn accumulate(&self, a: &[u16], m: usize, c: &mut [f32]) {
        self.product(a, m, c, 1.0)
    }

    /// `c[m × n] = a[m × k] · wᵀ`, as [`accumulate`](Self::accumulate) but overwriting `c`.
    pub(super) fn multiply(&self, a: &[u16], m: usize, c: &mut [f32]) {
        // Zeroed here and accumulated into: with `beta = 0` MKL runs a separate scaling pass
        // over `c` first, slower than this fill (docs/performance.md).
        c[..m * self.n].fill(0.0);
        self.product(a, m, c, 1.0)
    }

    /// `c = a · wᵀ + beta · c`.
    fn product(&self, a: &[u16], m: usize, c: &mut [f32], beta: f32) {
        assert!(a.len() >= m * self.k, "lhs too short");
        assert!(c.len() >= m * self.n, "dst too short");
        if m == 0 {
            return;
        }
        let fns = self.blas.bf16.as_ref().expect("packed by MKL with bf16");
        let mi = i32::try_from(m).expect("rows fit MKL's int");
        let (n, k) = (self.n as i32, self.k as i32);
        // SAFETY: `a` covers `m × k`, `c` covers `m × n` (checked above), the packed `b` was
        // made by this library for these `n` and `k`; MKL's documented signature.
        unsafe {
            (fns.compute)(
                ROW_MAJOR,
                NO_TRANS,
                PACKED,
                mi,
                n,
                k,
                1.0,
                a.as_ptr(),
                k,
                self.data.as_ptr().cast::<u16>(),
                k,
                beta,
                c.as_mut_ptr(),
                n,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkl_versions_are_read_from_its_string() {
        let text = b"Intel(R) oneAPI Math Kernel Library Version 2026.2-Product Build 20250917 for Intel(R) 64 architecture applications\0junk";
        assert_eq!(mkl_name(text), "MKL 2026.2");
        assert_eq!(mkl_name(b"\0"), "MKL");
    }

    /// The vendor read from CPUID is the one `/proc/cpuinfo` names, and the default f32
    /// library follows it: MKL on Intel when it is loaded, OpenBLAS first elsewhere.
    #[test]
    fn the_default_f32_library_follows_the_cpu_vendor() {
        let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
            eprintln!("no /proc/cpuinfo here: the vendor check is skipped");
            return;
        };
        let vendor = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("vendor_id"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_default();
        assert_eq!(
            intel_cpu(),
            vendor == "GenuineIntel",
            "vendor_id {vendor:?}"
        );
        if std::env::var_os("MOSAIC_BLAS").is_some() {
            eprintln!("MOSAIC_BLAS is set: the default library is the one it names");
            return;
        }
        let expected = match (intel_cpu(), mkl(), openblas()) {
            (true, Some(m), _) => Some(m.family()),
            (_, _, Some(o)) => Some(o.family()),
            (_, m, None) => m.map(Blas::family),
        };
        assert_eq!(default_library().map(Blas::family), expected);
        eprintln!(
            "vendor {vendor}: f32 products on {:?}",
            default_library().map(|b| b.name.clone())
        );
    }
}
